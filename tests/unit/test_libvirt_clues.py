"""Why a libvirt pull failed, from the clues libvirt leaves (its FAILED event has no reason)."""

from __future__ import annotations

from pathlib import Path

from blocktui.backends.libvirt.clues import CAUSE_WINDOW, FailureClues, IoError, describe_failure

TOP = "/srv/vm/web1.qcow2"


def test_a_full_overlay_filesystem_names_no_space_and_the_path() -> None:
    why = describe_failure("web1", io_error=None, paused_on_error=False, free=0, source=TOP)
    assert why.startswith("no space left on device")
    assert TOP in why and "0 Bytes free" in why


def test_a_domain_paused_on_the_error_says_what_to_do_and_that_it_stays_paused() -> None:
    error = IoError(at=0.0, reason="enospc", paused=True)
    why = describe_failure("web1", io_error=error, paused_on_error=True, free=None, source=TOP)
    assert why.startswith("no space left on device")
    assert "paused the domain" in why and "virsh resume web1" in why and "free space" in why


def test_an_io_error_reported_without_a_pause_is_named() -> None:
    why = describe_failure(
        "web1", io_error=IoError(0.0, "eio"), paused_on_error=False, free=10**9, source=TOP
    )
    assert why.startswith("input/output error")
    assert "paused" not in why


def test_without_any_clue_it_says_libvirt_gives_none_and_where_to_look() -> None:
    why = describe_failure("web1", io_error=None, paused_on_error=False, free=10**9, source=TOP)
    assert "libvirt gives no reason" in why and "logs" in why
    assert "no space" not in why


def test_clues_follow_the_domain_and_expire(tmp_path: Path) -> None:
    now = [100.0]
    clues = FailureClues(clock=lambda: now[0])
    top = tmp_path / "top.qcow2"
    clues.source("web1", "vda", str(top))
    clues.io_error("web1", "", "enospc", paused=True)
    assert clues.explain("web1", "vda", local_files=False).startswith("no space left on device")
    # The error is old news by now, and the domain runs again: nothing is left to blame.
    now[0] += CAUSE_WINDOW + 1
    clues.run_state("web1", paused_on_error=False)
    assert "libvirt gives no reason" in clues.explain("web1", "vda", local_files=False)
    # A local overlay's filesystem is looked at (this one has room).
    assert f"the filesystem holding {top}" in clues.explain("web1", "vda", local_files=True)
    clues.run_state("web1", paused_on_error=True)
    clues.forget("web1")
    assert "paused" not in clues.explain("web1", "vda", local_files=False)

"""Failures as a script sees them, in separate blocktui processes on real QEMU: the reason a pull
failed (``stream --wait --json``, ``history --json``), and streams that go on when the journal's
state directory is read-only or full."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocktui.lab.images import backing_file, check

from .cli_support import Cli, lab_cli
from .mounts import tmpfs

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture(scope="module", params=["libvirt", "qmp"])
def cli(request: pytest.FixtureRequest) -> Iterator[Cli]:
    """A private lab of one domain (lab-1: vda, vdb streamable) reached from separate processes."""
    yield from lab_cli(request.param, "btf-")


def test_stream_wait_and_history_say_why_a_pull_failed_and_how_far_it_got(cli: Cli, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", 12 * MIB) as small:
        spec = f"DiskSpec('vda', {48 * MIB}, 2, overlay_dir=Path({str(small.path)!r}))"
        cli.lab(f"create_domain('full', [{spec}])", imports=", DiskSpec; from pathlib import Path")
        try:
            # The pre-flight sees it first: 48 MiB to copy, 12 MiB free. Refused, nothing started.
            refused = cli.run("stream", "full", "vda", "--bandwidth", "8M", "--wait", check=False)
            assert refused.returncode == 4, refused.stderr
            (line,) = refused.stderr.strip().splitlines()
            assert "--force" in line and "free" in line
            assert cli.json("jobs", "--json") == []
            # Forced, the pull runs out of space and says so.
            done = cli.run(
                "stream", "full", "vda", "--bandwidth", "8M", "--wait", "--json", "--force", check=False
            )
            assert done.returncode == 1, done.stderr
            assert "Traceback" not in done.stderr
            final = json.loads(done.stdout)
            assert final["state"] == "failed"
            assert "no space left on device" in final["error"].lower()
            assert 0 < final["cur"] <= 14 * MIB
            assert final["plan"]["bytes_done"] == final["cur"]

            (entry,) = [e for e in cli.json("history", "--json") if e["domain"] == "full"]
            assert entry["status"] == "failed" and entry["error"] == final["error"]
            assert entry["bytes_done"] == final["cur"]

            top = small.path / "vda.qcow2"
            cli.flush("full")
            assert backing_file(top) is not None  # still on its chain, nothing dropped
            assert check(top)
        finally:
            cli.lab("destroy_domain('full')")


@pytest.mark.parametrize(("trouble", "disk"), [("read-only", "vda"), ("full", "vdb")])
def test_a_stream_goes_on_when_the_state_directory_cannot_be_written(
    cli: Cli, trouble: str, disk: str, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "state", 1 * MIB, readonly=trouble == "read-only") as state:
        if trouble == "full":
            state.fill()
        done = cli.run(
            "stream", "lab-1", disk, "--bandwidth", "0", "--wait", "--json",
            check=False, env={"BLOCKTUI_STATE_DIR": str(state.path)},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "completed"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("blocktui: cannot write the job journal") and str(state.path) in lines[0]

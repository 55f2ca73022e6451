"""blocktui against a real system libvirtd: hostile domain names and paths, a frozen daemon."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from blocktui.backends.libvirt.parse import REPLACEMENT
from blocktui.lab.images import compare, flatten_copy
from blocktui.lab.system import frozen

from .system_support import PREFIX, SystemHost, follow_stream, reap

pytestmark = pytest.mark.integration

#: Names libvirt accepts through virDomainRename (it refuses only '/' of what was tried here).
HOSTILE_NAMES = {
    "esc": f"{PREFIX}esc\x1b[31mred",
    "osc": f"{PREFIX}osc\x1b]0;x\x07",
    "c1": f"{PREFIX}c1\u009b2J",
    "bidi": f"{PREFIX}bidi\u202eevil",
    "newline": f"{PREFIX}new\nline",
    "markup": f"{PREFIX}[@click=app.quit]",
    "long": PREFIX + "x" * (200 - len(PREFIX)),
    "spaces": f"{PREFIX} spaces [and] brackets ",
}
#: Of those, the ones started (live XML, with the detected backing chain) rather than left shut off.
#: libvirt cannot start a domain whose name holds ESC or another C0 control: it re-reads its own XML.
STARTED = {"c1", "bidi", "markup"}
#: A backing file name holding ESC and OSC, C1, a bidi override, a newline, markup, spaces, brackets.
ODD_BASE = "base \x1b]0;x\x07 \u009b2J \u202eevil \n [@click=app.quit] [b].qcow2"
#: Every command that asks the host, with its arguments.
HOST_COMMANDS = [
    ["ls", "--json"],
    ["jobs", "--json"],
    ["speed", f"{PREFIX}good", "vda", "1M"],
    ["abort", f"{PREFIX}good", "vda"],
    ["pause", f"{PREFIX}good", "vda"],
    ["resume", f"{PREFIX}good", "vda"],
]
#: What the issue promises for a frozen daemon: every such command gives up within this many seconds.
GIVE_UP_WITHIN = 15.0


@pytest.fixture(scope="module")
def good_domain(system_host: SystemHost) -> str:
    """A running (paused) domain with one disk over a base, for streams."""
    name = f"{PREFIX}good"
    system_host.define(name, size=8 * 1024 * 1024)
    system_host.start(name)
    return name


def test_hostile_names_and_paths_are_listed_and_other_domains_stream(
    system_host: SystemHost, good_domain: str, tmp_path: Path
) -> None:
    for key, name in HOSTILE_NAMES.items():
        placeholder = f"{PREFIX}tmp-{key}"
        system_host.define(placeholder)
        system_host.rename(placeholder, name)  # a shut-off persistent domain can be renamed
        if key in STARTED:
            system_host.start(name)
    # A backing file with a hostile name: libvirt copies the path from the image into its live XML.
    odd_path = f"{PREFIX}path"
    system_host.define(odd_path, base_name=ODD_BASE)
    system_host.start(odd_path)

    listed = system_host.run("ls", "--json", timeout=60)

    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    domains = {d["name"]: d for d in json.loads(listed.stdout)}
    assert set(HOSTILE_NAMES.values()) | {good_domain, odd_path} <= set(domains)
    for key in STARTED:
        (vda,) = domains[HOSTILE_NAMES[key]]["disks"]
        assert vda["target"] == "vda" and len(vda["chain"]) == 1
    (odd_disk,) = domains[odd_path]["disks"]
    backing = odd_disk["chain"][0]["path"]
    # ESC reads as U+FFFD (XML cannot carry it); libvirt itself drops BEL; the rest is kept.
    for kept in (f"{REPLACEMENT}]0;x", "\u009b2J", "\u202eevil", "\n", "[@click=app.quit] [b].qcow2"):
        assert kept in backing, (kept, backing)

    jobs = system_host.run("jobs", "--json", timeout=60)  # reads the live XML of every running domain
    assert jobs.returncode == 0, jobs.stderr
    assert [j for j in json.loads(jobs.stdout) if j["domain"].startswith(PREFIX)] == []

    text = system_host.run("ls", timeout=60)
    assert text.returncode == 0, text.stderr
    for raw in ("\x1b", "\x07", "\u009b", "\u202e"):
        assert raw not in text.stdout + text.stderr

    (vda,) = domains[good_domain]["disks"]
    top = Path(vda["source"])
    saved = tmp_path / "before.raw"
    flatten_copy(top, saved)
    streamed = system_host.run("stream", good_domain, "vda", "--wait", "--json", timeout=120)

    assert streamed.returncode == 0, streamed.stderr
    assert json.loads(streamed.stdout)["state"] == "completed"
    system_host.flush(good_domain)
    assert compare(top, saved)


def test_a_frozen_daemon_makes_every_host_command_give_up_with_exit_5(
    system_host: SystemHost, good_domain: str
) -> None:
    with frozen(system_host.daemon.pid):
        started = time.monotonic()
        running = [(args, system_host.popen(*args)) for args in HOST_COMMANDS]
        results: list[tuple[list[str], int, str]] = []
        try:
            for args, process in running:
                left = max(0.1, started + GIVE_UP_WITHIN - time.monotonic())
                _out, err = process.communicate(timeout=left)
                results.append((args, process.returncode, err))
        finally:
            for _args, process in running:
                if process.poll() is None:
                    process.kill()
                    process.communicate()

    for args, code, err in results:
        assert code == 5, (args, err)
        assert "host not answering" in err, (args, err)
        assert len(err.strip().splitlines()) == 1, (args, err)
    again = system_host.run("jobs", "--json", timeout=60)
    assert again.returncode == 0, again.stderr
    assert isinstance(json.loads(again.stdout), list)


def test_stream_wait_rides_out_a_frozen_daemon_and_reports_the_true_outcome(
    system_host: SystemHost, tmp_path: Path
) -> None:
    name = f"{PREFIX}outage"
    # Slow enough that the job is still running when the daemon freezes (8 s at 2 MiB/s). Frozen
    # once the stream runs: a freeze during the start call itself is a planner matter.
    stream = follow_stream(system_host, name, 16 * 1024 * 1024, "2M", tmp_path / "before.raw")
    try:
        with frozen(system_host.daemon.pid):
            said = stream.stderr.wait_for("not answering", timeout=60)
        out = stream.finish()
    finally:
        reap(stream.process)

    assert stream.process.returncode == 0, (out, stream.stderr.rest())
    assert json.loads(out)["state"] == "completed"
    assert "still waiting" in said
    assert sum("not answering" in line for line in stream.stderr.rest()) == 1
    assert stream.reads_as_before(system_host)

"""The command line as a script uses it: separate processes, real QEMU, JSON out, exit codes.

Each lab here is private to this module (its own short root), so the blocktui processes it runs
can open it while the rest of the suite holds its own labs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blocktui.lab.images import backing_file, compare, flatten_copy

from .cli_support import Cli, lab_cli, private_root

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def qmp_cli() -> Iterator[Cli]:
    """A QMP lab of one domain, reached with --qmp-dir like any folder of QEMU sockets."""
    yield from lab_cli("qmp", "btc-")


@pytest.fixture(scope="module")
def libvirt_cli() -> Iterator[Cli]:
    """An embedded libvirt lab of one domain, reached with --lab from separate processes."""
    for root in private_root("btv-"):
        cli = Cli(root, "libvirt", "--lab")
        cli.run("lab", "up", "--domains", "1", "--disks", "2", "--size", "32M", hosts=False)
        try:
            yield cli
        finally:
            cli.run("lab", "down", hosts=False, check=False)


def _disk(listing: list[dict[str, Any]], domain: str, target: str) -> dict[str, Any]:
    entry = next(d for d in listing if d["name"] == domain)
    return next(d for d in entry["disks"] if d["target"] == target)


@pytest.mark.parametrize("which", ["qmp_cli", "libvirt_cli"])
def test_ls_stream_jobs_as_json(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    cli: Cli = request.getfixturevalue(which)
    listing = cli.json("ls", "--json")
    assert {"uri", "name", "state", "disks"} <= set(listing[0])
    vdb = _disk(listing, "lab-1", "vdb")
    assert vdb["chain"] and {"path", "format"} == set(vdb["chain"][0])
    top = Path(vdb["source"])
    saved = tmp_path / "before.raw"
    flatten_copy(top, saved)

    final = cli.json("stream", "lab-1", "vdb", "--bandwidth", "0", "--wait", "--json")

    assert final["state"] == "completed"
    assert {"uri", "domain", "disk", "kind", "state", "cur", "end", "remaining", "bandwidth"} <= set(final)
    assert final["kind"] == "pull" and final["remaining"] == 0 and final["end"] > 0
    assert backing_file(top) is None
    cli.flush("lab-1")
    assert compare(top, saved)
    assert _disk(cli.json("ls", "--json"), "lab-1", "vdb")["chain"] == []


@pytest.mark.parametrize("which", ["qmp_cli", "libvirt_cli"])
def test_jobs_speed_abort_from_separate_processes(which: str, request: pytest.FixtureRequest) -> None:
    cli: Cli = request.getfixturevalue(which)
    cli.run("stream", "lab-1", "vda", "--bandwidth", "1M")
    jobs = cli.json("jobs", "--json")
    job = next(j for j in jobs if j["domain"] == "lab-1" and j["disk"] == "vda")
    assert job["kind"] == "pull" and job["state"] in {"active", "ready"}
    assert job["bandwidth"] == 1 * MIB
    assert job["remaining"] == job["end"] - job["cur"]

    cli.run("speed", "lab-1", "vda", "2M")
    job = next(j for j in cli.json("jobs", "--json") if j["disk"] == "vda")
    assert job["bandwidth"] == 2 * MIB

    second = cli.run("stream", "lab-1", "vda", check=False)
    assert second.returncode == 4
    assert len(second.stderr.strip().splitlines()) == 1

    aborted = cli.run("abort", "lab-1", "vda", "--wait")
    assert "cancelled" in aborted.stdout
    assert not [j for j in cli.json("jobs", "--json") if j["disk"] == "vda"]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["stream", "nosuch", "vda"], 3),
        (["stream", "lab-1", "vdz"], 3),
        (["stream", "lab-1", "vdc"], 4),  # the lab's disk without a backing file
        (["stream", "lab-1", "vda", "--bandwidth", "fast"], 2),
        (["stream", "lab-1", "vda", "--bandwidth", str(2**63)], 2),
        (["--readonly", "stream", "lab-1", "vda"], 6),
        (["abort", "lab-1", "vda"], 4),
    ],
)
def test_errors_are_one_line_with_their_exit_code(qmp_cli: Cli, args: list[str], code: int) -> None:
    vda = _disk(qmp_cli.json("ls", "--json"), "lab-1", "vda")
    done = qmp_cli.run(*args, check=False)
    assert done.returncode == code, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert _disk(qmp_cli.json("ls", "--json"), "lab-1", "vda") == vda  # nothing changed

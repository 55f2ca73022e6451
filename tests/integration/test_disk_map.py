"""``blocktui map`` on real images: ranges that add up to the disk, and a pulled disk all local."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blocktui.lab.images import image_info

from .cli_support import Cli, lab_cli

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture(scope="module", params=["qmp", "libvirt"])
def cli(request: pytest.FixtureRequest) -> Iterator[Cli]:
    """A lab of one domain of each kind, private to this module, reached from separate processes."""
    yield from lab_cli(request.param, "btm-")


def _source(cli: Cli, target: str) -> str:
    (domain,) = [d for d in cli.json("ls", "--json") if d["name"] == "lab-1"]
    return str(next(d for d in domain["disks"] if d["target"] == target)["source"])


def _assert_whole(record: dict[str, Any], size: int) -> None:
    """The ranges cover the disk from byte 0 without a hole, and the totals add up to it too."""
    at = 0
    for extent in record["ranges"]:
        assert extent["start"] == at and extent["length"] > 0
        assert extent["state"] in {"local", "backing", "unallocated"}
        at += extent["length"]
    assert at == record["size"] == size
    assert sum(record["totals"].values()) == size


def test_map_ranges_add_up_and_a_full_stream_leaves_the_disk_all_local(cli: Cli) -> None:
    size = int(str(image_info(Path(_source(cli, "vda")))["virtual-size"]))
    before = cli.json("map", "lab-1", "vda", "--json")
    _assert_whole(before, size)
    assert before["domain"] == "lab-1" and before["disk"] == "vda"
    # The lab's overlays hold their first MiB; the rest of the fully written chain lies below.
    assert before["totals"]["local"] == MIB
    assert before["totals"]["backing"] == size - MIB
    assert before["ranges"][0] == {"start": 0, "length": MIB, "state": "local"}

    final = cli.json("stream", "lab-1", "vda", "--bandwidth", "0", "--wait", "--json")
    assert final["state"] == "completed"
    cli.flush("lab-1")  # QEMU writes its cached qcow2 tables out; qemu-img reads the files

    after = cli.json("map", "lab-1", "vda", "--json")
    _assert_whole(after, size)
    assert after["percent_local"] == 100
    assert not [e for e in after["ranges"] if e["state"] == "backing"]
    assert after["totals"]["local"] == size  # the base was fully written: all of it came up
    shown = cli.run("map", "lab-1", "vda").stdout.splitlines()
    assert shown[0].endswith("100% local") and set(shown[1]) == {"█"}


def test_map_beside_a_running_stream_reads_files_only(cli: Cli) -> None:
    cli.run("stream", "lab-1", "vdb", "--bandwidth", "1M")
    try:
        done = cli.run("map", "lab-1", "vdb", "--json", check=False)
        if cli.kind == "libvirt":
            assert done.returncode == 0, done.stderr
            record = json.loads(done.stdout)
            _assert_whole(record, record["size"])
            assert record["totals"]["backing"] > 0
        else:
            # A QMP host names the disk's nodes, not its files, while a job runs on it: a new
            # process cannot know the image and says so, without asking QEMU anything else.
            assert done.returncode == 7
            assert done.stderr.count("\n") == 1 and "once the job is gone" in done.stderr
        job = next(j for j in cli.json("jobs", "--json") if j["disk"] == "vdb")
        assert job["state"] in {"active", "ready"}  # the map touched nothing
    finally:
        cli.run("abort", "lab-1", "vdb", "--wait", check=False)


@pytest.mark.parametrize(("args", "code"), [(["nosuch", "vda"], 3), (["lab-1", "vdz"], 3)])
def test_map_errors_are_one_line(cli: Cli, args: list[str], code: int) -> None:
    done = cli.run("map", *args, check=False)
    assert done.returncode == code
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr

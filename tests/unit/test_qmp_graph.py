"""Disk names and chains from QMP replies recorded on QEMU 7.2 started in each common way.

The samples (``qmp_samples/<style>.json``, made by ``qmp_samples/record.py``) hold one disk with a
three-image chain and one standalone disk, before a stream, while it runs, once it has concluded
and after it was dismissed. A disk must keep its name through all four.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from blocktui.backends.qmp.graph import disks_from, job_disks, qdev_id
from blocktui.backends.qmp.state import job_control
from blocktui.lab.qemu_styles import STYLES

SAMPLES = Path(__file__).parent / "qmp_samples"
PHASES = ("idle", "running", "concluded", "after")


def _sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return loaded


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("phase", PHASES)
def test_disks_keep_their_names_at_every_moment_of_a_stream(style: str, phase: str) -> None:
    sample = _sample(style)
    # Node details are read only while no job exists; later graphs reuse the last ones.
    named = sample["named.after"] if phase == "after" else sample["named.idle"]

    disks, _chains = disks_from(sample[f"graph.{phase}"], named)

    assert [disk.target for disk in disks] == sample["disks"]


@pytest.mark.parametrize("style", STYLES)
def test_chains_before_and_after_a_stream(style: str) -> None:
    sample = _sample(style)
    first, standalone = sample["disks"]

    before, chain_nodes = disks_from(sample["graph.idle"], sample["named.idle"])
    concluded, _ = disks_from(sample["graph.concluded"], sample["named.idle"])
    after, _ = disks_from(sample["graph.after"], sample["named.after"])

    disk = next(d for d in before if d.target == first)
    assert disk.source is not None and disk.source.endswith("/vda.qcow2")
    assert disk.format == "qcow2"
    assert [Path(layer.path).name for layer in disk.chain] == ["vda-1.qcow2", "vda-0.qcow2"]
    assert len(chain_nodes[first]) == 2  # node names for base-node, nearest first
    assert next(d for d in before if d.target == standalone).chain == ()
    # Once the stream concluded, the chain is gone, even before the job is dismissed.
    assert all(d.chain == () for d in concluded)
    assert all(d.chain == () for d in after)
    assert next(d for d in after if d.target == first).source == disk.source


@pytest.mark.parametrize("style", STYLES)
def test_mid_job_chain_shape_without_node_details(style: str) -> None:
    # A process that connects while the stream runs may not read node details: the graph alone
    # still lists both disks and the two layers below the first.
    sample = _sample(style)
    disks, _ = disks_from(sample["graph.running"])

    first = next(d for d in disks if d.target == sample["disks"][0])
    assert len(first.chain) == 2
    assert first.node is not None


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("phase", ["running", "concluded"])
def test_a_stream_is_placed_on_its_disk(style: str, phase: str) -> None:
    sample = _sample(style)
    assert job_disks(sample[f"graph.{phase}"]) == {"j1": sample["disks"][0]}


def test_jobs_of_other_tools_are_placed_through_their_filters() -> None:
    # A commit (commit_top above vdb) and a mirror (mirror_top above vda, a target of its own).
    graph = _sample("foreign-jobs")

    disks, _ = disks_from(graph)

    assert [disk.target for disk in disks] == ["vda", "vdb"]
    assert job_disks(graph) == {"ext-commit": "vdb", "ext-mirror": "vda"}


@pytest.mark.parametrize(
    "reply",
    [None, {}, {"nodes": "x"}, {"nodes": [{"id": "1"}], "edges": [{"parent": 1}]}, [1, 2]],
)
def test_malformed_replies_list_nothing(reply: object) -> None:
    assert disks_from(reply) == ((), {})
    assert job_disks(reply) == {}


def test_qdev_ids() -> None:
    assert qdev_id("/machine/peripheral/virtio-disk0/virtio-backend") == "virtio-disk0"
    assert qdev_id("/machine/peripheral/scsi0") == "scsi0"
    assert qdev_id("scsi0") == "scsi0"
    assert qdev_id("/machine/peripheral-anon/device[0]/virtio-backend").startswith("/machine")


def test_the_cli_offers_every_lab_style() -> None:
    from blocktui.cli.commands import QMP_LAB_STYLES

    assert QMP_LAB_STYLES == STYLES


def test_job_commands_where_qemu_has_them_else_the_block_job_forms() -> None:
    assert job_control("pause", "j1", job_commands=True) == ("job-pause", {"id": "j1"})
    assert job_control("dismiss", "j1", job_commands=True) == ("job-dismiss", {"id": "j1"})
    assert job_control("resume", "j1", job_commands=False) == ("block-job-resume", {"device": "j1"})

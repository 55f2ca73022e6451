"""Disks, chains and job placement from QEMU's block graph: pure functions over QMP replies.

QEMU names things differently depending on how it was started:

- ``-blockdev node-name=vda`` without a device: the format node's name is the only name.
- ``-drive if=none,id=drive0`` (by hand, Proxmox VE's ``drive-scsi0``): nodes get automatic names
  (``#block123``); the BlockBackend is named by the drive id.
- ``-blockdev node-name=libvirt-1-format`` + ``-device ...,drive=libvirt-1-format,id=virtio-disk0``
  (libvirt): the BlockBackend is anonymous and the graph names it by its device's QOM path.

A stream also inserts a copy-on-read filter above the format node and an anonymous BlockBackend of
its own. ``x-debug-query-block-graph`` shows all of this and only walks names and edges (no filename
refresh), so it is safe while a job finishes; a disk is named from it alone, the same way before,
during and after a job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from blocktui.core.model import ChainLayer, Disk

# Nodes that hold bytes themselves rather than an image format; never disks on their own.
PROTOCOL_DRIVERS = frozenset(
    {
        "file",
        "host_device",
        "host_cdrom",
        "nbd",
        "iscsi",
        "rbd",
        "ssh",
        "http",
        "https",
        "ftp",
        "ftps",
        "gluster",
        "nfs",
        "nvme",
        "null-co",
        "null-aio",
        "blkdebug",
        "blkverify",
    }
)

# Filters sit above a format node without being a layer of the chain (stream inserts copy-on-read).
FILTER_DRIVERS = frozenset(
    {"copy-on-read", "throttle", "compress", "preallocate", "snapshot-access", "mirror_top", "commit_top"}
)

# The edges of a job node that lead to the disk it works on, best first. A mirror's "target" and a
# backup's target lead elsewhere and are never followed.
_JOB_EDGES = ("source", "active node", "main node", "intermediate node", "top", "base")


def as_dict(value: object) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return dict(value) if isinstance(value, dict) else {}


def as_list(value: object) -> list[dict[str, Any]]:
    """The objects of a JSON array (anything else in it is dropped)."""
    return [dict(item) for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def qdev_id(qdev: str) -> str:
    """``/machine/peripheral/virtio0/virtio-backend`` -> ``virtio0``; a plain id stays as it is."""
    parts = [p for p in qdev.split("/") if p]
    if "peripheral" in parts and parts.index("peripheral") + 1 < len(parts):
        return parts[parts.index("peripheral") + 1]
    return parts[0] if len(parts) == 1 else qdev


@dataclass
class BlockGraph:
    """``x-debug-query-block-graph`` as lookups."""

    names: dict[int, str] = field(default_factory=dict)
    types: dict[int, str] = field(default_factory=dict)
    #: parent id -> {edge name: child id}
    children: dict[int, dict[str, int]] = field(default_factory=dict)
    #: child id -> types of its parents
    parent_types: dict[int, set[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, reply: object) -> BlockGraph:
        """Read a ``x-debug-query-block-graph`` reply; malformed entries are skipped."""
        graph = cls()
        data = as_dict(reply)
        for node in as_list(data.get("nodes")):
            if isinstance(node.get("id"), int):
                graph.names[node["id"]] = str(node.get("name") or "")
                graph.types[node["id"]] = str(node.get("type") or "")
        for edge in as_list(data.get("edges")):
            parent, child = edge.get("parent"), edge.get("child")
            if isinstance(parent, int) and isinstance(child, int) and child in graph.names:
                graph.children.setdefault(parent, {})[str(edge.get("name"))] = child
                graph.parent_types.setdefault(child, set()).add(graph.types.get(parent, ""))
        return graph

    def child(self, node_id: int, edge: str) -> int | None:
        """The child of ``node_id`` through ``edge``, if any."""
        return self.children.get(node_id, {}).get(edge)


@dataclass(frozen=True)
class GraphDisk:
    """A disk found in the graph: its name, its format node and every node that belongs to it."""

    target: str
    format_node: int
    #: The format node of each backing layer, nearest first.
    layers: tuple[int, ...]
    #: Filters above the format node, the format node and the layers (a job's edges lead here).
    members: frozenset[int]


def _is_filter(graph: BlockGraph, node_id: int, drivers: Mapping[str, str]) -> bool:
    driver = drivers.get(graph.names.get(node_id, ""))
    if driver is not None:
        return driver in FILTER_DRIVERS
    # Without node details, by shape: mirror_top and commit_top have only a "backing" child (every
    # format node has a "file"); copy-on-read and throttle have only a "file" child, and that child
    # is a format node (it has a "file" or "backing" of its own), where a lone format node's
    # "file" is a bare protocol node, and blkdebug's child is an "image".
    own = graph.children.get(node_id, {})
    if set(own) == {"backing"}:
        return True
    if set(own) != {"file"}:
        return False
    below = graph.children.get(own["file"], {})
    return "file" in below or "backing" in below


def _below_filters(graph: BlockGraph, node_id: int, drivers: Mapping[str, str]) -> list[int]:
    """``node_id`` and the filters under it, down to the first non-filter node (last)."""
    path = [node_id]
    while _is_filter(graph, path[-1], drivers):
        # copy-on-read and throttle filter through "file", mirror_top/commit_top through "backing".
        below = graph.child(path[-1], "file")
        below = below if below is not None else graph.child(path[-1], "backing")
        if below is None or below in path:
            break
        path.append(below)
    return path


def _backend_label(name: str) -> str:
    # A -drive BlockBackend is named by its drive id; a device's anonymous one by its QOM path.
    return qdev_id(name) if name.startswith("/") else name


def graph_disks(graph: BlockGraph, drivers: Mapping[str, str] | None = None) -> list[GraphDisk]:
    """Every disk in the graph, named by its drive id, its device id or its node name.

    Args:
        drivers: node name -> driver (from ``query-named-block-nodes``), when it could be read;
            without it filters are recognised by their shape.
    """
    drivers = drivers or {}
    tops: list[tuple[str, int]] = []
    for node_id, kind in sorted(graph.types.items()):
        name = graph.names[node_id]
        root = graph.child(node_id, "root")
        if kind == "block-backend" and name and root is not None:
            tops.append((_backend_label(name), root))
    with_devices = bool(tops)
    claimed: set[int] = set()
    found: list[GraphDisk] = []

    def add(target: str, top: int) -> None:
        path = _below_filters(graph, top, drivers)
        format_node = path[-1]
        if format_node in claimed:
            return  # the same disk reached again (a job's filter above a disk already named)
        layers: list[int] = []
        members = set(path)
        below = graph.child(format_node, "backing")
        while below is not None and below not in members:
            layer_path = _below_filters(graph, below, drivers)
            members.update(layer_path)
            layers.append(layer_path[-1])
            below = graph.child(layer_path[-1], "backing")
        claimed.update(members)
        found.append(GraphDisk(target, format_node, tuple(layers), frozenset(members)))

    for target, top in tops:
        add(target, top)
    if not with_devices:
        # No device at all (QEMU started with -blockdev and no -device): the unparented named
        # format nodes are the disks. With devices, such nodes are leftovers (a pulled layer).
        for node_id, kind in sorted(graph.types.items(), key=lambda item: graph.names[item[0]]):
            if kind != "block-driver" or "block-driver" in graph.parent_types.get(node_id, set()):
                continue
            format_node = _below_filters(graph, node_id, drivers)[-1]
            name = graph.names[format_node]
            if name.startswith("#") or not name or drivers.get(name) in PROTOCOL_DRIVERS:
                continue  # implicit or bare protocol nodes, never a disk by themselves
            if graph.children.get(format_node) is None:
                continue  # a job's filter already detached (nothing below it)
            add(name, node_id)
    return sorted(found, key=lambda disk: disk.target)


def disks_from(
    graph_reply: object, named: Sequence[dict[str, Any]] = ()
) -> tuple[tuple[Disk, ...], dict[str, tuple[str, ...]]]:
    """Disks with their chains, and each disk's layer node names (nearest first, for ``base-node``).

    Args:
        graph_reply: ``x-debug-query-block-graph``.
        named: ``query-named-block-nodes`` (flat), for file names and formats; empty while a job
            may be finishing (QEMU 7.2 crashes on that command then), and then chain layers show
            node names instead of file names.
    """
    graph = BlockGraph.parse(graph_reply)
    by_name = {str(n.get("node-name")): n for n in named}
    drivers = {name: str(info.get("drv")) for name, info in by_name.items() if info.get("drv")}
    disks: list[Disk] = []
    chain_nodes: dict[str, tuple[str, ...]] = {}
    for found in graph_disks(graph, drivers):
        format_name = graph.names[found.format_node]
        info = by_name.get(format_name, {})
        layers = []
        for layer in found.layers:
            layer_info = by_name.get(graph.names[layer], {})
            layers.append(
                ChainLayer(str(layer_info.get("file") or graph.names[layer]), layer_info.get("drv"))
            )
        disks.append(
            Disk(
                target=found.target,
                source=str(info["file"]) if info.get("file") else None,
                format=info.get("drv"),
                readonly=bool(info.get("ro", False)),
                chain=tuple(layers),
                node=format_name,
            )
        )
        chain_nodes[found.target] = tuple(graph.names[layer] for layer in found.layers)
    return tuple(disks), chain_nodes


def job_disks(graph_reply: object) -> dict[str, str]:
    """Job id -> the disk it works on, for every job node in the graph."""
    graph = BlockGraph.parse(graph_reply)
    owner: dict[int, str] = {}
    for disk in graph_disks(graph):
        for member in disk.members:
            owner.setdefault(member, disk.target)
    placed: dict[str, str] = {}
    for node_id, kind in graph.types.items():
        if kind != "block-job":
            continue
        edges = graph.children.get(node_id, {})
        for edge in _JOB_EDGES:
            child = edges.get(edge)
            if child is not None and child in owner:
                placed[graph.names[node_id]] = owner[child]
                break
    return placed

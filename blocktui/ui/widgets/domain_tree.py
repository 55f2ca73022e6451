"""Hosts → domains → disks, with each disk's chain depth and a mark when it has something to stream."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from blocktui.core.model import ConnectionState, Disk, Domain, DomainState, HostInfo, JobState
from blocktui.ui.format import CONNECTION_STYLES, STATE_STYLES, safe


class Place(NamedTuple):
    """What a tree node stands for: a host, a domain on it, or one of the domain's disks."""

    host: str
    domain: str | None = None
    disk: str | None = None


DOMAIN_STYLES: dict[DomainState, str] = {
    DomainState.RUNNING: "green",
    DomainState.PAUSED: "yellow",
    DomainState.CRASHED: "bold red",
}


def disk_label(disk: Disk, job: JobState | None) -> Text:
    """``● vda  top.qcow2  3 layers qcow2``: ● marks a chain to stream, ▶ a running job."""
    if job is not None and not job.is_final:
        mark = Text("▶ ", style=STATE_STYLES[job])
    elif disk.has_backing:
        mark = Text("● ", style="cyan")
    else:
        mark = Text("  ")
    source = posixpath.basename(disk.source) if disk.source else "(empty)"
    return Text.assemble(
        mark,
        safe(disk.target, "bold"),
        "  ",
        safe(source),
        Text(f"  {disk.depth} layer{'s' if disk.depth != 1 else ''} ", style="dim"),
        safe(disk.format or "?", "dim"),
    )


def domain_label(domain: Domain) -> Text:
    """The domain's name and run state."""
    return Text.assemble(
        safe(domain.name, "bold"),
        " ",
        Text(domain.state.value, style=DOMAIN_STYLES.get(domain.state, "dim")),
    )


def host_label_text(info: HostInfo, label: str) -> Text:
    """The host's short name and connection state."""
    state = "read-only" if info.readonly and info.state is ConnectionState.CONNECTED else info.state.value
    return Text.assemble(
        Text(label, style="bold"), " ", Text(state, style=CONNECTION_STYLES.get(info.state, ""))
    )


def matches(needle: str, *haystack: str | None) -> bool:
    """Case-insensitive substring match of the filter against any of the strings."""
    return any(needle in (text or "").casefold() for text in haystack)


class DomainTree(Tree[Place]):
    """The tree on the left; rebuilt only when what it shows has changed."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("hosts", id=id)
        self.show_root = False
        self.guide_depth = 3
        self._shown: object = None
        self._collapsed: set[Place] = set()

    @property
    def selected(self) -> Place | None:
        """The place under the cursor."""
        node = self.cursor_node
        return None if node is None else node.data

    def select_place(self, place: Place) -> bool:
        """Move the cursor to the node for this place; False when it is not shown."""
        _ = self.last_line  # number the lines, as in ``show``
        for line in range(self.last_line + 1):
            node = self.get_node_at_line(line)
            if node is not None and node.data == place:
                self.move_cursor(node)
                return True
        return False

    def on_tree_node_collapsed(self, event: Tree.NodeCollapsed[Place]) -> None:
        if event.node.data is not None:
            self._collapsed.add(event.node.data)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Place]) -> None:
        if event.node.data is not None:
            self._collapsed.discard(event.node.data)

    def show(
        self,
        hosts: Sequence[HostInfo],
        labels: Mapping[str, str],
        domains: Sequence[Domain],
        jobs: Mapping[tuple[str, str, str], JobState],
        needle: str = "",
    ) -> None:
        """Rebuild the tree for these hosts and domains, keeping the cursor and folds where they were."""
        signature = (tuple(hosts), tuple(domains), tuple(sorted(jobs.items())), needle)
        if signature == self._shown:
            return
        self._shown = signature
        keep = self.selected
        self.clear()
        cursor: TreeNode[Place] | None = None
        for info in hosts:
            label = labels.get(info.uri, info.uri)
            host_node = self._branch(self.root, host_label_text(info, label), Place(info.uri))
            for domain in (d for d in domains if d.host == info.uri):
                disks = [
                    disk
                    for disk in domain.disks
                    if not needle or matches(needle, label, domain.name, disk.target, disk.source)
                ]
                if needle and not disks:
                    continue
                domain_node = self._branch(host_node, domain_label(domain), Place(info.uri, domain.name))
                for disk in disks:
                    place = Place(info.uri, domain.name, disk.target)
                    state = jobs.get((info.uri, domain.name, disk.target))
                    node = domain_node.add_leaf(disk_label(disk, state), data=place)
                    if place == keep:
                        cursor = node
                if domain_node.data == keep:
                    cursor = domain_node
            if host_node.data == keep:
                cursor = host_node
        if cursor is None and self.cursor_line < 0:
            # Start where work starts: the first disk with something to stream, else the first host.
            cursor = self._first_streamable(domains) or next(iter(self.root.children), None)
        if cursor is not None:
            # Lines are numbered lazily; reading last_line numbers them so the node knows its line.
            _ = self.last_line
            self.move_cursor(cursor)

    def _first_streamable(self, domains: Sequence[Domain]) -> TreeNode[Place] | None:
        wanted = {Place(d.host, d.name, disk.target) for d in domains for disk in d.disks if disk.has_backing}
        for host_node in self.root.children:
            for domain_node in host_node.children:
                for node in domain_node.children:
                    if node.data in wanted:
                        return node
        return None

    def _branch(self, parent: TreeNode[Place], label: Text, place: Place) -> TreeNode[Place]:
        return parent.add(label, data=place, expand=place not in self._collapsed)

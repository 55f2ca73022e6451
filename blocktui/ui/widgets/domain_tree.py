"""Hosts → domains → disks, with each disk's chain depth and a mark when it has something to stream."""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import NamedTuple

from rich.text import Text
from textual.geometry import Size
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from blocktui.core.model import ConnectionState, Disk, Domain, DomainState, HostInfo, JobState
from blocktui.core.text import counted
from blocktui.ui.format import CONNECTION_STYLES, STATE_STYLES, safe
from blocktui.ui.widgets.hosts_bar import connection_text


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
    # A shut-off libvirt domain describes no backing chain: say so rather than "1 layer".
    depth = counted(disk.depth, "layer") if disk.chain_known else "chain not known (domain off)"
    return Text.assemble(
        mark,
        safe(disk.target, "bold"),
        "  ",
        safe(source),
        Text(f"  {depth} ", style="dim"),
        safe(disk.format or "?", "dim"),
    )


def domain_label(domain: Domain) -> Text:
    """The domain's name and run state; a domain the host could not describe says why, in its own row."""
    label = Text.assemble(
        safe(domain.name, "bold"),
        " ",
        Text(domain.state.value, style=DOMAIN_STYLES.get(domain.state, "dim")),
    )
    if domain.error:
        label.append("  unreadable: ", style="red")
        label.append_text(safe(domain.error, "red"))
    return label


def host_label_text(info: HostInfo, label: str) -> Text:
    """The host's short name and connection state (with the reason, for a host that wants credentials)."""
    style = "yellow" if info.silent_for else CONNECTION_STYLES.get(info.state, "")
    text = Text.assemble(Text(label, style="bold"), " ", Text(connection_text(info), style=style))
    if info.state is ConnectionState.NEEDS_AUTH and info.message:
        text.append("  ")
        text.append_text(safe(info.message, "red"))
    return text


def matches(needle: str, *haystack: str | None) -> bool:
    """Case-insensitive substring match of the filter against any of the strings."""
    return any(needle in (text or "").casefold() for text in haystack)


#: What a node's label is made from: the label is rebuilt (and repainted) only when this changes.
LabelKey = tuple[object, ...]


def disk_key(disk: Disk, job: JobState | None) -> LabelKey:
    """Everything ``disk_label`` shows, cheap to compare."""
    running = job is not None and not job.is_final
    return (
        job if running else None,
        disk.has_backing,
        disk.target,
        disk.source,
        disk.depth,
        disk.format,
        disk.chain_known,
    )


class DomainTree(Tree[Place]):
    """The tree on the left, updated in place: a job or chain change relabels one node.

    Nodes are kept by place (host, domain, disk); they are added or removed only when a domain or
    disk appears or vanishes (or the filter hides or shows it), so the cursor and folds stay put.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("hosts", id=id)
        self.show_root = False
        self.guide_depth = 3
        self._shown: object = None
        self._collapsed: set[Place] = set()
        self._by_place: dict[Place, TreeNode[Place]] = {}
        self._label_keys: dict[Place, LabelKey] = {}

    @property
    def selected(self) -> Place | None:
        """The place under the cursor."""
        node = self.cursor_node
        return None if node is None else node.data

    def node_at(self, place: Place) -> TreeNode[Place] | None:
        """The node shown for a place, if it is in the tree."""
        return self._by_place.get(place)

    def select_place(self, place: Place) -> bool:
        """Move the cursor to the node for this place; False when it is not shown."""
        node = self._by_place.get(place)
        if node is None:
            return False
        _ = self.last_line  # number the lines, so the node knows its line
        if node.line < 0:
            return False  # inside a folded branch
        self.move_cursor(node)
        return True

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
        """Show these hosts and domains: relabel what changed, add and remove only what came or went."""
        signature = (tuple(hosts), tuple(domains), tuple(sorted(jobs.items())), needle)
        if signature == self._shown:
            return
        self._shown = signature
        by_host: dict[str, list[Domain]] = {}
        for domain in domains:
            by_host.setdefault(domain.host, []).append(domain)
        self._arrange(self.root, [Place(info.uri) for info in hosts])
        for host_index, info in enumerate(hosts):
            label = labels.get(info.uri, info.uri)
            host_node = self._node(
                self.root,
                Place(info.uri),
                host_index,
                (
                    label,
                    info.state,
                    connection_text(info),
                    info.message if info.state is ConnectionState.NEEDS_AUTH else "",
                ),
                partial(host_label_text, info, label),
            )
            shown: list[tuple[Domain, list[Disk]]] = []
            for domain in by_host.get(info.uri, []):
                disks = [
                    disk
                    for disk in domain.disks
                    if not needle or matches(needle, label, domain.name, disk.target, disk.source)
                ]
                if not needle or disks:
                    shown.append((domain, disks))
            self._arrange(host_node, [Place(info.uri, domain.name) for domain, _ in shown])
            for index, (domain, disks) in enumerate(shown):
                domain_node = self._node(
                    host_node,
                    Place(info.uri, domain.name),
                    index,
                    (domain.name, domain.state, domain.error),
                    partial(domain_label, domain),
                )
                self._arrange(domain_node, [Place(info.uri, domain.name, disk.target) for disk in disks])
                for position, disk in enumerate(disks):
                    state = jobs.get((info.uri, domain.name, disk.target))
                    self._node(
                        domain_node,
                        Place(info.uri, domain.name, disk.target),
                        position,
                        disk_key(disk, state),
                        partial(disk_label, disk, state),
                    )
        if self.cursor_line < 0 and self._by_place:
            # Start where work starts: the first disk with something to stream, else the first host.
            cursor = self._first_streamable(domains) or next(iter(self.root.children), None)
            if cursor is not None:
                # Lines are numbered lazily; reading last_line numbers them so the node knows its line.
                _ = self.last_line
                self.move_cursor(cursor)

    def _arrange(self, parent: TreeNode[Place], wanted: list[Place]) -> None:
        """Drop the children of ``parent`` that are not wanted; keep the rest in the wanted order.

        Missing children are added later by ``_node``, in place.
        """
        current = [child.data for child in parent.children]
        if current == wanted:
            return
        keep = set(wanted)
        for child in list(parent.children):
            if child.data not in keep:
                self._drop(child)
        order = {place: index for index, place in enumerate(wanted)}
        kept = [order[child.data] for child in parent.children if child.data is not None]
        if kept != sorted(kept):
            # A host listed its domains in a new order (rare): re-add this level in that order.
            for child in list(parent.children):
                self._drop(child)

    def _node(
        self,
        parent: TreeNode[Place],
        place: Place,
        index: int,
        key: LabelKey,
        label: Callable[[], Text],
    ) -> TreeNode[Place]:
        """The node for ``place``, the ``index``-th child of ``parent``: added there if new,
        relabelled if what its label shows changed (siblings are visited in order, so every earlier
        one is already in place)."""
        node = self._by_place.get(place)
        if node is None:
            node = self._add(parent, place, label(), index)
        elif self._label_keys.get(place) != key:
            self._relabel(node, label())
        self._label_keys[place] = key
        return node

    def _add(self, parent: TreeNode[Place], place: Place, label: Text, index: int) -> TreeNode[Place]:
        before = index if index < len(parent.children) else None
        if place.disk is not None:
            node = parent.add_leaf(label, data=place, before=before)
        else:
            node = parent.add(label, data=place, before=before, expand=place not in self._collapsed)
        self._by_place[place] = node
        return node

    def _drop(self, node: TreeNode[Place]) -> None:
        for child in list(node.children):
            self._drop(child)
        if node.data is not None:
            self._by_place.pop(node.data, None)
            self._label_keys.pop(node.data, None)
        if node.parent is not None and node in node.parent.children:
            node.remove()

    def _relabel(self, node: TreeNode[Place], label: Text) -> None:
        """Change one node's label and repaint its line.

        The tree measures its widest line only when it rebuilds its lines, which a relabel does
        not do: a label that now sticks out past that width widens the scrollable extent here
        (one that shrinks leaves it as it was until the next rebuild: at worst one more column
        to scroll to).
        """
        node.set_label(label)
        depth = 0 if node.data is None else 2 if node.data.disk is not None else 1 if node.data.domain else 0
        width = self.get_label_width(node) + depth * self.guide_depth
        if width > self.virtual_size.width:
            self.virtual_size = Size(width, self.virtual_size.height)

    def _first_streamable(self, domains: Sequence[Domain]) -> TreeNode[Place] | None:
        for domain in domains:
            for disk in domain.disks:
                if disk.has_backing:
                    node = self._by_place.get(Place(domain.host, domain.name, disk.target))
                    if node is not None:
                        return node
        return None

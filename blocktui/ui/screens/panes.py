"""Moving between the main screen's panes: the filter field, folding the tree, the big detail pane."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Input

from blocktui.ui.widgets.detail import DetailPane
from blocktui.ui.widgets.domain_tree import DomainTree
from blocktui.ui.widgets.jobs_table import JobsTable


class PaneScreen(Screen[None]):
    """The keys that move around the panes (``/``, Enter, Escape); no host is involved."""

    def action_filter(self) -> None:
        """Show the filter field."""
        field = self.query_one("#filter", Input)
        field.display = True
        field.focus()

    def action_details(self) -> None:
        """Enter: finish filtering, fold a tree branch, or enlarge the detail pane."""
        focused = self.focused
        if isinstance(focused, Input):
            self.query_one(JobsTable).focus()
            return
        tree = self.query_one(DomainTree)
        if focused is tree and tree.cursor_node is not None and tree.cursor_node.allow_expand:
            tree.cursor_node.toggle()
            return
        if self.maximized is not None:
            self.minimize()
        else:
            self.maximize(self.query_one(DetailPane), container=False)

    def action_back(self) -> None:
        """Escape: leave the big detail, or close and clear the filter."""
        if self.maximized is not None:
            self.minimize()
            return
        field = self.query_one("#filter", Input)
        if field.display:
            field.value = ""
            field.display = False
            self.query_one(JobsTable).focus()

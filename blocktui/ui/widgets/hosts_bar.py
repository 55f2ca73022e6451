"""The header line: the app's name, each connection's health and each host's queue, budget and guard."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.widgets import Static

from blocktui.core.model import ConnectionState, HostInfo
from blocktui.ui.board import HostPlan
from blocktui.ui.format import CONNECTION_STYLES, compact_size, safe

_DOTS = {
    ConnectionState.CONNECTING: "◌",
    ConnectionState.CONNECTED: "●",
    ConnectionState.RECONNECTING: "◍",
    ConnectionState.DISCONNECTED: "○",
    ConnectionState.NEEDS_AUTH: "⊘",
}


def connection_text(info: HostInfo) -> str:
    """The state word shown for a host: one whose call has gone unanswered, or a read-only one, says so."""
    if info.silent_for:
        return f"not answering for {info.silent_for:.0f}s"
    if info.state is ConnectionState.CONNECTED and info.readonly:
        return "read-only"
    return info.state.value


def policy_text(plan: HostPlan) -> Text:
    """``max 2 · budget 100M/s · guard on``: how a host's streams run (``m``, ``b`` change it)."""
    text = Text(style="dim")
    text.append(f"max {plan.max_active}" if plan.max_active else "max ∞")
    text.append(" · budget ")
    text.append(f"{compact_size(plan.budget)}/s" if plan.budget else "∞")
    if plan.guarded is not None:
        text.append(" · guard ")
        text.append("on" if plan.guarded else "off", style="" if plan.guarded else "yellow")
    return text


#: Above this many hosts the header names only those that need a look, and counts the others
#: (``● 9 connected``): ten hosts with their policies would not fit on one line.
NAMED_AT_MOST = 4


def _well(info: HostInfo) -> bool:
    return info.state is ConnectionState.CONNECTED and not info.silent_for and not info.readonly


def hosts_text(
    hosts: Sequence[HostInfo],
    labels: Mapping[str, str],
    readonly: bool,
    policies: Mapping[str, HostPlan] | None = None,
) -> Text:
    """``blocktui  ● alpha connected (max 2 · budget ∞ · guard on)  ◍ beta reconnecting (…)``.

    More than ``NAMED_AT_MOST`` hosts: ``blocktui  ● 9 connected  ◌ fleet-7 not answering for 3s``.
    """
    text = Text.assemble(("blocktui", "bold"), ("  read-only session" if readonly else "", "bold yellow"))
    crowded = len(hosts) > NAMED_AT_MOST
    if crowded:
        well = sum(1 for info in hosts if _well(info))
        if well:
            text.append("  ")
            text.append(f"{_DOTS[ConnectionState.CONNECTED]} {well} connected", style="green")
        hosts = [info for info in hosts if not _well(info)]
        policies = None  # each host's queue and budget: ``m`` and ``b`` show and change them
    for info in hosts:
        style = CONNECTION_STYLES.get(info.state, "")
        if info.silent_for or (info.state is ConnectionState.CONNECTED and info.readonly):
            style = "yellow"
        text.append("  ")
        text.append(f"{_DOTS.get(info.state, '?')} ", style=style)
        text.append(labels.get(info.uri, info.uri), style="bold")
        text.append(f" {connection_text(info)}", style=style)
        plan = (policies or {}).get(info.uri)
        if plan is not None:
            text.append(" (", style="dim")
            text.append_text(policy_text(plan))
            text.append(")", style="dim")
        if len(hosts) > 1 or crowded:
            continue  # one line holds every host's health and policy, not their details
        # Details of the one host (hostname, versions): key=value, always escaped.
        for key, value in sorted(info.extra.items()):
            text.append(" ")
            text.append_text(safe(f"{key}={value}", "dim"))
    return text


class HostsBar(Static):
    """One line at the top of the main screen."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Text("blocktui  connecting…"), id=id)
        self._hosts = Text("blocktui  connecting…")
        self._waiting = ""
        self._shown: str | None = None

    def show(
        self,
        hosts: Sequence[HostInfo],
        labels: Mapping[str, str],
        readonly: bool,
        policies: Mapping[str, HostPlan] | None = None,
    ) -> None:
        """Repaint only when a host's state, policy or facts changed."""
        self._hosts = hosts_text(hosts, labels, readonly, policies)
        self._repaint()
        # The message says why a host is not connected; a tooltip keeps the line short.
        reasons = [f"{labels.get(h.uri, h.uri)}: {h.message}" for h in hosts if h.message]
        self.tooltip = Text("\n").join(safe(reason) for reason in reasons) if reasons else None

    def show_waiting(self, seconds: float | None) -> None:
        """Say that the last poll has not come back for ``seconds`` (None: it has)."""
        self._waiting = "" if seconds is None else f"  ⏳ hosts not answering for {seconds:.0f}s"
        self._repaint()

    def _repaint(self) -> None:
        text = self._hosts.copy()
        text.append(self._waiting, style="bold yellow")
        if text.plain != self._shown:
            self._shown = text.plain
            self.update(text)

"""How the dashboard writes numbers and host strings: compact, and never as markup."""

from __future__ import annotations

from urllib.parse import urlsplit

from rich.text import Text

from blocktui.core.model import ConnectionState, JobState
from blocktui.core.text import visible
from blocktui.core.units import format_bandwidth, format_duration, format_eta, format_size

_UNITS = ("B", "K", "M", "G", "T", "P", "E")

#: Partial blocks for the sub-cell resolution of a progress bar.
_EIGHTHS = " ▏▎▍▌▋▊▉"

STATE_STYLES: dict[JobState, str] = {
    JobState.QUEUED: "dim",
    JobState.ACTIVE: "bold cyan",
    JobState.PAUSED: "yellow",
    JobState.READY: "bold green",
    JobState.COMPLETED: "green",
    JobState.FAILED: "bold red",
    JobState.CANCELLED: "magenta",
    JobState.UNKNOWN: "dim yellow",
}

CONNECTION_STYLES: dict[ConnectionState, str] = {
    ConnectionState.CONNECTING: "yellow",
    ConnectionState.CONNECTED: "green",
    ConnectionState.RECONNECTING: "bold yellow",
    ConnectionState.DISCONNECTED: "bold red",
    ConnectionState.NEEDS_AUTH: "bold red",
}


def safe(text: str | None, style: str = "") -> Text:
    """A host string as plain rich Text: control and bidi characters escaped, never parsed as markup."""
    return Text(visible(text or ""), style=style, no_wrap=True)


def compact_size(size: int | float) -> str:
    """A size in at most five characters for table cells: ``1.3G``, ``200M``, ``512K``."""
    value = float(size)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.1f}{unit}" if abs(value) < 10 else f"{value:.0f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def compact_rate(rate: float | None) -> str:
    """A measured rate for a table cell; an em dash before it is known."""
    return "—" if rate is None else f"{compact_size(rate)}/s"


def compact_limit(bandwidth: int) -> str:
    """A limit for a table cell; 0 means none."""
    return "∞" if bandwidth <= 0 else f"{compact_size(bandwidth)}/s"


def progress_bar(fraction: float, width: int) -> str:
    """A bar of full and partial blocks, ``width`` cells wide."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (_EIGHTHS[part] if part else "")
    return bar.ljust(width)


def host_label(uri: str) -> str:
    """A short name for a host URI (``alpha`` for ``qemu+ssh://alpha/system``), made visible."""
    try:
        parts = urlsplit(uri)
        label = parts.hostname or parts.path.rstrip("/").rsplit("/", 1)[-1] or uri
    except ValueError:  # a malformed URI (an unbalanced "[") is shown whole
        label = uri
    return visible(label)


def host_labels(uris: list[str]) -> dict[str, str]:
    """Short names for every host, falling back to the whole URI where two short names collide."""
    short = {uri: host_label(uri) for uri in uris}
    counts: dict[str, int] = {}
    for label in short.values():
        counts[label] = counts.get(label, 0) + 1
    return {uri: label if counts[label] == 1 else visible(uri) for uri, label in short.items()}


__all__ = [
    "CONNECTION_STYLES",
    "STATE_STYLES",
    "compact_limit",
    "compact_rate",
    "compact_size",
    "format_bandwidth",
    "format_duration",
    "format_eta",
    "format_size",
    "host_label",
    "host_labels",
    "progress_bar",
    "safe",
]

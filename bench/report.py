"""Benchmark figures: one row each (measured value, comparison from the same run, goal), as text and JSON."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    """One measured figure.

    Attributes:
        section: which benchmark it belongs to ("1 monitoring cost").
        name: what was measured, including the scale it ran at.
        value: the measured value, formatted for people.
        comparison: what it is compared with, measured in the same run ("" when nothing).
        goal: the target, in words.
        met: whether the goal is met; None when the figure has no pass/fail goal or was not run.
        note: how it was measured, or what limits it.
        data: the raw numbers behind the row, for the JSON file.
    """

    section: str
    name: str
    value: str
    comparison: str = ""
    goal: str = ""
    met: bool | None = None
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def verdict(met: bool | None) -> str:
    """The table's goal column marker."""
    return {True: "met", False: "MISSED", None: "—"}[met]


def render(figures: list[Figure]) -> str:
    """A plain-text table, one row per figure, notes as indented lines below their row."""
    header = ("figure", "measured", "compared with (same run)", "goal", "")
    rows = [(f.name, f.value, f.comparison, f.goal, verdict(f.met)) for f in figures]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines: list[str] = []
    section = None
    for figure, row in zip(figures, rows, strict=True):
        if figure.section != section:
            section = figure.section
            lines.append("")
            lines.append(f"## {section}")
            lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if figure.note:
            lines.append(f"    {figure.note}")
    return "\n".join(lines).lstrip("\n") + "\n"


def render_markdown(figures: list[Figure]) -> str:
    """The same figures as a Markdown table (for the README)."""
    lines = ["| # | figure | measured | compared with (same run) | goal | |", "|---|---|---|---|---|---|"]
    for f in figures:
        cells = [f.section.split()[0], f.name, f.value, f.comparison, f.goal, verdict(f.met)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def machine() -> dict[str, str]:
    """What the figures ran on."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    versions: dict[str, str] = {}
    for tool, argv in {
        "qemu": ["qemu-system-x86_64", "--version"],
        "libvirt": ["libvirtd", "--version"],
    }.items():
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        versions[tool] = done.stdout.splitlines()[0] if done.stdout else "?"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kib / 1024**2:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        **versions,
    }


def write_json(path: Path, figures: list[Figure], meta: dict[str, Any]) -> None:
    """Write every figure and the run's description to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "figures": [asdict(f) for f in figures]}
    path.write_text(json.dumps(document, indent=2) + "\n")

"""The command line's output: JSON records, text tables, progress and outcome lines, error lines.

Every string from a host goes through ``visible`` (or ``printable`` for whole messages) so its
control characters are shown, never obeyed by the terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from blocktui.core.model import BlockJob, Domain, JobState
from blocktui.core.text import printable, visible
from blocktui.core.units import format_bandwidth, format_duration, format_eta, format_rate, format_size
from blocktui.core.views import JobView


def domain_json(domain: Domain) -> dict[str, Any]:
    """The ``ls --json`` record of one domain."""
    record: dict[str, Any] = {
        "uri": domain.host,
        "name": domain.name,
        "state": domain.state.value,
        "disks": [
            {
                "target": disk.target,
                "source": disk.source,
                "format": disk.format,
                "chain": [{"path": layer.path, "format": layer.format} for layer in disk.chain],
                **({} if disk.chain_known else {"chain_known": False}),
            }
            for disk in domain.disks
        ],
    }
    if domain.error:
        record["error"] = domain.error
    return record


def job_json(job: BlockJob | JobView) -> dict[str, Any]:
    """The ``jobs --json`` record of one job (views add error and note when known)."""
    record: dict[str, Any] = {
        "uri": job.key.host,
        "domain": job.key.domain,
        "disk": job.key.disk,
        "kind": job.kind.value,
        "state": job.state.value,
        "cur": job.cur,
        "end": job.end,
        "remaining": job.remaining,
        "bandwidth": job.bandwidth,
    }
    if job.error:
        record["error"] = job.error
    if isinstance(job, JobView) and job.note:
        record["note"] = job.note
    return record


def one_line(message: str) -> str:
    """``blocktui: MESSAGE`` on one line, control characters from a host shown, not obeyed."""
    return f"blocktui: {printable(' '.join(message.split()))}"


def warn(message: str) -> None:
    """A warning that does not stop the command: one line on stderr."""
    print(one_line(message), file=sys.stderr)


def print_json(value: object, out: TextIO | None = None) -> None:
    """Machine-readable output: indented JSON and a newline."""
    stream = sys.stdout if out is None else out
    json.dump(value, stream, indent=2)
    stream.write("\n")


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


def print_domains(domains: Sequence[Domain], out: TextIO) -> None:
    """Domains, disks and chains as indented text."""
    if not domains:
        out.write("no domains\n")
        return
    for domain in domains:
        out.write(f"{visible(domain.name)}  ({domain.state.value})  {visible(domain.host)}\n")
        if domain.error:
            out.write("  (disks unknown: it cannot be read)\n")
        for disk in domain.disks:
            marker = "streamable" if disk.has_backing else "standalone"
            if not disk.chain_known:
                marker = "chain not known while the domain is off"
            source = visible(disk.source or "(empty)")
            out.write(f"  {visible(disk.target)}  {disk.format or '?'}  {source}  [{marker}]\n")
            for layer in disk.chain:
                out.write(f"      <- {visible(layer.path)}  {layer.format or '?'}\n")


def print_jobs(jobs: Sequence[BlockJob | JobView], out: TextIO) -> None:
    """A table of jobs."""
    if not jobs:
        out.write("no block jobs\n")
        return
    rows = [["HOST", "DOMAIN", "DISK", "KIND", "STATE", "PROGRESS", "DONE", "TOTAL", "RATE", "LIMIT", "ETA"]]
    for job in jobs:
        view = job if isinstance(job, JobView) else None
        percent = f"{100 * job.cur / job.end:.1f}%" if job.end else "—"
        state = job.state.value
        if view is not None and view.note:
            state += f" ({view.note})"
        rows.append(
            [
                visible(job.key.host),
                visible(job.key.domain),
                visible(job.key.disk),
                job.kind.value,
                state,
                percent,
                format_size(job.cur),
                format_size(job.end),
                format_rate(view.rate) if view else "—",
                format_bandwidth(job.bandwidth),
                format_eta(view.eta) if view else "—",
            ]
        )
    _table(rows, out)


def describe_end(view: JobView) -> str:
    """One line saying how a job ended, with bytes copied and the reason when known."""
    where = f"{visible(view.key.domain)}/{visible(view.key.disk)}"
    done = f"{format_size(view.cur)} of {format_size(view.end)}"
    if view.state is JobState.COMPLETED:
        return f"{where}: completed, {format_size(view.end)} streamed in {format_duration(view.elapsed)}"
    reason = view.error or view.note
    line = f"{where}: {view.state.value} after {done} copied"
    return f"{line}: {visible(reason)}" if reason else line


def progress_line(view: JobView) -> None:
    if not sys.stderr.isatty():
        return
    line = (
        f"\r{visible(view.key.domain)}/{visible(view.key.disk)} {view.state.value} "
        f"{100 * view.fraction:5.1f}%  {format_size(view.cur)} / {format_size(view.end)}  "
        f"{format_rate(view.rate)}  ETA {format_eta(view.eta)}   "
    )
    sys.stderr.write(line)
    sys.stderr.flush()

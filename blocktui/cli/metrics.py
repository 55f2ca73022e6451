"""``blocktui metrics``: every job and host, in Prometheus' text format, over HTTP or to a file.

The command watches the hosts as the dashboard does (one poll loop, no plans) and hands the
latest snapshot to a collector that the HTTP server or the textfile writer reads. Label values
are host strings with control characters made visible; the client library escapes the rest.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from blocktui.core.errors import InvalidInput
from blocktui.core.model import ConnectionState, JobState
from blocktui.core.text import visible
from blocktui.core.views import Snapshot
from blocktui.engine import Engine

#: Where the endpoint listens unless told: this machine only.
DEFAULT_LISTEN = "127.0.0.1:9177"

_JOB = ("host", "domain", "disk")


class SnapshotCollector(Collector):
    """Metric families from the latest snapshot; ``update`` swaps it in (any thread)."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def update(self, snapshot: Snapshot) -> None:
        """Show ``snapshot`` at the next scrape."""
        self.snapshot = snapshot  # one reference swap: a scrape reads the old or the new one

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.snapshot
        if snapshot is None:
            return
        state = GaugeMetricFamily(
            "blocktui_job_state", "1 for the job's current state", labels=[*_JOB, "state"]
        )
        done = GaugeMetricFamily("blocktui_job_bytes_done", "Bytes the job has copied", labels=_JOB)
        total = GaugeMetricFamily("blocktui_job_bytes_total", "Bytes the job copies in all", labels=_JOB)
        rate = GaugeMetricFamily("blocktui_job_rate_bytes", "Measured rate, bytes per second", labels=_JOB)
        limit = GaugeMetricFamily(
            "blocktui_job_limit_bytes", "Speed limit, bytes per second (0: none)", labels=_JOB
        )
        for job in snapshot.jobs:
            labels = [visible(job.key.host), visible(job.key.domain), visible(job.key.disk)]
            state.add_metric([*labels, job.state.value], 1)
            done.add_metric(labels, job.cur)
            total.add_metric(labels, job.end)
            limit.add_metric(labels, job.bandwidth)
            if job.rate is not None and not job.state.is_final:
                rate.add_metric(labels, job.rate)
        up = GaugeMetricFamily("blocktui_host_up", "1 while the host answers", labels=["host"])
        connection = GaugeMetricFamily(
            "blocktui_host_connection", "1 for the host's connection state", labels=["host", "state"]
        )
        running = GaugeMetricFamily(
            "blocktui_host_jobs", "Jobs on the host, by state", labels=["host", "state"]
        )
        counts = Counter((job.key.host, job.state) for job in snapshot.jobs)
        for host in snapshot.hosts:
            name = visible(host.uri)
            up.add_metric([name], 1 if host.state is ConnectionState.CONNECTED else 0)
            connection.add_metric([name, host.state.value], 1)
            for job_state in JobState:
                running.add_metric([name, job_state.value], counts[(host.uri, job_state)])
        yield from (state, done, total, rate, limit, up, connection, running)


def listen_arg(text: str) -> tuple[str, int]:
    """``HOST:PORT`` for the endpoint (``[::1]:9177`` for IPv6)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. {DEFAULT_LISTEN})")
    return host.strip("[]") or "127.0.0.1", int(port)


def add_metrics_command(commands: Any) -> None:
    """The ``metrics`` subcommand."""
    metrics = commands.add_parser(
        "metrics",
        help="serve every job and host in Prometheus' text format",
        description="Watch the hosts and expose their jobs for Prometheus, until interrupted.",
    )
    metrics.add_argument(
        "--listen",
        type=listen_arg,
        metavar="HOST:PORT",
        help=f"serve /metrics over HTTP here (default {DEFAULT_LISTEN}; this machine only)",
    )
    metrics.add_argument(
        "--textfile",
        type=Path,
        metavar="FILE",
        help="also write FILE (*.prom) after every poll, for node_exporter's textfile collector",
    )


def cmd_metrics(engine: Engine, args: argparse.Namespace) -> int:
    """Serve (and/or write) the metrics until interrupted; jobs are only watched, never changed."""
    textfile: Path | None = args.textfile
    if textfile is not None and not textfile.parent.is_dir():
        raise InvalidInput(f"--textfile: no directory {textfile.parent}")
    registry = CollectorRegistry()
    collector = SnapshotCollector()
    registry.register(collector)
    if args.listen is not None or textfile is None:
        host, port = args.listen or listen_arg(DEFAULT_LISTEN)
        try:
            start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        print(f"blocktui: metrics on http://{host}:{port}/metrics (Ctrl-C to stop)", file=sys.stderr)
    for snapshot in engine.polls(plans=False):
        collector.update(snapshot)
        if textfile is not None:
            _write_atomically(textfile, generate_latest(registry))
    return 0


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` whole, so the collector never reads a half-written file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(data)
    partial.replace(path)

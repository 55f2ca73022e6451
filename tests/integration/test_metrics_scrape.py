"""``blocktui metrics`` scraped over real HTTP while a real stream runs on the system libvirtd."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .system_support import PREFIX, SystemHost

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bytes_done(port: int, domain: str) -> float | None:
    """The stream's bytes done as one scrape shows it (None: not there yet, or not listening)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "blocktui_job_bytes_done" and sample.labels.get("domain") == domain:
                return float(sample.value)
    return None


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate(timeout=30)


def test_a_scrape_during_a_stream_shows_its_bytes_moving(system_host: SystemHost) -> None:
    name = f"{PREFIX}metrics"
    system_host.define(name, size=64 * MIB)
    system_host.start(name)
    port = _free_port()
    metrics = system_host.popen("metrics", "--listen", f"127.0.0.1:{port}")
    stream = system_host.popen("stream", name, "vda", "--bandwidth", "4M", "--wait")
    try:
        seen: list[float] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (len(seen) < 2 or seen[-1] <= seen[0]):
            done = _bytes_done(port, name)
            if done is not None and done > 0:
                seen.append(done)
            time.sleep(0.5)
        assert len(seen) >= 2 and seen[-1] > seen[0], f"bytes done as scraped: {seen}"
        assert metrics.poll() is None  # still serving
    finally:
        _stop(stream)
        _stop(metrics)

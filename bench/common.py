"""What every benchmark section shares: its settings and how it runs the measured agent."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Settings:
    """One run's scale (``--quick`` shrinks it) and where it works.

    Attributes:
        work: the private lab root (images, domain XML, agent results).
        daemon_pid: the benchmark libvirtd, whose CPU is noted beside each side's.
    """

    work: Path
    daemon_pid: int
    quick: bool = False

    @property
    def monitor_sizes(self) -> tuple[int, ...]:
        """Running streams the dashboard is measured at; the largest stay for latency and scale."""
        return (0, 8, 32) if self.quick else (0, 32, 128)

    @property
    def monitor_seconds(self) -> float:
        """The dashboard's measured CPU window (the virsh loop runs half as long)."""
        return 20.0 if self.quick else 60.0

    @property
    def completions(self) -> int:
        return 20 if self.quick else 60

    @property
    def pairs(self) -> int:
        return 2 if self.quick else 10

    @property
    def chain_size(self) -> int:
        return (256 if self.quick else 1024) * 1024**2

    @property
    def throttle_seconds(self) -> float:
        return 4.0 if self.quick else 10.0


def run_agent(kind: str, *args: str, timeout: float = 600.0) -> dict[str, Any]:
    """Run ``python -m bench.agent KIND ...`` in its own process and return its JSON result."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        argv = [sys.executable, "-m", "bench.agent", kind, "--out", out.name, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"bench.agent {kind} failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
        return result


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the table."""
    print(f"bench: {message}", file=sys.stderr, flush=True)

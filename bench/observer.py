"""The benchmark driver's own libvirt client: starts background jobs and watches completions independently."""

from __future__ import annotations

import threading
import time
from typing import Any

# blocktui's event module first: it keeps libvirt's log lines off the terminal.
from blocktui.backends.libvirt_events import ensure_event_loop  # isort: skip

import libvirt

from bench.host import SYSTEM_URI

#: Terminal statuses of VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2.
_FINAL = {0: "completed", 1: "failed", 2: "cancelled"}


class Observer:
    """A connection to the benchmark daemon that records when each job's final event arrives."""

    def __init__(self) -> None:
        ensure_event_loop()
        self.conn: Any = libvirt.open(SYSTEM_URI)
        self.ended: dict[tuple[str, str], tuple[float, str]] = {}
        self._changed = threading.Condition()
        self._callback = self.conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, self._on_job, None
        )

    def _on_job(self, _conn: Any, dom: Any, disk: str, _kind: int, status: int, _opaque: Any) -> None:
        if status in _FINAL:
            with self._changed:
                self.ended[(dom.name(), disk)] = (time.monotonic(), _FINAL[status])
                self._changed.notify_all()

    def pull(self, domain: str, disk: str, bandwidth: int = 0) -> None:
        """Start a whole-chain pull (bandwidth in bytes/s, 0 = unlimited) and return."""
        self.ended.pop((domain, disk), None)
        dom = self.conn.lookupByName(domain)
        dom.blockPull(disk, bandwidth, libvirt.VIR_DOMAIN_BLOCK_PULL_BANDWIDTH_BYTES)

    def set_speed(self, domain: str, disk: str, bandwidth: int) -> None:
        """Change a running job's limit (bytes/s, 0 = unlimited)."""
        dom = self.conn.lookupByName(domain)
        dom.blockJobSetSpeed(disk, bandwidth, libvirt.VIR_DOMAIN_BLOCK_JOB_SPEED_BANDWIDTH_BYTES)

    def job(self, domain: str, disk: str) -> dict[str, int]:
        """``virDomainGetBlockJobInfo`` of one disk (empty when there is no job)."""
        info: dict[str, int] = self.conn.lookupByName(domain).blockJobInfo(
            disk, libvirt.VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES
        )
        return info

    def wait_started(self, domain: str, disk: str, timeout: float, every: float = 0.005) -> float:
        """Poll until the disk has a job; return the monotonic time it was first seen."""
        dom = self.conn.lookupByName(domain)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if dom.blockJobInfo(disk, 0) or (domain, disk) in self.ended:
                return time.monotonic()
            time.sleep(every)
        raise TimeoutError(f"no job appeared on {domain}/{disk}")

    def wait_ended(self, domain: str, disk: str, timeout: float) -> tuple[float, str]:
        """Block until the job's final event; return its time and outcome."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (domain, disk) not in self.ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the job on {domain}/{disk} did not end")
                self._changed.wait(left)
            return self.ended[(domain, disk)]

    def close(self) -> None:
        """Drop the callback and the connection."""
        try:
            self.conn.domainEventDeregisterAny(self._callback)
            self.conn.close()
        except libvirt.libvirtError:
            pass

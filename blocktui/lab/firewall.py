"""A fleet host's packets dropped on the loopback (iptables), the way a partitioned host goes silent.

The rules name only the host's sshd address and port, so nothing else on the machine is touched,
and they are removed when the block ends, however it ends.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

#: Seconds any one iptables call may take (it waits for the xtables lock other users may hold).
IPTABLES_TIMEOUT = 30


def _rules(address: str, port: int) -> list[list[str]]:
    return [
        ["INPUT", "-p", "tcp", "-d", address, "--dport", str(port), "-j", "DROP"],
        ["INPUT", "-p", "tcp", "-s", address, "--sport", str(port), "-j", "DROP"],
    ]


@contextmanager
def dropped(address: str, port: int) -> Iterator[None]:
    """Drop every packet to and from ``address:port`` for the block (the rules always go after)."""
    added: list[list[str]] = []
    try:
        for rule in _rules(address, port):
            subprocess.run(
                ["iptables", "-I", *rule], check=True, capture_output=True, timeout=IPTABLES_TIMEOUT
            )
            added.append(rule)
        yield
    finally:
        for rule in added:
            subprocess.run(
                ["iptables", "-D", *rule], check=False, capture_output=True, timeout=IPTABLES_TIMEOUT
            )


def firewall_usable() -> str | None:
    """Why packets cannot be dropped here (no iptables, no permission), or None when they can."""
    if shutil.which("iptables") is None:
        return "iptables is not installed"
    done = subprocess.run(
        ["iptables", "-S", "INPUT"], capture_output=True, text=True, check=False, timeout=IPTABLES_TIMEOUT
    )
    return None if done.returncode == 0 else f"iptables cannot be used here: {done.stderr.strip()}"

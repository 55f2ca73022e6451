"""Dropping a fleet host's packets (iptables), in a chain of the fleet's own that ``down`` removes.

Every rule goes into one chain per fleet root, jumped to from INPUT. A test killed before it
could delete its rules (pytest-timeout's thread method leaves no ``finally`` to run) leaves them
there, and the next ``down`` flushes and deletes the chain: nothing stays in INPUT but the jump,
and that goes too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from blocktui.core.errors import HostError
from blocktui.lab.fleet_host import FleetHost
from blocktui.lab.system import START_TIMEOUT

IPTABLES = "iptables"
CHAIN_PREFIX = "BLOCKTUI-FLEET-"


def chain_name(root: Path) -> str:
    """The fleet's chain: named after its root, so one fleet's ``down`` leaves another's rules.

    iptables names have at most 28 characters: the prefix and 8 hex digits of the root's hash.
    """
    return CHAIN_PREFIX + hashlib.sha256(os.fsencode(root)).hexdigest()[:8]


def firewall_usable() -> str | None:
    """Why packets cannot be dropped here (no iptables, no permission), or None when they can."""
    if shutil.which(IPTABLES) is None:
        return "iptables is not installed"
    done = _iptables("-S", "INPUT")
    return None if done.returncode == 0 else f"iptables cannot be used here: {done.stderr.strip()}"


@contextmanager
def dropping(root: Path, host: FleetHost) -> Iterator[None]:
    """Drop every packet to and from ``host``'s sshd for the block (the rules go after it).

    Raises:
        HostError: iptables refuses a rule.
    """
    chain = chain_name(root)
    if _iptables("-n", "-L", chain).returncode != 0:
        _checked("-N", chain)
    if _iptables("-C", "INPUT", "-j", chain).returncode != 0:
        _checked("-I", "INPUT", "-j", chain)
    rules = [
        ["-p", "tcp", "-d", host.address, "--dport", str(host.port), "-j", "DROP"],
        ["-p", "tcp", "-s", host.address, "--sport", str(host.port), "-j", "DROP"],
    ]
    added: list[list[str]] = []
    try:
        for rule in rules:
            _checked("-A", chain, *rule)
            added.append(rule)
        yield
    finally:
        for rule in added:
            _iptables("-D", chain, *rule)


def remove_chain(root: Path) -> None:
    """Remove the fleet's chain with whatever rules it holds, and INPUT's jumps to it.

    Nothing to do (no iptables, no chain) is no error: ``down`` must work anywhere.
    """
    if shutil.which(IPTABLES) is None:
        return
    chain = chain_name(root)
    while _iptables("-D", "INPUT", "-j", chain).returncode == 0:
        pass  # dropping() adds one jump at most, but every jump must go before the chain can
    _iptables("-F", chain)
    _iptables("-X", chain)


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    # -w: wait for the xtables lock rather than fail while another process holds it.
    return subprocess.run(
        [IPTABLES, "-w", *args], capture_output=True, text=True, check=False, timeout=START_TIMEOUT
    )


def _checked(*args: str) -> None:
    done = _iptables(*args)
    if done.returncode != 0:
        raise HostError(f"fleet: iptables {' '.join(args)} failed: {done.stderr.strip()}")

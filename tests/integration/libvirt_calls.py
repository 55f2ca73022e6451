"""Libvirt calls on the system daemon, made in a process of their own for the test run.

Once a process has opened the embedded driver (``qemu:///embed``, the lab), libvirt serves every
``qemu://`` URI in-process and its remote driver declines ("no connection driver available"), so
the test process cannot reach a daemon itself. ``SystemHost`` runs this file instead: one JSON
request on stdin (``{"action": ..., ...}``), one JSON answer on stdout.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import libvirt

URI = "qemu:///system"


def _quiet(_context: object, _error: object) -> None:
    """Errors reach the caller as exceptions; libvirt would also print each one."""


def _remove(dom: libvirt.virDomain) -> None:
    for step in (dom.destroy, dom.undefine):
        try:
            step()
        except libvirt.libvirtError:
            continue  # not running, or already gone


def handle(conn: libvirt.virConnect, request: dict[str, Any]) -> Any:
    action = request["action"]
    if action == "define":
        return conn.defineXML(request["xml"]).UUIDString()
    if action == "remove":
        wanted, prefix = set(request["uuids"]), request["prefix"]
        doomed = [
            d
            for d in conn.listAllDomains(0)
            if d.UUIDString() in wanted or (prefix is not None and d.name().startswith(prefix))
        ]
        # Each destroy waits a second or two for its QEMU to exit: wait for them together.
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(_remove, doomed))
        return len(doomed)
    dom = conn.lookupByName(request["name"])
    if action == "rename":
        dom.rename(request["new"], 0)
    elif action == "start":
        dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
    elif action == "flush":
        dom.resume()
        dom.suspend()
    elif action == "has_job":
        return bool(dom.blockJobInfo(request["disk"], 0))
    elif action == "job_speed":
        info = dom.blockJobInfo(request["disk"], libvirt.VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES)
        return int(info["bandwidth"]) if info else None
    else:
        raise ValueError(f"unknown action {action!r}")
    return None


def main() -> int:
    libvirt.registerErrorHandler(_quiet, None)
    request = json.load(sys.stdin)
    conn = libvirt.open(URI)
    try:
        json.dump({"result": handle(conn, request)}, sys.stdout)
    except libvirt.libvirtError as exc:
        json.dump({"error": str(exc)}, sys.stdout)
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``blocktui lab fleet up|down|status``: the fleet lab of SSH-reachable hosts (``blocktui.lab.fleet``)."""

from __future__ import annotations

import argparse
import sys

from blocktui.cli.args import positive_int
from blocktui.cli.output import print_json
from blocktui.core.errors import InvalidInput
from blocktui.core.text import visible
from blocktui.core.units import format_size

FLEET_ACTIONS = ("up", "down", "status")


def add_fleet_options(lab: argparse.ArgumentParser) -> None:
    """``lab fleet ACTION [--hosts N] [--json]`` (``--domains`` and ``--size`` are the lab's own)."""
    lab.add_argument("fleet_action", nargs="?", choices=FLEET_ACTIONS, metavar="ACTION", help="with fleet")
    lab.add_argument("--hosts", type=positive_int, default=3, metavar="N", help="fleet hosts, default 3")
    lab.add_argument("--json", action="store_true", help="with fleet status: machine-readable output")


def cmd_fleet(args: argparse.Namespace) -> int:
    """Bring the fleet up or down, or say what it holds."""
    from blocktui.lab.fleet import FleetLab  # noqa: PLC0415 - only the fleet needs it

    if args.fleet_action is None:
        raise InvalidInput(f"lab fleet needs an action: {', '.join(FLEET_ACTIONS)}")
    fleet = FleetLab()
    if args.fleet_action == "down":
        fleet.down()
        print(f"fleet removed from {fleet.root}")
        return 0
    if args.fleet_action == "up":
        print(f"bringing up {args.hosts} fleet hosts in {fleet.root} ...", file=sys.stderr)
        hosts = fleet.up(hosts=args.hosts, domains=args.domains, size=args.size)
    else:
        hosts = fleet.status()
    if args.json:
        print_json([host.as_json() for host in hosts])
        return 0
    if not hosts:
        print(f"no fleet in {fleet.root}; 'blocktui lab fleet up' creates one")
        return 0
    for host in hosts:
        running = "up" if host.sshd_pid and host.daemon_pid else "partly down"
        print(f"{host.name:10} {running:12} {visible(host.uri)}")
        for disk in host.disks:
            print(f"  {visible(disk.domain):10} {disk.target} {format_size(disk.size):>10}  {disk.top}")
    return 0

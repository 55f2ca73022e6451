"""``blocktui map DOMAIN DISK``: where a disk's data lives, as a strip with totals or as JSON ranges."""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import Any, TextIO

from blocktui.cli.hosts import add_on_option, target_disk
from blocktui.cli.output import print_json
from blocktui.core.allocation import ASCII_CELLS, CELLS, DiskMap, Where
from blocktui.core.text import visible
from blocktui.core.units import format_size
from blocktui.engine import Engine

#: The strip's widest, in characters (narrower on a narrower terminal).
STRIP_WIDTH = 80

_LABELS = {Where.LOCAL: "local", Where.BACKING: "backing", Where.UNALLOCATED: "unallocated"}


def add_map_command(commands: Any) -> None:
    """The ``map`` subcommand."""
    disk_map = commands.add_parser(
        "map",
        help="where a disk's data lives: in the overlay, the backing chain, or nowhere",
        description="Read the disk's allocation map (qemu-img map -U: metadata only, QEMU is not "
        "asked) and print it as a strip, each character a slice of the disk, with totals per state.",
    )
    disk_map.add_argument("domain", metavar="DOMAIN")
    disk_map.add_argument("disk", metavar="DISK", help="target name, e.g. vda")
    add_on_option(disk_map)
    disk_map.add_argument(
        "--json", action="store_true", help="{size, percent_local, totals, ranges: [{start, length, state}]}"
    )


def cmd_map(engine: Engine, args: argparse.Namespace) -> int:
    """Print where the disk's data lives."""
    key = target_disk(engine, args)
    found = engine.disk_map(key)
    if args.json:
        print_json({"domain": key.domain, "disk": key.disk, **found.as_json()})
    else:
        print_map(f"{visible(key.domain)}/{visible(key.disk)}", found, sys.stdout)
    return 0


def print_map(name: str, found: DiskMap, out: TextIO) -> None:
    """The strip (as wide as the terminal allows), then bytes and share of the disk in each state."""
    cells = CELLS if _can_write("".join(CELLS.values()), out) else ASCII_CELLS
    width = max(8, min(STRIP_WIDTH, shutil.get_terminal_size((STRIP_WIDTH, 24)).columns))
    out.write(f"{name}: {format_size(found.size)}, {found.percent_text()}\n")
    out.write(found.strip(width, cells) + "\n")
    size = found.size or 1
    for where, count in found.totals().items():
        share = 100 * count / size
        out.write(f"{cells[where]} {_LABELS[where]:<12}{format_size(count):>11}  {share:5.1f} %\n")


def _can_write(text: str, out: TextIO) -> bool:
    """Whether ``out``'s encoding has these characters (a C-locale terminal may not)."""
    try:
        text.encode(out.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True

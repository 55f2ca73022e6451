"""The command line: the dashboard by default, and subcommands for scripts and quick looks."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

from blocktui import __version__
from blocktui.cli import plans as cli_plans
from blocktui.cli.args import bandwidth_arg, positive_int, size_arg
from blocktui.cli.config_file import add_config_command, cmd_config, load_config
from blocktui.cli.disk_map import add_map_command, cmd_map
from blocktui.cli.fleet import add_fleet_options, cmd_fleet
from blocktui.cli.hosts import add_on_option, engine_for, target_disk
from blocktui.cli.metrics import add_metrics_command, cmd_metrics
from blocktui.cli.output import domain_json, job_json, one_line, print_domains, print_jobs, print_json
from blocktui.core.config import Config
from blocktui.core.errors import EXIT_CODES_HELP, BlocktuiError, InvalidInput, NotAnswering
from blocktui.core.text import visible
from blocktui.core.units import (
    BANDWIDTH_HELP,
    format_bandwidth,
    format_size,
)
from blocktui.engine import Engine

__all__ = ["main"]

EXIT_INTERRUPTED = 130
#: Commands that ask a host to change something.
CHANGES = frozenset({"stream", "speed", "abort", "pause", "resume"})

#: ``lab --qmp --style``: how the lab's QEMUs attach disks (``blocktui.lab.qemu_styles.STYLES``;
#: spelled out so ``--help`` does not import the lab).
QMP_LAB_STYLES = ("blockdev", "drive", "drive-device", "proxmox", "libvirt")

DESCRIPTION = """\
blocktui: watch and steer live disk streaming (block pull) on libvirt and QEMU hosts.

With no command, opens the dashboard. Hosts come from -c URI (repeatable; default
$LIBVIRT_DEFAULT_URI, else qemu:///system as root and qemu:///session otherwise), --lab (the
embedded demo lab), --qmp SOCKET and --qmp-dir DIR (QEMU without libvirt)."""

EPILOG = f"""\
bandwidth: {BANDWIDTH_HELP}.
sizes: binary units (k = KiB, M = MiB, G = GiB).

examples:
  blocktui --lab lab up                       create the demo lab (real QEMU, qcow2 chains)
  blocktui --lab ls                           domains, disks and backing chains
  blocktui --lab stream lab-1 vda --bandwidth 50M --wait
  blocktui --qmp-dir DIR stream vm vda --offset 16M --length 8M --wait   copy one window
  blocktui lab fleet up --hosts 3             three hosts reachable over SSH (as root)
  blocktui --fleet                            the dashboard over every fleet host
  blocktui -c qemu:///system jobs --watch     every block job, refreshed
  blocktui -c qemu:///system speed web1 vda 20M
  blocktui -c qemu:///system abort web1 vda --wait
  blocktui -c qemu:///system metrics           Prometheus metrics on 127.0.0.1:9177

{EXIT_CODES_HELP}"""


# -- argument parsing -----------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other blocktui error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to render --help in the README)."""
    parser = _Parser(
        prog="blocktui",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"blocktui {__version__}")
    hosts = parser.add_argument_group("hosts")
    hosts.add_argument(
        "-c", "--connect", metavar="URI", action="append", default=[], help="a libvirt URI (repeatable)"
    )
    hosts.add_argument("--lab", action="store_true", help="the embedded demo lab (see 'lab up')")
    hosts.add_argument("--fleet", action="store_true", help="every fleet lab host (see 'lab fleet up')")
    hosts.add_argument(
        "--host",
        metavar="NAME",
        action="append",
        default=[],
        help="a host the configuration file names (repeatable; see 'blocktui config show')",
    )
    hosts.add_argument(
        "--qmp", metavar="SOCKET", action="append", default=[], help="a QEMU QMP socket (repeatable)"
    )
    hosts.add_argument(
        "--qmp-dir", metavar="DIR", action="append", default=[], help="a folder of QMP sockets"
    )
    hosts.add_argument(
        "--qmp-hold",
        action="store_true",
        help="keep QMP sockets open (events at once) instead of a short session per look; only for "
        "sockets no other tool uses: QEMU serves one client at a time",
    )
    hosts.add_argument("--readonly", action="store_true", help="never change anything; refuse every mutation")
    cli_plans.add_global_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    ls = commands.add_parser("ls", help="list domains, disks and backing chains")
    ls.add_argument("--json", action="store_true", help="machine-readable output")

    stream = commands.add_parser(
        "stream",
        help="start streaming (pulling) a disk's backing chain into it",
        description="Start a block pull on DISK of DOMAIN. Returns at once unless --wait.",
        epilog=f"bandwidth: {BANDWIDTH_HELP}.\n\n{EXIT_CODES_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stream.add_argument("domain", metavar="DOMAIN")
    stream.add_argument("disk", metavar="DISK", help="target name, e.g. vda")
    add_on_option(stream)
    stream.add_argument(
        "--bandwidth",
        "-b",
        type=bandwidth_arg,
        metavar="BW",
        help="limit (default: the configuration file's, else unlimited)",
    )
    stream.add_argument(
        "--base", metavar="PATH", help="keep this backing image and those below it (default: pull all)"
    )
    stream.add_argument(
        "--offset",
        type=size_arg,
        metavar="OFFSET",
        help="with --length: copy only this window of the disk (whole 64 KiB clusters; implies --wait)",
    )
    stream.add_argument(
        "--length", type=size_arg, metavar="LENGTH", help="the window's length (see --offset)"
    )
    stream.add_argument("--wait", action="store_true", help="wait until the job ends")
    stream.add_argument("--json", action="store_true", help="print the job record as JSON")
    cli_plans.add_stream_options(stream)

    jobs = commands.add_parser("jobs", help="list every block job on the hosts")
    jobs.add_argument("--json", action="store_true", help="machine-readable output")
    jobs.add_argument("--watch", action="store_true", help="refresh until interrupted")
    cli_plans.add_history_command(commands)
    add_metrics_command(commands)
    add_config_command(commands)
    add_map_command(commands)

    speed = commands.add_parser("speed", help="change a running job's bandwidth limit")
    speed.add_argument("domain", metavar="DOMAIN")
    speed.add_argument("disk", metavar="DISK")
    add_on_option(speed)
    speed.add_argument("bandwidth", metavar="BW", type=bandwidth_arg, help="new limit; 0 = unlimited")

    abort = commands.add_parser("abort", help="stop a job (a pull keeps what it copied)")
    abort.add_argument("domain", metavar="DOMAIN")
    abort.add_argument("disk", metavar="DISK")
    add_on_option(abort)
    abort.add_argument("--wait", action="store_true", help="wait until the job is gone")

    for name, verb in (("pause", "hold"), ("resume", "continue")):
        sub = commands.add_parser(name, help=f"{verb} a job (QMP hosts hold it in place)")
        sub.add_argument("domain", metavar="DOMAIN")
        sub.add_argument("disk", metavar="DISK")
        add_on_option(sub)

    lab = commands.add_parser(
        "lab",
        help="the embedded demo lab: real QEMU domains over qcow2 chains",
        description="Manage the demo lab under $BLOCKTUI_LAB_DIR (default: the user data dir).",
    )
    lab.add_argument("action", choices=("up", "down", "status", "fleet"), help="fleet: hosts over SSH")
    lab.add_argument("--domains", type=positive_int, default=3, metavar="N", help="default 3")
    lab.add_argument("--disks", type=positive_int, default=2, metavar="K", help="per domain, default 2")
    lab.add_argument("--size", type=size_arg, default=64 * 1024**2, metavar="SIZE", help="default 64M")
    lab.add_argument("--qmp", action="store_true", help="plain QEMU processes with QMP sockets")
    lab.add_argument(
        "--style",
        choices=QMP_LAB_STYLES,
        help="with --qmp: how QEMU attaches disks (default blockdev; -drive; as Proxmox VE or libvirt do)",
    )
    add_fleet_options(lab)
    return parser


# -- commands -------------------------------------------------------------------------------


def cmd_ls(engine: Engine, args: argparse.Namespace) -> int:
    """List domains; each one that cannot be read is also one line on stderr (still exit 0)."""
    domains = engine.domains()
    for domain in domains:
        if domain.error:
            print(
                one_line(f"domain {visible(domain.name)!r} on {domain.host}: {domain.error}"), file=sys.stderr
            )
    if args.json:
        print_json([domain_json(d) for d in domains])
    else:
        print_domains(domains, sys.stdout)
    return 0


def cmd_stream(engine: Engine, args: argparse.Namespace) -> int:
    """Start a stream; with --wait (or --chunk), follow it to its end; --dry-run only tells."""
    if args.offset is not None or args.length is not None:
        return cli_plans.cmd_stream_window(engine, args)
    if args.dry_run:
        return cli_plans.cmd_preflight(engine, args)
    if args.wait or args.chunk:
        return cli_plans.cmd_stream_planned(engine, args)
    return cli_plans.cmd_stream_unwatched(engine, args)


def cmd_jobs(engine: Engine, args: argparse.Namespace) -> int:
    """List jobs, once or refreshed."""
    if not args.watch:
        jobs = engine.list_jobs()
        if args.json:
            print_json([job_json(j) for j in jobs])
        else:
            print_jobs(jobs, sys.stdout)
        return 0
    for snapshot in engine.polls(plans=False, every=1.0):
        if args.json:
            sys.stdout.write(json.dumps([job_json(j) for j in snapshot.jobs]) + "\n")
        else:
            if sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")
            sys.stdout.write(time.strftime("%H:%M:%S  (Ctrl-C to stop; jobs keep running)\n"))
            print_jobs(snapshot.jobs, sys.stdout)
        sys.stdout.flush()
    return 0


def cmd_speed(engine: Engine, args: argparse.Namespace) -> int:
    """Change a job's limit."""
    key = target_disk(engine, args)
    engine.set_speed(key, args.bandwidth)
    print(f"{visible(key.domain)}/{visible(key.disk)}: limit now {format_bandwidth(args.bandwidth)}")
    return 0


def cmd_dashboard(engine: Engine, args: argparse.Namespace) -> int:
    """Run the dashboard: its streams are plans under --max-active, --budget and the guard."""
    from blocktui.ui import run_dashboard  # noqa: PLC0415 - Textual loads only for the dashboard

    return run_dashboard(
        engine, args.settings
    )  # closes the engine: plans handed on, journal and hosts closed


def cmd_lab(args: argparse.Namespace) -> int:
    """Create, remove or describe the demo lab (or the fleet)."""
    from blocktui.lab import open_lab  # noqa: PLC0415

    if args.action == "fleet":
        return cmd_fleet(args)
    if args.fleet_action is not None or args.json:
        extra = repr(args.fleet_action) if args.fleet_action is not None else "--json"
        raise InvalidInput(f"lab {args.action} takes no {extra}; it belongs to 'lab fleet'")
    kind = "qmp" if args.qmp else "libvirt"
    if args.style is not None and not args.qmp:
        raise InvalidInput("--style applies to the QMP lab only: add --qmp")
    with open_lab(kind, style=args.style or "blockdev") as lab:
        if args.action == "up":
            print(f"creating the {kind} lab in {lab.root} ...", file=sys.stderr)
            disks = lab.up(domains=args.domains, disks=args.disks, size=args.size)
        elif args.action == "down":
            lab.down()
            print(f"{kind} lab removed from {lab.root}")
            return 0
        else:
            disks = lab.status()
        if not disks:
            print(f"no {kind} lab in {lab.root}; 'blocktui lab up' creates one")
            return 0
        width = max(5, *(len(disk.target) for disk in disks))
        for disk in disks:
            chain = " <- ".join(p.name for p in (disk.top, *disk.backing))
            print(f"{disk.domain:10} {disk.target:{width}} {format_size(disk.size):>10}  {chain}")
    return 0


COMMANDS: dict[str, Callable[[Engine, argparse.Namespace], int]] = {
    "ls": cmd_ls,
    "stream": cmd_stream,
    "jobs": cmd_jobs,
    "speed": cmd_speed,
    "abort": cli_plans.cmd_abort_guarded,
    "pause": cli_plans.cmd_pause_planned,
    "resume": cli_plans.cmd_pause_planned,
    "metrics": cmd_metrics,
    "map": cmd_map,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run blocktui; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # A broken pipe (blocktui jobs | head) is a normal way to stop reading, not an error.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        if args.command == "lab":
            return cmd_lab(args)
        if args.command == "history":
            return cli_plans.cmd_history(args)
        if args.command == "config":
            return cmd_config(args)
        args.settings = config = load_config()
        if args.command == "stream":
            with_defaults(args, config)
        command = COMMANDS.get(args.command, cmd_dashboard)
        dashboard = command is cmd_dashboard
        with engine_for(args, config, connect=not dashboard, bounded=not dashboard) as engine:
            return command(engine, args)
    except BlocktuiError as exc:
        message = str(exc)
        if isinstance(exc, NotAnswering) and args.command in CHANGES:
            # The request may have reached the host before it stopped answering.
            message += "; it may still take effect there: 'blocktui jobs' shows the job once it answers"
        print(one_line(message), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        where = "the host" if _host_count(args) == 1 else "their hosts"
        if getattr(args, "offset", None) is not None:
            # A window is read by this process: it stops here, and its plan waits in the journal.
            print(
                "\nblocktui: interrupted; the window stopped (what it copied stays): the dashboard "
                "takes it up again when it opens, or run the same command again",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        print(f"\nblocktui: interrupted; jobs already started keep running on {where}", file=sys.stderr)
        return EXIT_INTERRUPTED


def with_defaults(args: argparse.Namespace, config: Config) -> None:
    """``stream``'s limit, chunk and gap from the configuration file where no flag gives them."""
    if args.bandwidth is None:
        args.bandwidth = config.bandwidth or 0
    if args.chunk is None:
        # A window is copied in one run: the configuration's chunk size is for whole streams.
        windowed = args.offset is not None or args.length is not None
        args.chunk = 0 if windowed else config.chunk or 0
    if args.gap is None:
        args.gap = config.gap or 0.0


def _host_count(args: argparse.Namespace) -> int:
    """How many hosts the options name (the default URI when none)."""
    if args.fleet:
        return 2  # a fleet is several hosts, however many
    return len(args.connect) + int(args.lab) + len(args.qmp) + len(args.qmp_dir) + len(args.host) or 1

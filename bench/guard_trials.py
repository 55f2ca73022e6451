"""Trials of the completion guard: two equal streams of one domain, each run by its own process.

``python -m bench.guard_trials [--trials 30] [--no-guard]`` creates, per trial, a paused domain on
a system libvirtd with two equal disks over patterned backing images, starts
``blocktui -c qemu:///system stream DOMAIN vdX --bandwidth 32M --wait --json`` twice at the same
moment (two processes sharing nothing but the host), and records whether both completed, whether
QEMU survived, and whether each overlay then stands alone and reads identical to its content before
the stream. ``--no-guard`` runs the same trials unguarded, as the control.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.host import (
    MIB,
    PREFIX,
    SYSTEM_URI,
    clean_dir,
    destroy_domains,
    make_base,
    make_overlay,
    start_domain,
    system_daemon,
    virsh,
)
from blocktui.lab.images import backing_file, compare, flatten_copy

DISK_SIZE = 64 * MIB
BANDWIDTH = "32M"
TARGETS = ("vda", "vdb")


@dataclass
class Trial:
    """What one trial ended with."""

    completed: int
    exit_codes: list[int]
    qemu_alive: bool
    standalone: int
    identical: int
    seconds: float


def _running(name: str) -> bool:
    done = subprocess.run(
        ["virsh", "-q", "-c", SYSTEM_URI, "domstate", name], capture_output=True, text=True, check=False
    )
    return done.returncode == 0 and done.stdout.strip() in {"running", "paused"}


def trial(index: int, work: Path, guard: bool) -> Trial:
    """Run one trial in ``work``; the domain is destroyed afterwards."""
    name = f"{PREFIX}guard-{index}"
    base = work / "base.qcow2"
    make_base(base, DISK_SIZE)
    tops = [work / f"{name}-{target}.qcow2" for target in TARGETS]
    saved = [work / f"{name}-{target}.raw" for target in TARGETS]
    for top, copy in zip(tops, saved, strict=True):
        make_overlay(top, base)
        flatten_copy(top, copy)
    start_domain(name, tops, work)
    env_guard = [] if guard else ["--no-guard"]
    argv = [sys.executable, "-m", "blocktui", "-c", SYSTEM_URI, *env_guard, "stream", name]
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [*argv, target, "--bandwidth", BANDWIDTH, "--wait", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for target in TARGETS
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    seconds = time.monotonic() - started
    states = []
    for stdout, _stderr in outputs:
        try:
            states.append(json.loads(stdout).get("state"))
        except json.JSONDecodeError:
            states.append(None)
    alive = _running(name)
    if alive:
        # QEMU keeps qcow2 metadata in memory: stop and continue it so qemu-img reads the truth.
        virsh("resume", name)
        virsh("suspend", name)
    standalone = sum(backing_file(top) is None for top in tops)
    identical = sum(compare(top, copy) for top, copy in zip(tops, saved, strict=True))
    subprocess.run(["virsh", "-q", "-c", SYSTEM_URI, "destroy", name], capture_output=True, check=False)
    for path in (*tops, *saved):
        path.unlink(missing_ok=True)
    return Trial(
        completed=states.count("completed"),
        exit_codes=[proc.returncode for proc in procs],
        qemu_alive=alive,
        standalone=standalone,
        identical=identical,
        seconds=seconds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the trials and print one line each, then the totals (JSON beside them with --json)."""
    parser = argparse.ArgumentParser(prog="python -m bench.guard_trials", description=__doc__)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--no-guard", action="store_true", help="the unguarded control")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    guard = not args.no_guard
    work = Path(tempfile.mkdtemp(prefix="btguard-", dir="/var/tmp"))
    results: list[Trial] = []
    try:
        with system_daemon():
            destroy_domains()
            for index in range(args.trials):
                result = trial(index, work, guard)
                results.append(result)
                print(
                    f"trial {index + 1:2}/{args.trials}: completed {result.completed}/2, "
                    f"qemu {'alive' if result.qemu_alive else 'CRASHED'}, standalone "
                    f"{result.standalone}/2, identical {result.identical}/2, {result.seconds:.1f} s",
                    flush=True,
                )
            destroy_domains()
    finally:
        clean_dir(work)
    crashed = sum(not r.qemu_alive for r in results)
    lost = sum(2 - r.identical for r in results)
    good = sum(r.completed == 2 and r.identical == 2 and r.standalone == 2 for r in results)
    print(
        f"\nguard {'on' if guard else 'off'}: {len(results)} trials, {good} with both streams completed "
        f"and identical, {crashed} QEMU crashes, {lost} disks not identical"
    )
    if args.json:
        args.json.write_text(json.dumps({"guard": guard, "trials": [asdict(r) for r in results]}, indent=2))
    return 0 if good == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())

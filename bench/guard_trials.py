"""Trials of the completion guard: equal streams of one domain, each run by its own process.

``python -m bench.guard_trials [--trials 10] [--disks 2,3] [--bandwidths 32M,200M,0] [--no-guard]``
runs, per cell of disks x bandwidth and per trial, a paused domain on a system libvirtd with equal
disks over patterned backing images, starts ``blocktui -c qemu:///system stream DOMAIN vdX
--bandwidth BW --wait --json`` for every disk at the same moment (processes sharing nothing but
the host), and records whether all completed, whether QEMU survived, and whether each overlay then
stands alone and reads identical to its content before the stream. ``--no-guard`` is the control.

``--kill`` instead kills every stream process with SIGKILL once the guard holds a job, then
watches the jobs with ``virsh`` until none is left: no job may stay held, none may crash QEMU.

Each trial takes ``/tmp/blocktui-system-daemon.lock`` (flock) while it uses the daemon, so other
users of the daemon (the tests) wait for a trial, not for the whole run.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
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
    daemon_lock,
    destroy_domains,
    make_base,
    make_overlay,
    start_domain,
    system_daemon,
    virsh,
)
from blocktui.core.guard import Mark, mark_of
from blocktui.core.units import parse_bandwidth
from blocktui.lab.images import backing_file, compare, flatten_copy

#: Disk size per bandwidth: a throttled stream takes seconds, an unlimited one has room to race.
SIZES = {"32M": 64 * MIB, "200M": 256 * MIB, "0": 256 * MIB}

#: After SIGKILL, every job must be gone within this (the issue's limit).
KILL_LIMIT = 300.0


@dataclass
class Trial:
    """What one trial ended with."""

    disks: int
    bandwidth: str
    completed: int
    exit_codes: list[int]
    qemu_alive: bool
    standalone: int
    identical: int
    seconds: float
    killed_held: int = 0


def _running(name: str) -> bool:
    done = subprocess.run(
        ["virsh", "-q", "-c", SYSTEM_URI, "domstate", name], capture_output=True, text=True, check=False
    )
    return done.returncode == 0 and done.stdout.strip() in {"running", "paused"}


def _job_speeds(name: str, targets: Sequence[str]) -> dict[str, int]:
    """Each target's job speed (bytes/s) as virsh reads it; a target without a job is absent."""
    speeds = {}
    for target in targets:
        done = subprocess.run(
            ["virsh", "-q", "-c", SYSTEM_URI, "blockjob", name, target, "--info", "--bytes"],
            capture_output=True,
            text=True,
            check=False,
        )
        found = re.search(r"Bandwidth limit:\s*(\d+)", done.stdout)
        if done.returncode == 0 and "No current block job" not in done.stdout and found:
            speeds[target] = int(found.group(1))
    return speeds


def _kill_when_held(procs: list[subprocess.Popen[str]], name: str, targets: Sequence[str]) -> int:
    """SIGKILL every stream process once a job is held (or after 60 s); return how many were held."""
    deadline = time.monotonic() + 60
    held = 0
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        held = sum(mark_of(s) in (Mark.HOLD, Mark.WANT) for s in _job_speeds(name, targets).values())
        if held:
            break
        time.sleep(0.05)
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
    return held


def _wait_jobs_gone(name: str, targets: Sequence[str]) -> bool:
    deadline = time.monotonic() + KILL_LIMIT
    while time.monotonic() < deadline:
        if not _running(name) or not _job_speeds(name, targets):
            return True
        time.sleep(1.0)
    return False


def trial(name: str, work: Path, disks: int, bandwidth: str, *, guard: bool, kill: bool) -> Trial:
    """Run one trial in ``work``; the domain is destroyed afterwards."""
    targets = [f"vd{chr(ord('a') + index)}" for index in range(disks)]
    base = work / f"base-{bandwidth}.qcow2"
    make_base(base, SIZES.get(bandwidth, 256 * MIB))
    tops = [work / f"{name}-{target}.qcow2" for target in targets]
    saved = [work / f"{name}-{target}.raw" for target in targets]
    for top, copy in zip(tops, saved, strict=True):
        make_overlay(top, base)
        flatten_copy(top, copy)
    start_domain(name, tops, work)
    env_guard = [] if guard else ["--no-guard"]
    argv = [sys.executable, "-m", "blocktui", "-c", SYSTEM_URI, *env_guard, "stream", name]
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [*argv, target, "--bandwidth", bandwidth, "--wait", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for target in targets
    ]
    held = _kill_when_held(procs, name, targets) if kill else 0
    outputs = [proc.communicate(timeout=600) for proc in procs]
    gone = _wait_jobs_gone(name, targets) if kill else True
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
        disks=disks,
        bandwidth=bandwidth,
        completed=states.count("completed") if not kill else standalone if gone else 0,
        exit_codes=[proc.returncode for proc in procs],
        qemu_alive=alive,
        standalone=standalone,
        identical=identical,
        seconds=seconds,
        killed_held=held,
    )


def _line(index: int, total: int, r: Trial) -> str:
    bandwidth = "unlimited" if parse_bandwidth(r.bandwidth) == 0 else f"{r.bandwidth}/s"
    return (
        f"trial {index:2}/{total} ({r.disks} disks, {bandwidth}): completed {r.completed}/{r.disks}, "
        f"qemu {'alive' if r.qemu_alive else 'CRASHED'}, standalone {r.standalone}/{r.disks}, "
        f"identical {r.identical}/{r.disks}, {r.seconds:.1f} s"
        + (f", {r.killed_held} held when killed" if r.killed_held else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the trials and print one line each, then the totals (JSON beside them with --json)."""
    parser = argparse.ArgumentParser(prog="python -m bench.guard_trials", description=__doc__)
    parser.add_argument("--trials", type=int, default=10, help="trials per cell (default 10)")
    parser.add_argument("--disks", default="2,3", help="disks per domain, comma-separated")
    parser.add_argument("--bandwidths", default="32M,200M,0", help="stream limits, comma-separated (0: none)")
    parser.add_argument("--no-guard", action="store_true", help="the unguarded control")
    parser.add_argument("--kill", action="store_true", help="SIGKILL the streams once a job is held")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    guard = not args.no_guard
    cells = [(int(d), b) for d in args.disks.split(",") for b in args.bandwidths.split(",")]
    total = len(cells) * args.trials
    work = Path(tempfile.mkdtemp(prefix="btguard-", dir="/var/tmp"))
    results: list[Trial] = []
    try:
        for disks, bandwidth in cells:
            for _ in range(args.trials):
                # The daemon is (re)started per trial if need be: a test may have restarted it between.
                with daemon_lock(), system_daemon():
                    destroy_domains()
                    name = f"{PREFIX}guard-{len(results)}"
                    result = trial(name, work, disks, bandwidth, guard=guard, kill=args.kill)
                    destroy_domains()
                results.append(result)
                print(_line(len(results), total, result), flush=True)
    finally:
        clean_dir(work)
    crashed = sum(not r.qemu_alive for r in results)
    lost = sum(r.disks - r.identical for r in results)
    good = sum(r.completed == r.identical == r.standalone == r.disks for r in results)
    what = "jobs gone within 5 min of SIGKILL" if args.kill else "every stream completed"
    print(
        f"\nguard {'on' if guard else 'off'}: {len(results)} trials, {good} with {what} and identical, "
        f"{crashed} QEMU crashes, {lost} disks not identical"
    )
    if args.json:
        args.json.write_text(json.dumps({"guard": guard, "trials": [asdict(r) for r in results]}, indent=2))
    return 0 if good == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())

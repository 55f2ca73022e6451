"""3. Throughput neutrality (blocktui versus virsh on identical chains) and 4. throttle accuracy."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import Settings, log
from bench.host import GIB, MIB, PREFIX, SYSTEM_URI, make_base, make_overlay, start_domain, virsh
from bench.observer import Observer
from bench.report import Figure

NEUTRAL = "3 throughput neutrality (unthrottled 1 GiB chain)"
THROTTLE = "4 throttle accuracy (delivered rate vs limit)"
GOAL_RATIO = 0.97
BLOCKTUI = str(Path(sys.executable).with_name("blocktui"))


def base_1g(settings: Settings) -> Path:
    """The 1 GiB fully written base every run of this section streams from."""
    base = settings.work / "base-1g.qcow2"
    make_base(base, GIB)
    return base


def _one_domain(settings: Settings, name: str) -> Path:
    top = settings.work / f"{name}-vda.qcow2"
    make_overlay(top, base_1g(settings))
    start_domain(name, [top], settings.work)
    return top


def _pull_with(tool: str, settings: Settings, observer: Observer, run: int) -> dict[str, float]:
    """Stream a fresh overlay of the 1 GiB chain with ``tool``; time the copy as a third client sees it."""
    name = f"{PREFIX}tp{tool}{run}"
    top = _one_domain(settings, name)
    argv = {
        "blocktui": [BLOCKTUI, "-c", SYSTEM_URI, "stream", name, "vda", "--wait"],
        "blocktui-noguard": [BLOCKTUI, "-c", SYSTEM_URI, "--no-guard", "stream", name, "vda", "--wait"],
        "virsh": ["virsh", "-c", SYSTEM_URI, "blockpull", name, "vda", "--wait"],
    }[tool]
    # Earlier runs' dirty pages must not be written back during this one.
    os.sync()
    launched = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = observer.wait_started(name, "vda", 30)
    ended, outcome = observer.wait_ended(name, "vda", 600)
    _out, err = process.communicate(timeout=60)
    exited = time.monotonic()
    virsh("destroy", name)
    top.unlink(missing_ok=True)
    if outcome != "completed" or process.returncode != 0:
        raise RuntimeError(f"{tool} pull ended {outcome}, exit {process.returncode}: {err.strip()}")
    return {"copy_s": ended - started, "wall_s": exited - launched, "seen_s": exited - ended}


def _convert(settings: Settings) -> float:
    """``qemu-img convert`` of the same chain to a new qcow2: the disk's copy-speed ceiling."""
    top = settings.work / "convert-top.qcow2"
    out = settings.work / "convert-out.qcow2"
    make_overlay(top, base_1g(settings))
    out.unlink(missing_ok=True)
    os.sync()
    t0 = time.monotonic()
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(top), str(out)], check=True)
    took = time.monotonic() - t0
    out.unlink(missing_ok=True)
    top.unlink(missing_ok=True)
    return took


def run_neutrality(settings: Settings, observer: Observer) -> list[Figure]:
    """Rotate blocktui (guarded, as it runs by default on QEMU 7.2, and unguarded) and virsh pulls."""
    base_1g(settings)
    tools = ("blocktui", "virsh", "blocktui-noguard")
    runs: dict[str, list[dict[str, float]]] = {tool: [] for tool in tools}
    for round_ in range(settings.pairs):
        for tool in tools[round_ % 3 :] + tools[: round_ % 3]:
            log(f"throughput: {tool} pull {round_ + 1}/{settings.pairs}")
            runs[tool].append(_pull_with(tool, settings, observer, round_))
    converts = [_convert(settings) for _ in range(2)]
    copy = {tool: statistics.median(r["copy_s"] for r in rs) for tool, rs in runs.items()}
    wall = {tool: statistics.median(r["wall_s"] for r in rs) for tool, rs in runs.items()}
    spread = {
        tool: f"{min(r['copy_s'] for r in rs):.2f}-{max(r['copy_s'] for r in rs):.2f} s"
        for tool, rs in runs.items()
    }
    ceiling = min(converts)
    virsh_rate = GIB / copy["virsh"] / MIB
    figures: list[Figure] = []
    for tool, label in (("blocktui", "guard on (default)"), ("blocktui-noguard", "--no-guard")):
        ratio = copy["virsh"] / copy[tool]
        figures.append(
            Figure(
                NEUTRAL,
                f"blocktui stream --wait, {label} / virsh",
                f"{ratio:.3f} (blocktui {GIB / copy[tool] / MIB:.0f} MiB/s)",
                f"virsh blockpull --wait {virsh_rate:.0f} MiB/s",
                "≥ 0.97",
                ratio >= GOAL_RATIO,
                f"medians of {settings.pairs} rotated pulls each; copy time from the job appearing to its "
                f"completion event, seen by a third libvirt client: blocktui {spread[tool]}, "
                f"virsh {spread['virsh']}; command wall time {wall[tool]:.2f} s vs {wall['virsh']:.2f} s",
                {"runs": runs[tool], "virsh_runs": runs["virsh"], "ratio": ratio},
            )
        )
    figures.append(
        Figure(
            NEUTRAL,
            "qemu-img convert of the same chain",
            f"{GIB / ceiling / MIB:.0f} MiB/s",
            f"blocktui's pull at {ceiling / copy['blocktui'] * 100:.0f} % of it, virsh's at "
            f"{ceiling / copy['virsh'] * 100:.0f} %",
            "copy-speed ceiling (no goal)",
            None,
            "best of 2 runs to a new qcow2, page cache warm as for the pulls; a pull copies in 512 KiB "
            "steps through the running QEMU's block layer",
            {"convert_s": converts},
        )
    )
    return figures


#: Limits the throttle section holds streams to (MiB/s), and the warm-up before measuring.
THROTTLE_LIMITS = (10, 50, 100, 200)
WARMUP = 1.0
#: The mean within this of the limit, and no 2 s window more than GOAL_PEAK over it.
THROTTLE_GOAL_ERROR = 0.01
GOAL_PEAK = 0.01


class Sampler:
    """A third libvirt client reading one job's progress every 10 ms, keeping each change and its time."""

    def __init__(self, observer: Observer, domain: str, disk: str) -> None:
        self.observer, self.domain, self.disk = observer, domain, disk
        self.changes: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            info = self.observer.job(self.domain, self.disk)
            if info and (not self.changes or info["cur"] != self.changes[-1][1]):
                self.changes.append((time.monotonic(), info["cur"]))

    def rates(self, seconds: float) -> tuple[float, float, float, float]:
        """The mean rate over ``seconds`` after ``WARMUP`` from the first progress, and the lowest,
        median and highest of every window of at least 2 s within it, measured change to change."""
        if len(self.changes) < 3:
            raise RuntimeError(f"{self.domain}/{self.disk} barely moved ({len(self.changes)} readings)")
        begin = self.changes[0][0] + WARMUP
        inside = [(t, c) for t, c in self.changes if begin <= t <= begin + seconds]
        windows: list[float] = []
        j = 0
        for i, (ta, ca) in enumerate(inside):
            j = max(j, i + 1)
            while j < len(inside) and inside[j][0] - ta < 2.0:
                j += 1
            if j == len(inside):
                break
            tb, cb = inside[j]
            windows.append((cb - ca) / (tb - ta))
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return (c1 - c0) / (t1 - t0), min(windows), statistics.median(windows), max(windows)


def _base_for(settings: Settings, limit: int) -> Path:
    """A fully written base large enough that a stream at ``limit`` outlasts the measurement."""
    size = -(-int(limit * (WARMUP + settings.throttle_seconds + 4)) // GIB) * GIB
    base = settings.work / f"base-{size // GIB}g.qcow2"
    make_base(base, size)
    return base


def _throttled(
    settings: Settings, observer: Observer, name: str, limit: int, *, ours: bool
) -> dict[str, Any]:
    """Hold one stream to ``limit`` with ``blocktui stream --wait`` (or libvirt alone); what it delivers."""
    top = settings.work / f"{name}-vda.qcow2"
    make_overlay(top, _base_for(settings, limit))
    start_domain(name, [top], settings.work)
    process = None
    try:
        with Sampler(observer, name, "vda") as sampler:
            if ours:
                argv = [
                    BLOCKTUI,
                    "-c",
                    SYSTEM_URI,
                    "stream",
                    name,
                    "vda",
                    "--wait",
                    "--bandwidth",
                    str(limit),
                ]
                process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            else:
                observer.pull(name, "vda", limit)
            observer.wait_started(name, "vda", 30)
            time.sleep(WARMUP + settings.throttle_seconds + 1.0)
        mean, low, middle, high = sampler.rates(settings.throttle_seconds)
    finally:
        if process is not None:
            process.terminate()  # quits as Ctrl-C does: the plan is handed back
            process.wait(30)
        virsh("destroy", name)
        top.unlink(missing_ok=True)
    return {"mean": mean, "low": low, "median": middle, "high": high, "readings": len(sampler.changes)}


def run_throttle(settings: Settings, observer: Observer) -> list[Figure]:
    """Hold a stream to each limit with blocktui and with libvirt alone; compare what each delivers."""
    figures: list[Figure] = []
    for limit_mib in THROTTLE_LIMITS:
        limit = limit_mib * MIB
        log(f"throttle: {limit_mib} MiB/s for {settings.throttle_seconds:.0f} s, blocktui then libvirt alone")
        ours = _throttled(settings, observer, f"{PREFIX}thr{limit_mib}", limit, ours=True)
        direct = _throttled(settings, observer, f"{PREFIX}thr{limit_mib}d", limit, ours=False)
        error, peak = ours["mean"] / limit - 1, ours["high"] / limit - 1
        figures.append(
            Figure(
                THROTTLE,
                f"limit {limit_mib} MiB/s",
                f"{ours['mean'] / MIB:.2f} MiB/s ({error * 100:+.1f} %); 2 s windows "
                f"{(ours['low'] / limit - 1) * 100:+.1f} % to {peak * 100:+.1f} %, "
                f"median {(ours['median'] / limit - 1) * 100:+.1f} %",
                f"libvirt alone: {direct['mean'] / MIB:.2f} MiB/s "
                f"({(direct['mean'] / limit - 1) * 100:+.1f} %), windows median "
                f"{(direct['median'] / limit - 1) * 100:+.1f} %, "
                f"up to {(direct['high'] / limit - 1) * 100:+.1f} %",
                "within 1 %; no 2 s window over +1 %",
                abs(error) <= THROTTLE_GOAL_ERROR and peak <= GOAL_PEAK,
                f"blocktui stream --wait --bandwidth {limit_mib}M; progress read every 10 ms by a third "
                f"libvirt client, over {settings.throttle_seconds:.0f} s after {WARMUP:.0f} s from the first "
                "progress; windows change to change",
                {"limit_mib": limit_mib, "blocktui": ours, "direct": direct},
            )
        )
    return figures

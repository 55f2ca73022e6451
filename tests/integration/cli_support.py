"""Running blocktui as a script does: separate processes, each lab private to the tests that made it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from blocktui.lab import LAB_DIR_ENV


class Cli:
    """Runs ``python -m blocktui`` with a private lab directory."""

    def __init__(self, root: Path, kind: str, *hosts: str) -> None:
        self.root = root
        self.kind = kind
        self.hosts = list(hosts)
        self.env = {
            **os.environ,
            "BLOCKTUI_LAB_DIR": str(root),
            "BLOCKTUI_STATE_DIR": str(root / "state"),
        }

    def run(
        self, *args: str, hosts: bool = True, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run blocktui with ``args`` (``env``: variables to set for this run only)."""
        argv = [sys.executable, "-m", "blocktui", *(self.hosts if hosts else []), *args]
        environment = {**self.env, **(env or {})}
        done = subprocess.run(argv, capture_output=True, text=True, env=environment, timeout=180, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} exited {done.returncode}: {done.stderr}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout)

    def flush(self, domain: str) -> None:
        """Have QEMU write out its cached qcow2 metadata, so qemu-img reads the live image right."""
        self.lab(f"flush({domain!r})")

    def lab(self, call: str, imports: str = "") -> None:
        """Call the lab in a process of its own (the embedded libvirt root is one process's at a time)."""
        code = f"from blocktui.lab import open_lab{imports}; open_lab({self.kind!r}).{call}"
        subprocess.run([sys.executable, "-c", code], env=self.env, check=True, timeout=120)


def private_root(prefix: str) -> Iterator[Path]:
    """A fresh lab directory, under ``$BLOCKTUI_LAB_DIR`` when that is set (each run keeps to its own)."""
    parent = os.environ.get(LAB_DIR_ENV) or "/tmp"
    os.makedirs(parent, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def lab_cli(kind: str, prefix: str, *, disks: int = 2, size: str = "32M") -> Iterator[Cli]:
    """A private lab of one domain (lab-1: by default vda and vdb streamable, vdc alone) of ``kind``
    (``libvirt`` or ``qmp``), reached from separate processes; removed afterwards."""
    for root in private_root(prefix):
        hosts = ("--qmp-dir", str(root / "qmp" / "qmp")) if kind == "qmp" else ("--lab",)
        flags = ["--qmp"] if kind == "qmp" else []
        runner = Cli(root, kind, *hosts)
        runner.run("lab", "up", *flags, "--domains", "1", "--disks", str(disks), "--size", size, hosts=False)
        try:
            yield runner
        finally:
            runner.run("lab", "down", *flags, hosts=False, check=False)

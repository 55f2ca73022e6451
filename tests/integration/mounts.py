"""Small filesystems for fault tests: a tmpfs that fills up, or one mounted read-only (root only)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


class SmallFs:
    """A tmpfs mounted at ``path``; ``resize`` grows (frees space) or shrinks it in place."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def resize(self, size: int) -> None:
        _mount("-o", f"remount,size={size}", str(self.path))

    def fill(self) -> None:
        """Use up every free byte (a file of zeros until the filesystem refuses more)."""
        with (self.path / "filler").open("wb") as filler:
            block = bytes(64 * 1024)
            try:
                while True:
                    filler.write(block)
                    filler.flush()
            except OSError:
                pass  # ENOSPC: full, as wanted


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"mount {' '.join(args)} failed: {done.stderr.strip()}")


def _unmount(path: Path) -> None:
    """Unmount, waiting a little for processes that still hold files there (a QEMU being stopped)."""
    deadline = time.monotonic() + 20
    while subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
        if time.monotonic() > deadline:
            # Detach it anyway so nothing is left mounted; the holder lets go when it exits.
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
            raise RuntimeError(f"{path} was still busy after 20 s; detached it lazily")
        time.sleep(0.2)


@contextmanager
def tmpfs(path: Path, size: int, *, readonly: bool = False) -> Iterator[SmallFs]:
    """A tmpfs of ``size`` bytes at ``path`` for the block; always unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a small tmpfs")
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0755" + (",ro" if readonly else "")
    _mount("-t", "tmpfs", "-o", options, "blocktui-test", str(path))
    try:
        yield SmallFs(path)
    finally:
        _unmount(path)

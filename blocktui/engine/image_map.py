"""The allocation map of an image on this machine: ``qemu-img map -U``, metadata only, never a QMP command.

Safe beside a finishing stream on QEMU 7.2 (it sends QEMU nothing); shared with the running QEMU.
"""

from __future__ import annotations

import json
import subprocess

#: Seconds ``qemu-img map`` may take (it reads metadata only; a huge sparse image takes longer).
MAP_TIMEOUT = 60.0


def allocation_map(path: str) -> list[dict[str, object]]:
    """``qemu-img map`` of the image and its chain; ``-U`` reads it while QEMU has it open."""
    done = subprocess.run(
        ["qemu-img", "map", "-U", "--output=json", path],
        capture_output=True,
        text=True,
        timeout=MAP_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise ValueError(" ".join(done.stderr.split()) or f"qemu-img exited {done.returncode}")
    extents: list[dict[str, object]] = json.loads(done.stdout)
    return extents

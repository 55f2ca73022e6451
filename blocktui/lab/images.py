"""Build qcow2 backing chains with recognisable content, and check them, using qemu-img and qemu-io."""

from __future__ import annotations

import itertools
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from blocktui.core.errors import HostError

#: Byte written over the whole base image; a disk that reads zeros after a stream lost data.
BASE_PATTERN = 0x5A
#: Byte written over the first half of a middle layer, so a three-layer chain differs from two.
MID_PATTERN = 0xC3
#: Byte written over the first MiB of each overlay, so the top layer has data of its own.
TOP_PATTERN = 0x7E


def run_tool(*argv: str) -> str:
    """Run a qemu-img/qemu-io command and return its stdout.

    Raises:
        HostError: the tool is missing or failed; its stderr is the message.
    """
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise HostError(f"{argv[0]} is not installed (Debian: apt install qemu-utils)") from exc
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise HostError(f"{argv[0]} {argv[1]} failed: {message[-1] if message else done.returncode}")
    return done.stdout


#: The most one qemu-io write may cover (it refuses 2 GiB and more).
WRITE_AT_MOST = 1024**3


def write_pattern(path: Path, pattern: int, offset: int, length: int) -> None:
    """Fill ``length`` bytes at ``offset`` of a qcow2 image with one byte value."""
    commands = []
    for start in range(offset, offset + length, WRITE_AT_MOST):
        size = min(WRITE_AT_MOST, offset + length - start)
        commands += ["-c", f"write -P {pattern:#x} {start} {size}"]
    run_tool("qemu-io", "-f", "qcow2", *commands, str(path))


def create_base(path: Path, size: int) -> None:
    """A qcow2 image of ``size`` bytes filled entirely with ``BASE_PATTERN``."""
    run_tool("qemu-img", "create", "-q", "-f", "qcow2", str(path), str(size))
    write_pattern(path, BASE_PATTERN, 0, size)


def create_overlay(path: Path, backing: Path) -> None:
    """A qcow2 overlay over ``backing`` (qcow2), holding nothing of its own yet."""
    run_tool("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(backing), str(path))


def create_standalone(path: Path, size: int) -> None:
    """A qcow2 image with no backing file: nothing to stream."""
    run_tool("qemu-img", "create", "-q", "-f", "qcow2", str(path), str(size))
    write_pattern(path, TOP_PATTERN, 0, min(size, 1024 * 1024))


@dataclass(frozen=True)
class Chain:
    """The images of one lab disk, top first."""

    top: Path
    backing: tuple[Path, ...]


def write_bytes(path: Path, data: bytes, offset: int = 0) -> None:
    """Write ``data`` at ``offset`` of a qcow2 image (qemu-io reads it from a file next to the image)."""
    source = path.with_name(f".{path.name}.bytes")
    source.write_bytes(data)
    try:
        run_tool("qemu-io", "-f", "qcow2", "-c", f"write -s {source} {offset} {len(data)}", str(path))
    finally:
        source.unlink(missing_ok=True)


def create_chain(
    directory: Path,
    stem: str,
    size: int,
    depth: int,
    *,
    top_dir: Path | None = None,
    boot_code: bytes | None = None,
) -> Chain:
    """Create ``depth`` images (1 = standalone) named ``STEM-0.qcow2`` (base) up to the top.

    The top overlay gets a first MiB of its own; a middle layer overrides half the base.

    Args:
        top_dir: where the top image goes (default: ``directory``, with the rest of the chain).
        boot_code: written over the top image's first sector (a boot sector the firmware runs).
    """
    directory.mkdir(parents=True, exist_ok=True)
    top = (top_dir or directory) / f"{stem}.qcow2"
    backing: tuple[Path, ...] = ()
    if depth <= 1:
        create_standalone(top, size)
    else:
        paths = [directory / f"{stem}-{level}.qcow2" for level in range(depth - 1)]
        create_base(paths[0], size)
        for lower, upper in itertools.pairwise(paths):
            create_overlay(upper, lower)
            write_pattern(upper, MID_PATTERN, 0, size // 2)
        create_overlay(top, paths[-1])
        write_pattern(top, TOP_PATTERN, 0, min(size, 1024 * 1024))
        backing = tuple(reversed(paths))
    if boot_code is not None:
        write_bytes(top, boot_code)
    return Chain(top, backing)


def image_info(path: Path) -> dict[str, object]:
    """``qemu-img info --output=json`` of one image (no backing chain walk, no lock needed)."""
    out = run_tool("qemu-img", "info", "-U", "--output=json", str(path))
    info: dict[str, object] = json.loads(out)
    return info


def backing_chain(top: Path) -> tuple[Path, ...]:
    """The backing files below ``top``, nearest first, as the images name them."""
    chain: list[Path] = []
    current = top
    # A bound on the walk guards against a loop in badly made images.
    for _ in range(64):
        info = image_info(current)
        name = info.get("full-backing-filename") or info.get("backing-filename")
        if not name:
            break
        current = Path(str(name))
        chain.append(current)
    return tuple(chain)


def backing_file(path: Path) -> str | None:
    """The backing file an image names, or None when it stands alone."""
    value = image_info(path).get("backing-filename")
    return str(value) if value else None


def flatten_copy(top: Path, dest: Path) -> None:
    """Write what ``top`` reads (through its chain) to a standalone raw file, for later comparison."""
    run_tool("qemu-img", "convert", "-U", "-O", "raw", str(top), str(dest))


def compare(a: Path, b: Path) -> bool:
    """Whether two images read identical (``qemu-img compare``, format probed, shared locks)."""
    done = subprocess.run(
        ["qemu-img", "compare", "-U", str(a), str(b)], capture_output=True, text=True, check=False
    )
    if done.returncode in (0, 1):
        return done.returncode == 0
    raise HostError(f"qemu-img compare failed: {done.stderr.strip()}")


def check(path: Path) -> bool:
    """Whether ``qemu-img check`` finds the image consistent."""
    done = subprocess.run(
        ["qemu-img", "check", "-U", "-q", str(path)], capture_output=True, text=True, check=False
    )
    return done.returncode == 0

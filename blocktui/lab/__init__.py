"""The demo/test lab: real QEMU domains over real qcow2 chains, in a private directory.

Every lab kind (embedded libvirt, bare QMP processes) follows the shape defined here, so tests and
the ``blocktui lab`` command can run the same scenario on either.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from blocktui.core.errors import InvalidInput

if TYPE_CHECKING:
    from blocktui.backends.base import Backend

MIB = 1024 * 1024

#: Environment variable that moves the lab (tests use a short private path per run).
LAB_DIR_ENV = "BLOCKTUI_LAB_DIR"

#: Lab kinds ``open_lab`` knows.
LAB_KINDS = ("libvirt", "qmp")


def lab_root() -> Path:
    """Where the lab keeps its images and state: ``$BLOCKTUI_LAB_DIR`` or the user data dir.

    Keep it short: QEMU and libvirt put UNIX sockets under it, and socket paths are limited to
    108 bytes.
    """
    override = os.environ.get(LAB_DIR_ENV)
    if override:
        return Path(override).expanduser().absolute()
    return Path(platformdirs.user_data_dir("blocktui")) / "lab"


@dataclass(frozen=True)
class DiskSpec:
    """A disk to create in a lab domain.

    Attributes:
        target: the guest-visible name (``vda``).
        size: the virtual size in bytes.
        depth: images in the chain, the top one included; 1 means no backing file.
        overlay_dir: where the top image goes instead of the domain's image directory (fault tests
            put it on a small filesystem); whoever chose it removes it.
        boot_code: bytes written over the top image's first sector, which a libvirt lab domain's
            firmware then boots: a tiny guest program for fault tests.
    """

    target: str
    size: int
    depth: int
    overlay_dir: Path | None = None
    boot_code: bytes | None = None


@dataclass(frozen=True)
class LabDisk:
    """A disk the lab created.

    Attributes:
        backing: the backing images, nearest first; empty for a standalone disk.
    """

    domain: str
    target: str
    top: Path
    backing: tuple[Path, ...]
    size: int


def disk_names(count: int) -> list[str]:
    """``vda``, ``vdb``, ... for ``count`` disks (up to 26)."""
    if not 0 < count <= 26:
        raise ValueError(f"a lab domain has 1 to 26 disks, not {count}")
    return [f"vd{chr(ord('a') + index)}" for index in range(count)]


def default_specs(index: int, disks: int, size: int) -> list[DiskSpec]:
    """The disks ``up`` gives domain number ``index`` (1-based).

    Sizes are staggered within a domain (disk k gets ``size + k*size/4``) because two streams
    finishing at the same moment crash QEMU 7.2. Odd domains get a three-layer chain on their first
    disk; the first domain gets one extra disk with no backing file.
    """
    specs = [
        DiskSpec(target, size + k * (size // 4), 3 if (k == 0 and index % 2 == 1) else 2)
        for k, target in enumerate(disk_names(disks))
    ]
    if index == 1:
        specs.append(DiskSpec(disk_names(disks + 1)[-1], size // 2, 1))
    return specs


class Lab(ABC):
    """One lab: a root directory, its domains and disks, and backends that talk to them.

    A lab object owns whatever connection or processes it needs; ``backend()`` hands out backends
    that reach the same domains. Call ``close()`` (or use it as a context manager) when done; it
    leaves the domains running, ``down()`` removes them.
    """

    kind: str = ""

    def __init__(self, root: Path) -> None:
        self.root = root

    @abstractmethod
    def up(self, domains: int = 3, disks: int = 2, size: int = 64 * MIB) -> list[LabDisk]:
        """Create (or keep) domains ``lab-1``..``lab-N`` with disks from ``default_specs``; all running."""

    @abstractmethod
    def create_domain(self, name: str, disks: list[DiskSpec]) -> list[LabDisk]:
        """Create images for ``disks`` and start a domain ``name`` using them.

        Raises:
            Conflict: a domain with that name already exists.
        """

    @abstractmethod
    def destroy_domain(self, name: str) -> None:
        """Stop and remove one domain and its images; nothing outside the lab root is touched."""

    @abstractmethod
    def down(self) -> None:
        """Remove every lab domain and image."""

    @abstractmethod
    def status(self) -> list[LabDisk]:
        """The disks of the lab domains that exist now."""

    def flush(self, name: str) -> None:
        """Make everything QEMU wrote to ``name``'s images visible to other readers (qemu-img).

        QEMU keeps qcow2 metadata in memory: right after a stream completes, the image on disk already
        names no backing file while its cluster tables are not written yet, so ``qemu-img compare -U``
        reads zeros. Call this before reading a running domain's images from outside.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot flush a domain's images yet")

    @abstractmethod
    def backend(self, readonly: bool = False) -> Backend:
        """A connected backend that sees the lab's domains (sharing the lab's connection if needed)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most labs hold nothing to release
        """Release the lab's connection; domains keep running."""

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_lab(kind: str, root: Path | None = None, *, style: str = "blockdev") -> Lab:
    """Open the lab of ``kind`` (one of ``LAB_KINDS``) at ``root`` (default ``lab_root()/kind``).

    Args:
        style: for the QMP lab, how its QEMUs attach disks (``blocktui.lab.qemu_styles.STYLES``).

    Raises:
        InvalidInput: unknown kind or style.
        HostError: the lab cannot be opened (libvirt or QEMU missing, root locked by another process).
    """
    base = root if root is not None else lab_root() / kind
    if kind == "libvirt":
        # Imported here so a QMP-only install never needs libvirt-python.
        from blocktui.lab.libvirt_lab import LibvirtLab  # noqa: PLC0415

        return LibvirtLab(base)
    if kind == "qmp":
        from blocktui.lab.qmp_lab import QmpLab  # noqa: PLC0415

        return QmpLab(base, style)
    raise InvalidInput(f"unknown lab kind {kind!r}; choose one of {', '.join(LAB_KINDS)}")

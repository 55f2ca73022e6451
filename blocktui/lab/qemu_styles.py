"""The ways people start QEMU with disks, as command lines for the QMP lab.

Each style gives the disks the names that QEMU started that way gives them, so tests see what a
user of such a host sees:

- ``blockdev``: ``-blockdev node-name=vda``, no device (``-machine none``; the lab's default).
- ``drive``: ``-drive if=none,id=drive0``, no device: nodes get automatic names (``#block123``).
- ``drive-device``: the same with ``-device virtio-blk-pci,drive=drive0`` (as people start QEMU).
- ``proxmox``: as Proxmox VE starts a VM: ``-machine q35``, ``drive-scsi0`` on a virtio-scsi
  controller and ``drive-virtio1`` on virtio-blk, ``cache=none,aio=threads,detect-zeroes=on``.
- ``libvirt``: as libvirt does: ``-blockdev`` nodes ``libvirt-N-storage``/``libvirt-N-format`` for
  every image of the chain, ``-device virtio-blk-pci,drive=libvirt-2-format,id=virtio-disk0``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blocktui.core.errors import InvalidInput

STYLES = ("blockdev", "drive", "drive-device", "proxmox", "libvirt")

#: Firmware for the styles with a real machine type: the reset vector runs ``cli; hlt`` so the
#: guest "runs" without using a core (SeaBIOS would spin on a machine shared with other tests).
_HALT_ROM_SIZE = 64 * 1024
_RESET_VECTOR = 0xFFF0
_CLI_HLT_LOOP = bytes((0xFA, 0xF4, 0xEB, 0xFD))  # cli; hlt; jmp back to hlt


def write_halt_rom(path: Path) -> Path:
    """Write (once) a 64 KiB firmware image that halts the CPU at once; return its path."""
    if not path.exists():
        rom = bytearray(b"\xf4" * _HALT_ROM_SIZE)
        rom[_RESET_VECTOR : _RESET_VECTOR + len(_CLI_HLT_LOOP)] = _CLI_HLT_LOOP
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(rom))
    return path


@dataclass(frozen=True)
class StyledDisk:
    """One disk to attach: its images (top first) and the stem its image files are named by."""

    stem: str
    top: Path
    backing: tuple[Path, ...]


def check_style(style: str) -> str:
    """``style`` if the lab knows it.

    Raises:
        InvalidInput: an unknown style.
    """
    if style not in STYLES:
        raise InvalidInput(f"unknown QEMU style {style!r}; choose one of {', '.join(STYLES)}")
    return style


def disk_name(style: str, index: int, stem: str) -> str:
    """The name blocktui lists disk number ``index`` (0-based) under, for ``style``."""
    if style == "blockdev":
        return stem
    if style in ("drive", "drive-device"):
        return f"drive{index}"
    if style == "proxmox":
        return f"drive-scsi{index}" if index % 2 == 0 else f"drive-virtio{index}"
    return f"virtio-disk{index}"


def machine_args(style: str, firmware: Path) -> list[str]:
    """``-machine`` and the controllers the style's devices plug into."""
    if style in ("blockdev", "drive"):
        return ["-machine", "none"]
    machine = "q35" if style == "proxmox" else "pc"
    args = ["-machine", f"{machine},accel=tcg", "-bios", str(firmware)]
    if style == "proxmox":
        args += ["-device", "virtio-scsi-pci,id=scsihw0"]
    return args


def disk_args(style: str, disks: list[StyledDisk]) -> list[str]:
    """The ``-drive``/``-blockdev``/``-device`` arguments that attach ``disks`` in ``style``."""
    args: list[str] = []
    nodes = 0
    for index, disk in enumerate(disks):
        name = disk_name(style, index, disk.stem)
        if style == "blockdev":
            # QEMU opens the backing chain named in the image headers, with implicit node names.
            args += ["-blockdev", f"driver=file,filename={disk.top},node-name={name}-file"]
            args += ["-blockdev", f"driver=qcow2,file={name}-file,node-name={name}"]
        elif style in ("drive", "drive-device"):
            args += ["-drive", f"file={disk.top},if=none,id={name},format=qcow2"]
            if style == "drive-device":
                args += ["-device", f"virtio-blk-pci,drive={name},id=virtio{index}"]
        elif style == "proxmox":
            options = "cache=none,aio=threads,detect-zeroes=on"
            args += ["-drive", f"file={disk.top},if=none,id={name},format=qcow2,{options}"]
            if index % 2 == 0:
                device = f"scsi-hd,bus=scsihw0.0,channel=0,scsi-id=0,lun={index},drive={name},id=scsi{index}"
            else:
                device = f"virtio-blk-pci,drive={name},id=virtio{index}"
            args += ["-device", device]
        else:
            # libvirt numbers every image's nodes, backing images first, and names each backing.
            below: str | None = None
            for path in (*reversed(disk.backing), disk.top):
                nodes += 1
                read_only = path != disk.top
                storage: dict[str, Any] = {
                    "driver": "file",
                    "filename": str(path),
                    "node-name": f"libvirt-{nodes}-storage",
                    "auto-read-only": True,
                    "discard": "unmap",
                }
                fmt: dict[str, Any] = {
                    "node-name": f"libvirt-{nodes}-format",
                    "read-only": read_only,
                    "driver": "qcow2",
                    "file": storage["node-name"],
                    "backing": below,
                }
                args += ["-blockdev", json.dumps(storage), "-blockdev", json.dumps(fmt)]
                below = str(fmt["node-name"])
            args += ["-device", f"virtio-blk-pci,drive={below},id={name}"]
    return args


def blkdebug_args(target: str, top: Path, backing: tuple[Path, ...], error_at: int) -> list[str]:
    """``-blockdev`` nodes for a disk whose deepest image fails every read touching ``error_at``."""
    if not backing:
        raise InvalidInput(f"{target}: a read error needs a backing image to put it in")
    node: dict[str, Any] = {
        "driver": "qcow2",
        "node-name": f"{target}-l{len(backing)}",
        "file": {
            "driver": "blkdebug",
            "image": {"driver": "file", "filename": str(backing[-1])},
            "inject-error": [{"event": "read_aio", "sector": error_at // 512, "errno": 5}],
        },
    }
    args = ["-blockdev", json.dumps(node)]
    below = node["node-name"]
    for level, path in reversed(list(enumerate(backing[:-1], start=1))):
        layer = {"driver": "qcow2", "node-name": f"{target}-l{level}", "backing": below}
        layer["file"] = {"driver": "file", "filename": str(path)}
        args += ["-blockdev", json.dumps(layer)]
        below = str(layer["node-name"])
    top_node = {
        "driver": "qcow2",
        "node-name": target,
        "backing": below,
        "file": {"driver": "file", "filename": str(top)},
    }
    return [*args, "-blockdev", json.dumps(top_node)]

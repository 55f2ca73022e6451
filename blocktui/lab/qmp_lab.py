"""The QMP lab: bare QEMU processes (no guest, no libvirt) over qcow2 chains, one QMP socket each."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from blocktui.backends.base import Backend

if TYPE_CHECKING:
    from blocktui.backends.qmp import QmpBackend
from blocktui.core.errors import Conflict, HostError, InvalidInput
from blocktui.lab import MIB, DiskSpec, Lab, LabDisk, default_specs
from blocktui.lab.images import create_chain
from blocktui.lab.qemu_styles import (
    StyledDisk,
    blkdebug_args,
    check_style,
    disk_args,
    disk_name,
    machine_args,
    write_halt_rom,
)
from blocktui.lab.qmp_monitor import flush_disks, wait_greeted

QEMU = "qemu-system-x86_64"

#: How long a QEMU gets to leave after SIGTERM before it is killed.
STOP_GRACE = 5.0


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class QmpLab(Lab):
    """Plain QEMU processes with no guest OS: each starts in about 40 ms.

    ``style`` says how they attach disks (``-blockdev``, ``-drive``, Proxmox's or libvirt's way), so
    disks get the names QEMU gives them when started that way; ``LabDisk.target`` is that name.

    Layout under ``root``: ``images/<domain>/`` (qcow2 chains), ``qmp/<domain>.qmp`` (the socket
    backends scan), ``spare/<domain>.qmp`` (a second monitor, for a client other than the backend:
    QEMU serves one client per QMP socket), ``run/<domain>.pid`` and ``run/<domain>.json`` (the disks,
    so ``status`` works from another process).
    """

    kind = "qmp"

    def __init__(self, root: Path, style: str = "blockdev") -> None:
        """Open the lab at ``root``; its QEMUs attach their disks in ``style`` (see ``qemu_styles``).

        Raises:
            HostError: QEMU is not installed.
            InvalidInput: an unknown style, or a root too long for socket paths.
        """
        super().__init__(root)
        self.style = check_style(style)
        if shutil.which(QEMU) is None:
            raise HostError(f"{QEMU} is not installed (Debian: apt install qemu-system-x86)")
        self.socket_dir = root / "qmp"
        self.spare_dir = root / "spare"
        self.run_dir = root / "run"
        self.image_dir = root / "images"
        self._backends: list[QmpBackend] = []
        # UNIX socket paths are limited to 108 bytes.
        longest = self.spare_dir / ("x" * 24 + ".qmp")
        if len(str(longest)) > 100:
            raise InvalidInput(
                f"lab root {root} is too long for QMP socket paths; use a shorter BLOCKTUI_LAB_DIR"
            )

    # -- paths ------------------------------------------------------------------------------

    def socket(self, name: str) -> Path:
        """The QMP socket backends use for domain ``name``."""
        return self.socket_dir / f"{name}.qmp"

    def spare_socket(self, name: str) -> Path:
        """A second QMP monitor of the same QEMU, for a client other than the backend."""
        return self.spare_dir / f"{name}.qmp"

    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _manifest(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def _inside(self, path: Path) -> Path:
        """``path``, after checking it lies under the lab root (nothing else is ever removed)."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise HostError(f"refusing to touch {path}: it is outside the lab root {self.root}")
        return resolved

    # -- processes --------------------------------------------------------------------------

    def pid(self, name: str) -> int | None:
        """The pid of domain ``name``'s QEMU, only if that pid still is our QEMU."""
        try:
            pid = int(self._pidfile(name).read_text().strip())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        # The pid may have been reused by another program since: check it is that very QEMU.
        is_ours = (
            bool(argv)
            and argv[0].endswith(QEMU.encode())
            and str(self.socket(name)).encode() in b"".join(argv)
        )
        return pid if is_ours and _alive(pid) else None

    def stop(self, name: str) -> None:
        """Stop domain ``name``'s QEMU (SIGTERM, then SIGKILL after a grace); its images stay."""
        pid = self.pid(name)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _alive(pid) and self.pid(name) == pid:
            os.kill(pid, signal.SIGKILL)

    def _start(
        self, name: str, disks: list[LabDisk], specs: list[DiskSpec], errors: Mapping[str, int]
    ) -> None:
        for directory in (self.socket_dir, self.spare_dir, self.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        argv = [
            QEMU,
            *machine_args(self.style, write_halt_rom(self.run_dir / "halt.rom")),
            "-nodefaults",
            "-display",
            "none",
            "-name",
            name,
            "-qmp",
            f"unix:{self.socket(name)},server=on,wait=off",
            "-qmp",
            f"unix:{self.spare_socket(name)},server=on,wait=off",
            "-pidfile",
            str(self._pidfile(name)),
            "-daemonize",
        ]
        if errors:
            if self.style != "blockdev":
                raise InvalidInput(f"{name}: read errors are injected only in the blockdev style")
            for spec, disk in zip(specs, disks, strict=True):
                error_at = errors.get(spec.target)
                if error_at is None:
                    argv += disk_args("blockdev", [StyledDisk(spec.target, disk.top, disk.backing)])
                else:
                    argv += blkdebug_args(spec.target, disk.top, disk.backing, error_at)
        else:
            styled = [StyledDisk(spec.target, d.top, d.backing) for spec, d in zip(specs, disks, strict=True)]
            argv += disk_args(self.style, styled)
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            raise HostError(
                f"QEMU for lab domain {name} did not start: {lines[-1] if lines else done.returncode}"
            )

    # -- Lab API ----------------------------------------------------------------------------

    def create_domain(
        self, name: str, disks: list[DiskSpec], *, read_error_at: Mapping[str, int] | None = None
    ) -> list[LabDisk]:
        """Create images for ``disks`` and start a QEMU named ``name`` using them.

        Args:
            read_error_at: for fault tests, ``{target: offset}``: that disk's deepest backing image
                fails every read that touches this byte offset of its file with EIO.

        Raises:
            Conflict: a domain with that name already exists.
        """
        if self.pid(name) is not None or self._manifest(name).exists():
            raise Conflict(f"lab domain {name} already exists; 'blocktui lab down' removes it")
        created: list[LabDisk] = []
        for index, spec in enumerate(disks):
            chain = create_chain(
                self.image_dir / name,
                spec.target,
                spec.size,
                spec.depth,
                top_dir=spec.overlay_dir,
                boot_code=spec.boot_code,
            )
            target = disk_name(self.style, index, spec.target)
            created.append(LabDisk(name, target, chain.top, chain.backing, spec.size))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        manifest = [
            {"target": d.target, "top": str(d.top), "backing": [str(p) for p in d.backing], "size": d.size}
            for d in created
        ]
        self._manifest(name).write_text(json.dumps(manifest))
        self._start(name, created, disks, read_error_at or {})
        wait_greeted(name, self.spare_socket(name))
        return created

    def _disks(self, name: str) -> list[LabDisk]:
        try:
            manifest = json.loads(self._manifest(name).read_text())
        except (OSError, ValueError):
            return []
        return [
            LabDisk(
                name, str(d["target"]), Path(d["top"]), tuple(Path(p) for p in d["backing"]), int(d["size"])
            )
            for d in manifest
        ]

    def _names(self) -> list[str]:
        if not self.run_dir.is_dir():
            return []
        return sorted(p.stem for p in self.run_dir.glob("*.json"))

    def up(self, domains: int = 3, disks: int = 2, size: int = 64 * MIB) -> list[LabDisk]:
        result: list[LabDisk] = []
        for index in range(1, domains + 1):
            name = f"lab-{index}"
            if self.pid(name) is not None:
                result.extend(self._disks(name))
                continue
            self.destroy_domain(name)  # leftovers of a QEMU that died
            result.extend(self.create_domain(name, default_specs(index, disks, size)))
        return result

    def destroy_domain(self, name: str) -> None:
        self.stop(name)
        for path in (self.socket(name), self.spare_socket(name), self._pidfile(name), self._manifest(name)):
            self._inside(path).unlink(missing_ok=True)
        images = self.image_dir / name
        if images.exists():
            shutil.rmtree(self._inside(images))

    def down(self) -> None:
        names = set(self._names())
        if self.run_dir.is_dir():
            names.update(p.stem for p in self.run_dir.glob("*.pid"))
        for name in sorted(names):
            self.destroy_domain(name)
        for directory in (self.socket_dir, self.spare_dir, self.run_dir, self.image_dir):
            if directory.is_dir():
                shutil.rmtree(self._inside(directory))

    def status(self) -> list[LabDisk]:
        return [disk for name in self._names() if self.pid(name) is not None for disk in self._disks(name)]

    def flush(self, name: str) -> None:
        """Make QEMU write out ``name``'s cached qcow2 metadata so qemu-img reads what the guest would.

        Goes through the spare monitor (the backend holds the primary one) with HMP ``qemu-io flush``
        on each disk's top node.

        Raises:
            HostError: the QEMU is not running or its spare monitor is taken.
        """
        if self.pid(name) is None:
            return  # nothing cached: the images on disk are all there is
        targets = [disk.target for disk in self._disks(name)]
        asyncio.run(flush_disks(name, self.spare_socket(name), targets))

    def kill(self, name: str) -> None:
        """SIGKILL domain ``name``'s QEMU, as a crash would (fault tests); its images stay."""
        pid = self.pid(name)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_GRACE
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)

    def backend(self, readonly: bool = False) -> Backend:
        """A connected backend over every lab QEMU's primary socket (the spare one if that is taken).

        QEMU serves one client per QMP socket, so at most two backends from this lab can be
        connected at once.

        Raises:
            Conflict: two backends from this lab are connected already.
        """
        # Imported here: the lab package must load without qemu.qmp for the libvirt lab.
        from blocktui.backends.qmp import QmpBackend  # noqa: PLC0415

        self._backends = [b for b in self._backends if b.connected]
        taken = {b.uri for b in self._backends}
        for directory in (self.socket_dir, self.spare_dir):
            directory.mkdir(parents=True, exist_ok=True)
            # The lab's sockets have no other user by design: hold them, for events.
            backend = QmpBackend(directory=directory, readonly=readonly, hold=True)
            if backend.uri not in taken:
                backend.connect()
                self._backends.append(backend)
                return backend
        raise Conflict("both QMP monitors of the lab QEMUs are in use; close a backend first")

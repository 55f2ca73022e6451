"""The libvirt lab: QEMU domains on the embedded driver (``qemu:///embed?root=DIR``), no daemon needed.

Facts that shape it (measured with libvirt 9.0 / QEMU 7.2):

* A process can open only one embedded root in its lifetime: after ``qemu:///embed?root=A`` was opened,
  opening ``root=B`` fails even once A is closed. The same root can be opened any number of times (the
  connections share one driver), and reopened after closing.
* Another process cannot open a root this one holds (the driver's pid file is locked); it fails at once.
* QEMU processes outlive the process that started them; the next open of the root re-attaches to them.

So a test run uses one lab root for the whole session, and tests create their own domains in it.
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import shutil
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from blocktui.backends.libvirt import LibvirtBackend, embedded_root, map_error, steady_cpu
from blocktui.core.errors import Conflict, HostError, NotFound
from blocktui.lab import LAB_DIR_ENV, MIB, DiskSpec, Lab, LabDisk, default_specs, lab_root
from blocktui.lab.images import backing_chain, create_chain, image_info

import libvirt  # isort: skip - after blocktui.backends.libvirt, which keeps libvirt's log off stderr

#: UNIX socket paths hold at most 107 bytes. The deepest socket is the QEMU monitor,
#: ``ROOT/lib/qemu/domain-ID-NAME/monitor.sock`` with NAME cut to 20 characters: 56 bytes below the root
#: for IDs up to 99999.
MAX_ROOT_LENGTH = 107 - len("/lib/qemu/domain-99999-") - 20 - len("/monitor.sock")

#: Lab domains need no guest: a little RAM for the firmware, which then halts for want of a boot disk.
MEMORY_MIB = 64

#: Lab domain name prefix used by ``up``.
PREFIX = "lab-"


#: Errors that mean a domain is already stopped or removed (what ``destroy_domain`` wants anyway).
_ALREADY_GONE = frozenset(
    {libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_INVALID_DOMAIN}
)


def lab_uri(root: Path) -> str:
    """The embedded-driver URI for a lab root."""
    return f"qemu:///embed?root={root}"


def can_open(root: Path) -> bool:
    """Whether this process could open the lab at ``root`` now.

    False when this process already holds another embedded root, or another process holds this one
    (libvirt keeps a write lock on byte 0 of ``run/qemu/driver.pid``). Choose a root with this *before*
    opening: a failed open leaves libvirt's embedded driver unusable for the rest of the process.
    """
    held = embedded_root()
    if held is not None:
        return held == str(root.absolute())
    pid_file = root / "run" / "qemu" / "driver.pid"
    try:
        fd = os.open(pid_file, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        # Safe to close afterwards only because this process holds no lock on the file (checked above):
        # closing any descriptor drops every fcntl lock the process has on it.
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _qemu_conf() -> str:
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    return (
        "# Written by blocktui's lab. QEMU runs as the user who owns the lab images:\n"
        "# as another user it could not open /dev/kvm, and libvirt would re-probe QEMU on every start.\n"
        f"user = {_conf_string(user)}\n"
        f"group = {_conf_string(group)}\n"
        "# No virtlogd daemon: QEMU's output goes to a file under the root.\n"
        'stdio_handler = "file"\n'
        "# Same user owns everything here, so there is nothing to relabel or remember.\n"
        'security_driver = "none"\n'
        "remember_owner = 0\n"
    )


def _conf_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _kvm_usable() -> bool:
    """Whether QEMU, running as this user, can use KVM (else the lab falls back to TCG)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def lab_domain_xml(name: str, virt_type: str, disks: list[tuple[str, Path]]) -> str:
    """A lab domain (no guest: the firmware halts) with one virtio qcow2 disk per (target, top image)."""
    devices = "\n".join(
        f"    <disk type='file' device='disk'>\n"
        f"      <driver name='qemu' type='qcow2'/>\n"
        f"      <source file={quoteattr(str(top))}/>\n"
        f"      <target dev={quoteattr(target)} bus='virtio'/>\n"
        f"    </disk>"
        for target, top in disks
    )
    # rebootTimeout -1: the firmware halts after "no bootable device" instead of retrying every minute,
    # so an idle lab domain costs next to no CPU.
    return f"""<domain type={quoteattr(virt_type)}>
  <name>{escape(name)}</name>
  <memory unit='MiB'>{MEMORY_MIB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <bios rebootTimeout='-1'/>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
{devices}
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


class LibvirtLab(Lab):
    """Lab domains on the embedded libvirt driver under ``root``.

    The lab holds one connection for its own work. ``backend()`` opens another connection to the same
    root (allowed within one process; both share the driver), so each backend owns its event
    callbacks and can be closed on its own.
    """

    kind = "libvirt"

    def __init__(self, root: Path | None = None) -> None:
        root = (root if root is not None else lab_root() / self.kind).absolute()
        length = len(os.fsencode(root))
        if length > MAX_ROOT_LENGTH:
            raise HostError(
                f"lab root {root} is too long ({length} bytes; at most {MAX_ROOT_LENGTH}): QEMU's sockets "
                f"live under it; set {LAB_DIR_ENV} to a short directory of yours, such as ~/btl"
            )
        super().__init__(root)
        self.uri = lab_uri(root)
        self.images = root / "img"
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "etc" / "qemu.conf").write_text(_qemu_conf())
        self.virt_type = "kvm" if _kvm_usable() else "qemu"
        self._backend = LibvirtBackend(self.uri, reconnect=False)
        self._backend.connect()
        self._conn = self._backend.libvirt_connection()

    def close(self) -> None:
        """Close the lab's connection; its domains keep running."""
        self._backend.close()

    def backend(self, readonly: bool = False) -> LibvirtBackend:
        """A connected backend on the lab root (its own connection; close it when done)."""
        backend = LibvirtBackend(self.uri, readonly=readonly, reconnect=False)
        backend.connect()
        return backend

    def _domain(self, name: str) -> libvirt.virDomain | None:
        try:
            return self._conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise map_error(exc, f"lab: cannot look up {name!r}") from exc

    def create_domain(self, name: str, disks: list[DiskSpec]) -> list[LabDisk]:
        """Create the images and define and start a persistent domain using them."""
        if self._domain(name) is not None:
            raise Conflict(f"lab: domain {name!r} already exists; destroy it first")
        directory = self._image_dir(name)
        if directory.exists():
            shutil.rmtree(directory)
        created: list[LabDisk] = []
        for spec in disks:
            chain = create_chain(
                directory,
                spec.target,
                spec.size,
                spec.depth,
                top_dir=spec.overlay_dir,
                boot_code=spec.boot_code,
            )
            created.append(LabDisk(name, spec.target, chain.top, chain.backing, spec.size))
        xml = lab_domain_xml(name, self.virt_type, [(disk.target, disk.top) for disk in created])
        try:
            with steady_cpu():
                dom = self._conn.defineXML(xml)
                dom.create()
        except libvirt.libvirtError as exc:
            raise map_error(exc, f"lab: cannot start domain {name!r}") from exc
        return created

    def up(self, domains: int = 3, disks: int = 2, size: int = 64 * MIB) -> list[LabDisk]:
        """Make sure ``lab-1``..``lab-N`` exist and run; existing ones are kept as they are."""
        for index in range(1, domains + 1):
            name = f"{PREFIX}{index}"
            dom = self._domain(name)
            if dom is None:
                self.create_domain(name, default_specs(index, disks, size))
            elif not dom.isActive():
                try:
                    with steady_cpu():
                        dom.create()
                except libvirt.libvirtError as exc:
                    raise map_error(exc, f"lab: cannot start domain {name!r}") from exc
        return self.status()

    def destroy_domain(self, name: str) -> None:
        """Stop and undefine ``name`` and delete its images (only under the lab root)."""
        dom = self._domain(name)
        if dom is not None:
            # Undefine first: a running domain then becomes transient and vanishes when it stops, so
            # a domain that stops on its own in between is not an error.
            for step in (dom.undefine, dom.destroy):
                try:
                    step()
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() not in _ALREADY_GONE:
                        raise map_error(exc, f"lab: cannot remove domain {name!r}") from exc
        directory = self._image_dir(name)
        if directory.exists():
            shutil.rmtree(directory)

    def down(self) -> None:
        """Remove every domain of the lab root and every lab image."""
        try:
            names = [dom.name() for dom in self._conn.listAllDomains(0)]
        except libvirt.libvirtError as exc:
            raise map_error(exc, "lab: cannot list domains") from exc
        for name in names:
            self.destroy_domain(name)
        if self.images.exists():
            shutil.rmtree(self.images)

    def flush(self, name: str) -> None:
        """Stop and continue the domain: stopping makes QEMU drain and flush every image it has open."""
        dom = self._domain(name)
        if dom is None:
            raise NotFound(f"lab: no domain {name!r}")
        try:
            state, _reason = dom.state()
            if state == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
                dom.suspend()
            elif dom.isActive():
                dom.suspend()
                dom.resume()
        except libvirt.libvirtError as exc:
            raise map_error(exc, f"lab: cannot flush domain {name!r}") from exc

    def status(self) -> list[LabDisk]:
        """The disks of the domains in the lab root, with chains read from the images themselves."""
        found: list[LabDisk] = []
        for domain in self._backend.list_domains():
            for disk in domain.disks:
                if disk.source is None:
                    continue
                top = Path(disk.source)
                size = int(str(image_info(top)["virtual-size"]))
                found.append(LabDisk(domain.name, disk.target, top, backing_chain(top), size))
        return found

    def _image_dir(self, name: str) -> Path:
        directory = (self.images / name).resolve()
        # A domain name such as "../x" must never lead the lab outside its root.
        if self.images.resolve() not in directory.parents:
            raise HostError(f"lab: domain name {name!r} cannot be used as a directory name")
        return directory

"""The fleet lab: N hypervisors on this machine, each reachable only over SSH with a generated key.

Host ``fleet-K`` is a Linux user ``blocktui-fleet-K`` with a session-mode libvirtd of its own and
an sshd of its own on ``127.0.1.K`` (any 127/8 address is this machine's loopback), so each host
has its own address, can be cut off alone (stop its sshd, freeze its daemon, drop its packets)
and reads as a host of its own in the dashboard. blocktui reaches it as libvirt reaches any
remote host: ``qemu+ssh://blocktui-fleet-K@127.0.1.K:PORT/session?command=ROOT/ssh``. That
``ssh`` is a two-line wrapper running ssh with the fleet's own configuration (its key, its
known_hosts with the host key it generated, batch mode): nothing in root's ``~/.ssh`` or the
system's sshd configuration is read or changed. Everything needs root, as users are created.

The fleet root is ``$BLOCKTUI_LAB_DIR/fleet``, else ``/var/lib/blocktui-fleet``: every folder
above it must be open to other users, since each host's home (its images) lies below it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from blocktui.backends.libvirt import LibvirtBackend, map_error
from blocktui.core.errors import HostError, InvalidInput, NotFound
from blocktui.lab import LAB_DIR_ENV, MIB, LabDisk
from blocktui.lab.fleet_firewall import dropping, remove_chain
from blocktui.lab.fleet_host import (
    FleetHost,
    daemon_pid,
    ensure_user,
    free_port,
    give_to_user,
    remove_host_files,
    sshd_pid,
    start_daemon,
    start_sshd,
    stop_host,
    stop_sshd,
)
from blocktui.lab.images import backing_chain, create_chain, image_info, run_tool
from blocktui.lab.libvirt_lab import lab_domain_xml

import libvirt  # isort: skip - after blocktui.backends.libvirt, which keeps libvirt's log off stderr

T = TypeVar("T")

#: Where the fleet lives when ``$BLOCKTUI_LAB_DIR`` does not say.
DEFAULT_ROOT = Path("/var/lib/blocktui-fleet")
#: User names are this plus the host's number.
USER_PREFIX = "blocktui-fleet-"
#: Host names (``fleet-1``); the ``--fleet`` hosts and ``status`` use them.
HOST_PREFIX = "fleet-"
#: Lab domain names, the same on every host (``vm-1``): a name alone is ambiguous across the fleet.
DOMAIN_PREFIX = "vm-"
MAX_HOSTS = 50
#: The deepest socket is QEMU's monitor, HOME/.config/libvirt/qemu/lib/domain-ID-NAME/monitor.sock
#: (the lab's domain names are short), and UNIX socket paths hold at most 107 bytes.
MAX_ROOT_LENGTH = 107 - len("/fleet-50/home/.config/libvirt/qemu/lib/domain-99999-vm-99/monitor.sock")
STATE_FILE = "fleet.json"
#: Held by whoever brings a fleet up and uses it (the tests, the bench): the default user names,
#: the 127.0.1.K addresses and the two cores are the machine's. One fixed name all of them know.
FLEET_LOCK = Path("/tmp/blocktui-fleet.lock")  # noqa: S108


def fleet_root() -> Path:
    """``$BLOCKTUI_LAB_DIR/fleet``, else ``DEFAULT_ROOT``."""
    override = os.environ.get(LAB_DIR_ENV)
    return Path(override).expanduser().absolute() / "fleet" if override else DEFAULT_ROOT


@dataclass(frozen=True)
class HostStatus:
    """One fleet host as ``status`` reports it; ``sshd_pid``/``daemon_pid`` are None when not running."""

    name: str
    uri: str
    user: str
    address: str
    port: int
    sshd_pid: int | None
    daemon_pid: int | None
    disks: tuple[LabDisk, ...]

    def as_json(self) -> dict[str, Any]:
        """The JSON object ``lab fleet status --json`` prints for this host."""
        record = asdict(self)
        record["disks"] = [
            {**asdict(d), "top": str(d.top), "backing": [str(p) for p in d.backing]} for d in self.disks
        ]
        return record


class FleetLab:
    """The fleet under ``root``: its hosts, their keys, and what ``up`` made (in ``fleet.json``)."""

    def __init__(self, root: Path | None = None, *, user_prefix: str = USER_PREFIX) -> None:
        self.root = (root if root is not None else fleet_root()).absolute()
        self.user_prefix = user_prefix
        self.ssh_command = self.root / "ssh"
        self._client_key = self.root / "id_ed25519"
        self._host_key = self.root / "host_key"

    # -- what exists --------------------------------------------------------------------------

    def _read_state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads((self.root / STATE_FILE).read_text())
        except FileNotFoundError:
            return {"hosts": []}
        except (OSError, ValueError) as exc:
            raise HostError(f"fleet: cannot read {self.root / STATE_FILE}: {exc}") from exc
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        path = self.root / STATE_FILE
        path.with_suffix(".tmp").write_text(json.dumps(state, indent=2))
        path.with_suffix(".tmp").replace(path)

    def hosts(self) -> list[FleetHost]:
        """The hosts ``up`` made (none before it, or after ``down``)."""
        return [self._host_of(h) for h in self._read_state()["hosts"]]

    def _host_of(self, record: dict[str, Any]) -> FleetHost:
        return FleetHost(
            record["name"], record["user"], record["address"], record["port"], self.root / record["name"]
        )

    def host(self, name: str) -> FleetHost:
        """The host called ``name``.

        Raises:
            NotFound: the fleet has no such host.
        """
        for host in self.hosts():
            if host.name == name:
                return host
        raise NotFound(f"fleet: no host {name!r} in {self.root}; 'blocktui lab fleet status' lists them")

    def uris(self) -> list[str]:
        """Every host's libvirt URI, in host order."""
        return [host.uri(self.ssh_command) for host in self.hosts()]

    def status(self) -> list[HostStatus]:
        """Every host with its processes and disks, read from this machine (no host is asked)."""
        disks = {h["name"]: h.get("disks", []) for h in self._read_state()["hosts"]}
        return [
            HostStatus(
                name=host.name,
                uri=host.uri(self.ssh_command),
                user=host.user,
                address=host.address,
                port=host.port,
                sshd_pid=sshd_pid(host),
                daemon_pid=daemon_pid(host),
                disks=tuple(_disk(d) for d in disks[host.name]),
            )
            for host in self.hosts()
        ]

    # -- up and down --------------------------------------------------------------------------

    def up(self, hosts: int = 3, domains: int = 2, size: int = 64 * MIB) -> list[HostStatus]:
        """Make sure hosts ``fleet-1``..``fleet-N`` run with domains ``vm-1``..``vm-M`` each.

        What exists is kept (a second ``up`` only starts what stopped and adds what is missing).

        Raises:
            InvalidInput: not root, or too many hosts.
            HostError: a piece does not start (sshd missing, a user of that name not this fleet's).
        """
        if os.geteuid() != 0:
            raise InvalidInput("the fleet lab needs root: it creates users and starts sshd")
        if not 0 < hosts <= MAX_HOSTS:
            raise InvalidInput(f"the fleet lab has 1 to {MAX_HOSTS} hosts, not {hosts}")
        self._prepare_root()
        state = self._read_state()
        known = {h["name"]: h for h in state["hosts"]}
        for number in range(1, hosts + 1):
            name = f"{HOST_PREFIX}{number}"
            record = known.get(name) or {"name": name, "user": f"{self.user_prefix}{number}"}
            if name not in known:
                record["address"] = f"127.0.1.{number}"
                record["port"] = free_port(record["address"])
            host = self._host_of(record)
            host.directory.mkdir(exist_ok=True)
            host.directory.chmod(0o755)
            # Recorded once its user is known to be this fleet's (another fleet's user of that
            # name raises here), and at once, so that an up failing later can still be brought down.
            ensure_user(host)
            known[name] = record
            state["hosts"] = sorted(known.values(), key=lambda h: int(h["name"].removeprefix(HOST_PREFIX)))
            self._write_state(state)
        self._write_ssh_files()
        wanted = [h for h in self.hosts() if int(h.name.removeprefix(HOST_PREFIX)) <= hosts]
        made = _in_parallel({h.name: partial(self._host_up, h, domains, size) for h in wanted})
        for record in state["hosts"]:
            if record["name"] in made:
                record["disks"] = made[record["name"]]
        self._write_state(state)
        return self.status()

    def down(self) -> None:
        """Stop every host, remove its user and files, and the fleet root; safe when nothing is up."""
        hosts = self.hosts()
        _in_parallel({h.name: partial(stop_host, h) for h in hosts})
        for host in hosts:
            remove_host_files(host)
        for name in (STATE_FILE, "ssh", "ssh_config", "known_hosts", "host_key", "host_key.pub"):
            (self.root / name).unlink(missing_ok=True)
        for name in ("id_ed25519", "id_ed25519.pub"):
            (self.root / name).unlink(missing_ok=True)
        remove_chain(self.root)  # packets a killed test still drops
        if self.root.exists() and not any(self.root.iterdir()):
            self.root.rmdir()

    def _prepare_root(self) -> None:
        length = len(os.fsencode(self.root))
        if length > MAX_ROOT_LENGTH:
            raise InvalidInput(
                f"fleet root {self.root} is too long ({length} bytes; at most {MAX_ROOT_LENGTH}): QEMU's "
                f"sockets live under it; set {LAB_DIR_ENV} to a short directory such as /tmp/btl"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        closed = [p for p in (self.root, *self.root.parents) if not p.stat().st_mode & 0o001]
        if closed:
            raise InvalidInput(
                f"fleet root {self.root} is below {closed[0]}, which other users cannot enter, and each "
                f"host's user keeps its images below the root; set {LAB_DIR_ENV} to a directory "
                "such as /tmp/btl"
            )
        for key in (self._client_key, self._host_key):
            if not key.exists():
                run_tool("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet", "-f", str(key))

    def _write_ssh_files(self) -> None:
        """The ssh wrapper libvirt runs, its configuration, and the hosts' keys as known."""
        public = " ".join(self._host_key.with_suffix(".pub").read_text().split()[:2])
        (self.root / "known_hosts").write_text("".join(f"{h.name} {public}\n" for h in self.hosts()))
        config = self.root / "ssh_config"
        config.write_text(
            "# Written by blocktui's fleet lab, for its own hosts only.\n"
            + "".join(h.ssh_config() for h in self.hosts())
            + "Host *\n"
            f"  IdentityFile {self._client_key}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.root / 'known_hosts'}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking yes\n"
            # Never a prompt: a host that wants a password is refused and says so.
            "  BatchMode yes\n"
            "  ConnectTimeout 10\n"
        )
        self.ssh_command.write_text(f'#!/bin/sh\nexec ssh -F {shlex.quote(str(config))} "$@"\n')
        self.ssh_command.chmod(0o755)

    def _host_up(self, host: FleetHost, domains: int, size: int) -> list[dict[str, Any]]:
        start_daemon(host)
        start_sshd(host, self._host_key, self._client_key)
        with self._connection(host) as conn:
            made = [
                _ensure_domain(conn, host, f"{DOMAIN_PREFIX}{index}", size + index * (size // 4))
                for index in range(1, domains + 1)
            ]
        return [{**asdict(d), "top": str(d.top), "backing": [str(p) for p in d.backing]} for d in made]

    # -- acting on a host ---------------------------------------------------------------------

    def cut_off(self, host_name: str) -> None:
        """Stop a host's sshd and its ssh sessions: the host is gone for its clients until ``revive``."""
        stop_sshd(self.host(host_name))

    @contextmanager
    def dropping(self, host_name: str) -> Iterator[None]:
        """Drop every packet to and from a host's sshd for the block (its clients hear nothing).

        Raises:
            HostError: iptables refuses the rules (``fleet_firewall.firewall_usable`` says why).
        """
        with dropping(self.root, self.host(host_name)):
            yield

    def revive(self, host_name: str) -> None:
        """Start what stopped on a host (its sshd, its libvirtd) and wake a daemon held stopped."""
        host = self.host(host_name)
        daemon = daemon_pid(host)
        if daemon is not None:
            os.kill(daemon, signal.SIGCONT)
        start_daemon(host)
        start_sshd(host, self._host_key, self._client_key)

    def recreate_domain(self, host_name: str, domain: str) -> LabDisk:
        """Remove ``domain`` on a host with its images and make it anew (a fresh chain to stream)."""
        host = self.host(host_name)
        old = next(d for d in self.status() if d.name == host_name).disks
        size = next((d.size for d in old if d.domain == domain), None)
        if size is None:
            raise NotFound(f"fleet: {host_name} has no domain {domain!r}")
        with self._connection(host) as conn:
            try:
                dom = conn.lookupByName(domain)
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            except libvirt.libvirtError as exc:
                raise map_error(exc, f"fleet: cannot remove {domain} on {host_name}") from exc
            shutil.rmtree(host.images / domain, ignore_errors=True)
            return _ensure_domain(conn, host, domain, size)

    def _connection(self, host: FleetHost) -> _Connection:
        return _Connection(host.uri(self.ssh_command))

    def flush(self, host_name: str, domain: str) -> None:
        """Make what QEMU wrote to a domain's images readable from outside (pause, then resume)."""
        with self._connection(self.host(host_name)) as conn:
            try:
                dom = conn.lookupByName(domain)
                dom.suspend()
                dom.resume()
            except libvirt.libvirtError as exc:
                raise map_error(exc, f"fleet: cannot flush {domain} on {host_name}") from exc


class _Connection:
    """A short-lived connection to one host over its ssh URI, closed on leaving the block."""

    def __init__(self, uri: str) -> None:
        self._backend = LibvirtBackend(uri, reconnect=False)

    def __enter__(self) -> libvirt.virConnect:
        self._backend.connect()
        return self._backend.libvirt_connection()

    def __exit__(self, *exc_info: object) -> None:
        self._backend.close()


def _ensure_domain(conn: libvirt.virConnect, host: FleetHost, name: str, size: int) -> LabDisk:
    """Domain ``name`` on ``host``, running over a two-layer chain on vda (made if missing)."""
    top = host.images / name / "vda.qcow2"
    try:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            chain = create_chain(host.images / name, "vda", size, 2)
            give_to_user(host, host.images)
            dom = conn.defineXML(lab_domain_xml(name, "qemu", [("vda", chain.top)]))
        if not dom.isActive():
            dom.create()
    except libvirt.libvirtError as exc:
        raise map_error(exc, f"fleet: cannot start {name} on {host.name}") from exc
    # As the images are now: an earlier up may have made them another size, a stream pulled them.
    return LabDisk(name, "vda", top, backing_chain(top), int(str(image_info(top)["virtual-size"])))


def _disk(record: dict[str, Any]) -> LabDisk:
    backing = tuple(Path(p) for p in record["backing"])
    return LabDisk(record["domain"], record["target"], Path(record["top"]), backing, record["size"])


def _in_parallel(works: dict[str, Callable[[], T]]) -> dict[str, T]:
    """Run each host's work on a thread of its own; the results by host name (the first error raised)."""
    if not works:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(works), 8)) as pool:
        futures = {name: pool.submit(work) for name, work in works.items()}
        return {name: future.result() for name, future in futures.items()}

"""One fleet host: a Linux user of its own, an sshd on a loopback address, a session libvirtd.

Each host is reachable only over SSH with the key the fleet generated, so blocktui talks to it as
to a remote hypervisor (``qemu+ssh://USER@ADDRESS:PORT/session``). Its libvirtd runs as the
host's user in session mode, so its QEMUs run as that user too, on images in that user's home.
Everything here needs root (creating users, starting sshd as root so it can switch to them).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from blocktui.core.errors import HostError
from blocktui.lab.system import START_TIMEOUT, SystemDaemonError, answering, stop_process, wait_for

SSHD = "/usr/sbin/sshd"
#: sshd refuses to start without its privilege separation directory (a Debian package creates it
#: at boot; a container may lack it).
PRIVSEP_DIR = Path("/run/sshd")
#: The session daemon's environment: no XDG_RUNTIME_DIR, so its socket is in ``~/.cache/libvirt``,
#: where ``virt-ssh-helper`` (started by sshd, without a login session) looks for it as well.
DAEMON_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

_SESSION_QEMU_CONF = (
    "# Written by blocktui's fleet lab.\n"
    "# No virtlogd: QEMU's output goes to a file in the host's home.\n"
    'stdio_handler = "file"\n'
    "# One user owns the daemon, QEMU and the images: nothing to relabel.\n"
    'security_driver = "none"\n'
)


@dataclass(frozen=True)
class FleetHost:
    """Where one fleet host lives and how to reach it.

    Attributes:
        name: the host's name in the fleet (``fleet-1``).
        user: its Linux user, which runs its libvirtd and QEMUs.
        address: the loopback address its sshd listens on (``127.0.1.1``).
        port: that sshd's port.
        directory: its folder in the fleet root (sshd's files; the user's home below it).
    """

    name: str
    user: str
    address: str
    port: int
    directory: Path

    @property
    def home(self) -> Path:
        """The user's home: its libvirt state and its images."""
        return self.directory / "home"

    @property
    def images(self) -> Path:
        """Where the host's disk images live (readable and writable by its QEMUs)."""
        return self.home / "img"

    @property
    def daemon_socket(self) -> Path:
        """The session libvirtd's socket."""
        return self.home / ".cache" / "libvirt" / "libvirt-sock"

    @property
    def daemon_pid_file(self) -> Path:
        """Where the session libvirtd writes its process id."""
        return self.home / ".cache" / "libvirt" / "libvirtd.pid"

    @property
    def sshd_pid_file(self) -> Path:
        """Where this host's sshd writes its process id."""
        return self.directory / "sshd.pid"

    def uri(self, ssh_command: Path) -> str:
        """The libvirt URI of this host, with ``ssh_command`` as the ssh libvirt runs.

        The host part is the host's name, which the fleet's ssh configuration maps to its address
        and port: the dashboard then labels the host ``fleet-1``.
        """
        return f"qemu+ssh://{self.user}@{self.name}/session?command={ssh_command}"

    def ssh_config(self) -> str:
        """This host's block of the fleet's ssh configuration."""
        name, address, port = self.name, self.address, self.port
        return f"Host {name}\n  HostName {address}\n  Port {port}\n  HostKeyAlias {name}\n"


def free_port(address: str) -> int:
    """A TCP port nobody listens on at ``address`` now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


def read_pid(path: Path) -> int | None:
    """The process id in a pid file, if the file exists and that process still runs.

    Only a start: the number may be stale (the fleet root outlives reboots) or written by the
    host's user (libvirtd's pid file is in its home); ``sshd_pid`` and ``daemon_pid`` check it.
    """
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid > 0 and Path(f"/proc/{pid}").exists() else None


def _is_process(pid: int, name: str, uid: int, marker: bytes = b"") -> bool:
    """Whether ``pid`` runs program ``name`` as real user ``uid``, ``marker`` in its command line."""
    proc = Path(f"/proc/{pid}")
    try:
        comm = (proc / "comm").read_text().strip()
        real_uid = next(
            int(line.split()[1])
            for line in (proc / "status").read_text().splitlines()
            if line.startswith("Uid:")
        )
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, ValueError, IndexError, StopIteration):
        return False  # gone meanwhile, or not readable: not one to trust
    return comm == name and real_uid == uid and marker in cmdline


def own_uid(host: FleetHost) -> int | None:
    """The uid of the host's user when that user is this fleet's (its home is ``host.home``)."""
    try:
        known = pwd.getpwnam(host.user)
    except KeyError:
        return None
    return known.pw_uid if Path(known.pw_dir) == host.home else None


def sshd_pid(host: FleetHost) -> int | None:
    """The host's sshd: the pid file's process if it is root's sshd run with this host's config."""
    pid = read_pid(host.sshd_pid_file)
    marker = os.fsencode(host.directory / "sshd_config")
    return pid if pid is not None and _is_process(pid, "sshd", 0, marker) else None


def daemon_pid(host: FleetHost) -> int | None:
    """The host's libvirtd: the pid file's process if it is a libvirtd run by this fleet's user."""
    pid = read_pid(host.daemon_pid_file)
    uid = own_uid(host)
    return pid if pid is not None and uid is not None and _is_process(pid, "libvirtd", uid) else None


def is_session_of(cmdline: bytes, user: str) -> bool:
    """Whether a process's command line names an sshd session of ``user``.

    Sessions read ``sshd: USER [priv]`` (root's half) and ``sshd: USER@notty`` (the user's): the
    name must end there, or ``blocktui-fleet-1`` would match ``blocktui-fleet-10``'s sessions.
    """
    prefix = f"sshd: {user}".encode()
    return cmdline.startswith(prefix) and cmdline[len(prefix) : len(prefix) + 1] in (b" ", b"@")


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=START_TIMEOUT)
    if done.returncode != 0:
        raise HostError(f"fleet: {' '.join(argv)} failed: {(done.stderr or done.stdout).strip()}")


def ensure_user(host: FleetHost) -> None:
    """Create the host's user (home in the fleet root, no password, key login only) if missing.

    Raises:
        HostError: a user of that name exists with another home (not this fleet's).
    """
    try:
        known = pwd.getpwnam(host.user)
    except KeyError:
        # '*' is no password at all, but not "locked" ('!'), which sshd would refuse key logins for.
        _run("useradd", "-M", "-U", "-d", str(host.home), "-s", "/bin/sh", "-p", "*", host.user)
        known = pwd.getpwnam(host.user)
    if Path(known.pw_dir) != host.home:
        raise HostError(
            f"fleet: user {host.user} already exists with home {known.pw_dir}, not this fleet's; "
            "bring that fleet down ('blocktui lab fleet down' with its BLOCKTUI_LAB_DIR) or remove the user"
        )
    config = host.home / ".config" / "libvirt"
    config.mkdir(parents=True, exist_ok=True)
    (config / "qemu.conf").write_text(_SESSION_QEMU_CONF)
    host.images.mkdir(parents=True, exist_ok=True)
    give_to_user(host, host.home)
    host.home.chmod(0o700)


def give_to_user(host: FleetHost, path: Path) -> None:
    """Make ``path`` and everything under it the host user's (the lab creates images as root)."""
    known = pwd.getpwnam(host.user)
    for folder, _dirs, files in os.walk(path):
        os.chown(folder, known.pw_uid, known.pw_gid)
        for name in files:
            os.chown(os.path.join(folder, name), known.pw_uid, known.pw_gid)


def _sshd_config(host: FleetHost, host_key: Path, client_key: Path) -> str:
    return "\n".join(
        (
            "# Written by blocktui's fleet lab: this host's sshd, nothing else uses it.",
            f"ListenAddress {host.address}:{host.port}",
            f"HostKey {host_key}",
            f"PidFile {host.sshd_pid_file}",
            f"AuthorizedKeysFile {client_key}.pub",
            # The fleet root may sit under /tmp (world-writable): the key file is root's anyway.
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            f"AllowUsers {host.user}",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PrintMotd no",
            # Dead clients (a test drops their packets) go away instead of holding a session.
            "ClientAliveInterval 5",
            "ClientAliveCountMax 3",
            "",
        )
    )


def start_sshd(host: FleetHost, host_key: Path, client_key: Path) -> int:
    """Start the host's sshd unless it runs; its process id.

    Raises:
        HostError: sshd is not installed or does not start.
    """
    running = sshd_pid(host)
    if running is not None:
        return running
    if not Path(SSHD).exists():
        raise HostError("fleet: sshd is not installed (Debian: apt-get install openssh-server)")
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    config = host.directory / "sshd_config"
    config.write_text(_sshd_config(host, host_key, client_key))
    _run(SSHD, "-f", str(config), "-E", str(host.directory / "sshd.log"))
    return _wait_pid(lambda: sshd_pid(host), f"{host.name}'s sshd")


def start_daemon(host: FleetHost) -> int:
    """Start the host user's session libvirtd unless it runs (no idle timeout); its process id."""
    running = daemon_pid(host)
    if running is not None:
        return running
    _run(
        "runuser", "-u", host.user, "--",
        "env", "-i", f"HOME={host.home}", f"PATH={DAEMON_PATH}", f"USER={host.user}",
        "libvirtd", "-d",
    )  # fmt: skip
    pid = _wait_pid(lambda: daemon_pid(host), f"{host.name}'s libvirtd")
    _wait(lambda: answering(host.daemon_socket), f"{host.name}'s libvirtd to answer")
    return pid


def stop_sshd(host: FleetHost) -> None:
    """Stop the host's sshd and every ssh session it serves (the host is then unreachable)."""
    pid = sshd_pid(host)
    if pid is not None:
        stop_process(pid)
    # Each session has a process of its own, which outlives the listener.
    for entry in Path("/proc").iterdir():
        try:
            named = entry.name.isdigit() and is_session_of((entry / "cmdline").read_bytes(), host.user)
        except OSError:
            continue  # gone meanwhile
        if named:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                continue


def stop_host(host: FleetHost) -> None:
    """Stop the host's sshd, its libvirtd and every process of its user, then remove the user.

    A user of that name whose home is not this host's belongs to another fleet (or to someone
    else): it is left alone, processes and all.
    """
    for pid in (sshd_pid(host), daemon_pid(host)):
        if pid is not None:
            stop_process(pid)
    uid = own_uid(host)
    if uid is None:
        return
    # What is left is the user's: QEMUs, ssh sessions, helpers. Nobody else runs as this user.
    _wait(lambda: not _kill_all(uid), f"{host.user}'s processes to end")
    _run("userdel", host.user)


def remove_host_files(host: FleetHost) -> None:
    """Delete the host's folder (the user's home with its images included)."""
    shutil.rmtree(host.directory, ignore_errors=True)


def _kill_all(uid: int) -> bool:
    """SIGKILL (after SIGCONT) every process of ``uid``; whether any was found."""
    found = False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            owner = entry.stat().st_uid
        except OSError:
            continue  # gone meanwhile
        if owner != uid:
            continue
        found = True
        for signum in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(int(entry.name), signum)
            except ProcessLookupError:
                break
    return found


def _wait(ready: Callable[[], bool], what: str) -> None:
    try:
        wait_for(ready, START_TIMEOUT, what)
    except SystemDaemonError as exc:
        raise HostError(f"fleet: {exc}") from exc


def _wait_pid(running: Callable[[], int | None], what: str) -> int:
    _wait(lambda: running() is not None, f"{what} to write its pid file")
    pid = running()
    if pid is None:  # it wrote its pid and died at once
        raise HostError(f"fleet: {what} exited right after starting")
    return pid

"""What every libvirt connection of a process shares: the one embedded root, opening URIs, URI helpers."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit, urlunsplit

# libvirt_events must be imported before libvirt: it routes libvirt's log output away from stderr.
import blocktui.backends.libvirt_events  # noqa: F401  # isort: skip

import libvirt

from blocktui.backends.libvirt.errors import map_error
from blocktui.backends.libvirt.events import DomainEvents, FanOut, register
from blocktui.core.errors import HostError, NeedsAuthentication

log = logging.getLogger(__name__)

# libvirt's embedded driver serves one root per process lifetime: a second root is refused even after
# the first is closed, and a failed first open (root locked by another process) leaves the driver dead.
embedded_lock = threading.Lock()
embedded: dict[str, str] = {"root": "", "failed": ""}


# Every open of an embedded URI registers the QEMU driver anew, and libvirt refuses after a few
# dozen ("Too many drivers"): backends of this process share one connection to the embedded root,
# closed when its last user lets go. Being in-process, it has no link to lose (no keepalive, no
# close callback).
@dataclass
class SharedConnection:
    """The embedded connection, its users, and the one set of event callbacks they all listen to."""

    conn: libvirt.virConnect | None = None
    users: int = 0
    callback_ids: list[int] = field(default_factory=list)
    fan_out: FanOut = field(default_factory=FanOut)


shared = SharedConnection()


def subscribe(conn: libvirt.virConnect, events: DomainEvents) -> list[int]:
    """Make ``events`` hear ``conn``'s domain events; the callback ids to release ``conn`` with.

    On the shared embedded connection that is none: its callbacks stay while others use it.

    Raises:
        libvirt.libvirtError: the connection refused a registration.
    """
    with embedded_lock:
        if conn is shared.conn:
            if not shared.callback_ids:
                shared.callback_ids = register(conn, shared.fan_out)
            shared.fan_out.subscribers.append(events)
            return []
    return register(conn, events)


def release_shared(conn: libvirt.virConnect, owner: object | None) -> bool:
    """Let go of the shared embedded connection; True when ``conn`` is it and others still use it."""
    with embedded_lock:
        current = shared.conn
        if current is None or conn is not current:
            return False
        shared.fan_out.unsubscribe(owner)
        shared.users -= 1
        if shared.users > 0:
            return True
        ids, shared.callback_ids = shared.callback_ids, []
        shared.conn = None
    for callback_id in ids:
        try:
            current.domainEventDeregisterAny(callback_id)
        except libvirt.libvirtError as exc:
            log.debug("cannot deregister event callback %d: %s", callback_id, exc)
    return False


def embed_root(uri: str) -> str | None:
    """The ``root`` of a ``qemu:///embed?root=DIR`` URI, or None for any other URI."""
    parts = urlsplit(uri)
    if parts.netloc or not parts.path.startswith("/embed"):
        return None
    return dict(parse_qsl(parts.query)).get("root", "")


def names_local_files(uri: str) -> bool:
    """Whether a URI's host is this machine (no host part: ``qemu:///system``, the embedded root).

    ``qemu+ssh://box/system`` and any other URI with a host part count as remote, ``localhost``
    included: blocktui then never reads the paths the host names as its own files.
    """
    return not urlsplit(uri).netloc


def embedded_root() -> str | None:
    """The embedded root this process has opened, if any (there can be only one)."""
    with embedded_lock:
        return embedded["root"] or None


def release(conn: libvirt.virConnect, callback_ids: list[int], owner: object | None = None) -> None:
    """Drop callbacks and close a connection that may already be dead; failures only get logged."""
    for callback_id in callback_ids:
        try:
            conn.domainEventDeregisterAny(callback_id)
        except libvirt.libvirtError as exc:
            log.debug("cannot deregister event callback %d: %s", callback_id, exc)
    if release_shared(conn, owner):
        return  # other backends of this process still use the embedded connection
    try:
        conn.unregisterCloseCallback()
    except libvirt.libvirtError as exc:
        log.debug("cannot unregister close callback: %s", exc)
    try:
        conn.close()
    except libvirt.libvirtError as exc:
        log.debug("closing a dead connection failed: %s", exc)


@contextmanager
def steady_cpu() -> Iterator[None]:
    """Run the block with the calling thread on one CPU, then restore its affinity.

    The embedded QEMU driver checks its capabilities cache against the CPUID of whichever CPU the
    thread happens to run on. In VMs whose vCPUs report different CPUID data (seen here), a different
    CPU means "host cpuid changed" and a 4 s re-probe of QEMU on every open; one fixed CPU keeps the
    cache valid. QEMU itself is not pinned: libvirt gives it every host CPU.
    """
    try:
        allowed = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(allowed)})
    except (AttributeError, OSError, ValueError):
        # No affinity control here (another OS, a restricted container): run unpinned.
        yield
        return
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def non_interactive(uri: str) -> str:
    """Add ``no_tty=1`` to ssh transports so ssh never prompts on the terminal the dashboard owns."""
    parts = urlsplit(uri)
    if "+ssh" not in parts.scheme and "+libssh" not in parts.scheme:
        return uri
    if any(key == "no_tty" for key, _ in parse_qsl(parts.query, keep_blank_values=True)):
        return uri
    # Appended to the query as written, so the user's own parameters keep their exact spelling.
    query = f"{parts.query}&no_tty=1" if parts.query else "no_tty=1"
    return urlunsplit(parts._replace(query=query))


#: Where a system daemon listens: the monolithic libvirtd first (the client library prefers it too),
#: then the modular QEMU daemon.
SYSTEM_SOCKETS = ("/run/libvirt/libvirt-sock", "/run/libvirt/virtqemud-sock")


def beside_embedded(uri: str, readonly: bool = False) -> str:
    """The URI to open for ``uri`` in this process: ``qemu:///system`` made to reach the daemon.

    Once a process has opened an embedded root, libvirt serves every ``qemu://`` URI without a
    host in-process ("Missing URI parameter 'root'") and its remote driver declines them. Naming
    the transport and the daemon's socket (``qemu+unix:///system?socket=...``) sends the open to
    the remote driver again. Any other URI, or any URI before an embedded root is open, is kept.
    """
    parts = urlsplit(uri)
    if embedded_root() is None or parts.scheme != "qemu" or parts.netloc or parts.path != "/system":
        return uri
    query = parts.query
    if not any(key == "socket" for key, _ in parse_qsl(query, keep_blank_values=True)):
        suffix = "-ro" if readonly else ""
        found = [path for path in SYSTEM_SOCKETS if os.path.exists(path + suffix)]
        # With no daemon up yet, the monolithic one's path: the open fails now and a retry finds it.
        socket = (found or list(SYSTEM_SOCKETS))[0] + suffix
        query = f"{query}&socket={socket}" if query else f"socket={socket}"
    # Written out: urlunsplit would drop the empty host ("qemu+unix:/system").
    return f"qemu+unix:///system?{query}"


def open_embedded(uri: str, root: str, opener: Callable[[], libvirt.virConnect]) -> libvirt.virConnect:
    """The process's connection to the embedded ``root``, opened by ``opener`` the first time.

    Raises:
        HostError: another root is open, or the embedded driver failed earlier in this process.
    """
    with embedded_lock:
        if embedded["failed"]:
            raise HostError(
                f"cannot connect to {uri}: the embedded driver failed earlier in this process "
                f"({embedded['failed']}); libvirt cannot restart it, so start blocktui again"
            )
        held = embedded["root"]
        if held == root and shared.conn is not None:
            shared.users += 1
            return shared.conn
        if held and held != root:
            raise HostError(
                f"cannot connect to {uri}: this process already opened the embedded root {held}, "
                "and libvirt allows one embedded root per process"
            )
        try:
            with steady_cpu():
                conn = opener()
        except HostError as exc:
            if not held:
                # A failed first open leaves libvirt's embedded driver dead until the process exits.
                embedded["failed"] = str(exc)
            raise
        embedded["root"] = root
        shared.conn, shared.users = conn, 1
        return conn


def open_connection(uri: str, readonly: bool) -> libvirt.virConnect:
    """A connection to ``uri`` for this process: ssh never prompting, the embedded root shared, the
    system daemon reachable beside it.

    Raises:
        HostError: the host cannot be reached, or the embedded root is held by another process.
    """
    target = non_interactive(uri)
    root = embed_root(target)
    if root is None:
        return _open_uri(uri, beside_embedded(target, readonly), readonly)
    return open_embedded(uri, root, lambda: _open_uri(uri, target, readonly))


#: What ssh (in batch mode) and libvirt's own transports say when they refuse to go on without
#: credentials: the key was refused, the host key is unknown or changed, a password would be asked.
_AUTH_WORDS = (
    # ssh's own form; a bare "Permission denied" is also a local socket's, which no key would open.
    "Permission denied (",
    "Host key verification failed",
    "authentication",
    "passphrase",
    "password",
)
_AUTH_CODES = frozenset(
    {libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_AUTH_CANCELLED, libvirt.VIR_ERR_AUTH_UNAVAILABLE}
)


def auth_refusal(exc: libvirt.libvirtError) -> str | None:
    """Why the host wants credentials, in the words of the error; None for any other failure."""
    message = str(exc)
    if exc.get_error_code() not in _AUTH_CODES and not any(
        word.casefold() in message.casefold() for word in _AUTH_WORDS
    ):
        return None
    # ssh's own line sits between libvirt's "Cannot recv data:" and ": Connection reset by peer".
    reason = message.removeprefix("Cannot recv data: ").split(".: ", 1)[0]
    return reason.strip() or message


def _open_uri(uri: str, target: str, readonly: bool) -> libvirt.virConnect:
    """Open ``target`` (``uri`` as this process must spell it), with errors that say what to do."""
    try:
        conn = libvirt.openReadOnly(target) if readonly else libvirt.open(target)
    except libvirt.libvirtError as exc:
        error = map_error(exc, f"cannot connect to {uri}")
        if "driver.pid" in str(exc):
            error = HostError(
                f"cannot connect to {uri}: another process holds this embedded root "
                "(only one process may open it at a time)"
            )
        elif (refusal := auth_refusal(exc)) is not None:
            remedy = (
                "give ssh a key the host accepts (an agent, ~/.ssh/config, or keyfile= in the URI) "
                "and a known host key"
                if "ssh" in urlsplit(uri).scheme
                else "grant this user access without a prompt (polkit rules, the libvirt group, SASL)"
            )
            error = NeedsAuthentication(f"cannot connect to {uri}: needs authentication: {refusal}; {remedy}")
        elif "Failed to parse user" in str(exc):
            error = HostError(
                f"cannot connect to {uri}: {exc}; the QEMU driver needs the user and groups "
                "that Debian's libvirt-daemon-system creates (libvirt-qemu, kvm)"
            )
        raise error from exc
    if conn is None:  # older bindings returned None instead of raising
        raise HostError(f"cannot connect to {uri}")
    return conn

"""libvirt's codes and errors in our terms: domain states, job kinds, event states, the error tree."""

from __future__ import annotations

# libvirt_events must be imported before libvirt: it routes libvirt's log output away from stderr.
import blocktui.backends.libvirt_events  # noqa: F401  # isort: skip

import libvirt

from blocktui.core.errors import (
    BlocktuiError,
    Conflict,
    HostError,
    InvalidInput,
    JobBusy,
    NoJob,
    NotFound,
    ReadOnly,
    Unsupported,
)
from blocktui.core.model import DomainState, JobKind, JobState

DOMAIN_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: DomainState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: DomainState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: DomainState.BLOCKED,
    libvirt.VIR_DOMAIN_PAUSED: DomainState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: DomainState.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: DomainState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: DomainState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: DomainState.SUSPENDED,
}

JOB_KINDS = {
    libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_PULL: JobKind.PULL,
    libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_COPY: JobKind.COPY,
    libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_COMMIT: JobKind.COMMIT,
    libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_ACTIVE_COMMIT: JobKind.ACTIVE_COMMIT,
    libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_BACKUP: JobKind.BACKUP,
}

#: Jobs that mirror writes and wait in READY until pivoted or cancelled.
MIRROR_KINDS = frozenset({JobKind.COPY, JobKind.ACTIVE_COMMIT})

EVENT_STATES = {
    libvirt.VIR_DOMAIN_BLOCK_JOB_COMPLETED: JobState.COMPLETED,
    libvirt.VIR_DOMAIN_BLOCK_JOB_FAILED: JobState.FAILED,
    libvirt.VIR_DOMAIN_BLOCK_JOB_CANCELED: JobState.CANCELLED,
    libvirt.VIR_DOMAIN_BLOCK_JOB_READY: JobState.READY,
}

_CONNECTION_ERRORS = frozenset(
    {
        libvirt.VIR_ERR_SYSTEM_ERROR,
        libvirt.VIR_ERR_RPC,
        libvirt.VIR_ERR_NO_CONNECT,
        libvirt.VIR_ERR_INVALID_CONN,
        libvirt.VIR_ERR_AUTH_FAILED,
        libvirt.VIR_ERR_AUTH_CANCELLED,
        libvirt.VIR_ERR_AUTH_UNAVAILABLE,
        libvirt.VIR_ERR_OPERATION_TIMEOUT,
    }
)

_UNSUPPORTED_ERRORS = frozenset(
    {libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED, libvirt.VIR_ERR_OPERATION_UNSUPPORTED}
)


#: Error sources about one domain's hypervisor process rather than the link to the host: a system
#: error from there is QEMU's monitor socket closing, not libvirtd being unreachable.
_DOMAIN_SOURCES = frozenset({libvirt.VIR_FROM_QEMU})

#: Phrases libvirt uses (with varying codes) for a disk or base image that does not exist.
_NOT_FOUND_WORDS = ("could not find image", "not found in chain", "not found in domain")


def map_error(exc: libvirt.libvirtError, action: str) -> BlocktuiError:
    """Translate a libvirt error into our tree; ``action`` says what was being done, for the message.

    The caller raises the result ``from exc`` so the libvirt error stays visible as the cause.
    """
    code = exc.get_error_code()
    text = (exc.get_error_message() or str(exc)).strip().splitlines()
    message = text[0] if text else "libvirt gave no reason"
    lowered = message.lower()
    full = f"{action}: {message}"
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return NotFound(full)
    if code == libvirt.VIR_ERR_BLOCK_COPY_ACTIVE or "already in active block job" in lowered:
        return JobBusy(f"{full} (wait for it, or abort it first)")
    if "no active block job" in lowered:
        return NoJob(full)
    if code == libvirt.VIR_ERR_OPERATION_DENIED or "read only access" in lowered:
        return ReadOnly(f"{full} (the connection is read-only)")
    if code == libvirt.VIR_ERR_OPERATION_INVALID:
        if "not running" in lowered or "inactive" in lowered:
            return Conflict(f"{full} (start the domain first: virsh start NAME)")
        return Conflict(full)
    if any(words in lowered for words in _NOT_FOUND_WORDS):
        return NotFound(full)
    if code == libvirt.VIR_ERR_INVALID_ARG:
        return InvalidInput(full)
    if code in _UNSUPPORTED_ERRORS:
        return Unsupported(full)
    if code in _CONNECTION_ERRORS and exc.get_error_domain() in _DOMAIN_SOURCES:
        # "Unable to read from monitor": that domain's QEMU went away, the host is fine.
        return Conflict(f"{full} (the domain's QEMU process went away)")
    if code in _CONNECTION_ERRORS:
        return HostError(f"{full} (check that the host and libvirtd are reachable)")
    return HostError(full)


def is_connection_error(exc: libvirt.libvirtError) -> bool:
    """Whether the error is about the link to the host rather than about one domain or disk."""
    return exc.get_error_code() in _CONNECTION_ERRORS and exc.get_error_domain() not in _DOMAIN_SOURCES

"""One tree of errors; each carries the process exit code the CLI uses for it.

Backends raise these with the library's own exception chained as the cause, so the UI and the CLI
show one clear line and never a traceback.
"""

from __future__ import annotations

import signal

#: Signals that end blocktui the way Ctrl-C (the CLI) or ``q`` (the dashboard) does: SIGTERM (kill,
#: a service manager), SIGHUP (the terminal closed). Plans are handed back in the journal, jobs keep
#: running on their hosts.
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class BlocktuiError(Exception):
    """Base of every error blocktui reports to a person."""

    exit_code = 1


class InvalidInput(BlocktuiError):
    """The user typed something that cannot be used (a size, a bandwidth, an option)."""

    exit_code = 2


class NotFound(BlocktuiError):
    """A domain, disk, base image or job the user named does not exist."""

    exit_code = 3


class Conflict(BlocktuiError):
    """The request does not fit the current state: a job already runs, nothing to stream, no job."""

    exit_code = 4


class NothingToStream(Conflict):
    """The disk has no backing file, so a stream would copy nothing."""


class NoSpace(Conflict):
    """The copy would not fit where the overlay lives."""


class JobBusy(Conflict):
    """The disk already has a block job."""


class NoJob(Conflict):
    """The disk has no block job to steer."""


class HostError(BlocktuiError):
    """The host could not be reached or failed the request for reasons outside the user's input."""

    exit_code = 5


class NotAnswering(HostError):
    """The host took a request and gave no reply in time (a frozen or overloaded daemon)."""


class NeedsAuthentication(HostError):
    """The host wants credentials blocktui does not have (a key it refuses, an unknown host key, a
    password): blocktui never asks for one on the terminal it draws on."""


class ReadOnly(BlocktuiError):
    """The connection is read-only (or the user asked for --readonly) and the request would change a disk."""

    exit_code = 6


class Unsupported(BlocktuiError):
    """The backend cannot do this (for example, a true pause on libvirt)."""

    exit_code = 7


EXIT_CODES_HELP = """\
exit codes:
  0  success (for --wait: the job completed)
  1  the job ended without completing (failed, cancelled or unknown)
  2  invalid input (a size, bandwidth or option that cannot be used)
  3  not found (domain, disk, base image)
  4  conflict (a job already runs on the disk, no backing file, no job to steer,
     or the copy cannot fit where the overlay is: see stream --dry-run)
  5  host error (cannot connect, the host refused or failed the request)
  6  read-only connection
  7  not supported by this backend
  130 interrupted (jobs keep running on the host)"""

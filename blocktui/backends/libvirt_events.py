"""One libvirt event loop per process, and libvirt kept quiet on the terminal.

Import this module before anything imports ``libvirt``: libvirt reads ``LIBVIRT_LOG_OUTPUTS`` once, when
the library initialises on import, and by default writes its log lines to stderr (which breaks a TUI).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import platformdirs

#: Where libvirt's own log lines (warnings and errors) go instead of stderr.
LOG_FILE = Path(platformdirs.user_log_dir("blocktui")) / "libvirt.log"
#: Size past which the log is rotated when a process starts.
MAX_LOG_BYTES = 4 * 1024 * 1024


def _route_log_output() -> None:
    """Point libvirt's logging at a file unless the user already chose an output."""
    if os.environ.get("LIBVIRT_LOG_OUTPUTS"):
        return
    try:
        # Private: libvirt's errors name domains and image paths.
        LOG_FILE.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # One old generation is kept; a dashboard left polling a failing host must not fill the disk.
        if LOG_FILE.exists() and LOG_FILE.stat().st_size > MAX_LOG_BYTES:
            LOG_FILE.replace(LOG_FILE.with_suffix(".log.1"))
    except OSError:
        # No writable log dir: still keep the terminal clean; the lines are lost, the errors are not
        # (every call's error comes back as an exception).
        os.environ["LIBVIRT_LOG_OUTPUTS"] = "3:file:/dev/null"
        return
    # 3 = warnings and errors; libvirt's info/debug output would grow the file without bound.
    os.environ["LIBVIRT_LOG_OUTPUTS"] = f"3:file:{LOG_FILE}"


_route_log_output()

import libvirt  # noqa: E402 - must follow the environment set up above

_lock = threading.Lock()
_thread: threading.Thread | None = None


def _ignore_error(_context: object, _error: object) -> None:
    """libvirt's error callback: errors reach us as exceptions, so nothing is printed here."""


def _run_loop() -> None:
    while True:
        # Each call waits for and dispatches one round of events. It fails only if no implementation is
        # registered, which cannot happen here; the pause keeps a broken loop from spinning a core.
        if libvirt.virEventRunDefaultImpl() < 0:
            time.sleep(1.0)


def ensure_event_loop() -> None:
    """Register libvirt's default event implementation and start its thread, once per process.

    Must run before the first ``libvirt.open``: the embedded driver refuses to open without an event
    loop, and event callbacks on connections opened earlier are never delivered. Callbacks run on the
    daemon thread started here.
    """
    global _thread  # noqa: PLW0603 - one loop per process is the point of this module
    with _lock:
        if _thread is not None:
            return
        libvirt.registerErrorHandler(_ignore_error, None)
        libvirt.virEventRegisterDefaultImpl()
        _thread = threading.Thread(target=_run_loop, name="libvirt-events", daemon=True)
        _thread.start()

"""Opening a QMP session on a monitor that other clients have used before."""

from __future__ import annotations

import asyncio

from qemu.qmp import ConnectError, QMPClient
from qemu.qmp.qmp_client import GreetingError

#: Connections tried when an event arrives before the greeting; the race is narrow, one retry is
#: nearly always enough.
GREETING_ATTEMPTS = 3

#: Pause before trying again, so the event that raced the greeting has been written out.
RETRY_PAUSE = 0.05


def _greeting_raced(exc: ConnectError) -> bool:
    return isinstance(exc.exc, GreetingError)


async def connect_greeted(client: QMPClient, socket: str, timeout: float) -> None:
    """Connect ``client`` to ``socket``, within ``timeout`` seconds per attempt.

    A QEMU monitor that served an earlier client goes on sending events to whoever connects next, and
    one can reach the new client before QEMU's greeting (seen with QEMU 7.2 while a job changes
    state). qemu.qmp then refuses the session; a fresh connection gets the greeting first.

    Raises:
        TimeoutError: no greeting within ``timeout`` (another client holds the socket).
        ConnectError: the connection failed, or every attempt met an event before the greeting.
    """
    for attempt in range(1, GREETING_ATTEMPTS + 1):
        try:
            await asyncio.wait_for(client.connect(socket), timeout)
        except ConnectError as exc:
            if attempt == GREETING_ATTEMPTS or not _greeting_raced(exc):
                raise
            await asyncio.sleep(RETRY_PAUSE)
        else:
            return

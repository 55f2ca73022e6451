"""Opening a QMP session when a monitor's leftover event arrives before the greeting.

The server here speaks just enough QMP (greeting, ``qmp_capabilities``) to exercise the client's
handshake with qemu.qmp itself; it is not a stand-in for QEMU anywhere a job is claimed to work.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from qemu.qmp import ConnectError, QMPClient

from blocktui.backends.qmp.greeting import GREETING_ATTEMPTS, connect_greeted

VERSION = {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": ""}
GREETING = {"QMP": {"version": VERSION, "capabilities": []}}
EVENT = {
    "event": "JOB_STATUS_CHANGE",
    "data": {"status": "null", "id": "j"},
    "timestamp": {"seconds": 1, "microseconds": 0},
}


class Monitor:
    """A unix-socket QMP server whose first ``raced`` connections get an event before the greeting."""

    def __init__(self, raced: int) -> None:
        self.raced = raced
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.connections <= self.raced:
            writer.write(json.dumps(EVENT).encode() + b"\r\n")
        writer.write(json.dumps(GREETING).encode() + b"\r\n")
        await writer.drain()
        # qemu.qmp sends bare JSON objects, no newline; only qmp_capabilities comes here, without an id.
        while await reader.read(4096):
            writer.write(b'{"return": {}}\r\n')
            await writer.drain()
        writer.close()


async def _session(socket: Path, monitor: Monitor) -> None:
    server = await asyncio.start_unix_server(monitor.serve, path=str(socket))
    client = QMPClient("greeting-test")
    try:
        await connect_greeted(client, str(socket), 5.0)
        await client.disconnect()
    finally:
        server.close()
        await server.wait_closed()


def test_an_event_before_the_greeting_costs_one_more_connection(tmp_path: Path) -> None:
    monitor = Monitor(raced=1)
    asyncio.run(_session(tmp_path / "m.qmp", monitor))
    assert monitor.connections == 2


def test_a_monitor_that_always_races_is_reported_after_a_bounded_number_of_tries(tmp_path: Path) -> None:
    monitor = Monitor(raced=GREETING_ATTEMPTS)
    with pytest.raises(ConnectError):
        asyncio.run(_session(tmp_path / "m.qmp", monitor))
    assert monitor.connections == GREETING_ATTEMPTS


def test_a_missing_socket_is_not_retried(tmp_path: Path) -> None:
    client = QMPClient("greeting-test")
    with pytest.raises(ConnectError) as caught:
        asyncio.run(connect_greeted(client, str(tmp_path / "absent.qmp"), 5.0))
    assert isinstance(caught.value.exc, FileNotFoundError)

"""A minimal NBD client over a unix socket: the fixed newstyle handshake, ``NBD_OPT_GO`` and reads.

Enough to read an export QEMU's built-in server offers (see the NBD protocol document,
``doc/proto.md`` of the nbd project): no structured replies, no writes, one request at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct

from blocktui.core.errors import HostError

NBDMAGIC = b"NBDMAGIC"
IHAVEOPT = 0x49484156454F5054
OPTION_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698

FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1

OPT_GO = 7
REP_ACK = 1
REP_INFO = 3
REP_ERROR_BIT = 1 << 31
INFO_EXPORT = 0

CMD_READ = 0
CMD_DISC = 2

#: Seconds the handshake may take (QEMU answers at once); reads get their own limit.
HANDSHAKE_TIMEOUT = 10.0


class NbdError(HostError):
    """The NBD server refused, or the connection broke."""


class NbdClient:
    """One connection to one export; ``read`` returns exactly the bytes asked for."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int) -> None:
        self._reader = reader
        self._writer = writer
        self.size = size
        self._handle = 0

    @classmethod
    async def connect(cls, socket_path: str, export: str) -> NbdClient:
        """Connect to ``export`` on the server at ``socket_path`` and negotiate it.

        Raises:
            NbdError: the server cannot be reached, speaks another protocol, or refuses the export.
        """
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(socket_path), HANDSHAKE_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            raise NbdError(f"cannot connect to the NBD server at {socket_path}: {exc}") from exc
        try:
            size = await asyncio.wait_for(_negotiate(reader, writer, export), HANDSHAKE_TIMEOUT)
        except BaseException as exc:
            writer.close()
            if isinstance(exc, TimeoutError):
                raise NbdError(f"the NBD server at {socket_path} did not finish its handshake") from exc
            if isinstance(exc, OSError | asyncio.IncompleteReadError):
                raise NbdError(f"the NBD handshake at {socket_path} broke: {exc}") from exc
            raise
        return cls(reader, writer, size)

    async def read(self, offset: int, length: int) -> bytes:
        """The ``length`` bytes at ``offset`` of the export.

        Raises:
            NbdError: the server reported an error for the read, or the connection broke.
        """
        self._handle += 1
        request = struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, self._handle, offset, length)
        try:
            self._writer.write(request)
            await self._writer.drain()
            magic, error, handle = struct.unpack(">IIQ", await self._reader.readexactly(16))
            if magic != SIMPLE_REPLY_MAGIC or handle != self._handle:
                raise NbdError("the NBD server sent a reply blocktui did not ask for")
            if error:
                # NBD's error values are the Linux errno numbers (EIO 5, ENOSPC 28, ...).
                raise NbdError(
                    f"reading at {offset} through the window's export failed: {os.strerror(error)}"
                )
            return await self._reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise NbdError(f"the NBD connection broke while reading at {offset}: {exc}") from exc

    async def close(self) -> None:
        """Say goodbye (``NBD_CMD_DISC``) and close; never raises."""
        with contextlib.suppress(OSError):
            self._writer.write(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_DISC, 0, 0, 0))
            await self._writer.drain()
        self._writer.close()
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await self._writer.wait_closed()


async def _negotiate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, export: str) -> int:
    """The fixed newstyle handshake up to transmission; returns the export's size."""
    magic, option_magic, _flags = struct.unpack(">8sQH", await reader.readexactly(18))
    if magic != NBDMAGIC or option_magic != IHAVEOPT:
        raise NbdError("the server does not speak the NBD newstyle protocol")
    writer.write(struct.pack(">I", FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
    name = export.encode()
    # NBD_OPT_GO: the export name, then no information requests (NBD_INFO_EXPORT always comes).
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    writer.write(struct.pack(">QII", IHAVEOPT, OPT_GO, len(data)) + data)
    await writer.drain()
    size: int | None = None
    while True:
        reply_magic, _option, reply, length = struct.unpack(">QIII", await reader.readexactly(20))
        payload = await reader.readexactly(length)
        if reply_magic != OPTION_REPLY_MAGIC:
            raise NbdError("the NBD server sent a malformed option reply")
        if reply & REP_ERROR_BIT:
            message = payload.decode(errors="replace") or f"error {reply & ~REP_ERROR_BIT}"
            raise NbdError(f"the NBD server refused export {export!r}: {message}")
        if reply == REP_INFO and len(payload) >= 12 and struct.unpack(">H", payload[:2])[0] == INFO_EXPORT:
            size = struct.unpack(">Q", payload[2:10])[0]
        elif reply == REP_ACK:
            if size is None:
                raise NbdError(f"the NBD server did not say the size of export {export!r}")
            return size

"""``slow_link.py HOST PORT DELAY``: an ssh ProxyCommand that holds every byte DELAY seconds each way.

ssh runs it instead of opening the TCP connection itself; it connects to HOST:PORT and relays
standard input to the socket and the socket to standard output, each chunk sent ``DELAY``
seconds after it was read. Only this one link is slowed, unlike ``tc netem`` on the loopback
device, which would slow every loopback user on the machine. Standard library only: ssh starts
it by path, outside the bench's environment.
"""

from __future__ import annotations

import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable

#: A chunk and the monotonic time it may be sent; None ends the direction.
Held = tuple[float, bytes] | None


def relay(
    read: Callable[[], bytes], write: Callable[[bytes], None], done: Callable[[], None], delay: float
) -> None:
    """Copy ``read()`` chunks to ``write`` ``delay`` s late, in order, until ``read`` returns b''."""
    held: queue.Queue[Held] = queue.Queue()

    def send() -> None:
        while (item := held.get()) is not None:
            due, chunk = item
            time.sleep(max(0.0, due - time.monotonic()))
            write(chunk)
        done()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    while chunk := read():
        held.put((time.monotonic() + delay, chunk))
    held.put(None)
    sender.join()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def main(argv: list[str]) -> int:
    """Relay between this process's standard streams and HOST:PORT, slowed by DELAY each way."""
    if len(argv) != 3:
        print("usage: slow_link.py HOST PORT DELAY", file=sys.stderr)
        return 2
    host, port, delay = argv[0], int(argv[1]), float(argv[2])
    link = socket.create_connection((host, port), timeout=30)
    link.settimeout(None)

    def to_host() -> None:
        relay(lambda: os.read(0, 65536), link.sendall, lambda: link.shutdown(socket.SHUT_WR), delay)

    upstream = threading.Thread(target=to_host, daemon=True)
    upstream.start()
    # The host's side decides when the session ends: its EOF ends this process.
    relay(lambda: link.recv(65536), lambda data: _write_all(1, data), lambda: os.close(1), delay)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""How late a call's timeout comes while a gateway floods text that is not APEX.

    python benchmarks/hostile_flood.py [--backend asyncio|trio] [--seconds 3]
                                       [--timeout 0.2] [--message x]

A gateway in a thread of this process (a blocking socket, RFC 6455 by hand: it
does not import the library it measures) answers the handshake, then writes
one-frame text messages (``--message``, ``x`` by default: three bytes on the
wire) as fast as the socket takes them, and never answers. The client calls
``Ping`` with ``--timeout`` over and over for ``--seconds``; each call ends
with RequestTimeout, and how much later than its timeout it ended is its
lateness. Also printed: the messages the client read (its ``protocol_errors``),
the WARNING records the library logged, and the process's peak RSS.

A test cannot assert these (they depend on the machine's speed); the bounds
the tests check are in tests/test_hostile_gateway.py.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import logging
import resource
import socket
import statistics
import struct
import threading
import time

import anyio

import alphapoint


def serve_flood(listener: socket.socket, message: bytes, stop: threading.Event) -> None:
    """Accept one client, answer its handshake, flood it with ``message`` until told to stop."""
    sock, _ = listener.accept()
    with sock:
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        key = b""
        for line in data.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        accept = base64.b64encode(hashlib.sha1(key + guid).digest())  # noqa: S324 - RFC 6455
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        batch = (struct.pack("!BB", 0x81, len(message)) + message) * 8192
        try:
            while not stop.is_set():
                sock.sendall(batch)
        except OSError:
            return


async def measure(seconds: float, timeout: float, url: str) -> tuple[list[float], int]:
    lateness: list[float] = []
    async with alphapoint.connect(url, close_timeout=0.5, keepalive=None) as session:
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            started = time.monotonic()
            try:
                await session.call("Ping", timeout=timeout)
            except alphapoint.RequestTimeout:
                lateness.append(time.monotonic() - started - timeout)
        return lateness, session.protocol_errors


class Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=0.2)
    parser.add_argument("--message", default="x")
    args = parser.parse_args()
    counter = Counter()
    logging.getLogger("alphapoint").addHandler(counter)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"ws://127.0.0.1:{listener.getsockname()[1]}/WSGateway/"
        stop = threading.Event()
        thread = threading.Thread(
            target=serve_flood, args=(listener, args.message.encode(), stop), daemon=True
        )
        thread.start()
        lateness, unreadable = anyio.run(
            measure, args.seconds, args.timeout, url, backend=args.backend
        )
        stop.set()
        thread.join(5)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(
        f"{args.backend}: {len(lateness)} calls timed out, late by median "
        f"{statistics.median(lateness) * 1000:.0f} ms, max {max(lateness) * 1000:.0f} ms; "
        f"{unreadable:,} unreadable messages read in {args.seconds:.0f} s; "
        f"{counter.count} WARNING records; peak RSS {rss} MiB"
    )


if __name__ == "__main__":
    main()

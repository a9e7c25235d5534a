"""Hostile gateways written from RFC 6455 alone: raw bytes on a socket, no WebSocket library.

:mod:`.faults` and :mod:`.scripted` misbehave *through* a WebSocket
implementation, which keeps them within what that implementation will do. A
hostile gateway does what no library would: a message of empty continuation
frames that never ends, pings as fast as the socket takes them while never
reading a byte, a flood of text that is not APEX. :class:`RawPeer` is the
server end of one connection, byte by byte: the opening handshake (RFC 6455
section 4.2), frames built with :mod:`struct` (section 5.2; a server's frames
are never masked), the client's frames read and unmasked.

::

    async def flood(peer: RawPeer) -> None:
        await peer.handshake()
        await peer.send(frame(Opcode.PING, b"x" * 125) * 1000)

    async with serve_raw(flood) as server:
        async with alphapoint.connect(server.url) as session: ...

The loops that flood are bounded by a count, so every server stops by itself.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import socket
import struct
from collections.abc import Awaitable, Callable
from types import TracebackType

import anyio
import anyio.abc
import anyio.lowlevel

__all__ = [
    "ACCEPT_GUID",
    "ClientFrame",
    "Opcode",
    "RawPeer",
    "RawServer",
    "accept_key",
    "frame",
    "serve_raw",
]

#: What the hostile servers take as the client having gone.
GONE = (anyio.EndOfStream, OSError)

#: The GUID of RFC 6455 section 1.3, appended to the client's key.
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Opcode(enum.IntEnum):
    """Frame opcodes, RFC 6455 section 5.2."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.strip() + ACCEPT_GUID).digest())  # noqa: S324


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """One unmasked frame, as a server sends it (section 5.2), whatever it holds."""
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, length)
    elif length < 2**16:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + payload


class ClientFrame:
    """One frame the client sent, unmasked."""

    __slots__ = ("fin", "opcode", "payload")

    def __init__(self, fin: bool, opcode: int, payload: bytes) -> None:
        self.fin, self.opcode, self.payload = fin, opcode, payload

    @property
    def close_code(self) -> int | None:
        """The status code of a close frame (section 5.5.1), if it has one."""
        if self.opcode != Opcode.CLOSE or len(self.payload) < 2:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])

    @property
    def close_reason(self) -> bytes:
        return self.payload[2:] if self.opcode == Opcode.CLOSE else b""


class RawPeer:
    """The server end of one WebSocket connection, as raw bytes on a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()
        #: Bytes written by :meth:`send` so far.
        self.sent = 0

    async def _read_more(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                await anyio.wait_readable(self.sock)
                continue
            if not data:
                raise anyio.EndOfStream
            self._buffer += data
            return

    async def handshake(self) -> None:
        """Read the client's opening handshake and accept it (101)."""
        while b"\r\n\r\n" not in self._buffer:
            await self._read_more()
        head, _, rest = bytes(self._buffer).partition(b"\r\n\r\n")
        self._buffer = bytearray(rest)
        key = b""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        await self.send(
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n"
        )

    async def send(self, data: bytes) -> None:
        """Write bytes as they are (frames from :func:`frame`, or anything), all of them.

        Waits while the socket's buffer is full; raises ``OSError`` once the
        client has gone.
        """
        await anyio.lowlevel.checkpoint()
        view = memoryview(data)
        while view:
            try:
                written = self.sock.send(view)
            except BlockingIOError:
                await anyio.wait_writable(self.sock)
                continue
            view = view[written:]
            self.sent += written

    async def read_frame(self) -> ClientFrame:
        """The next frame the client sent, unmasked (section 5.3).

        Raises ``anyio.EndOfStream`` or ``OSError`` when the client has gone.
        """
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            await self._read_more()

    def _parse(self) -> ClientFrame | None:
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        first, second = buffer[0], buffer[1]
        length, offset = second & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                return None
            length, offset = struct.unpack("!H", buffer[2:4])[0], 4
        elif length == 127:
            if len(buffer) < 10:
                return None
            length, offset = struct.unpack("!Q", buffer[2:10])[0], 10
        masked = bool(second & 0x80)
        mask_end = offset + (4 if masked else 0)
        if len(buffer) < mask_end + length:
            return None
        mask = bytes(buffer[offset:mask_end])
        payload = bytes(buffer[mask_end : mask_end + length])
        if masked:
            payload = bytes(b ^ mask[n % 4] for n, b in enumerate(payload))
        del buffer[: mask_end + length]
        return ClientFrame(bool(first & 0x80), first & 0x0F, payload)

    async def read_until_close(self) -> ClientFrame | None:
        """Read frames until the client's close frame; ``None`` if the client went without one."""
        try:
            while True:
                received = await self.read_frame()
                if received.opcode == Opcode.CLOSE:
                    return received
        except GONE:
            return None

    async def read_text(self) -> str:
        """The next text message the client sent (clients here send unfragmented frames).

        Raises ``anyio.EndOfStream`` at the client's close frame: the handler
        then ends, and the socket is closed at once.
        """
        while True:
            received = await self.read_frame()
            if received.opcode == Opcode.TEXT:
                return received.payload.decode()
            if received.opcode == Opcode.CLOSE:
                raise anyio.EndOfStream


class RawServer:
    """A listening loopback socket; each connection goes to a handler as a :class:`RawPeer`.

    Use it as an async context manager (made by :func:`serve_raw`); leaving it
    stops every handler and closes every socket.
    """

    def __init__(self, handler: Callable[[RawPeer], Awaitable[None]]) -> None:
        self._handler = handler
        self._task_group: anyio.abc.TaskGroup | None = None
        self._listener: socket.socket | None = None
        self.port = 0
        #: How many connections were accepted.
        self.connections = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/WSGateway/"

    async def __aenter__(self) -> RawServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        task_group.start_soon(self._accept, task_group, name="hostile gateway")
        self._task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task_group is not None
        assert self._listener is not None
        self._task_group.cancel_scope.cancel()
        await self._task_group.__aexit__(None, None, None)
        self._listener.close()

    async def _accept(self, task_group: anyio.abc.TaskGroup) -> None:
        assert self._listener is not None
        while True:
            await anyio.wait_readable(self._listener)
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                continue
            sock.setblocking(False)
            self.connections += 1
            task_group.start_soon(self._serve_one, sock, name="hostile gateway connection")

    async def _serve_one(self, sock: socket.socket) -> None:
        try:
            await self._handler(RawPeer(sock))
        except GONE:
            pass
        finally:
            sock.close()


def serve_raw(handler: Callable[[RawPeer], Awaitable[None]]) -> RawServer:
    """A loopback server that hands each connection to ``handler`` as a :class:`RawPeer`.

    The handler does the handshake itself (:meth:`RawPeer.handshake`), or
    not. A write or read that fails because the client went away ends the
    handler quietly.
    """
    return RawServer(handler)

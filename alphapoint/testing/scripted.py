"""Servers that misbehave on purpose: each test scripts exactly what the peer does.

:func:`serve_script` accepts WebSocket connections and hands each one to an
async script (reply out of order, twice, never, with garbage, close mid-call);
:func:`serve_tcp` hands over the raw TCP stream, for faults below WebSocket
(never finish the handshake, answer with another HTTP status, reset).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from ..drivers.anyio_stream import StreamWebSocket
from ..drivers.server import accept_websocket
from ..errors import ConnectionClosed
from ..frame import Frame, MessageType, decode_frame, encode_frame

__all__ = ["ScriptedConnection", "ScriptedServer", "serve_script", "serve_tcp"]


class ScriptedConnection:
    """One accepted WebSocket, with helpers for writing APEX server scripts."""

    def __init__(self, websocket: StreamWebSocket) -> None:
        self.websocket = websocket

    async def receive_frame(self) -> Frame:
        """The next frame the client sent."""
        return decode_frame(await self.websocket.receive())

    def requests(self) -> Requests:
        """Every frame the client sends, until it closes the connection:
        ``async for request in connection.requests(): ...``."""
        return Requests(self)

    async def send_text(self, text: str) -> None:
        """Send raw text: anything, valid frame or not."""
        await self.websocket.send_text(text)

    async def send_frame(self, frame: Frame) -> None:
        await self.websocket.send_text(encode_frame(frame))

    async def send_together(self, *frames: Frame) -> None:
        """Send ``frames`` in one write: the client reads them back to back."""
        await self.websocket.send_texts_together([encode_frame(frame) for frame in frames])

    async def reply(
        self, request: Frame, payload: Any, *, type: MessageType = MessageType.REPLY
    ) -> None:
        """Answer ``request`` (same ``i`` and ``n``) with ``payload``."""
        await self.send_frame(Frame(type, request.seq, request.function, payload))

    async def event(self, function: str, payload: Any, *, seq: int) -> None:
        await self.send_frame(Frame(MessageType.EVENT, seq, function, payload))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start a clean closing handshake."""
        await self.websocket.send_close(code, reason)

    async def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        await self.websocket.abort()

    async def wait_closed(self) -> None:
        """Read (and drop) messages until the client closes."""
        try:
            while True:
                await self.websocket.receive()
        except Exception:  # noqa: BLE001 - any end is the end
            return


class Requests:
    """The frames a client sends, as an async iterator that ends when it closes.

    A class rather than an async generator: leaving the loop early needs no
    clean-up, under asyncio and trio alike.
    """

    def __init__(self, connection: ScriptedConnection) -> None:
        self._connection = connection

    def __aiter__(self) -> Requests:
        return self

    async def __anext__(self) -> Frame:
        try:
            return await self._connection.receive_frame()
        except ConnectionClosed:
            raise StopAsyncIteration from None


class ScriptedServer:
    """A listening server; ``url`` points at it. Made by :func:`serve_script`/:func:`serve_tcp`."""

    def __init__(self, handler: Callable[[anyio.abc.ByteStream], Awaitable[None]]) -> None:
        self._handler = handler
        self._task_group: anyio.abc.TaskGroup | None = None
        self._listener: anyio.abc.Listener[Any] | None = None
        self.port = 0
        #: How many connections were accepted.
        self.connections = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/WSGateway/"

    async def __aenter__(self) -> ScriptedServer:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        task_group.start_soon(listener.serve, self._serve_one, task_group)
        self._task_group, self._listener = task_group, listener
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
        with anyio.CancelScope(shield=True):
            await self._listener.aclose()

    async def _serve_one(self, stream: anyio.abc.ByteStream) -> None:
        self.connections += 1
        try:
            await self._handler(stream)
        finally:
            await anyio.aclose_forcefully(stream)


def serve_tcp(handler: Callable[[anyio.abc.ByteStream], Awaitable[None]]) -> ScriptedServer:
    """A server that hands each raw TCP connection to ``handler``."""
    return ScriptedServer(handler)


def serve_script(
    script: Callable[[ScriptedConnection], Awaitable[None]],
    *,
    max_message_size: int | None = None,
) -> ScriptedServer:
    """A WebSocket server that runs ``script`` on each connection, then drops it."""

    async def handler(stream: anyio.abc.ByteStream) -> None:
        websocket = await accept_websocket(stream, max_message_size=max_message_size)
        if websocket is None:
            return
        try:
            await script(ScriptedConnection(websocket))
        finally:
            await websocket.abort()

    return ScriptedServer(handler)

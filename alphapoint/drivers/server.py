"""The server side of the WebSocket handshake, for the embedded gateway and test servers.

The client never accepts connections; the gateway in :mod:`alphapoint.testing`
does, and then talks through the same :class:`StreamWebSocket` as a client
under trio.
"""

from __future__ import annotations

import anyio
import anyio.abc
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from .anyio_stream import READ_SIZE, StreamWebSocket
from .base import DEFAULT_MAX_MESSAGE_SIZE, websockets_logger

__all__ = ["accept_websocket"]


async def accept_websocket(
    stream: anyio.abc.ByteStream,
    *,
    open_timeout: float = 10.0,
    close_timeout: float = 5.0,
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
) -> StreamWebSocket | None:
    """The server side of the handshake on an accepted stream.

    Returns ``None`` (and closes the stream) when the client does not complete
    a valid handshake within ``open_timeout``.
    """
    protocol = ServerProtocol(max_size=max_message_size, logger=websockets_logger)
    with anyio.move_on_after(open_timeout):
        try:
            while True:
                data = await stream.receive(READ_SIZE)
                protocol.receive_data(data)
                events = protocol.events_received()
                if events or protocol.handshake_exc is not None:
                    break  # a request, or not HTTP: no request will ever come
            request = events[0] if events else None
            if not isinstance(request, Request):
                for out in protocol.data_to_send():  # websockets' 400 answer, if any
                    if out:
                        await stream.send(out)
                await anyio.aclose_forcefully(stream)
                return None
            response = protocol.accept(request)
            protocol.send_response(response)
            for out in protocol.data_to_send():
                if out:
                    await stream.send(out)
            if protocol.state is OPEN:
                return StreamWebSocket(
                    protocol, stream, close_timeout=close_timeout, frames=events[1:]
                )
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
    await anyio.aclose_forcefully(stream)
    return None

"""WebSocket drivers: websockets' Sans-I/O protocol, with the bytes moved by one event loop.

Every driver keeps the contract of :class:`BaseWebSocket` (messages out of
frames, one alarm, bounded closing), so the connection above never knows which
one it has:

============================  ==================================================
:mod:`.base`                  the contract and what all drivers share (no loop)
:mod:`.loop`                  which loop is running; its own clock and event
:mod:`.asyncio_protocol`      asyncio's protocol callbacks (asyncio, uvloop)
:mod:`.anyio_stream`          anyio byte streams (trio, proxies, the gateway)
:mod:`.server`                the server side of the handshake (the gateway)
:mod:`.choose`                picks a driver, opens, maps errors at the boundary
============================  ==================================================
"""

from .base import (
    DEFAULT_MAX_FRAGMENTS,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SEND_BUFFER,
    BaseWebSocket,
)
from .choose import DRIVERS, Driver, open_websocket
from .loop import Loop, current_loop

__all__ = [
    "DEFAULT_MAX_FRAGMENTS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_SEND_BUFFER",
    "DRIVERS",
    "BaseWebSocket",
    "Driver",
    "Loop",
    "current_loop",
    "open_websocket",
]

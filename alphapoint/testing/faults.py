"""Named faults: a loopback APEX peer that misbehaves in one chosen way, on cue.

:class:`FaultyGateway` answers like a gateway (``Ping``, the login calls,
anything else with a small success reply) and applies one :class:`Fault`:

* at the handshake (:func:`stalled_handshake`, :func:`hung_up_handshake`,
  :func:`refused_handshake`):
  the connection never becomes a WebSocket;
* to the whole byte stream (:func:`trickle`): every byte written separately,
  with a delay, handshake response included;
* to the request that triggers it (every other fault): the request named
  ``fault.trigger`` (``"Fault"`` unless the fault says otherwise) gets the
  misbehaviour instead of its reply.

``connections`` limits a fault to some connection numbers (1 is the first
accepted), so a test can show a session recovering on the next connection.
The request ``HangUp`` always drops the connection (no closing handshake), so
a test can force a reconnect whose new connection meets a handshake fault.

::

    async with FaultyGateway(faults.CLOSE_MID_CALL, connections={1}) as gateway:
        async with alphapoint.connect(gateway.url, reconnect=Backoff(0.01)) as session:
            with pytest.raises(ConnectionClosed):
                await session.call("Fault")
            await session.call("Echo")  # answered on connection 2
"""

from __future__ import annotations

import itertools
import json
import secrets
import socket
import struct
from collections.abc import Awaitable, Callable, Container, Mapping
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import attrs

from ..drivers.anyio_stream import StreamWebSocket
from ..drivers.base import DEFAULT_MAX_MESSAGE_SIZE
from ..drivers.server import accept_websocket
from ..errors import ConnectionClosed, FrameError
from ..frame import Frame, MessageType, decode_frame, encode_frame
from .scripted import ScriptedConnection, ScriptedServer, serve_tcp

__all__ = [
    "BINARY_REPLY",
    "CLOSE_MID_CALL",
    "DEEPLY_NESTED_REPLY",
    "DUPLICATE_REPLY",
    "FAULTS",
    "HANG_UP_MID_CALL",
    "INVALID_UTF8_REPLY",
    "JSON_NOT_A_FRAME",
    "NOT_JSON_REPLY",
    "OVERSIZE_REPLY",
    "RESET_MID_CALL",
    "STRAY_REPLY",
    "Fault",
    "FaultConnection",
    "FaultyGateway",
    "event_flood",
    "hung_up_handshake",
    "login_reply",
    "login_reply_with",
    "refused_handshake",
    "stalled_handshake",
    "trickle",
]

#: What a fault does at the handshake, instead of accepting the WebSocket.
HandshakeBehaviour = Callable[[anyio.abc.ByteStream], Awaitable[None]]
#: What a fault does with the request that triggers it, instead of replying.
CallBehaviour = Callable[["FaultConnection", Frame], Awaitable[None]]

PONG = {"msg": "PONG"}


@attrs.frozen
class Fault:
    """One named misbehaviour; at most one of its three hooks is usually set."""

    name: str
    #: Replaces the WebSocket handshake: the connection never opens.
    handshake: HandshakeBehaviour | None = None
    #: Wraps the accepted byte stream (every later write goes through it).
    wrap: Callable[[anyio.abc.ByteStream], anyio.abc.ByteStream] | None = None
    #: Replaces the reply to the request named :attr:`trigger`.
    on_call: CallBehaviour | None = None
    trigger: str = "Fault"


class FaultConnection(ScriptedConnection):
    """One accepted connection of a :class:`FaultyGateway`, with raw access below the WebSocket."""

    def __init__(
        self, websocket: StreamWebSocket, stream: anyio.abc.ByteStream, number: int
    ) -> None:
        super().__init__(websocket)
        #: The byte stream under the WebSocket (for writes that bypass it).
        self.stream = stream
        #: Which connection this is (1 for the first accepted).
        self.number = number

    async def send_raw_frame(self, opcode: int, payload: bytes) -> None:
        """Write one unmasked, final frame as bytes, whatever it holds (invalid UTF-8...)."""
        await self.stream.send(_frame_header(opcode, len(payload)) + payload)

    async def reset(self) -> None:
        """Drop the TCP connection with a RST (``SO_LINGER`` 0), not a FIN."""
        raw = self.stream.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.abort()


def _frame_header(opcode: int, length: int) -> bytes:
    first = 0x80 | opcode
    if length < 126:
        return bytes([first, length])
    if length < 2**16:
        return bytes([first, 126]) + struct.pack("!H", length)
    return bytes([first, 127]) + struct.pack("!Q", length)


def login_reply(token: str, *, user_id: int = 7, username: str = "alice") -> dict[str, Any]:
    """A successful AuthenticateUser reply, as live gateways spell it (PascalCase)."""
    return {
        "Authenticated": True,
        "SessionToken": token,
        "User": {
            "UserId": user_id,
            "UserName": username,
            "Email": f"{username}@example.com",
            "EmailVerified": True,
            "AccountId": user_id + 1000,
            "OMSId": 1,
            "Use2FA": False,
        },
        "Locked": False,
        "Requires2FA": False,
        "EnforceEnable2FA": False,
        "TwoFAType": None,
        "TwoFAToken": None,
        "errormsg": None,
    }


class FaultyGateway:
    """A loopback server that answers like a gateway and applies ``fault``.

    Use it as an async context manager; connect to :attr:`url`. ``injected``
    counts the times the fault was applied, ``connections`` the connections
    accepted.
    """

    def __init__(
        self,
        fault: Fault,
        *,
        connections: Container[int] | None = None,
        open_timeout: float = 10.0,
    ) -> None:
        self.fault = fault
        self._only = connections
        self._open_timeout = open_timeout
        self._numbers = itertools.count(1)
        self._server: ScriptedServer = serve_tcp(self._serve)
        self._open: dict[int, FaultConnection] = {}
        #: Session tokens handed out; WebAuthenticateUser accepts them on any connection.
        self.tokens: set[str] = set()
        #: How many times the fault was applied.
        self.injected = 0

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def connections(self) -> int:
        """How many TCP connections were accepted."""
        return self._server.connections

    async def __aenter__(self) -> FaultyGateway:
        await self._server.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._server.__aexit__(exc_type, exc, tb)

    async def drop_connections(self) -> None:
        """Cut every open connection at the TCP level, with no closing handshake."""
        for connection in list(self._open.values()):
            await connection.abort()

    def _faulty(self, number: int) -> bool:
        return self._only is None or number in self._only

    async def _serve(self, stream: anyio.abc.ByteStream) -> None:
        number = next(self._numbers)
        fault = self.fault if self._faulty(number) else None
        if fault is not None and fault.handshake is not None:
            self.injected += 1
            await fault.handshake(stream)
            return
        if fault is not None and fault.wrap is not None:
            self.injected += 1
            stream = fault.wrap(stream)
        websocket = await accept_websocket(stream, open_timeout=self._open_timeout)
        if websocket is None:
            return
        connection = FaultConnection(websocket, stream, number)
        self._open[number] = connection
        try:
            await self._answer(connection, fault)
        except ConnectionClosed:
            pass
        finally:
            del self._open[number]
            await websocket.abort()

    async def _answer(self, connection: FaultConnection, fault: Fault | None) -> None:
        while True:
            message = await connection.websocket.receive()
            if isinstance(message, bytes):
                continue
            try:
                request = decode_frame(message)
            except FrameError:
                continue  # as a live gateway: no answer to text that is not a frame
            if request.type not in (MessageType.REQUEST, MessageType.SUBSCRIBE):
                continue
            if request.function == "HangUp":
                await connection.abort()
                return
            if (
                fault is not None
                and fault.on_call is not None
                and request.function == fault.trigger
            ):
                self.injected += 1
                await fault.on_call(connection, request)
                continue
            await connection.reply(request, self._normal_reply(connection, request))

    def _normal_reply(self, connection: FaultConnection, request: Frame) -> Any:
        function, payload = request.function, request.payload
        if function == "Ping":
            return PONG
        if function == "AuthenticateUser":
            token = secrets.token_hex(16)
            self.tokens.add(token)
            return login_reply(token)
        if function == "WebAuthenticateUser":
            resumed = payload.get("SessionToken") if isinstance(payload, dict) else None
            if resumed in self.tokens:
                return {"Authenticated": True, "SessionToken": resumed, "UserId": 7}
            return {"Authenticated": False, "errormsg": "Session token not valid"}
        if function == "LogOut":
            return {"result": True, "errormsg": None, "errorcode": 0, "detail": None}
        return {"function": function, "seq": request.seq, "connection": connection.number}


# -- handshake faults ----------------------------------------------------------------


async def _drain(stream: anyio.abc.ByteStream) -> None:
    try:
        while True:
            await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        return


async def _read_request(stream: anyio.abc.ByteStream) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()


def stalled_handshake() -> Fault:
    """Accept TCP, read the handshake request, never answer it."""
    return Fault("handshake never finished", handshake=_drain)


def hung_up_handshake() -> Fault:
    """Accept TCP, read the handshake request, hang up (FIN) without answering it."""
    return Fault("hung up during the handshake", handshake=_read_request)


def refused_handshake(status: int = 503, reason: str = "Service Unavailable") -> Fault:
    """Answer the WebSocket upgrade with an HTTP status that is not 101."""
    body = reason.encode()

    async def refuse(stream: anyio.abc.ByteStream) -> None:
        await _read_request(stream)
        await stream.send(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await _drain(stream)  # the client must not wait for this side to hang up

    return Fault(f"handshake answered with HTTP {status}", handshake=refuse)


# -- stream faults -------------------------------------------------------------------


class _Trickle(anyio.abc.ByteStream):
    """A byte stream that writes one byte at a time, ``delay`` seconds apart."""

    def __init__(self, inner: anyio.abc.ByteStream, delay: float) -> None:
        self._inner = inner
        self._delay = delay

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        for index in range(len(item)):
            await self._inner.send(item[index : index + 1])
            await anyio.sleep(self._delay)

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._inner.extra_attributes


def trickle(delay: float = 0.001) -> Fault:
    """Send everything (the 101 response, then every frame) one byte per write, ``delay`` apart."""
    return Fault("frames sent byte by byte", wrap=lambda stream: _Trickle(stream, delay))


# -- call faults -----------------------------------------------------------------------


async def _close_mid_call(connection: FaultConnection, request: Frame) -> None:
    await connection.close(1001, "going away")
    await connection.wait_closed()


async def _hang_up(connection: FaultConnection, request: Frame) -> None:
    await connection.abort()


async def _reset(connection: FaultConnection, request: Frame) -> None:
    await connection.reset()


async def _oversize(connection: FaultConnection, request: Frame) -> None:
    # A valid reply, one message of just over the default limit.
    await connection.reply(request, {"data": "x" * DEFAULT_MAX_MESSAGE_SIZE})


async def _binary(connection: FaultConnection, request: Frame) -> None:
    text = encode_frame(Frame(MessageType.REPLY, request.seq, request.function, PONG))
    await connection.websocket.send_binary(text.encode())


async def _invalid_utf8(connection: FaultConnection, request: Frame) -> None:
    inner = b'{\\"msg\\":\\"\xff\xfe\\"}'
    head = f'{{"m":1,"i":{request.seq},"n":"{request.function}","o":"'.encode()
    await connection.send_raw_frame(0x1, head + inner + b'"}')


async def _not_json(connection: FaultConnection, request: Frame) -> None:
    await connection.send_text("<html><body>502 Bad Gateway</body></html>")


async def _json_not_a_frame(connection: FaultConnection, request: Frame) -> None:
    # The payload without its envelope: JSON, but no m/i/n/o.
    await connection.send_text(json.dumps({"result": True, "errormsg": None}))


async def _stray_reply(connection: FaultConnection, request: Frame) -> None:
    # Replies for i values nobody is waiting for: the next i the client will
    # use (the dangerous one), and one far away; then the real reply.
    await connection.send_frame(
        Frame(MessageType.REPLY, request.seq + 2, request.function, {"stray": True})
    )
    await connection.send_frame(
        Frame(MessageType.ERROR, request.seq + 1000, request.function, "Endpoint Not Found")
    )
    await connection.reply(request, _echo(connection, request))


async def _duplicate_reply(connection: FaultConnection, request: Frame) -> None:
    await connection.reply(request, _echo(connection, request))
    await connection.reply(request, {"duplicate": True})
    await connection.reply(request, "Endpoint Not Found", type=MessageType.ERROR)


async def _deeply_nested(connection: FaultConnection, request: Frame) -> None:
    depth = 900  # under the JSON decoder's limit, far over any sane reply
    await connection.send_text(
        json.dumps(
            {"m": 1, "i": request.seq, "n": request.function, "o": "[" * depth + "]" * depth}
        )
    )


def _echo(connection: FaultConnection, request: Frame) -> dict[str, Any]:
    return {"function": request.function, "seq": request.seq, "connection": connection.number}


def event_flood(count: int, *, function: str = "FloodEvent") -> Fault:
    """Answer the trigger with ``count`` events as fast as the socket takes them, then reply."""

    async def flood(connection: FaultConnection, request: Frame) -> None:
        for number in range(count):
            await connection.event(function, {"n": number}, seq=number + 1)
        await connection.reply(request, {"events": count})

    return Fault(f"{count} events flooded", on_call=flood)


def login_reply_with(path: str, value: Any) -> Fault:
    """Answer AuthenticateUser with a login reply whose ``path`` (``User.Email``) is ``value``.

    A value of the wrong type makes the fault matrix's mistyped replies; a
    well-typed one, a reply carrying a chosen value (a secret, say).
    """
    keys = path.split(".")

    async def reply(connection: FaultConnection, request: Frame) -> None:
        payload = login_reply(secrets.token_hex(16))
        target = payload
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
        await connection.reply(request, payload)

    return Fault(
        f"AuthenticateUser reply with {path} set", on_call=reply, trigger="AuthenticateUser"
    )


CLOSE_MID_CALL = Fault("closed mid-call (close frame 1001)", on_call=_close_mid_call)
HANG_UP_MID_CALL = Fault("hung up mid-call (FIN, no close frame)", on_call=_hang_up)
RESET_MID_CALL = Fault("TCP reset mid-call (RST)", on_call=_reset)
OVERSIZE_REPLY = Fault("reply over the default size limit", on_call=_oversize)
BINARY_REPLY = Fault("reply in a binary frame", on_call=_binary)
INVALID_UTF8_REPLY = Fault("reply with invalid UTF-8 in a text frame", on_call=_invalid_utf8)
NOT_JSON_REPLY = Fault("text that is not JSON instead of the reply", on_call=_not_json)
JSON_NOT_A_FRAME = Fault("JSON that is not a frame instead of the reply", on_call=_json_not_a_frame)
STRAY_REPLY = Fault("replies for an i nobody asked", on_call=_stray_reply)
DUPLICATE_REPLY = Fault(
    "the same reply twice (and an error frame after it)", on_call=_duplicate_reply
)
DEEPLY_NESTED_REPLY = Fault("a reply nested 900 deep", on_call=_deeply_nested)

#: Every fault that needs no parameter, by a short name.
FAULTS: Mapping[str, Fault] = {
    "close": CLOSE_MID_CALL,
    "hang-up": HANG_UP_MID_CALL,
    "reset": RESET_MID_CALL,
    "handshake-stalls": stalled_handshake(),
    "handshake-hang-up": hung_up_handshake(),
    "handshake-refused": refused_handshake(),
    "trickle": trickle(),
    "oversize": OVERSIZE_REPLY,
    "binary": BINARY_REPLY,
    "invalid-utf8": INVALID_UTF8_REPLY,
    "not-json": NOT_JSON_REPLY,
    "not-a-frame": JSON_NOT_A_FRAME,
    "stray-reply": STRAY_REPLY,
    "duplicate-reply": DUPLICATE_REPLY,
    "deep-nesting": DEEPLY_NESTED_REPLY,
    "event-flood": event_flood(10_000),
}

"""alphapoint.transport over real loopback sockets: TLS, URLs, handshakes, frames.

Faults below the APEX layer come from ``serve_tcp`` handlers that speak raw
TCP, some of them driving websockets' ``ServerProtocol`` by hand so that a test
controls every byte: what arrives with the 101 response, fragmentation,
masking, invalid UTF-8.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

import alphapoint
from alphapoint import (
    CertificateError,
    ConnectError,
    ConnectionClosed,
    HandshakeRefused,
    InsecureConnection,
    InvalidURL,
    MessageType,
    NetworkError,
)
from alphapoint.connection import Connection
from alphapoint.drivers import Driver, open_websocket
from alphapoint.drivers.anyio_stream import StreamWebSocket
from alphapoint.drivers.asyncio_protocol import AsyncioWebSocket
from alphapoint.frame import Frame as ApexFrame
from alphapoint.frame import decode_frame, encode_frame
from alphapoint.models import Event
from alphapoint.testing import GatewayFixture
from alphapoint.testing.scripted import ScriptedConnection, serve_script, serve_tcp

from .helpers import (
    LIMIT,
    SHORT,
    client_context,
    open_and_ping,
    server_context,
    tls_gateway,
    unused_port,
)

pytestmark = pytest.mark.anyio


PONG = {"msg": "PONG"}


async def drain(stream: anyio.abc.ByteStream) -> None:
    """Read and drop everything until the peer goes away."""
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        while True:
            await stream.receive()


async def read_http_request(stream: anyio.abc.ByteStream) -> bytes:
    """The client's handshake request, up to the blank line."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    return data


class RawPeer:
    """The server end of a WebSocket, byte by byte: websockets' ServerProtocol, no driver."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.protocol = ServerProtocol()
        self.frames: deque[Frame] = deque()

    async def receive_handshake(self) -> Request:
        while True:
            self.protocol.receive_data(await self.stream.receive())
            events = self.protocol.events_received()
            if events:
                request = events[0]
                assert isinstance(request, Request)
                return request

    def accept(self, request: Request) -> None:
        """Queue the 101 response (sent by the next :meth:`flush`)."""
        self.protocol.send_response(self.protocol.accept(request))

    async def flush(self) -> None:
        """Write everything queued, in one send (and half-close when the protocol says so)."""
        chunks = self.protocol.data_to_send()
        data = b"".join(chunks)
        if data:
            await self.stream.send(data)
        if b"" in chunks:
            await self.stream.send_eof()

    async def until_closed(self) -> None:
        """Answer pings and the closing handshake until the client goes away."""
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            while True:
                await self.next_frame()

    async def next_frame(self) -> Frame:
        while not self.frames:
            data = await self.stream.receive()
            self.protocol.receive_data(data)
            for event in self.protocol.events_received():
                assert isinstance(event, Frame)
                self.frames.append(event)
            # Pongs and close echoes, if the client is still there to read them.
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                await self.flush()
        return self.frames.popleft()

    async def next_request(self) -> ApexFrame:
        frame = await self.next_frame()
        assert frame.opcode is Opcode.TEXT
        return decode_frame(bytes(frame.data).decode())

    def queue_reply(self, request: ApexFrame, payload: Any) -> None:
        text = encode_frame(ApexFrame(MessageType.REPLY, request.seq, request.function, payload))
        self.protocol.send_text(text.encode())


# -- TLS ------------------------------------------------------------------------------


async def test_wss_with_a_valid_certificate(ca: trustme.CA) -> None:
    async with tls_gateway(server_context(ca, "localhost")) as fixture:
        assert fixture.url.startswith("wss://localhost:")
        async with alphapoint.connect(fixture.url, ssl=client_context(ca)) as session:
            assert await session.call("Ping") == PONG
            result = await session.login(fixture.accounts.password)
            assert result.user is not None
            assert result.user.user_name == "alice"
            assert fixture.gateway.connection_count == 1
        with anyio.fail_after(LIMIT):
            while fixture.gateway.connection_count:  # noqa: ASYNC110 - no event to await
                await anyio.sleep(0.01)


async def test_wss_connection_lost(ca: trustme.CA) -> None:
    async with (
        tls_gateway(server_context(ca, "localhost")) as fixture,
        alphapoint.connect(fixture.url, ssl=client_context(ca)) as session,
    ):
        assert await session.call("Ping") == PONG
        await fixture.gateway.drop_connections()
        with pytest.raises(ConnectionClosed):
            await session.call("Ping")


@pytest.mark.parametrize(
    ("cert_hosts", "connect_host"),
    [(("gateway.example.com",), "localhost"), (("localhost",), "127.0.0.1")],
    ids=["other-name", "name-not-ip"],
)
async def test_wss_wrong_host_name_fails(
    ca: trustme.CA, cert_hosts: tuple[str, ...], connect_host: str
) -> None:
    async with tls_gateway(server_context(ca, *cert_hosts)) as fixture:
        url = f"wss://{connect_host}:{fixture.running.port}/WSGateway/"
        with pytest.raises(CertificateError) as info:
            await open_and_ping(url, ssl=client_context(ca))
        assert info.value.retryable is False
        message = str(info.value)
        assert "TLS" in message
        assert "certificate" in message.lower()
        assert "mismatch" in message.lower()  # says which check failed
        assert fixture.gateway.requests == []


async def test_wss_unknown_ca_fails(ca: trustme.CA) -> None:
    async with tls_gateway(server_context(ca, "localhost")) as fixture:
        with pytest.raises(CertificateError) as info:
            await open_and_ping(fixture.url, ssl=client_context(trustme.CA()))
        message = str(info.value)
        assert "TLS" in message
        assert "certificate" in message.lower()
        assert "mismatch" not in message.lower()
        # Without ssl=, the system's CAs are used, and they do not know this CA either.
        with pytest.raises(CertificateError) as default:
            await open_and_ping(fixture.url)
        assert "certificate" in str(default.value).lower()
        assert fixture.gateway.requests == []


# -- URLs and plain ws:// ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ws://example.com/WSGateway/",
        "ws://api.ndax.io/WSGateway/",
        "ws://10.255.255.1:9/WSGateway/",
        "ws://[2001:db8::1]/WSGateway/",
        "ws://0.0.0.0:9/",
    ],
)
async def test_plain_ws_to_a_non_loopback_host_is_refused(url: str) -> None:
    # An attempt to connect would fail otherwise (ConnectError within 0.2 s, or worse).
    with pytest.raises(InsecureConnection) as info:
        await open_and_ping(url, open_timeout=SHORT)
    assert isinstance(info.value, ValueError)
    assert "wss://" in str(info.value)
    assert "allow_insecure" in str(info.value)


async def test_allow_insecure_lifts_the_check(alphapoint_gateway: GatewayFixture) -> None:
    # On Linux, 0.0.0.0 reaches this host, yet it is not a loopback address.
    url = f"ws://0.0.0.0:{alphapoint_gateway.running.port}/WSGateway/"
    with pytest.raises(InsecureConnection):
        await open_and_ping(url)
    assert await open_and_ping(url, allow_insecure=True) == PONG
    with unused_port() as port, pytest.raises(ConnectError):
        await open_and_ping(f"ws://0.0.0.0:{port}/", allow_insecure=True)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_plain_ws_to_loopback_is_allowed(
    alphapoint_gateway: GatewayFixture, host: str
) -> None:
    url = f"ws://{host}:{alphapoint_gateway.running.port}/WSGateway/"
    assert await open_and_ping(url) == PONG


@pytest.mark.parametrize(
    "url",
    [
        "",
        "not a url",
        "127.0.0.1:8080/WSGateway/",
        "http://127.0.0.1/WSGateway/",
        "https://api.example.com/WSGateway/",
        "ws://",
        "ws:///WSGateway/",
        "ws://127.0.0.1/WSGateway/#fragment",
        "ws://user@127.0.0.1/WSGateway/",
        "ws://127.0.0.1:notaport/WSGateway/",
        "ws://127.0.0.1:99999/WSGateway/",
        "wss://[::1/WSGateway/",
    ],
)
async def test_invalid_url(url: str) -> None:
    with pytest.raises(InvalidURL) as info:
        await open_and_ping(url)
    assert isinstance(info.value, ValueError)


# -- opening the connection -------------------------------------------------------------


async def test_connection_refused() -> None:
    with unused_port() as port, pytest.raises(NetworkError) as info:
        await open_and_ping(f"ws://127.0.0.1:{port}/WSGateway/")
    assert f"127.0.0.1:{port}" in str(info.value)
    assert info.value.retryable


async def test_server_that_never_answers_the_handshake() -> None:
    async with serve_tcp(drain) as server:
        with pytest.raises(NetworkError) as info:
            await open_and_ping(server.url, open_timeout=SHORT)
    assert f"within {SHORT} s" in str(info.value)
    assert info.value.retryable
    assert server.connections == 1


async def test_handshake_refused_with_http_403() -> None:
    async def refuse(stream: anyio.abc.ByteStream) -> None:
        await read_http_request(stream)
        await stream.send(
            b"HTTP/1.1 403 Forbidden\r\n"
            b"Content-Type: text/plain\r\n"
            b"Content-Length: 9\r\n"
            b"\r\n"
            b"Forbidden"
        )
        await drain(stream)  # the client must not wait for the server to hang up

    async with serve_tcp(refuse) as server:
        with pytest.raises(HandshakeRefused) as info:
            await open_and_ping(server.url, open_timeout=LIMIT / 2)
    assert "403" in str(info.value)
    assert "within" not in str(info.value)
    assert info.value.status == 403
    assert info.value.retryable is False


async def test_handshake_answered_with_something_that_is_not_http() -> None:
    async def babble(stream: anyio.abc.ByteStream) -> None:
        await read_http_request(stream)
        await stream.send(b"SSH-2.0-OpenSSH_9.6\r\nProtocol mismatch.\r\n\r\n")
        await drain(stream)  # the client must not wait for the server to hang up

    async with serve_tcp(babble) as server:
        with pytest.raises(HandshakeRefused) as info:
            await open_and_ping(server.url, open_timeout=LIMIT / 2)
    assert info.value.status is None
    assert info.value.retryable is False
    message = str(info.value)
    assert "handshake" in message
    assert "within" not in message


async def test_server_hanging_up_during_the_handshake() -> None:
    async def hang_up(stream: anyio.abc.ByteStream) -> None:
        await read_http_request(stream)

    async with serve_tcp(hang_up) as server:
        with pytest.raises(NetworkError) as info:
            await open_and_ping(server.url, open_timeout=LIMIT / 2)
    assert "handshake" in str(info.value)
    assert "within" not in str(info.value)


async def test_plain_ws_client_to_a_tls_server_fails(ca: trustme.CA) -> None:
    async with tls_gateway(server_context(ca, "localhost")) as fixture:
        url = f"ws://127.0.0.1:{fixture.running.port}/WSGateway/"
        with pytest.raises(ConnectError):
            await open_and_ping(url, open_timeout=LIMIT / 2)


# -- frames ------------------------------------------------------------------------------


async def test_message_over_max_message_size_ends_the_session() -> None:
    async def script(connection: ScriptedConnection) -> None:
        small = await connection.receive_frame()
        await connection.reply(small, {"data": "x" * 500})
        large = await connection.receive_frame()
        await connection.reply(large, {"data": "x" * 5000})
        await connection.wait_closed()

    async with (
        serve_script(script) as server,
        alphapoint.connect(server.url, max_message_size=1024) as session,
        session.events() as events,
    ):
        assert await session.call("Small") == {"data": "x" * 500}
        with anyio.fail_after(LIMIT), pytest.raises(ConnectionClosed) as info:
            await session.call("Large")
        assert "size limit" in str(info.value)
        assert not session.is_open
        with anyio.fail_after(LIMIT), pytest.raises(ConnectionClosed) as stream_info:
            await events.__anext__()
        assert "size limit" in str(stream_info.value)


async def test_fragmented_message_over_max_message_size() -> None:
    async def handler(stream: anyio.abc.ByteStream) -> None:
        peer = RawPeer(stream)
        peer.accept(await peer.receive_handshake())
        await peer.flush()
        await peer.next_request()
        # 4 x 400 bytes, each frame under the 1024-byte limit.
        peer.protocol.send_text(b"x" * 400, fin=False)
        for _ in range(3):
            peer.protocol.send_continuation(b"x" * 400, fin=False)
        peer.protocol.send_continuation(b"", fin=True)
        await peer.flush()
        await peer.until_closed()

    async with (
        serve_tcp(handler) as server,
        alphapoint.connect(server.url, max_message_size=1024) as session,
    ):
        with anyio.fail_after(LIMIT), pytest.raises(ConnectionClosed) as info:
            await session.call("Large")
    assert "size limit" in str(info.value)


async def test_fragmented_reply_is_assembled() -> None:
    async def handler(stream: anyio.abc.ByteStream) -> None:
        peer = RawPeer(stream)
        peer.accept(await peer.receive_handshake())
        await peer.flush()
        request = await peer.next_request()
        text = encode_frame(ApexFrame(MessageType.REPLY, request.seq, request.function, PONG))
        data = text.encode()
        peer.protocol.send_text(data[:5], fin=False)
        await peer.flush()
        peer.protocol.send_ping(b"in between")  # control frames may interleave
        peer.protocol.send_continuation(data[5:12], fin=False)
        await peer.flush()
        peer.protocol.send_continuation(data[12:], fin=True)
        await peer.flush()
        pong = await peer.next_frame()
        assert pong.opcode is Opcode.PONG
        assert pong.data == b"in between"
        await peer.until_closed()

    async with serve_tcp(handler) as server:
        assert await open_and_ping(server.url) == PONG


async def test_frames_in_the_same_read_as_the_handshake_response() -> None:
    async def handler(stream: anyio.abc.ByteStream) -> None:
        peer = RawPeer(stream)
        peer.accept(await peer.receive_handshake())
        # An unmasked server text frame, sent with the 101 response in one write.
        peer.protocol.send_text(b"early: not an APEX frame")
        await peer.flush()
        request = await peer.next_request()
        peer.queue_reply(request, PONG)
        await peer.flush()
        await peer.until_closed()

    async with serve_tcp(handler) as server, alphapoint.connect(server.url) as session:
        assert await session.call("Ping") == PONG
        # The early frame was read (and found unreadable) before the reply.
        assert session.protocol_errors == 1


async def test_close_frame_in_the_same_read_as_the_handshake_response() -> None:
    async def handler(stream: anyio.abc.ByteStream) -> None:
        peer = RawPeer(stream)
        peer.accept(await peer.receive_handshake())
        peer.protocol.send_close(1013, "try again later")
        await peer.flush()
        await peer.until_closed()

    # The client echoes the close at once; it does not sit out its close timeout.
    async with (
        serve_tcp(handler) as server,
        alphapoint.connect(server.url, close_timeout=3 * LIMIT) as session,
    ):
        with anyio.fail_after(LIMIT), pytest.raises(ConnectionClosed) as info:
            await session.call("Ping", timeout=None)
    assert info.value.code == 1013
    assert info.value.reason == "try again later"
    assert "1013" in str(info.value)


async def test_invalid_utf8_in_a_text_frame_ends_the_connection() -> None:
    close_codes: list[int] = []

    async def handler(stream: anyio.abc.ByteStream) -> None:
        peer = RawPeer(stream)
        peer.accept(await peer.receive_handshake())
        await peer.flush()
        await peer.next_request()
        peer.protocol.send_text(b'{"m":1,"i":2,"n":"Ping","o":"\xff\xfe"}')
        await peer.flush()
        frame = await peer.next_frame()
        if frame.opcode is Opcode.CLOSE:
            close_codes.append(Close.parse(frame.data).code)
        await peer.until_closed()

    async with serve_tcp(handler) as server, alphapoint.connect(server.url) as session:
        with anyio.fail_after(LIMIT), pytest.raises(ConnectionClosed) as info:
            await session.call("Ping", timeout=None)
        assert "UTF-8" in str(info.value)
        assert not session.is_open
    assert close_codes == [1007]


async def test_masked_server_frame_breaks_the_protocol() -> None:
    async def handler(stream: anyio.abc.ByteStream) -> None:
        peer = RawPeer(stream)
        peer.accept(await peer.receive_handshake())
        await peer.flush()
        await peer.next_request()
        # A server must not mask its frames: FIN+text, MASK bit set, 2-byte payload.
        await stream.send(b"\x81\x82" + b"\x01\x02\x03\x04" + bytes([ord("h") ^ 1, ord("i") ^ 2]))
        await peer.until_closed()

    async with serve_tcp(handler) as server, alphapoint.connect(server.url) as session:
        with anyio.fail_after(LIMIT), pytest.raises(ConnectionClosed) as info:
            await session.call("Ping", timeout=None)
    assert "protocol" in str(info.value)


async def test_server_pings_are_answered() -> None:
    async def handler(stream: anyio.abc.ByteStream) -> None:
        peer = RawPeer(stream)
        peer.accept(await peer.receive_handshake())
        await peer.flush()
        request = await peer.next_request()
        peer.protocol.send_ping(b"are you there")
        await peer.flush()
        pong = await peer.next_frame()
        assert pong.opcode is Opcode.PONG
        peer.queue_reply(request, {"pong": bytes(pong.data).decode()})
        await peer.flush()
        await peer.until_closed()

    async with serve_tcp(handler) as server, alphapoint.connect(server.url) as session:
        with anyio.fail_after(LIMIT):
            assert await session.call("Ping") == {"pong": "are you there"}


# -- the two drivers ----------------------------------------------------------------


async def test_the_driver_follows_the_event_loop(
    driver: Driver, alphapoint_gateway: GatewayFixture
) -> None:
    """Direct connections under asyncio (and uvloop) use a callback driver (picows's
    when it is installed) unless told otherwise; trio uses anyio's streams."""
    websocket = await open_websocket(alphapoint_gateway.url)
    try:
        assert (
            type(websocket).__name__
            == {
                "picows": "PicowsWebSocket",
                "asyncio": AsyncioWebSocket.__name__,
                "anyio": StreamWebSocket.__name__,
            }[driver]
        )
    finally:
        await websocket.abort()


async def never_ring(now: float) -> float:
    """An ``on_alarm`` that asks for no other ring."""
    return math.inf


async def test_the_alarm_rings_when_set_and_again_when_on_alarm_asks() -> None:
    """The driver contract: ``set_alarm`` brings the alarm forward (never back), and
    ``on_alarm`` rings no earlier than asked, in order, until the connection ends."""
    rings: list[tuple[float, float]] = []  # (asked for, rang at)
    asked = math.inf

    async def script(connection: ScriptedConnection) -> None:
        await connection.wait_closed()

    async with serve_script(script) as server:
        websocket = await open_websocket(server.url)
        now = websocket.clock()
        websocket.set_alarm(now + 3600.0)
        asked = now + 0.01
        websocket.set_alarm(asked)  # earlier: moves it
        websocket.set_alarm(now + 1800.0)  # later: ignored

        async def on_alarm(now: float) -> float:
            nonlocal asked
            rings.append((asked, now))
            if len(rings) == 3:
                await websocket.abort()
                return math.inf
            asked = now + 0.01
            return asked

        with anyio.fail_after(LIMIT), pytest.raises(ConnectionClosed):
            await websocket.run(lambda message: False, lambda: None, on_alarm)
    assert len(rings) == 3
    assert all(rang >= wanted for wanted, rang in rings)


async def test_a_bug_in_on_alarm_is_raised_by_run() -> None:
    """Whatever ``on_alarm`` raises, ``run()`` raises as it is (never in an
    ExceptionGroup, though the anyio driver rings it in a task of its own)."""

    async def script(connection: ScriptedConnection) -> None:
        await connection.wait_closed()

    async def on_alarm(now: float) -> float:
        raise RuntimeError("bug in the alarm")

    async with serve_script(script) as server:
        websocket = await open_websocket(server.url)
        websocket.set_alarm(websocket.clock())
        with anyio.fail_after(LIMIT), pytest.raises(RuntimeError, match="bug in the alarm"):
            await websocket.run(lambda message: False, lambda: None, on_alarm)
        await websocket.abort()


async def test_a_bug_in_on_message_is_raised_by_run() -> None:
    """The driver contract: whatever ``on_message`` raises, ``run()`` raises in its
    task (under asyncio it was called from the read callback), and the
    connection is dropped."""
    dropped = anyio.Event()

    async def script(connection: ScriptedConnection) -> None:
        await connection.send_text("anything")
        await connection.wait_closed()
        dropped.set()

    def on_message(message: str | bytes) -> bool:
        raise RuntimeError(f"bug while handling {message!r}")

    async with serve_script(script) as server:
        websocket = await open_websocket(server.url)
        with anyio.fail_after(LIMIT):
            with pytest.raises(RuntimeError, match="bug while handling 'anything'"):
                await websocket.run(on_message, lambda: None, never_ring)
            await websocket.abort()
            await dropped.wait()


@pytest.mark.parametrize("debug", [False, True], ids=["quiet", "debug-log"])
@pytest.mark.parametrize("batched", [True, False], ids=["on_events", "on_event"])
async def test_events_reach_the_owner_in_order_before_the_reply_that_follows(
    batched: bool, debug: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A read's events go to ``on_events`` a backlog at a time (or to ``on_event``
    one by one), all of them, in the order sent, before the caller of a reply
    sent after them wakes; with DEBUG logging, each is logged as handed over."""
    if debug:
        caplog.set_level(logging.DEBUG, logger="alphapoint")

    async def script(connection: ScriptedConnection) -> None:
        request = await connection.receive_frame()
        events = [ApexFrame(MessageType.EVENT, n, "SomeEvent", {"n": n}) for n in range(50)]
        reply = ApexFrame(MessageType.REPLY, request.seq, request.function, {})
        await connection.send_together(*events, reply)
        await connection.wait_closed()

    got: list[int] = []
    batches: list[int] = []

    def on_events(connection: Connection, events: deque[Event]) -> None:
        batches.append(len(events))
        while events:
            got.append(events.popleft().payload["n"])

    def on_event(connection: Connection, event: Event) -> None:
        got.append(event.payload["n"])

    async with serve_script(script) as server, anyio.create_task_group() as tg:
        websocket = await open_websocket(server.url)
        if batched:
            conn = Connection(websocket, url=server.url, on_events=on_events)
        else:
            conn = Connection(websocket, url=server.url, on_event=on_event)
        tg.start_soon(conn.run)
        with anyio.fail_after(LIMIT):
            await conn.request(MessageType.REQUEST, "Ping", {})
        assert got == list(range(50))
        assert sum(batches) == (50 if batched else 0)
        if debug:
            logged = [r.getMessage() for r in caplog.records if "SomeEvent" in r.getMessage()]
            assert len(logged) == 50
            assert "{'n': 49}" in logged[-1]
        await conn.aclose(ConnectionClosed("done"))


async def test_a_connection_takes_either_on_event_or_on_events() -> None:
    async with serve_script(lambda connection: connection.wait_closed()) as server:
        websocket = await open_websocket(server.url)
        try:
            with pytest.raises(TypeError, match="one of on_event"):
                Connection(websocket, url=server.url)
            with pytest.raises(TypeError, match="one of on_event"):
                Connection(
                    websocket,
                    url=server.url,
                    on_event=lambda c, e: None,
                    on_events=lambda c, e: None,
                )
        finally:
            await websocket.abort()


async def test_a_bug_in_the_reader_fails_the_pending_calls() -> None:
    """An exception out of event handling must fail the calls, never hang them."""
    called = anyio.Event()

    async def script(connection: ScriptedConnection) -> None:
        await connection.receive_frame()
        called.set()
        await connection.event("SomeEvent", {"x": 1}, seq=7)
        await connection.wait_closed()

    def on_event(connection: Connection, event: Event) -> None:
        raise RuntimeError("a bug in the event handler")

    async with serve_script(script) as server, anyio.create_task_group() as tg:
        conn = Connection(await open_websocket(server.url), url=server.url, on_event=on_event)
        tg.start_soon(conn.run)
        with anyio.fail_after(LIMIT), pytest.raises(ConnectionClosed) as info:
            await conn.request(MessageType.REQUEST, "Ping", {})
        assert called.is_set()
        assert str(info.value) == "the connection's reader failed: RuntimeError"
        assert not conn.is_open


async def test_exchange_returns_the_reply_fields_that_request_returns_as_a_frame() -> None:
    """``Connection.exchange`` (a call's path, no Frame made) and ``request`` read
    the same replies: a reply, an error frame, and calls sent while others are in
    flight (written at once where the driver can, or gathered where it would)."""

    async def script(connection: ScriptedConnection) -> None:
        async for request in connection.requests():
            if request.function == "Fails":
                await connection.reply(request, "Endpoint Not Found", type=MessageType.ERROR)
            else:
                await connection.reply(request, {"echo": request.payload})

    async with serve_script(script) as server, anyio.create_task_group() as tg:
        conn = Connection(
            await open_websocket(server.url), url=server.url, on_event=lambda c, e: None
        )
        tg.start_soon(conn.run)
        with anyio.fail_after(LIMIT):
            fields = await conn.exchange(MessageType.REQUEST, "Ping", {"n": 1})
            assert fields == (MessageType.REPLY, 2, "Ping", {"echo": {"n": 1}})
            frame = await conn.request(MessageType.REQUEST, "Ping", None)
            assert frame == ApexFrame(MessageType.REPLY, 4, "Ping", {"echo": {}})
            error = await conn.exchange(MessageType.REQUEST, "Fails", [])
            assert error == (MessageType.ERROR, 6, "Fails", "Endpoint Not Found")
            replies: dict[int, Any] = {}

            async def one(n: int) -> None:
                replies[n] = await conn.exchange(MessageType.REQUEST, "Ping", {"n": n})

            async with anyio.create_task_group() as calls:
                for n in range(20):
                    calls.start_soon(one, n)
            assert {n: fields[3] for n, fields in replies.items()} == {
                n: {"echo": {"n": n}} for n in range(20)
            }
        await conn.aclose(ConnectionClosed("done"))


@pytest.mark.parametrize("count", [10, 2_000], ids=["one-slice", "held-slices"])
async def test_each_reply_wakes_its_caller_after_the_events_read_before_it(count: int) -> None:
    """A read of events, a reply, more events, a message that is not APEX, a
    second reply and more events (the picows driver hands such a read to the
    connection at once, and past 64 KiB a slice per turn of the loop): every
    event reaches the owner in order, each caller wakes only after the events
    read before its reply were handed over, and the bad message is counted."""

    async def script(connection: ScriptedConnection) -> None:
        requests = [await connection.receive_frame(), await connection.receive_frame()]
        first, second = sorted(requests, key=lambda request: request.function)
        events = [
            ApexFrame(MessageType.EVENT, n, "SomeEvent", {"n": n, "pad": "x" * 100})
            for n in range(3 * count)
        ]
        texts = [encode_frame(frame) for frame in events[:count]]
        texts.append(encode_frame(ApexFrame(MessageType.REPLY, first.seq, first.function, {})))
        texts.extend(encode_frame(frame) for frame in events[count : 2 * count])
        texts.append("not APEX")
        texts.append(encode_frame(ApexFrame(MessageType.REPLY, second.seq, second.function, {})))
        texts.extend(encode_frame(frame) for frame in events[2 * count :])
        await connection.websocket.send_texts_together(texts)
        await connection.wait_closed()

    got: list[int] = []
    seen: dict[str, int] = {}
    everything = anyio.Event()

    def on_events(connection: Connection, events: deque[Event]) -> None:
        while events:
            got.append(events.popleft().payload["n"])
        if len(got) == 3 * count:
            everything.set()

    async def call(name: str) -> None:
        await conn.request(MessageType.REQUEST, name, {})
        seen[name] = len(got)

    async with serve_script(script) as server, anyio.create_task_group() as tg:
        conn = Connection(await open_websocket(server.url), url=server.url, on_events=on_events)
        tg.start_soon(conn.run)
        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as calls:
                calls.start_soon(call, "First")
                calls.start_soon(call, "Second")
            await everything.wait()
        assert got == list(range(3 * count))
        assert seen["First"] >= count
        assert seen["Second"] >= 2 * count
        assert conn.protocol_errors == 1
        await conn.aclose(ConnectionClosed("done"))


@pytest.mark.parametrize("where", [10, 1_500], ids=["early", "late"])
async def test_other_frames_among_a_reads_texts_keep_their_place(where: int) -> None:
    """A burst of 2,000 events (reads past the picows driver's 64 KiB slice)
    with binary messages, a ping and a fragmented event among them, then a
    reply: the events reach the owner all, in order (the fragmented one in
    its place), each binary message (APEX's text, in a binary frame) is
    counted as not APEX, and the ping is answered."""
    count = 2_000
    binaries = [n for n in range(count) if n % 97 == 50]

    async def handler(stream: anyio.abc.ByteStream) -> None:
        peer = RawPeer(stream)
        peer.accept(await peer.receive_handshake())
        await peer.flush()
        request = await peer.next_request()
        for n in range(count):
            if n in binaries:
                # APEX's text, but in a binary message: not an event.
                binary = ApexFrame(MessageType.EVENT, -n, "SomeEvent", {"n": -n})
                peer.protocol.send_binary(encode_frame(binary).encode())
            if n == where:
                peer.protocol.send_ping(b"among the events")
                text = encode_frame(ApexFrame(MessageType.EVENT, n, "SomeEvent", {"n": n}))
                peer.protocol.send_text(text[:7].encode(), fin=False)
                peer.protocol.send_continuation(text[7:].encode(), fin=True)
                continue
            event = ApexFrame(MessageType.EVENT, n, "SomeEvent", {"n": n, "pad": "x" * 100})
            peer.protocol.send_text(encode_frame(event).encode())
        peer.queue_reply(request, PONG)
        await peer.flush()  # one write
        pong = await peer.next_frame()
        assert pong.opcode is Opcode.PONG
        assert pong.data == b"among the events"
        await peer.until_closed()

    got: list[int] = []

    def on_events(connection: Connection, events: deque[Event]) -> None:
        while events:
            got.append(events.popleft().payload["n"])

    async with serve_tcp(handler) as server, anyio.create_task_group() as tg:
        conn = Connection(await open_websocket(server.url), url=server.url, on_events=on_events)
        tg.start_soon(conn.run)
        with anyio.fail_after(LIMIT):
            await conn.request(MessageType.REQUEST, "Ping", {})
        assert got == list(range(count))
        assert conn.protocol_errors == len(binaries)
        assert "binary message" in str(conn.last_protocol_error)
        await conn.aclose(ConnectionClosed("done"))

"""Under trio, an idle connection's reader task parks, and the alarm clock's
leader reads its socket for it (alphapoint/drivers/alarms.py, anyio_stream.py).

What must hold whoever reads: replies resolve their calls, events reach the
session, a server's ping is answered, the gateway's close and a dropped TCP
connection end the session, a large reply is read whole, a gateway that stops
answering is found by the keepalive, and the connections left go on being read
when the one whose task reads for them leaves. Real servers over loopback
(websockets' ServerProtocol byte by byte, or the embedded gateway), no mocks.
Each test first waits until the reader is parked, so that what follows is
read by the leader.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
import anyio.abc
import pytest
from websockets.frames import Opcode

import alphapoint
from alphapoint import ConnectionClosed, Keepalive
from alphapoint.drivers.alarms import current_alarm_clock
from alphapoint.drivers.anyio_stream import StreamWebSocket
from alphapoint.frame import Frame as ApexFrame
from alphapoint.frame import MessageType, decode_frame, encode_frame
from alphapoint.testing.pytest_plugin import GatewayFixture
from alphapoint.testing.scripted import serve_tcp

from .helpers import LIMIT, hold_session, no_task_left, wait_until
from .test_transport import RawPeer

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["trio"])]

#: Quick Pings, never given up on within a test: the reader parks once a
#: message comes while only the keepalive's Ping waits (its reply).
PINGING = Keepalive(interval=0.05, timeout=LIMIT)


def websocket_of(session: alphapoint.Session) -> StreamWebSocket:
    conn = session._conn
    assert conn is not None
    websocket = conn._ws
    assert isinstance(websocket, StreamWebSocket)
    return websocket


async def parked(session: alphapoint.Session) -> StreamWebSocket:
    """The session's websocket, once its reader task is parked."""
    websocket = websocket_of(session)
    await wait_until(lambda: websocket._parked)
    return websocket


def read_since(websocket: StreamWebSocket, when: float) -> bool:
    return websocket.last_received > when


async def accepted(stream: anyio.abc.ByteStream) -> RawPeer:
    """The server's end of a WebSocket whose handshake is done."""
    peer = RawPeer(stream)
    peer.accept(await peer.receive_handshake())
    await peer.flush()
    return peer


async def next_call(peer: RawPeer) -> ApexFrame:
    """The client's next request other than a keepalive Ping; the Pings are answered."""
    while True:
        request = await peer.next_request()
        if request.function != "Ping":
            return request
        peer.queue_reply(request, {})
        await peer.flush()


async def reply_next(peer: RawPeer, payload: Any) -> None:
    """Answer the client's next call with ``payload``."""
    peer.queue_reply(await next_call(peer), payload)
    await peer.flush()


async def answer_requests(
    peer: RawPeer, answer: Callable[[ApexFrame], Any], *, until: anyio.Event | None = None
) -> None:
    """Reply to every request with ``answer(request)`` until the client closes
    (or, once ``until`` is set, after the request under way)."""
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        while until is None or not until.is_set():
            frame = await peer.next_frame()
            if frame.opcode is Opcode.TEXT:
                request = decode_frame(bytes(frame.data).decode())
                peer.queue_reply(request, answer(request))
                await peer.flush()


async def test_keepalive_replies_are_read_while_the_reader_stays_parked() -> None:
    """An idle session: its Pings' replies are read by the leader, and the
    reader, which waits for no other reply, stays parked."""
    answered: list[int] = []

    def answer(request: ApexFrame) -> dict[str, Any]:
        answered.append(request.seq)
        return {}

    async def handler(stream: anyio.abc.ByteStream) -> None:
        await answer_requests(await accepted(stream), answer)

    async with (
        no_task_left(),
        serve_tcp(handler) as server,
        alphapoint.connect(server.url, keepalive=PINGING) as session,
    ):
        websocket = await parked(session)
        before = len(answered)
        await wait_until(lambda: len(answered) >= before + 3)
        conn = session._conn
        assert conn is not None
        await wait_until(lambda: conn._pinger is not None and not conn._pinger.waiting)
        assert websocket._parked
        assert session.is_open


async def test_a_call_while_parked_gets_its_reply_and_the_reader_parks_again() -> None:
    """The reply is read by the leader; the task reads while calls come, and
    parks again after the next message that comes while only a Ping waits."""

    async def handler(stream: anyio.abc.ByteStream) -> None:
        await answer_requests(await accepted(stream), lambda request: {"n": request.seq})

    async with (
        no_task_left(),
        serve_tcp(handler) as server,
        alphapoint.connect(server.url, keepalive=PINGING) as session,
    ):
        with anyio.fail_after(LIMIT):
            for _ in range(3):
                await parked(session)
                reply = await session.call("GetUserInfo")
                assert set(reply) == {"n"}


async def test_a_server_ping_to_a_parked_reader_is_answered() -> None:
    async def handler(stream: anyio.abc.ByteStream) -> None:
        peer = await accepted(stream)
        request = await next_call(peer)
        peer.protocol.send_ping(b"are you there")
        await peer.flush()
        while (frame := await peer.next_frame()).opcode is not Opcode.PONG:
            pass  # the client's Pings, unanswered meanwhile
        peer.queue_reply(request, {"pong": bytes(frame.data).decode()})
        await peer.flush()
        await answer_requests(peer, lambda request: {})

    async with (
        serve_tcp(handler) as server,
        alphapoint.connect(server.url, keepalive=PINGING) as session,
    ):
        with anyio.fail_after(LIMIT):
            await parked(session)
            assert await session.call("Go") == {"pong": "are you there"}


async def test_an_event_read_for_a_parked_reader_reaches_the_session() -> None:
    go = anyio.Event()

    async def handler(stream: anyio.abc.ByteStream) -> None:
        peer = await accepted(stream)
        await reply_next(peer, {})  # the first call, then Pings only until go

        def answer(request: ApexFrame) -> dict[str, Any]:
            if go.is_set():
                event = ApexFrame(MessageType.EVENT, 0, "NewsEvent", {"n": 1})
                peer.protocol.send_text(encode_frame(event).encode())
            return {}

        await answer_requests(peer, answer)

    async with (
        serve_tcp(handler) as server,
        alphapoint.connect(server.url, keepalive=PINGING) as session,
        session.events("NewsEvent") as events,
    ):
        with anyio.fail_after(LIMIT):
            assert await session.call("Go") == {}
            await parked(session)
            go.set()  # the event comes after the reply to a Ping, to the parked reader
            event = await events.__anext__()
    assert event.payload == {"n": 1}


async def test_a_large_reply_read_for_a_parked_reader_is_read_whole() -> None:
    """More than one read's worth: the leader reads the first, the task the rest."""
    big = "x" * 300_000

    async def handler(stream: anyio.abc.ByteStream) -> None:
        peer = await accepted(stream)
        await answer_requests(peer, lambda r: {"big": big} if r.function == "Big" else {})

    async with (
        serve_tcp(handler) as server,
        alphapoint.connect(server.url, keepalive=PINGING) as session,
    ):
        with anyio.fail_after(LIMIT):
            await parked(session)
            assert await session.call("Big") == {"big": big}
            await parked(session)  # and it parks again


@pytest.mark.parametrize("how", ["close", "drop"])
async def test_the_gateway_ending_the_connection_ends_a_parked_reader(how: str) -> None:
    """A close frame, or the TCP connection dropped, read by the leader: the session closes."""

    async def handler(stream: anyio.abc.ByteStream) -> None:
        peer = await accepted(stream)
        await next_call(peer)  # answers the Pings until the client calls
        if how == "close":
            peer.protocol.send_close(1001, "going away")
            await peer.flush()
            await peer.until_closed()
        else:
            await stream.aclose()

    async with (
        serve_tcp(handler) as server,
        alphapoint.connect(server.url, keepalive=PINGING) as session,
        session.state_changes() as changes,
    ):
        await parked(session)
        with anyio.fail_after(LIMIT), pytest.raises(ConnectionClosed) as info:
            await session.call("Go")  # answered by the end of the connection
        with anyio.fail_after(LIMIT):
            assert [state async for state in changes] == [alphapoint.SessionState.CLOSED]
    if how == "close":
        assert "1001" in str(info.value)


async def test_a_gateway_that_stops_answering_a_parked_reader_is_found_by_the_keepalive() -> None:
    """The gateway answers Pings until the reader parks, then reads every Ping and
    answers none: the keepalive drops the connection."""
    deaf = anyio.Event()

    async def handler(stream: anyio.abc.ByteStream) -> None:
        peer = await accepted(stream)
        with anyio.move_on_after(LIMIT):
            await answer_requests(peer, lambda request: {}, until=deaf)
        await peer.until_closed()  # reads everything, answers nothing

    keepalive = Keepalive(interval=0.05, timeout=2)
    async with (
        serve_tcp(handler) as server,
        alphapoint.connect(server.url, keepalive=keepalive) as session,
        session.state_changes() as changes,
    ):
        await parked(session)
        deaf.set()
        with anyio.fail_after(LIMIT):
            assert [state async for state in changes] == [alphapoint.SessionState.CLOSED]
        with pytest.raises(ConnectionClosed) as info:
            await session.call("Ping")
    assert "did not answer a keepalive Ping" in str(info.value)


async def test_parked_readers_are_read_when_the_leader_leaves(
    alphapoint_gateway: GatewayFixture,
) -> None:
    """Three parked sessions; the one whose task reads for them leaves: the others'
    Pings are still answered and read (by the next leader), and they park again."""
    url = alphapoint_gateway.url
    opened: list[list[alphapoint.Session]] = [[], [], []]  # each task's session
    leave = [anyio.Event() for _ in range(3)]
    options: dict[str, Any] = {"keepalive": PINGING}
    async with no_task_left(), anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(partial(hold_session, url, opened[n], leave[n], **options))
        await wait_until(lambda: all(opened))
        sessions = [one[0] for one in opened]
        for session in sessions:
            await parked(session)
        clock: Any = current_alarm_clock()
        websockets = [websocket_of(s) for s in sessions]
        await wait_until(lambda: clock._leader in websockets)  # not between two leaders
        leader = websockets.index(clock._leader)
        leave[leader].set()
        rest = [s for n, s in enumerate(sessions) if n != leader]
        with anyio.fail_after(LIMIT):
            for session in rest:
                assert await session.call("Ping") == {"msg": "PONG"}
            for session in rest:
                websocket = await parked(session)
                await wait_until(partial(read_since, websocket, websocket.last_received))
                assert session.is_open
        for event in leave:
            event.set()

"""alphapoint.session over real loopback sockets: calls, replies, errors, events, closing.

Two kinds of peer: the embedded gateway (a well-behaved APEX server) and
scripted servers, each test writing exactly what the peer does and when.
Synchronisation between a script and the test goes through anyio events,
never through sleeps; every wait is bounded by ``LIMIT`` so that a bug fails
the test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import alphapoint
from alphapoint import (
    AlreadySubscribed,
    ConnectionClosed,
    Event,
    EventOverflow,
    InvalidPayload,
    InvalidRequest,
    NotAuthorized,
    OperationFailed,
    OperationNotSupported,
    RequestError,
    RequestTimeout,
    ResourceNotFound,
    ServerError,
    SessionClosed,
)
from alphapoint.frame import Frame, MessageType
from alphapoint.testing import Gateway, GatewayFixture, GatewayUser
from alphapoint.testing.scripted import ScriptedConnection, serve_script

from .helpers import CALLBACK_DRIVERS, LIMIT, SHORT, wait_until

pytestmark = pytest.mark.anyio


PONG = {"msg": "PONG"}

Script = Callable[[ScriptedConnection], Awaitable[None]]


def answer_every_request(payload: Any, *, type: MessageType = MessageType.REPLY) -> Script:
    """A script that answers every request with ``payload`` until the client leaves."""

    async def script(connection: ScriptedConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                request = await connection.receive_frame()
                await connection.reply(request, payload, type=type)

    return script


async def next_event(events: alphapoint.EventStream) -> Event:
    with anyio.fail_after(LIMIT):
        return await events.__anext__()


async def collect(events: alphapoint.EventStream, into: list[Any]) -> None:
    """Read ``events`` to their end, appending each payload to ``into``."""
    with anyio.fail_after(LIMIT):
        async for event in events:
            into.append(event.payload)


# -- round trips ----------------------------------------------------------------


async def test_ping_round_trip(alphapoint_gateway: GatewayFixture) -> None:
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        assert session.is_open
        assert session.url == alphapoint_gateway.url
        assert await session.call("Ping") == PONG
        frame = await session.request("Ping")
        assert frame.type is MessageType.REPLY
        assert frame.function == "Ping"
        assert frame.payload == PONG
    assert not session.is_open
    pings = alphapoint_gateway.gateway.requests_for("Ping")
    assert [(p.type, p.payload) for p in pings] == [(MessageType.REQUEST, {})] * 2


async def test_sequence_numbers_are_even_from_2() -> None:
    received: list[Frame] = []

    async def script(connection: ScriptedConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                request = await connection.receive_frame()
                received.append(request)
                await connection.reply(request, {"seq": request.seq})

    async with serve_script(script) as server, alphapoint.connect(server.url) as session:
        for _ in range(4):
            await session.call("Ping")
        await session.request(
            "SubscribeTrades", {"InstrumentId": 1}, message_type=MessageType.SUBSCRIBE
        )
    assert [frame.seq for frame in received] == [2, 4, 6, 8, 10]
    assert [frame.type for frame in received] == [MessageType.REQUEST] * 4 + [MessageType.SUBSCRIBE]
    assert received[0].function == "Ping"
    assert received[0].payload == {}
    assert received[4].payload == {"InstrumentId": 1}


async def test_200_concurrent_calls_on_one_session(alphapoint_gateway: GatewayFixture) -> None:
    results: list[Any] = []

    async with alphapoint.connect(alphapoint_gateway.url) as session:

        async def ping() -> None:
            results.append(await session.call("Ping"))

        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tasks:
                for _ in range(200):
                    tasks.start_soon(ping)
    assert results == [PONG] * 200
    seqs = [r.seq for r in alphapoint_gateway.gateway.requests_for("Ping")]
    assert sorted(seqs) == list(range(2, 402, 2))


async def test_200_concurrent_calls_get_their_own_replies_in_any_order() -> None:
    count = 200

    async def script(connection: ScriptedConnection) -> None:
        requests = [await connection.receive_frame() for _ in range(count)]
        random.Random(20240611).shuffle(requests)
        for request in requests:
            await connection.reply(request, {"echo": request.payload["token"]})
        await connection.wait_closed()

    results: dict[int, Any] = {}
    async with serve_script(script) as server, alphapoint.connect(server.url) as session:

        async def echo(token: int) -> None:
            results[token] = await session.call("Echo", {"token": token})

        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tasks:
                for token in range(count):
                    tasks.start_soon(echo, token)
    assert results == {token: {"echo": token} for token in range(count)}


async def test_pipelined_replies_out_of_order() -> None:
    arrived: list[int] = []
    answered: list[int] = []

    async def script(connection: ScriptedConnection) -> None:
        requests = [await connection.receive_frame() for _ in range(3)]
        arrived.extend(request.seq for request in requests)
        for request in reversed(requests):
            await connection.reply(request, {"name": request.payload["name"]})
            answered.append(request.seq)
        await connection.wait_closed()

    results: dict[str, Any] = {}
    async with serve_script(script) as server, alphapoint.connect(server.url) as session:

        async def call(name: str) -> None:
            results[name] = await session.call("Echo", {"name": name})

        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tasks:
                for name in ("first", "second", "third"):
                    tasks.start_soon(call, name)
    assert answered == arrived[::-1]
    assert len(set(arrived)) == 3
    assert results == {name: {"name": name} for name in ("first", "second", "third")}


# -- events never resolve requests ----------------------------------------------


async def test_event_with_a_pending_requests_seq_is_an_event_not_the_reply() -> None:
    release = anyio.Event()

    async def script(connection: ScriptedConnection) -> None:
        request = await connection.receive_frame()
        # The gateway's own event counter collides with the pending request's i.
        await connection.event("TradeDataUpdateEvent", {"from": "event"}, seq=request.seq)
        await release.wait()
        await connection.reply(request, {"from": "reply"})
        await connection.wait_closed()

    results: list[Any] = []
    async with serve_script(script) as server, alphapoint.connect(server.url) as session:
        async with session.events() as events, anyio.create_task_group() as tasks:

            async def call() -> None:
                results.append(await session.call("GetTrades", {"InstrumentId": 1}))

            tasks.start_soon(call)
            event = await next_event(events)
            assert event.function == "TradeDataUpdateEvent"
            assert event.seq == 2
            assert event.payload == {"from": "event"}
            release.set()
        assert results == [{"from": "reply"}]


# -- refused requests ---------------------------------------------------------------


async def test_raw_string_error_frame_raises_request_error(
    alphapoint_gateway: GatewayFixture,
) -> None:
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(RequestError) as info:
            await session.call("NoSuchFunction", {"x": 1})
        error = info.value
        assert type(error) is RequestError
        assert error.message == "Endpoint Not Found"
        assert error.function == "NoSuchFunction"
        assert error.code is None
        assert "Endpoint Not Found" in str(error)
        assert "NoSuchFunction" in str(error)

        frame = await session.request("NoSuchFunction")
        assert frame.type is MessageType.ERROR
        assert frame.payload == "Endpoint Not Found"
        assert await session.call("Ping") == PONG


async def test_not_authorized_before_login(alphapoint_gateway: GatewayFixture) -> None:
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(NotAuthorized) as info:
            await session.call("GetUserInfo")
        assert info.value.code == 20
        assert info.value.message == "Not Authorized"
        assert info.value.function == "GetUserInfo"
        assert "code 20" in str(info.value)
        assert session.is_open
        assert await session.call("Ping") == PONG


async def test_gateway_invalid_request_for_a_non_object_payload(
    alphapoint_gateway: GatewayFixture,
) -> None:
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(InvalidRequest) as info:
            await session.call("Ping", [1, 2, 3])
        assert info.value.code == 100
        assert info.value.detail == "payload must be an object"


@pytest.mark.parametrize("frame_type", [MessageType.REPLY, MessageType.ERROR])
@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (20, NotAuthorized),
        (100, InvalidRequest),
        (101, OperationFailed),
        (102, ServerError),
        (104, ResourceNotFound),
        (106, OperationNotSupported),
        (909, AlreadySubscribed),
        (555, RequestError),
    ],
)
async def test_error_codes_map_to_their_subclasses(
    frame_type: MessageType, code: int, expected: type[RequestError]
) -> None:
    payload: dict[str, Any] = {"errormsg": "It went wrong", "errorcode": code, "detail": "why"}
    if frame_type is MessageType.REPLY:
        payload["result"] = False
    script = answer_every_request(payload, type=frame_type)
    async with serve_script(script) as server, alphapoint.connect(server.url) as session:
        with pytest.raises(RequestError) as info:
            await session.call("SendOrder", {"Quantity": 1})
    error = info.value
    assert type(error) is expected
    assert error.code == code
    assert error.message == "It went wrong"
    assert error.detail == "why"
    assert error.function == "SendOrder"
    assert f"code {code}" in str(error)


async def test_capitalised_standard_response_keys_are_read() -> None:
    script = answer_every_request(
        {"Result": False, "Errormsg": "Resource Not Found", "Errorcode": 104, "Detail": None}
    )
    async with serve_script(script) as server, alphapoint.connect(server.url) as session:
        with pytest.raises(ResourceNotFound) as info:
            await session.call("GetOrderStatus")
    assert info.value.code == 104
    assert info.value.message == "Resource Not Found"


async def test_operation_in_process_is_returned_not_raised() -> None:
    reply = {"result": False, "errormsg": "Operation In Process", "errorcode": 107, "detail": None}
    success = {"result": True, "errormsg": None, "errorcode": 0, "detail": None}

    async def script(connection: ScriptedConnection) -> None:
        first = await connection.receive_frame()
        await connection.reply(first, reply)
        second = await connection.receive_frame()
        await connection.reply(second, success)
        await connection.wait_closed()

    async with serve_script(script) as server, alphapoint.connect(server.url) as session:
        assert await session.call("WithdrawTickets") == reply
        assert await session.call("LogOut") == success


# -- timeouts -----------------------------------------------------------------------


async def test_unanswered_call_times_out_and_the_late_reply_is_dropped() -> None:
    timed_out = anyio.Event()

    async def script(connection: ScriptedConnection) -> None:
        slow = await connection.receive_frame()
        await timed_out.wait()
        await connection.reply(slow, {"late": True})
        fresh = await connection.receive_frame()
        await connection.reply(fresh, {"fresh": True})
        await connection.wait_closed()

    async with serve_script(script) as server, alphapoint.connect(server.url) as session:
        with pytest.raises(RequestTimeout) as info:
            await session.call("GetOpenOrders", timeout=SHORT)
        timed_out.set()
        error = info.value
        assert isinstance(error, TimeoutError)
        assert error.function == "GetOpenOrders"
        assert error.timeout == SHORT
        assert "GetOpenOrders" in str(error)
        assert "unreadable" not in str(error)
        assert session.is_open
        with anyio.fail_after(LIMIT):
            assert await session.call("GetOpenOrders") == {"fresh": True}
        assert session.protocol_errors == 0


async def test_a_shorter_timeout_is_kept_behind_a_longer_one() -> None:
    """One alarm per connection serves every call: a call with a shorter
    timeout, sent after a call with a long one, still times out on its own."""

    async def script(connection: ScriptedConnection) -> None:
        await connection.wait_closed()  # answers nothing

    long_call = anyio.Event()

    async def slow(session: alphapoint.Session) -> None:
        long_call.set()
        with pytest.raises(RequestTimeout) as info:
            await session.call("Slow", timeout=LIMIT * 100)
        assert info.value.timeout == LIMIT * 100

    async with (
        serve_script(script) as server,
        alphapoint.connect(server.url) as session,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(slow, session)
        await long_call.wait()
        with anyio.fail_after(LIMIT), pytest.raises(RequestTimeout) as info:
            await session.call("Quick", timeout=SHORT)
        assert info.value.function == "Quick"
        assert "no reply to Quick within 0.2 s" in str(info.value)
        tg.cancel_scope.cancel()


async def test_a_login_without_a_reply_times_out_and_leaves_nothing_open() -> None:
    """The login runs before the connection's alarm: its own scope bounds it."""
    dropped = anyio.Event()

    async def script(connection: ScriptedConnection) -> None:
        assert (await connection.receive_frame()).function == "AuthenticateUser"
        await connection.wait_closed()  # never answers
        dropped.set()

    credentials = alphapoint.PasswordCredentials("erin", "erin-password")
    async with serve_script(script) as server:
        with anyio.fail_after(LIMIT):
            with pytest.raises(RequestTimeout) as info:
                async with alphapoint.connect(
                    server.url, credentials=credentials, timeout=SHORT, reconnect=False
                ):
                    pass
            await dropped.wait()
    assert str(info.value) == "no reply to AuthenticateUser within 0.2 s"
    assert info.value.function == "AuthenticateUser"


#: A message larger than what the socket buffers between a client and a gateway
#: that stopped reading hold on common machines (a few MiB); where they hold
#: more, the tests below go round more times.
BIG = {"blob": "x" * 2**24}

#: How many rounds of BIG (1 GiB or more) the tests below send before deciding
#: that the buffers never fill: far more than any machine's socket buffers hold.
ROUNDS = 64


def alphapoint_tasks() -> list[str]:
    names = (task.name or "" for task in anyio.get_running_tasks())
    return [name for name in names if name.startswith("alphapoint ")]


async def test_a_call_times_out_when_the_gateway_stops_reading(
    deaf_gateway_url: str, driver: str
) -> None:
    """A gateway that reads nothing fills the socket buffers; sends then wait
    for room, and every call still ends within its timeout: with RequestTimeout
    ("no reply", or "could not send" once the buffers are full), or
    ConnectionClosed once the connection was dropped.

    Calls go out four at a time until the buffers are full, whatever their
    size on this machine. Then the asyncio driver, whose transport takes a
    message whole or not at all, refuses a message it cannot write in time and
    goes on; the anyio driver, whose write outlived its deadline (part of a
    frame may be on the wire), drops the connection."""
    errors: list[alphapoint.AlphaPointError] = []

    async def upload(session: alphapoint.Session) -> None:
        with anyio.fail_after(LIMIT), pytest.raises((RequestTimeout, ConnectionClosed)) as info:
            await session.call("Upload", BIG, timeout=SHORT)
        errors.append(info.value)

    def full() -> bool:
        if driver in CALLBACK_DRIVERS:
            return any(str(e).startswith("could not send") for e in errors)
        return any(isinstance(e, ConnectionClosed) for e in errors)

    async with (
        alphapoint.connect(
            deaf_gateway_url, logout_on_close=False, close_timeout=SHORT, keepalive=None
        ) as session,
        session.state_changes() as changes,
    ):
        for _ in range(ROUNDS):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(upload, session)
            if full():
                break
        else:
            pytest.fail(
                f"{ROUNDS * 4} messages of {len(BIG['blob'])} bytes never filled the buffers"
            )
        timeouts = [e for e in errors if isinstance(e, RequestTimeout)]
        assert all(
            str(e).startswith(("no reply to Upload within 0.2 s", "could not send Upload within"))
            for e in timeouts
        ), [str(e) for e in timeouts]
        if driver in CALLBACK_DRIVERS:
            assert timeouts == errors  # never dropped
            assert session.is_open
            with anyio.fail_after(LIMIT), pytest.raises(RequestTimeout):
                await session.call("Ping", timeout=SHORT)
        else:
            dropped = [e for e in errors if isinstance(e, ConnectionClosed)]
            assert all("the gateway stopped reading" in str(e) for e in dropped), dropped
            with anyio.fail_after(LIMIT):  # no reconnect: the session closes
                assert [state async for state in changes] == [alphapoint.SessionState.CLOSED]
    assert alphapoint_tasks() == []


async def test_a_write_cut_off_part_way_drops_the_connection(
    deaf_gateway_url: str, driver: str
) -> None:
    """A call cancelled while its write waits for room (the gateway reads
    nothing) would leave part of a frame on the wire, and nothing sent after it
    would parse: the anyio driver drops the connection. The asyncio driver's
    transport takes a message whole or not at all, so there the connection
    goes on.

    Calls with no timeout are cancelled until one is cut off while its write
    waits, however much the buffers take first on this machine: under the
    anyio driver until the connection drops, under the asyncio driver until a
    call is refused for want of room ("could not send") and one more is
    cancelled waiting for it."""

    async def cancelled_upload(session: alphapoint.Session) -> None:
        with anyio.move_on_after(SHORT) as scope:
            await session.call("Upload", BIG)
        assert scope.cancelled_caught

    async with (
        alphapoint.connect(
            deaf_gateway_url,
            logout_on_close=False,
            close_timeout=SHORT,
            timeout=None,
            keepalive=None,
        ) as session,
        session.state_changes() as changes,
    ):
        if driver in CALLBACK_DRIVERS:
            for _ in range(ROUNDS):
                await cancelled_upload(session)
                with anyio.fail_after(LIMIT), pytest.raises(RequestTimeout) as info:
                    await session.call("Ping", timeout=SHORT)
                if str(info.value).startswith("could not send Ping"):
                    break
            else:
                pytest.fail(
                    f"{ROUNDS} messages of {len(BIG['blob'])} bytes never filled the buffers"
                )
            await cancelled_upload(session)  # cancelled while it waits for room
            assert session.is_open
            with anyio.fail_after(LIMIT), pytest.raises(RequestTimeout):
                await session.call("Ping", timeout=SHORT)
            assert session.is_open
        else:
            dropped: ConnectionClosed | None = None
            for _ in range(ROUNDS):
                try:
                    await cancelled_upload(session)
                except ConnectionClosed as exc:  # a call after the cut-off
                    dropped = exc
                    break
            assert dropped is not None, f"{ROUNDS} cancelled writes never dropped it"
            assert "code 1006" in str(dropped)  # dropped: no closing handshake
            with anyio.fail_after(LIMIT):
                with pytest.raises(ConnectionClosed, match="code 1006"):  # for good
                    await session.call("Ping", timeout=SHORT)
                # No reconnect: the session closes.
                assert [state async for state in changes] == [alphapoint.SessionState.CLOSED]
    assert alphapoint_tasks() == []


async def test_session_default_timeout_applies(alphapoint_gateway: GatewayFixture) -> None:
    alphapoint_gateway.gateway.answer_pings = False
    async with alphapoint.connect(alphapoint_gateway.url, timeout=SHORT) as session:
        with pytest.raises(RequestTimeout) as info:
            await session.call("Ping")
        assert info.value.timeout == SHORT
        # The session goes on: other calls are still answered.
        with pytest.raises(NotAuthorized):
            await session.call("GetUserInfo", timeout=LIMIT)
        alphapoint_gateway.gateway.answer_pings = True
        assert await session.call("Ping", timeout=LIMIT) == PONG


# -- the connection ends under pending calls -----------------------------------------


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_server_ending_the_connection_fails_every_pending_call(how: str) -> None:
    async def script(connection: ScriptedConnection) -> None:
        for _ in range(3):
            await connection.receive_frame()
        if how == "close":
            await connection.close(1001, "going away")
            await connection.wait_closed()
        else:
            await connection.abort()

    errors: list[ConnectionClosed] = []
    async with (
        serve_script(script) as server,
        alphapoint.connect(server.url, timeout=None) as session,
    ):

        async def call(number: int) -> None:
            try:
                await session.call("GetOpenOrders", {"number": number})
            except ConnectionClosed as exc:
                errors.append(exc)

        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tasks:
                for number in range(3):
                    tasks.start_soon(call, number)
        assert not session.is_open
        with pytest.raises(ConnectionClosed) as info:
            await session.call("Ping")
        errors.append(info.value)

    assert len(errors) == 4
    assert len({id(error) for error in errors}) == 4  # one exception object per raise
    for error in errors:
        assert type(error) is ConnectionClosed
        assert error.retryable
        if how == "close":
            assert error.code == 1001
            assert error.reason == "going away"
            assert "1001" in str(error)
        else:
            assert error.code != 1000


async def test_gateway_dropping_connections_fails_pending_calls(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    gateway.answer_pings = False
    errors: list[ConnectionClosed] = []
    async with alphapoint.connect(alphapoint_gateway.url, timeout=None) as session:
        with pytest.raises(NotAuthorized):  # the gateway has this connection now
            await session.call("GetUserInfo")

        async def ping() -> None:
            try:
                await session.call("Ping")
            except ConnectionClosed as exc:
                errors.append(exc)

        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tasks:
                for _ in range(5):
                    tasks.start_soon(ping)
                await wait_until(lambda: len(gateway.requests_for("Ping")) == 5)
                await gateway.drop_connections()
        with pytest.raises(ConnectionClosed):
            await session.call("GetUserInfo")
    assert len(errors) == 5
    assert all(type(error) is ConnectionClosed for error in errors)


async def test_closing_the_session_fails_pending_calls_with_session_closed() -> None:
    all_received = anyio.Event()

    async def script(connection: ScriptedConnection) -> None:
        for _ in range(3):
            await connection.receive_frame()
        all_received.set()
        await connection.wait_closed()

    errors: list[ConnectionClosed] = []
    async with (
        serve_script(script) as server,
        alphapoint.connect(server.url, timeout=None) as session,
    ):

        async def call() -> None:
            try:
                await session.call("GetOpenOrders")
            except ConnectionClosed as exc:
                errors.append(exc)

        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tasks:
                for _ in range(3):
                    tasks.start_soon(call)
                await all_received.wait()
                await session.aclose()
        assert len(errors) == 3
        assert all(type(error) is SessionClosed for error in errors)
        assert not any(error.retryable for error in errors)
        assert not session.is_open
        with pytest.raises(SessionClosed):
            await session.call("Ping")
        await session.aclose()  # idempotent


async def test_leaving_the_block_fails_calls_pending_in_other_tasks() -> None:
    received = anyio.Event()

    async def script(connection: ScriptedConnection) -> None:
        await connection.receive_frame()
        received.set()
        await connection.wait_closed()

    errors: list[ConnectionClosed] = []
    async with serve_script(script) as server:
        with anyio.fail_after(LIMIT):
            async with (
                anyio.create_task_group() as tasks,
                alphapoint.connect(server.url, timeout=None) as session,
            ):

                async def call() -> None:
                    try:
                        await session.call("GetOpenOrders")
                    except ConnectionClosed as exc:
                        errors.append(exc)

                tasks.start_soon(call)
                await received.wait()
    assert len(errors) == 1
    assert type(errors[0]) is SessionClosed


# -- messages that are not APEX ------------------------------------------------------


@pytest.mark.parametrize(
    ("garbage", "described"),
    [
        ("this is not JSON", "not JSON"),
        ("[1, 2, 3]", "array"),
        ('{"m": 1, "i": 2, "o": "{}"}', "'n'"),
        ('{"m": 1, "i": 2, "n": "Ping", "o": "not json"}', "not JSON"),
        ('{"m": 0, "i": 2, "n": "Ping", "o": "{}"}', "m=0"),
        (b"\x00\x01\x02binary", "binary"),
    ],
    ids=["not-json", "array", "missing-key", "payload-not-json", "client-type", "binary"],
)
async def test_unreadable_messages_are_counted_and_named_in_timeouts(
    garbage: str | bytes, described: str
) -> None:
    async def script(connection: ScriptedConnection) -> None:
        first = await connection.receive_frame()
        if isinstance(garbage, bytes):
            await connection.websocket.send_binary(garbage)
        else:
            await connection.send_text(garbage)
        await connection.reply(first, {"first": True})
        await connection.receive_frame()  # never answered
        third = await connection.receive_frame()
        await connection.reply(third, {"third": True})
        await connection.wait_closed()

    async with serve_script(script) as server, alphapoint.connect(server.url) as session:
        assert session.protocol_errors == 0
        # The garbage arrives before the reply, and uses the pending call's i=2.
        assert await session.call("First") == {"first": True}
        assert session.protocol_errors == 1
        with pytest.raises(RequestTimeout) as info:
            await session.call("Second", timeout=SHORT)
        message = str(info.value)
        assert "unreadable" in message
        assert described in message
        assert session.is_open
        assert await session.call("Third") == {"third": True}
        assert session.protocol_errors == 1


async def test_protocol_errors_accumulate_and_the_session_stays_usable() -> None:
    async def script(connection: ScriptedConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                request = await connection.receive_frame()
                await connection.send_text("<html>502 Bad Gateway</html>")
                await connection.websocket.send_binary(b"\xff\xfe")
                await connection.reply(request, {"ok": request.seq})

    async with serve_script(script) as server, alphapoint.connect(server.url) as session:
        for number in range(3):
            assert await session.call("Ping") == {"ok": 2 + 2 * number}
            assert session.protocol_errors == 2 * (number + 1)
        assert session.is_open


async def test_replies_nobody_asked_for_and_duplicates_are_ignored() -> None:
    async def script(connection: ScriptedConnection) -> None:
        first = await connection.receive_frame()
        await connection.send_frame(Frame(MessageType.REPLY, 1001, "Nobody", {"stray": 1}))
        await connection.send_frame(Frame(MessageType.ERROR, 1003, "Nobody", "Endpoint Not Found"))
        # A reply for the next i, before the client has asked it.
        await connection.send_frame(Frame(MessageType.REPLY, first.seq + 2, "Second", {"early": 1}))
        await connection.reply(first, {"first": 1})
        await connection.reply(first, {"first": "duplicate"})
        await connection.reply(first, "Endpoint Not Found", type=MessageType.ERROR)
        second = await connection.receive_frame()
        await connection.reply(second, {"second": 1})
        await connection.wait_closed()

    async with serve_script(script) as server, alphapoint.connect(server.url) as session:
        assert await session.call("First") == {"first": 1}
        assert await session.call("Second") == {"second": 1}
        assert session.protocol_errors == 0
        assert session.is_open


# -- events ---------------------------------------------------------------------------


async def test_events_filtered_by_name(alphapoint_gateway: GatewayFixture) -> None:
    gateway = alphapoint_gateway.gateway
    names = ["Level1UpdateEvent", "TradeDataUpdateEvent", "Level1UpdateEvent", "LogoutEvent"]
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        await session.call("Ping")  # the gateway has registered the connection
        async with (
            session.events("TradeDataUpdateEvent") as trades,
            session.events("Level1UpdateEvent", "LogoutEvent") as level1_and_logout,
            session.events() as everything,
        ):
            for number, name in enumerate(names):
                assert await gateway.send_event(name, {"number": number}) == 1
            got_trades = [await next_event(trades)]
            got_level1 = [await next_event(level1_and_logout) for _ in range(3)]
            got_all = [await next_event(everything) for _ in range(4)]
    assert [(e.function, e.payload) for e in got_trades] == [
        ("TradeDataUpdateEvent", {"number": 1})
    ]
    assert [(e.function, e.payload["number"]) for e in got_level1] == [
        ("Level1UpdateEvent", 0),
        ("Level1UpdateEvent", 2),
        ("LogoutEvent", 3),
    ]
    assert [(e.function, e.payload["number"]) for e in got_all] == [
        (name, number) for number, name in enumerate(names)
    ]


async def test_event_stream_ends_cleanly_when_the_session_closes(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    received: list[Any] = []
    ended: list[str] = []
    subscribed = anyio.Event()
    got_one = anyio.Event()
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        await session.call("Ping")

        async def consume() -> None:
            async with session.events("Tick") as events:
                subscribed.set()
                async for event in events:
                    received.append(event.payload)
                    got_one.set()
            ended.append("cleanly")

        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(consume)
                await subscribed.wait()
                await gateway.send_event("Tick", {"n": 1})
                await got_one.wait()
                await session.aclose()  # the consumer is waiting for the next event
        assert received == [{"n": 1}]
        assert ended == ["cleanly"]
        with pytest.raises(SessionClosed):
            async with session.events():
                pass


async def test_unread_events_are_delivered_before_the_stream_ends(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        await session.call("Ping")
        got: list[Any] = []
        async with session.events("Tick") as events:
            for n in range(3):
                await gateway.send_event("Tick", {"n": n})
            await session.call("Ping")  # the events came first: they are queued
            await session.aclose()
            await collect(events, got)
    assert got == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_a_stream_read_after_its_block_ends_instead_of_hanging(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        await session.call("Ping")
        async with session.events("Tick") as events:
            await gateway.send_event("Tick", {"n": 0})
            await session.call("Ping")
        await gateway.send_event("Tick", {"n": 1})  # after the block: not for this stream
        await session.call("Ping")
        got: list[Any] = []
        await collect(events, got)  # the session is still open
        assert got == [{"n": 0}]
        assert session.is_open


async def test_a_stream_iterated_without_async_with_raises(
    alphapoint_gateway: GatewayFixture,
) -> None:
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(alphapoint.UsageError, match="async with"):
            await collect(session.events("Tick"), [])


async def test_event_stream_raises_connection_closed_when_the_connection_is_lost(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        await session.call("Ping")
        got: list[Any] = []
        async with session.events("Tick") as events:
            for n in range(3):
                await gateway.send_event("Tick", {"n": n})
            await session.call("Ping")
            await gateway.drop_connections()
            with pytest.raises(ConnectionClosed) as info:
                await collect(events, got)
    assert got == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert type(info.value) is ConnectionClosed


async def test_waiting_event_consumer_gets_connection_closed(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    errors: list[BaseException] = []
    subscribed = anyio.Event()
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        await session.call("Ping")

        async def consume() -> None:
            try:
                async with session.events() as events:
                    subscribed.set()
                    async for _ in events:
                        pass
            except ConnectionClosed as exc:
                errors.append(exc)

        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(consume)
                await subscribed.wait()
                await gateway.drop_connections()
    assert len(errors) == 1
    assert type(errors[0]) is ConnectionClosed


async def test_event_overflow_when_a_small_buffer_fills(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    async with alphapoint.connect(alphapoint_gateway.url, event_buffer=2) as session:
        await session.call("Ping")
        async with session.events("Tick") as small, session.events("Tick", buffer=10) as large:
            for n in range(3):
                await gateway.send_event("Tick", {"n": n})
                # Events the small stream does not want never count against it.
                await gateway.send_event("Other", {"n": n})
            await session.call("Ping")  # every event above has been dispatched
            got: list[Any] = []
            with pytest.raises(EventOverflow) as info:
                await collect(small, got)
            assert got == [{"n": 0}, {"n": 1}]
            assert info.value.dropped == 1
            assert small.dropped == 1
            # The reader never blocked: the other stream has every event.
            assert [(await next_event(large)).payload["n"] for _ in range(3)] == [0, 1, 2]
            assert large.dropped == 0
        assert await session.call("Ping") == PONG


async def test_event_buffer_must_be_positive(alphapoint_gateway: GatewayFixture) -> None:
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(alphapoint.UsageError, match="buffer"):
            session.events(buffer=0)


# -- the async with block ------------------------------------------------------------


class Boom(Exception):
    pass


async def test_exception_in_the_block_propagates_unchanged(
    alphapoint_gateway: GatewayFixture,
) -> None:
    boom = Boom("from the block")
    sessions: list[alphapoint.Session] = []

    async def block() -> None:
        async with alphapoint.connect(alphapoint_gateway.url) as session:
            sessions.append(session)
            assert await session.call("Ping") == PONG
            raise boom

    with pytest.raises(Boom) as info:
        await block()
    assert info.value is boom
    assert info.value.__cause__ is None
    assert not sessions[0].is_open
    await wait_until(lambda: alphapoint_gateway.gateway.connection_count == 0)


async def test_exception_propagates_unchanged_from_an_event_loop() -> None:
    async def script(connection: ScriptedConnection) -> None:
        request = await connection.receive_frame()
        await connection.reply(request, PONG)
        await connection.event("Tick", {"n": 1}, seq=2)
        await connection.wait_closed()

    boom = Boom("from the consumer")

    async def block(url: str) -> None:
        async with alphapoint.connect(url) as session, session.events("Tick") as events:
            await session.call("Ping")
            with anyio.fail_after(LIMIT):
                async for _ in events:
                    raise boom

    async with serve_script(script) as server:
        with pytest.raises(Boom) as info:
            await block(server.url)
    assert info.value is boom


async def test_cancellation_inside_the_block_closes_the_session(
    alphapoint_gateway: GatewayFixture,
) -> None:
    with anyio.CancelScope() as scope:
        async with alphapoint.connect(alphapoint_gateway.url) as session:
            await session.call("Ping")
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert not session.is_open
    await wait_until(lambda: alphapoint_gateway.gateway.connection_count == 0)


async def test_leaving_the_block_closes_the_websocket_cleanly() -> None:
    close_codes: list[int | None] = []
    closed = anyio.Event()

    async def script(connection: ScriptedConnection) -> None:
        request = await connection.receive_frame()
        await connection.reply(request, PONG)
        try:
            while True:
                await connection.websocket.receive()
        except ConnectionClosed as exc:
            close_codes.append(exc.code)
        closed.set()

    async with serve_script(script) as server:
        async with alphapoint.connect(server.url) as session:
            assert await session.call("Ping") == PONG
        with anyio.fail_after(LIMIT):
            await closed.wait()
    assert close_codes == [1000]
    assert not session.is_open


async def test_leaving_the_block_leaves_no_connection(alphapoint_gateway: GatewayFixture) -> None:
    gateway = alphapoint_gateway.gateway
    async with alphapoint.connect(alphapoint_gateway.url) as first:
        await first.call("Ping")
        async with alphapoint.connect(alphapoint_gateway.url) as second:
            await second.call("Ping")
            assert gateway.connection_count == 2
        await wait_until(lambda: gateway.connection_count == 1)
        assert first.is_open
        assert await first.call("Ping") == PONG
    await wait_until(lambda: gateway.connection_count == 0)
    with pytest.raises(SessionClosed):
        await first.call("Ping")


async def test_leaving_the_block_is_bounded_when_the_server_ignores_the_close() -> None:
    async def script(connection: ScriptedConnection) -> None:
        request = await connection.receive_frame()
        await connection.reply(request, PONG)
        await anyio.sleep_forever()  # never reads the close frame

    async with serve_script(script) as server:
        with anyio.fail_after(LIMIT):
            async with alphapoint.connect(server.url, close_timeout=SHORT) as session:
                assert await session.call("Ping") == PONG
    assert not session.is_open


# -- payloads -------------------------------------------------------------------------


async def test_non_serialisable_payload_raises_invalid_payload(
    alphapoint_gateway: GatewayFixture,
) -> None:
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(InvalidPayload) as info:
            await session.call("SendOrder", {"Quantity": object()})
        assert isinstance(info.value, TypeError)
        assert "SendOrder" in str(info.value)
        with pytest.raises(InvalidPayload):
            await session.call("SendOrder", {"Quantity": float("nan")})
        assert session.is_open
        assert await session.call("Ping") == PONG
    # Nothing was sent for the refused payloads.
    assert [r.function for r in alphapoint_gateway.gateway.requests] == ["Ping"]


async def test_custom_gateway_configuration() -> None:
    gateway = Gateway([GatewayUser("erin", "erin-password", user_id=42)], oms_id=3)
    async with gateway.serve() as running, alphapoint.connect(running.url) as session:
        result = await session.login(alphapoint.PasswordCredentials("erin", "erin-password"))
        assert result.user is not None
        assert result.user.oms_id == 3
        info = await session.call("GetUserInfo")
        assert info["UserId"] == 42
        assert info["OMSId"] == 3

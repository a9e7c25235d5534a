"""The embedded gateway as a programmable test double: routes, refusals, pushed events.

Every test here talks to the ``alphapoint_gateway`` fixture's gateway (its own
thread and loop) over loopback, on each of the suite's event loops.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import anyio
import pytest
import websockets.sync.client

import alphapoint
from alphapoint import NotAuthorized, OperationFailed, RequestTimeout, ServerError
from alphapoint.errors import InvalidPayload
from alphapoint.frame import Frame, MessageType, decode_frame, encode_frame
from alphapoint.testing import GatewayFixture, Refusal, RequestContext

from .helpers import LIMIT, SHORT

pytestmark = pytest.mark.anyio


async def test_a_route_answers_a_function_the_gateway_does_not_know(
    alphapoint_gateway: GatewayFixture,
) -> None:
    seen: list[tuple[Any, RequestContext]] = []

    def send_order(payload: Any, context: RequestContext) -> Any:
        seen.append((payload, context))
        return {"status": "Accepted", "OrderId": 41 + len(seen)}

    assert alphapoint_gateway.gateway.route("SendOrder", send_order) is send_order
    order = {"InstrumentId": 1, "Side": 0, "Quantity": 0.5}
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        assert await session.call("SendOrder", order) == {"status": "Accepted", "OrderId": 42}
        await session.login(alphapoint_gateway.accounts.password)
        assert await session.call("SendOrder", order) == {"status": "Accepted", "OrderId": 43}
    [(first, before_login), (_, after_login)] = seen
    assert first == order
    assert before_login.function == "SendOrder"
    assert before_login.user is None
    assert after_login.user is not None
    assert (after_login.user.user_id, after_login.user.username) == (7, "alice")
    [request, _] = alphapoint_gateway.gateway.requests_for("SendOrder")
    assert before_login.connection == request.connection


async def test_route_as_a_decorator_with_an_async_handler(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway

    @gateway.route("GetOpenOrders")
    async def open_orders(payload: Any, context: RequestContext) -> Any:
        await anyio.lowlevel.checkpoint()
        return [{"OrderId": 1, "AccountId": payload["AccountId"]}]

    assert callable(open_orders)  # the decorator hands the function back
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        reply = await session.call("GetOpenOrders", {"AccountId": 1007})
    assert reply == [{"OrderId": 1, "AccountId": 1007}]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_refusal_answers_the_standard_reply_with_its_code(
    alphapoint_gateway: GatewayFixture, asynchronous: bool
) -> None:
    def refuse(payload: Any, context: RequestContext) -> Any:
        raise Refusal(101, "Not_Enough_Funds", detail="balance 0")

    async def refuse_later(payload: Any, context: RequestContext) -> Any:
        refuse(payload, context)

    alphapoint_gateway.gateway.route("SendOrder", refuse_later if asynchronous else refuse)
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(OperationFailed) as info:
            await session.call("SendOrder", {"Quantity": 1})
        assert await session.call("Ping") == {"msg": "PONG"}  # the connection goes on
    assert (info.value.code, info.value.message, info.value.detail) == (
        101,
        "Not_Enough_Funds",
        "balance 0",
    )
    assert alphapoint_gateway.gateway.handler_errors == []  # a refusal is no failure


async def test_a_route_replaces_a_built_in_function(alphapoint_gateway: GatewayFixture) -> None:
    @alphapoint_gateway.gateway.route("GetUserInfo")
    def user_info(payload: Any, context: RequestContext) -> Any:
        if context.user is None:
            raise Refusal(20, "Not Authorized")
        return {"UserId": context.user.user_id, "Nickname": "al"}

    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(NotAuthorized):
            await session.call("GetUserInfo")
        await session.login(alphapoint_gateway.accounts.password)
        assert await session.call("GetUserInfo") == {"UserId": 7, "Nickname": "al"}


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_failing_handler_answers_a_server_error_and_is_kept_for_the_test(
    alphapoint_gateway: GatewayFixture, asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = alphapoint_gateway.gateway

    def check(payload: Any, context: RequestContext) -> Any:
        assert payload["Side"] == 1, "the bot sent a buy"
        return {}

    async def check_later(payload: Any, context: RequestContext) -> Any:
        return check(payload, context)

    gateway.route("SendOrder", check_later if asynchronous else check)
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(ServerError) as info:
            await session.call("SendOrder", {"Side": 0})
        assert await session.call("Ping") == {"msg": "PONG"}  # the connection goes on
    assert info.value.detail == "the SendOrder handler raised AssertionError"
    with pytest.raises(AssertionError, match="the bot sent a buy"):
        gateway.check_handler_errors()
    gateway.check_handler_errors()  # each error is raised once: none is left
    assert gateway.handler_errors == []
    [record] = [
        r
        for r in caplog.records
        if r.name == "alphapoint.testing.gateway" and r.levelno >= logging.WARNING
    ]
    assert record.levelno == logging.ERROR
    assert "SendOrder" in record.getMessage()


async def test_a_reply_that_is_not_json_is_a_server_error(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    gateway.route("GetInstruments", lambda payload, context: {"Instruments": {1, 2}})
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(ServerError):
            await session.call("GetInstruments")
    [error] = gateway.handler_errors
    assert isinstance(error, InvalidPayload)
    gateway.handler_errors.clear()


async def test_a_route_takes_any_json_payload_and_may_answer_any_json_value(
    alphapoint_gateway: GatewayFixture,
) -> None:
    payloads: list[Any] = []

    def echo_count(payload: Any, context: RequestContext) -> Any:
        payloads.append(payload)
        return len(payloads)

    alphapoint_gateway.gateway.route("Count", echo_count)
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        assert await session.call("Count", [1, "two"]) == 1
        assert await session.call("Count") == 2
    assert payloads == [[1, "two"], {}]


def test_pushed_events_follow_the_reply_in_order(alphapoint_gateway: GatewayFixture) -> None:
    """Read as the raw frames a client receives (a blocking client, from a
    synchronous test): the reply, then each event pushed, in order."""

    @alphapoint_gateway.gateway.route("SendOrder")
    def send_order(payload: Any, context: RequestContext) -> Any:
        context.push("OrderStateEvent", {"OrderId": 9, "OrderState": "Working"})
        context.push("OrderTradeEvent", {"OrderId": 9, "Quantity": 1})
        return {"status": "Accepted", "OrderId": 9}

    with websockets.sync.client.connect(alphapoint_gateway.url, open_timeout=LIMIT) as websocket:
        websocket.send(encode_frame(Frame(MessageType.REQUEST, 2, "SendOrder", {"Quantity": 1})))
        frames = [decode_frame(websocket.recv(timeout=LIMIT)) for _ in range(3)]
    assert [(f.type, f.function) for f in frames] == [
        (MessageType.REPLY, "SendOrder"),
        (MessageType.EVENT, "OrderStateEvent"),
        (MessageType.EVENT, "OrderTradeEvent"),
    ]
    assert frames[0].seq == 2
    assert frames[0].payload == {"status": "Accepted", "OrderId": 9}
    assert frames[1].payload == {"OrderId": 9, "OrderState": "Working"}


async def test_a_session_receives_the_events_a_handler_pushes(
    alphapoint_gateway: GatewayFixture,
) -> None:
    @alphapoint_gateway.gateway.route("SendOrder")
    async def send_order(payload: Any, context: RequestContext) -> Any:
        context.push("OrderStateEvent", {"OrderId": 9, "OrderState": "Working"})
        return {"status": "Accepted", "OrderId": 9}

    async with (
        alphapoint.connect(alphapoint_gateway.url) as session,
        session.events("OrderStateEvent") as events,
    ):
        await session.call("SendOrder", {"Quantity": 1})
        with anyio.fail_after(LIMIT):
            event = await events.__anext__()
    assert event.payload == {"OrderId": 9, "OrderState": "Working"}


async def test_send_event_reaches_one_connection_by_number(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    async with (
        alphapoint.connect(alphapoint_gateway.url) as first,
        alphapoint.connect(alphapoint_gateway.url) as second,
        first.events() as first_events,
        second.events() as second_events,
    ):
        await first.call("Ping")
        await second.call("Ping")
        first_number, second_number = (r.connection for r in gateway.requests_for("Ping"))
        assert first_number != second_number
        assert await gateway.send_event("Hello", {"to": "second"}, connection=second_number) == 1
        assert await gateway.send_event("Hello", {"to": "all"}) == 2
        with anyio.fail_after(LIMIT):
            first_got = await first_events.__anext__()
            second_got = [await second_events.__anext__() for _ in range(2)]
    assert first_got.payload == {"to": "all"}  # the one for the second never came first
    assert [event.payload for event in second_got] == [{"to": "second"}, {"to": "all"}]


async def test_an_async_handler_does_not_hold_up_the_connection(
    alphapoint_gateway: GatewayFixture,
) -> None:
    """While a handler waits (here for the test), the same connection's Pings are answered."""
    started, release = threading.Event(), threading.Event()

    @alphapoint_gateway.gateway.route("SlowCall")
    async def slow(payload: Any, context: RequestContext) -> Any:
        started.set()
        # A blocking wait belongs in a worker thread: the handler runs on the gateway's loop.
        await anyio.to_thread.run_sync(release.wait, LIMIT)
        return "done"

    async with (
        alphapoint.connect(alphapoint_gateway.url) as session,
        anyio.create_task_group() as tasks,
    ):
        replies: list[Any] = []

        async def call_slow() -> None:
            replies.append(await session.call("SlowCall"))

        tasks.start_soon(call_slow)
        assert await anyio.to_thread.run_sync(started.wait, LIMIT)
        assert await session.call("Ping") == {"msg": "PONG"}
        assert replies == []
        release.set()
    assert replies == ["done"]


async def test_a_handler_that_never_answers_times_out_and_is_cancelled_on_close(
    alphapoint_gateway: GatewayFixture,
) -> None:
    cancelled = threading.Event()

    @alphapoint_gateway.gateway.route("Silence")
    async def silence(payload: Any, context: RequestContext) -> Any:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(RequestTimeout):
            await session.call("Silence", timeout=SHORT)
    # The client left: the gateway cancels what it was still working on for it.
    assert await anyio.to_thread.run_sync(cancelled.wait, LIMIT)


def test_route_and_refusal_refuse_bad_arguments() -> None:
    gateway, _ = alphapoint.testing.demo_gateway()
    with pytest.raises(TypeError, match="non-empty str"):
        gateway.route("", lambda payload, context: None)
    with pytest.raises(TypeError, match="callable"):
        gateway.route("SendOrder", "not a function")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="code is an int"):
        Refusal("101", "Operation Failed")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="code is an int"):
        Refusal(True, "Operation Failed")
    with pytest.raises(TypeError, match="message is a str"):
        Refusal(101, None)  # type: ignore[arg-type]
    refusal = Refusal(909, "Already Subscribed.")
    assert refusal.reply() == {
        "result": False,
        "errormsg": "Already Subscribed.",
        "errorcode": 909,
        "detail": None,
    }

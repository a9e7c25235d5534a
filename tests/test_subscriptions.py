"""Subscriptions as live gateways take them, and events routed to their instrument.

Live gateways are subscribed to with ordinary ``m=0`` requests answered ``m=1``;
array-shaped updates name their instrument by position; a duplicate subscribe
on a socket is answered 909 while the first keeps delivering (see
docs/protocol-captures.md for the captures behind each rule).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import alphapoint
from alphapoint import AlreadySubscribed, SessionState
from alphapoint.frame import MessageType
from alphapoint.testing import Gateway, GatewayFixture, TwoFactorKeys, demo_gateway
from alphapoint.testing.faults import login_reply
from alphapoint.testing.scripted import ScriptedConnection, serve_script

from .helpers import LIMIT, wait_until

pytestmark = pytest.mark.anyio


def level2_entry(instrument: int, price: float, *, update: int = 1) -> list[Any]:
    """[MDUpdateId, Accounts, ActionDateTime, ActionType, LastTradePrice, Orders,
    Price, ProductPairCode (the instrument), Quantity, Side]."""
    return [update, 1, 1700000000000, 0, price, 1, price, instrument, 0.5, 0]


def trade(instrument: int, trade_id: int) -> list[Any]:
    """[TradeId, InstrumentId, Quantity, Price, Order1, Order2, TradeTime, Direction,
    TakerSide, BlockTrade, ClientOrderId]."""
    return [trade_id, instrument, 0.1, 100.0, 11, 12, 1700000000000, 0, 1, False, 0]


def ticker(instrument: int, close: float) -> list[Any]:
    """[EndDateTime, High, Low, Open, Close, Volume, InsideBidPrice, InsideAskPrice,
    InstrumentId, BeginDateTime]."""
    return [1700000060000, close, close, close, close, 1.0, close, close, instrument, 1700000000000]


async def logged_in(fixture: GatewayFixture) -> alphapoint.connect:
    return alphapoint.connect(fixture.url, credentials=fixture.accounts.password)


async def test_subscribe_and_unsubscribe_are_m0_requests_checked_like_any_call(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    payload = {"OMSId": 1, "InstrumentId": 7}
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        # Not logged in: the gateway refuses (code 20), and the block is never entered.
        with anyio.fail_after(LIMIT), pytest.raises(alphapoint.NotAuthorized):
            async with session.subscribe("SubscribeLevel1", payload):
                pytest.fail("entered a refused subscription")
        await session.login(alphapoint_gateway.accounts.password)
        with anyio.fail_after(LIMIT):
            async with session.subscribe("SubscribeLevel1", payload) as level1:
                assert level1.snapshot["InstrumentId"] == 7
            async with session.subscribe(
                "SubscribeLevel1", payload, message_type=MessageType.SUBSCRIBE
            ):
                pass
    kinds = [
        (r.type, r.function) for r in gateway.requests if r.function.endswith("ubscribeLevel1")
    ]
    assert kinds == [
        (MessageType.REQUEST, "SubscribeLevel1"),  # refused
        (MessageType.REQUEST, "SubscribeLevel1"),
        (MessageType.REQUEST, "UnsubscribeLevel1"),
        (MessageType.SUBSCRIBE, "SubscribeLevel1"),  # asked for: m=2, then m=4
        (MessageType.UNSUBSCRIBE, "UnsubscribeLevel1"),
    ]


@pytest.mark.parametrize(
    ("subscribe", "event", "make"),
    [
        ("SubscribeLevel2", "Level2UpdateEvent", lambda i, n: level2_entry(i, 100.0 + n, update=n)),
        ("SubscribeTrades", "TradeDataUpdateEvent", trade),
        ("SubscribeTicker", "TickerDataUpdateEvent", lambda i, n: ticker(i, 100.0 + n)),
    ],
)
async def test_array_shaped_updates_reach_only_their_instruments_stream(
    alphapoint_gateway: GatewayFixture, subscribe: str, event: str, make: Any
) -> None:
    """Two instruments (7 and 89) on one session: each stream gets its own entries,
    also from an update that carries both (split into two)."""
    gateway = alphapoint_gateway.gateway
    async with (
        await logged_in(alphapoint_gateway) as session,
        session.subscribe(subscribe, {"OMSId": 1, "InstrumentId": 7}) as seven,
        session.subscribe(subscribe, {"OMSId": 1, "InstrumentId": 89}) as eighty_nine,
    ):
        with anyio.fail_after(LIMIT):
            assert await gateway.publish(event, [make(7, 1)]) == 1
            assert await gateway.publish(event, [make(89, 2)]) == 1
            assert await gateway.publish(event, [make(7, 3), make(89, 4), make(7, 5)]) == 1
            got_seven = [(await seven.__anext__()).payload for _ in range(2)]
            got_89 = [(await eighty_nine.__anext__()).payload for _ in range(2)]
    assert got_seven == [[make(7, 1)], [make(7, 3), make(7, 5)]]
    assert got_89 == [[make(89, 2)], [make(89, 4)]]


async def test_level1_objects_route_by_instrument_id(alphapoint_gateway: GatewayFixture) -> None:
    gateway = alphapoint_gateway.gateway
    async with (
        await logged_in(alphapoint_gateway) as session,
        session.subscribe("SubscribeLevel1", {"OMSId": 1, "InstrumentId": 1}) as one,
        session.subscribe("SubscribeLevel1", {"OMSId": 1, "InstrumentId": 2}) as two,
    ):
        with anyio.fail_after(LIMIT):
            for n, instrument in enumerate([1, 2, 2, 1]):
                await gateway.publish(
                    "Level1UpdateEvent", {"OMSId": 1, "InstrumentId": instrument, "BestBid": n}
                )
            got_one = [(await one.__anext__()).payload["BestBid"] for _ in range(2)]
            got_two = [(await two.__anext__()).payload["BestBid"] for _ in range(2)]
    assert (got_one, got_two) == ([0, 3], [1, 2])


async def test_a_subscription_by_symbol_gets_its_instruments_events(
    alphapoint_gateway: GatewayFixture,
) -> None:
    """Bitazza accepts ``Symbol``; events name the id, which the snapshot gave."""
    gateway = alphapoint_gateway.gateway
    assert gateway.symbols["ETHUSD"] == 2
    async with (
        await logged_in(alphapoint_gateway) as session,
        session.subscribe("SubscribeLevel1", {"OMSId": 1, "Symbol": "ETHUSD"}) as eth,
        session.subscribe("SubscribeLevel1", {"OMSId": 1, "InstrumentId": 1}) as btc,
    ):
        assert eth.snapshot["InstrumentId"] == 2
        assert eth.instrument == 2
        with anyio.fail_after(LIMIT):
            await gateway.publish("Level1UpdateEvent", {"OMSId": 1, "InstrumentId": 1, "n": 0})
            await gateway.publish("Level1UpdateEvent", {"OMSId": 1, "InstrumentId": 2, "n": 1})
            assert (await eth.__anext__()).payload["n"] == 1
            assert (await btc.__anext__()).payload["n"] == 0
        with pytest.raises(alphapoint.ResourceNotFound):
            async with session.subscribe("SubscribeLevel1", {"OMSId": 1, "Symbol": "NOPE"}):
                pass


async def test_a_resubscribe_answered_909_after_a_relogin_keeps_the_stream(
    alphapoint_gateway: GatewayFixture,
) -> None:
    """After a LogoutEvent and a new login on the same socket, the subscription is
    sent again; the gateway still holds it and answers 909: it counts as
    subscribed, and the events keep coming."""
    gateway = alphapoint_gateway.gateway
    payload = {"OMSId": 1, "InstrumentId": 1}
    async with (
        alphapoint.connect(
            alphapoint_gateway.url,
            credentials=alphapoint_gateway.accounts.password,
            relogin=alphapoint.Relogin(initial=0.01, maximum=0.02),
        ) as session,
        session.subscribe("SubscribeLevel1", payload) as level1,
        session.state_changes() as states,
    ):
        with anyio.fail_after(LIMIT):
            assert await gateway.logout_event() == 1
            async for state in states:
                if state is SessionState.AUTHENTICATED:
                    break
            assert level1.resubscribed == 1
            await gateway.publish("Level1UpdateEvent", {**payload, "BestBid": 5.0})
            assert (await level1.__anext__()).payload["BestBid"] == 5.0
    replies = gateway.requests_for("SubscribeLevel1")
    assert len(replies) == 2
    assert replies[0].connection == replies[1].connection  # the same socket


async def test_a_subscription_entered_while_the_gateway_ends_the_login_is_sent_once() -> None:
    """The LogoutEvent and the subscribe cross: the subscribe is refused with code 20
    (or waits for the re-login), and is sent once after it, by its own call only;
    the re-login's resubscribe of the live ones must not send it too (a 909)."""
    gateway, accounts = demo_gateway()
    payload = {"OMSId": 1, "InstrumentId": 1}
    with anyio.fail_after(LIMIT):
        async with gateway.serve() as running, alphapoint.connect(running.url) as session:
            await session.login(accounts.password)
            assert await gateway.logout_event() == 1
            async with session.subscribe("SubscribeTrades", payload) as trades:
                assert trades.subscribed
            assert session.authenticated
    functions = [
        r.function
        for r in gateway.requests
        if r.function in ("AuthenticateUser", "SubscribeTrades")
    ]
    last_login = len(functions) - 1 - functions[::-1].index("AuthenticateUser")
    assert functions[last_login + 1 :] == ["SubscribeTrades"]


async def test_909_on_a_new_connection_ends_the_stream() -> None:
    """On a new connection a 909 is not ours: the stream ends with AlreadySubscribed."""
    connections = 0

    async def script(connection: ScriptedConnection) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        async for request in connection.requests():
            if request.function == "AuthenticateUser":
                await connection.reply(request, login_reply("token"))
            elif request.function == "WebAuthenticateUser":
                await connection.reply(request, {"Authenticated": False})
            elif request.function == "SubscribeLevel1" and first:
                await connection.reply(request, {"OMSId": 1, "InstrumentId": 1})
                await connection.abort()  # drop: the session reconnects
                return
            elif request.function == "SubscribeLevel1":
                refusal = {"result": False, "errormsg": "Already Subscribed.", "errorcode": 909}
                await connection.reply(request, refusal)
            else:
                await connection.reply(request, {"result": True, "errorcode": 0})

    credentials = alphapoint.PasswordCredentials("alice", "pw")
    async with (
        serve_script(script) as server,
        alphapoint.connect(
            server.url, credentials=credentials, reconnect=alphapoint.Backoff(initial=0.01)
        ) as session,
        session.subscribe("SubscribeLevel1", {"OMSId": 1, "InstrumentId": 1}) as level1,
    ):
        with anyio.fail_after(LIMIT), pytest.raises(AlreadySubscribed):
            await level1.__anext__()
        await wait_until(lambda: session.authenticated)


async def test_a_2fa_login_answered_ndax_style() -> None:
    """NDAX names the kind and token AuthType and Pending2FaToken."""
    gateway, accounts = demo_gateway()
    gateway.two_factor_keys = TwoFactorKeys.NDAX
    async with (
        gateway.serve(port=0) as running,
        alphapoint.connect(running.url) as session,
    ):
        with anyio.fail_after(LIMIT):
            first = await session.authenticate(accounts.two_factor)
            assert first.status is alphapoint.AuthStatus.TWO_FACTOR_REQUIRED
            assert first.two_fa_type == "Google"
            assert first.two_fa_token  # the Pending2FaToken
            assert first.addtl_info is None  # sent empty: read as absent
            result = await session.login(
                accounts.two_factor, two_factor=alphapoint.Totp(accounts.two_factor_secret)
            )
        assert result.status is alphapoint.AuthStatus.AUTHENTICATED
    assert isinstance(gateway, Gateway)

"""Managed sessions that stay logged in: reconnect, resume, re-login, keepalive, closing.

Every test runs against the embedded gateway over loopback (or a scripted
server where the gateway cannot misbehave the way a test needs), under
asyncio and trio. A gateway restart is ``running.stop()`` then
``running.start()`` on the same port. Progress is observed through
``session.state_changes()`` and the gateway's request log, never by sleeping;
every wait is bounded by ``LIMIT`` so that a bug fails a test instead of
hanging it. Backoff delays are a few milliseconds and carry no jitter.
"""

from __future__ import annotations

import contextlib
import gc
import weakref
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import pytest

import alphapoint
from alphapoint import (
    AccountLocked,
    AuthenticationError,
    AuthenticationRejected,
    AuthStatus,
    Backoff,
    ConnectError,
    ConnectionClosed,
    Event,
    Keepalive,
    NotAuthorized,
    PasswordCredentials,
    Relogin,
    SessionClosed,
    SessionState,
    StateChanges,
    Totp,
)
from alphapoint.connection import Connection
from alphapoint.drivers import Driver
from alphapoint.drivers.server import accept_websocket
from alphapoint.frame import MessageType
from alphapoint.testing import Gateway, GatewayFixture, RunningGateway, demo_gateway
from alphapoint.testing.scripted import ScriptedConnection, serve_script, serve_tcp

from .helpers import CALLBACK_DRIVERS, LIMIT, no_jitter, running_tasks, wait_until

pytestmark = pytest.mark.anyio


#: Reconnect at once, a few milliseconds apart, with no randomness.
FAST = Backoff(initial=0.01, maximum=0.05, jitter=no_jitter)
#: Log in again at once, a few milliseconds apart, however often the gateway logs us out.
FAST_RELOGIN = Relogin(initial=0.01, maximum=0.05, per_minute=1000, max_in_a_row=None)

RECONNECTING = SessionState.RECONNECTING
AUTHENTICATING = SessionState.AUTHENTICATING
AUTHENTICATED = SessionState.AUTHENTICATED
CLOSED = SessionState.CLOSED

#: What a session goes through when its connection is replaced.
RECONNECTED = [RECONNECTING, AUTHENTICATING, AUTHENTICATED]

LEVEL1 = {"OMSId": 1, "InstrumentId": 1}


def managed(fixture: GatewayFixture, **options: Any) -> alphapoint.connect:
    """A managed session on the fixture's gateway: alice, fast reconnects, no keepalive."""
    options.setdefault("credentials", fixture.accounts.password)
    options.setdefault("reconnect", FAST)
    options.setdefault("relogin", FAST_RELOGIN)
    options.setdefault("keepalive", None)
    return alphapoint.connect(fixture.url, **options)


async def restart(running: RunningGateway) -> None:
    """The gateway goes down, cutting every connection, and comes back on the same port."""
    port = running.port
    await running.stop()
    await running.start()
    assert running.port == port


async def states_until(changes: StateChanges, last: SessionState) -> list[SessionState]:
    """The states entered, up to and including ``last``."""
    seen: list[SessionState] = []
    with anyio.fail_after(LIMIT):
        async for state in changes:
            seen.append(state)
            if state is last:
                return seen
    pytest.fail(f"the session stopped changing state before {last}: {seen}")


async def all_states(changes: StateChanges) -> list[SessionState]:
    """Every state entered until the session ends."""
    with anyio.fail_after(LIMIT):
        return [state async for state in changes]


async def next_event(events: alphapoint.EventStream) -> Event:
    with anyio.fail_after(LIMIT):
        return await events.__anext__()


def functions(gateway: Gateway) -> list[str]:
    """The functions the gateway was asked for, in order."""
    return [request.function for request in gateway.requests]


# -- resuming after a restart ----------------------------------------------------------


async def test_a_restart_is_resumed_with_the_session_token(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway, running = alphapoint_gateway.gateway, alphapoint_gateway.running
    async with managed(alphapoint_gateway) as session:
        assert session.connection_number == 1
        user = session.user
        assert user is not None
        assert user.user_name == "alice"
        async with session.state_changes() as changes:
            await restart(running)
            assert await states_until(changes, AUTHENTICATED) == RECONNECTED
        info = await session.call("GetUserInfo")
        assert info["UserName"] == "alice"
        assert session.authenticated
        assert session.user == user  # the resume keeps what the login said
        assert session.connection_number == 2
    logins = gateway.requests_for("AuthenticateUser")
    resumes = gateway.requests_for("WebAuthenticateUser")
    assert len(logins) == 1  # no second AuthenticateUser was needed
    assert len(resumes) == 1
    assert set(resumes[0].payload) == {"SessionToken"}  # no password sent again
    assert resumes[0].connection != logins[0].connection
    after = [r.function for r in gateway.requests if r.connection == resumes[0].connection]
    assert after == ["WebAuthenticateUser", "GetUserInfo", "LogOut"]


async def test_resume_false_logs_in_with_the_credentials(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway, running = alphapoint_gateway.gateway, alphapoint_gateway.running
    async with managed(alphapoint_gateway, resume=False) as session:
        async with session.state_changes() as changes:
            await restart(running)
            assert await states_until(changes, AUTHENTICATED) == RECONNECTED
        assert (await session.call("GetUserInfo"))["UserName"] == "alice"
    assert gateway.requests_for("WebAuthenticateUser") == []
    logins = gateway.requests_for("AuthenticateUser")
    assert len(logins) == 2
    assert logins[0].connection != logins[1].connection
    assert logins[1].payload == alphapoint_gateway.accounts.password.authenticate_payload()


async def test_a_refused_session_token_falls_back_to_a_fresh_api_key_login(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway, running = alphapoint_gateway.gateway, alphapoint_gateway.running
    credentials = alphapoint_gateway.accounts.api_key
    async with managed(alphapoint_gateway, credentials=credentials) as session:
        async with session.state_changes() as changes:
            gateway.expire_session_tokens()  # as if the hour had passed
            await restart(running)
            assert await states_until(changes, AUTHENTICATED) == RECONNECTED
        assert (await session.call("GetUserInfo"))["UserName"] == "alice"
        assert session.user is not None
        assert session.user.user_id == 7
    logins = gateway.requests_for("AuthenticateUser")
    assert len(logins) == 2
    assert all(login.payload["APIKey"] == credentials.api_key for login in logins)
    # A fresh nonce (the gateway refuses a reused one), so a fresh signature.
    assert logins[0].payload["Nonce"] != logins[1].payload["Nonce"]
    assert logins[0].payload["Signature"] != logins[1].payload["Signature"]
    second = [r.function for r in gateway.requests if r.connection == logins[1].connection]
    assert second == ["WebAuthenticateUser", "AuthenticateUser", "GetUserInfo", "LogOut"]


# -- calls across a drop -----------------------------------------------------------------


async def test_a_call_in_flight_during_a_drop_fails_and_is_not_sent_again(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    gateway.answer_pings = False  # the Ping stays unanswered: in flight when the drop comes
    errors: list[ConnectionClosed] = []
    async with (
        managed(alphapoint_gateway, timeout=LIMIT) as session,
        session.state_changes() as changes,
    ):

        async def ping() -> None:
            with pytest.raises(ConnectionClosed) as info:
                await session.call("Ping")
            errors.append(info.value)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ping)
            # The gateway has no event for "request received": poll its log.
            await wait_until(lambda: len(gateway.requests_for("Ping")) == 1)
            await gateway.drop_connections()
        assert len(errors) == 1
        assert type(errors[0]) is ConnectionClosed
        assert errors[0].retryable is True

        assert await states_until(changes, AUTHENTICATED) == RECONNECTED
        assert (await session.call("GetUserInfo"))["UserName"] == "alice"
        gateway.answer_pings = True
    # The Ping went out once, on the first connection, and never again.
    pings = gateway.requests_for("Ping")
    assert len(pings) == 1
    assert pings[0].connection == gateway.requests_for("AuthenticateUser")[0].connection
    resumed_on = gateway.requests_for("WebAuthenticateUser")[0].connection
    assert [r.function for r in gateway.requests if r.connection == resumed_on] == [
        "WebAuthenticateUser",
        "GetUserInfo",
        "LogOut",
    ]


async def test_calls_made_while_reconnecting_wait_and_succeed(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway, running = alphapoint_gateway.gateway, alphapoint_gateway.running
    results: list[Any] = []
    async with managed(alphapoint_gateway) as session, session.state_changes() as changes:
        await running.stop()
        assert await states_until(changes, RECONNECTING) == [RECONNECTING]

        async def get_user_info() -> None:
            results.append(await session.call("GetUserInfo", timeout=LIMIT))

        async with anyio.create_task_group() as tasks:
            for _ in range(3):
                tasks.start_soon(get_user_info)
            await anyio.wait_all_tasks_blocked()
            # Every call is parked: the gateway is down and nothing failed.
            assert results == []
            assert session.state is RECONNECTING
            await running.start()
        assert [info["UserName"] for info in results] == ["alice"] * 3
        assert session.state is AUTHENTICATED
    resumed_on = gateway.requests_for("WebAuthenticateUser")[0].connection
    # Each call was sent once, on the new connection, after the resume.
    assert [r.function for r in gateway.requests if r.connection == resumed_on] == [
        "WebAuthenticateUser",
        "GetUserInfo",
        "GetUserInfo",
        "GetUserInfo",
        "LogOut",
    ]


async def test_a_call_times_out_if_the_gateway_stays_down(
    alphapoint_gateway: GatewayFixture,
) -> None:
    running = alphapoint_gateway.running
    async with managed(alphapoint_gateway) as session, session.state_changes() as changes:
        await running.stop()
        assert await states_until(changes, RECONNECTING) == [RECONNECTING]
        with pytest.raises(alphapoint.RequestTimeout) as info:
            await session.call("GetUserInfo", timeout=0.1)
        assert "not ready" in str(info.value)
        assert session.is_open  # still trying
        await running.start()
        assert (await session.call("GetUserInfo", timeout=LIMIT))["UserName"] == "alice"


# -- state -------------------------------------------------------------------------------------


async def test_state_changes_and_the_callback_follow_every_reconnect(
    alphapoint_gateway: GatewayFixture,
) -> None:
    running = alphapoint_gateway.running
    seen_by_callback: list[SessionState] = []
    async with managed(alphapoint_gateway, on_state_change=seen_by_callback.append) as session:
        assert session.state is AUTHENTICATED
        assert session.connection_number == 1
        async with session.state_changes() as changes:
            for number in (2, 3):
                await restart(running)
                assert await states_until(changes, AUTHENTICATED) == RECONNECTED
                assert session.connection_number == number
                assert (await session.call("GetUserInfo"))["UserName"] == "alice"
        async with session.state_changes() as last:
            await session.aclose()
            assert await all_states(last) == [CLOSED]  # and then the iterator ends
    assert session.state is CLOSED
    assert seen_by_callback == [AUTHENTICATING, AUTHENTICATED, *RECONNECTED, *RECONNECTED, CLOSED]


# -- subscriptions -----------------------------------------------------------------------------


async def test_a_subscription_keeps_delivering_across_a_restart(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway, running = alphapoint_gateway.gateway, alphapoint_gateway.running
    async with (
        managed(alphapoint_gateway) as session,
        session.subscribe("SubscribeLevel1", LEVEL1) as level1,
    ):
        assert level1.snapshot["InstrumentId"] == 1
        assert level1.resubscribed == 0
        assert gateway.subscribers("SubscribeLevel1") == 1
        assert await gateway.publish("Level1UpdateEvent", {**LEVEL1, "BestBid": 1.0}) == 1
        first = await next_event(level1)
        assert (first.function, first.payload["BestBid"]) == ("Level1UpdateEvent", 1.0)

        async with session.state_changes() as changes:
            await restart(running)
            assert gateway.subscribers("SubscribeLevel1") == 0  # the new gateway knows nothing
            # The session resubscribes before it reports itself logged in again.
            assert await states_until(changes, AUTHENTICATED) == RECONNECTED
        assert level1.resubscribed == 1
        assert gateway.subscribers("SubscribeLevel1") == 1

        # Another instrument's update reaches the connection but not this subscription.
        other = {"OMSId": 1, "InstrumentId": 2, "BestBid": 99.0}
        assert await gateway.send_event("Level1UpdateEvent", other) == 1
        assert await gateway.publish("Level1UpdateEvent", {**LEVEL1, "BestBid": 2.0}) == 1
        second = await next_event(level1)
        assert second.payload == {**LEVEL1, "BestBid": 2.0}
    assert gateway.subscribers("SubscribeLevel1") == 0
    subscribes = gateway.requests_for("SubscribeLevel1")
    assert [(r.type, r.payload) for r in subscribes] == [
        (MessageType.REQUEST, LEVEL1)
    ] * 2  # m=0, as live gateways expect
    assert subscribes[0].connection != subscribes[1].connection
    unsubscribes = gateway.requests_for("UnsubscribeLevel1")
    assert [(r.type, r.payload) for r in unsubscribes] == [(MessageType.REQUEST, LEVEL1)]
    assert unsubscribes[0].connection == subscribes[1].connection


# -- logged out by the gateway ------------------------------------------------------------------


async def test_a_logout_event_leads_to_a_new_login(alphapoint_gateway: GatewayFixture) -> None:
    gateway = alphapoint_gateway.gateway
    async with (
        managed(alphapoint_gateway) as session,
        session.subscribe("SubscribeLevel1", LEVEL1) as level1,
        session.state_changes() as changes,
    ):
        assert await gateway.logout_event() == 1
        assert await states_until(changes, AUTHENTICATED) == [AUTHENTICATING, AUTHENTICATED]
        assert session.authenticated
        assert session.is_open
        assert session.connection_number == 1  # logged in again on the same connection
        assert (await session.call("GetUserInfo"))["UserName"] == "alice"
        # The gateway dropped the subscription with the login; it was sent again.
        assert gateway.subscribers("SubscribeLevel1") == 1
        assert level1.resubscribed == 1
        assert await gateway.publish("Level1UpdateEvent", {**LEVEL1, "BestBid": 3.0}) == 1
        assert (await next_event(level1)).payload["BestBid"] == 3.0
    logins = gateway.requests_for("AuthenticateUser")
    assert len(logins) == 2
    assert logins[0].connection == logins[1].connection


async def test_a_call_refused_with_code_20_is_retried_once_after_a_new_login(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    async with managed(alphapoint_gateway) as session:
        assert (await session.call("GetUserInfo"))["UserName"] == "alice"
        gateway.forget_logins()
        info = await session.call("GetUserInfo")
        assert info["UserName"] == "alice"
        assert session.authenticated
        assert session.connection_number == 1
    assert functions(gateway) == [
        "AuthenticateUser",
        "GetUserInfo",
        "GetUserInfo",  # refused with code 20: not acted on
        # The token went with the login: no resume is tried, the credentials log in.
        "AuthenticateUser",
        "GetUserInfo",  # the same call, once more
        "LogOut",
    ]


async def test_several_calls_refused_with_code_20_are_each_retried_once(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    results: list[Any] = []
    async with managed(alphapoint_gateway) as session:
        assert (await session.call("GetUserInfo"))["UserName"] == "alice"
        gateway.forget_logins()

        async def get_user_info() -> None:
            results.append(await session.call("GetUserInfo"))

        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tasks:
                for _ in range(3):
                    tasks.start_soon(get_user_info)
        assert [info["UserName"] for info in results] == ["alice"] * 3
        assert session.authenticated
    # One new login for all of them, and each call sent exactly twice.
    assert len(gateway.requests_for("AuthenticateUser")) == 2
    assert len(gateway.requests_for("GetUserInfo")) == 1 + 3 * 2


async def test_calls_racing_a_logout_event_succeed_after_one_new_login(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    results: list[Any] = []
    async with managed(alphapoint_gateway) as session:
        assert (await session.call("GetUserInfo"))["UserName"] == "alice"

        async def get_user_info() -> None:
            results.append(await session.call("GetUserInfo"))

        # The calls go out before the session has read the LogoutEvent ahead of
        # their refusals (or after, and wait for the new login): either way
        # each one succeeds, and the session logs in again only once.
        assert await gateway.logout_event() == 1
        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tasks:
                for _ in range(5):
                    tasks.start_soon(get_user_info)
        assert [info["UserName"] for info in results] == ["alice"] * 5
        assert session.authenticated
        assert session.state is AUTHENTICATED
    assert len(gateway.requests_for("AuthenticateUser")) == 2
    assert len(gateway.requests_for("GetUserInfo")) <= 1 + 5 * 2


async def test_code_20_again_after_the_new_login_is_raised_not_retried_forever() -> None:
    received: list[str] = []
    login = {
        "Authenticated": True,
        "SessionToken": "a" * 32,
        "User": {"UserId": 7, "UserName": "alice", "AccountId": 1007, "OMSId": 1},
        "Locked": False,
        "Requires2FA": False,
        "errormsg": None,
    }
    refused = {"result": False, "errormsg": "Not Authorized", "errorcode": 20, "detail": None}
    done = {"result": True, "errormsg": None, "errorcode": 0, "detail": None}

    async def script(connection: ScriptedConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                request = await connection.receive_frame()
                received.append(request.function)
                if request.function == "AuthenticateUser":
                    await connection.reply(request, login)
                elif request.function == "WebAuthenticateUser":
                    await connection.reply(
                        request, {"Authenticated": True, "SessionToken": "a" * 32, "UserId": 7}
                    )
                elif request.function == "LogOut":
                    await connection.reply(request, done)
                else:
                    await connection.reply(request, refused)

    credentials = PasswordCredentials("alice", "password")
    async with (
        serve_script(script) as server,
        alphapoint.connect(
            server.url, credentials=credentials, reconnect=FAST, keepalive=None
        ) as session,
    ):
        with anyio.fail_after(LIMIT), pytest.raises(NotAuthorized) as info:
            await session.call("GetOpenOrders")
        assert info.value.code == 20
        assert session.is_open
        assert session.authenticated
    assert received == [
        "AuthenticateUser",
        "GetOpenOrders",
        "AuthenticateUser",  # the re-login, with the credentials
        "GetOpenOrders",
        "LogOut",
    ]


# -- two-factor users ---------------------------------------------------------------------------


async def test_a_totp_user_logs_in_again_after_every_reconnect(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway, accounts = alphapoint_gateway.gateway, alphapoint_gateway.accounts
    async with (
        managed(
            alphapoint_gateway,
            credentials=accounts.two_factor,
            two_factor=Totp(accounts.two_factor_secret),
            resume=False,
        ) as session,
        session.state_changes() as changes,
    ):
        for number in (2, 3, 4):
            await gateway.drop_connections()
            assert await states_until(changes, AUTHENTICATED) == RECONNECTED
            assert session.connection_number == number
            assert (await session.call("GetUserInfo"))["UserName"] == "bob"
    codes = gateway.requests_for("Authenticate2FA")
    assert len(codes) == 4
    assert len({request.connection for request in codes}) == 4
    assert len(gateway.requests_for("AuthenticateUser")) == 4
    assert gateway.requests_for("WebAuthenticateUser") == []


# -- half-open connections ------------------------------------------------------------------------


async def test_an_answering_gateway_keeps_the_session_on_one_connection(
    alphapoint_gateway: GatewayFixture,
) -> None:
    """Pings go out while the session is idle, are answered, and nothing is dropped."""
    gateway = alphapoint_gateway.gateway
    keepalive = Keepalive(interval=0.05, timeout=LIMIT)
    async with managed(alphapoint_gateway, keepalive=keepalive) as session:
        await wait_until(lambda: len(gateway.requests_for("Ping")) >= 3)
        assert session.state is AUTHENTICATED
        assert (await session.call("GetUserInfo"))["UserName"] == "alice"
    assert session.connection_number == 1
    first = gateway.requests_for("AuthenticateUser")[0].connection
    assert {r.connection for r in gateway.requests_for("Ping")} == {first}


async def test_a_silent_gateway_is_dropped_by_the_keepalive_and_replaced(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    gateway.answer_pings = False  # the connection looks open, but nothing answers
    keepalive = Keepalive(interval=0.1, timeout=0.1)
    async with (
        managed(alphapoint_gateway, keepalive=keepalive) as session,
        session.state_changes() as changes,
    ):
        assert await states_until(changes, RECONNECTING) == [RECONNECTING]
        gateway.answer_pings = True
        assert await states_until(changes, AUTHENTICATED) == [AUTHENTICATING, AUTHENTICATED]
        assert session.connection_number >= 2
        assert (await session.call("GetUserInfo"))["UserName"] == "alice"
    # What dropped the first connection: a Ping that got no answer.
    first = gateway.requests_for("AuthenticateUser")[0].connection
    assert [r.function for r in gateway.requests if r.connection == first] == [
        "AuthenticateUser",
        "Ping",
    ]


async def test_a_silent_gateway_ends_a_session_without_reconnect(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    gateway.answer_pings = False
    keepalive = Keepalive(interval=0.1, timeout=0.1)
    async with (
        managed(alphapoint_gateway, reconnect=False, keepalive=keepalive) as session,
        session.state_changes() as changes,
    ):
        assert await all_states(changes) == [CLOSED]
        assert not session.is_open
        with pytest.raises(ConnectionClosed) as info:
            await session.call("GetUserInfo")
        assert "keepalive" in str(info.value)
    assert session.connection_number == 1
    assert gateway.requests_for("WebAuthenticateUser") == []


# -- giving up -------------------------------------------------------------------------------


async def test_a_session_gives_up_after_max_attempts(alphapoint_gateway: GatewayFixture) -> None:
    running = alphapoint_gateway.running
    policy = Backoff(initial=0.01, maximum=0.05, jitter=no_jitter, max_attempts=3)
    errors: list[ConnectionClosed] = []
    async with managed(alphapoint_gateway, reconnect=policy) as session:
        async with session.state_changes() as changes:
            await running.stop()  # and it stays down

            async def waiting_call() -> None:
                with pytest.raises(ConnectionClosed) as info:
                    await session.call("GetUserInfo", timeout=None)
                errors.append(info.value)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(waiting_call)
                assert await all_states(changes) == [RECONNECTING, CLOSED]
        assert session.state is CLOSED
        assert not session.is_open
        assert len(errors) == 1
        with pytest.raises(ConnectionClosed) as info:
            await session.call("GetUserInfo")
        assert isinstance(info.value, SessionClosed)
        assert isinstance(info.value.__cause__, ConnectError)


async def test_max_attempts_counts_every_failed_attempt() -> None:
    """Attempts that reach a listener which hangs up before the handshake each
    count. One listener serves the first connection (through the gateway) and
    hangs up on every later one: it is there before the drop, so no attempt is
    refused for want of it, whatever the reconnect's timer and the loop do.
    The gateway serves on this test's loop (not the fixture's thread): the
    listener hands it the connection."""
    gateway, accounts = demo_gateway()
    policy = Backoff(initial=0.01, maximum=0.05, jitter=no_jitter, max_attempts=3)

    async def first_served_then_hung_up(stream: anyio.abc.ByteStream) -> None:
        if server.connections == 1:
            websocket = await accept_websocket(stream)
            assert websocket is not None
            await gateway.handle(websocket)
        # Later ones: closed before the WebSocket handshake; the attempt fails.

    async with (
        serve_tcp(first_served_then_hung_up) as server,
        alphapoint.connect(
            server.url,
            credentials=accounts.password,
            reconnect=policy,
            keepalive=None,
        ) as session,
    ):
        async with session.state_changes() as changes:
            await gateway.drop_connections()
            assert await all_states(changes) == [RECONNECTING, CLOSED]
        assert server.connections == 1 + 3
        with pytest.raises(SessionClosed) as info:
            await session.call("GetUserInfo")
        assert isinstance(info.value.__cause__, ConnectError)


async def test_successful_reconnects_do_not_count_towards_max_attempts(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    policy = Backoff(initial=0.01, maximum=0.05, jitter=no_jitter, max_attempts=2)
    async with (
        managed(alphapoint_gateway, reconnect=policy) as session,
        session.state_changes() as changes,
    ):
        # Each drop is followed by a reconnect that succeeds at the first try:
        # no attempt ever failed, so the session never gives up.
        for number in (2, 3, 4, 5):
            await gateway.drop_connections()
            assert await states_until(changes, AUTHENTICATED) == RECONNECTED
            assert session.connection_number == number
        assert session.is_open
        assert (await session.call("GetUserInfo"))["UserName"] == "alice"


@pytest.mark.parametrize("how", ["restart", "logout_event"])
async def test_a_rejected_new_login_ends_the_session(
    alphapoint_gateway: GatewayFixture, how: str
) -> None:
    gateway, running = alphapoint_gateway.gateway, alphapoint_gateway.running
    async with (
        managed(alphapoint_gateway, resume=False) as session,
        session.state_changes() as changes,
    ):
        gateway.users["alice"].password = "changed-by-an-administrator"
        if how == "restart":
            await restart(running)
            expected = [RECONNECTING, AUTHENTICATING, CLOSED]
        else:
            await gateway.logout_event()
            expected = [AUTHENTICATING, CLOSED]
        assert await all_states(changes) == expected
        assert not session.is_open
        assert not session.authenticated
        with pytest.raises(SessionClosed) as info:
            await session.call("GetUserInfo")
        cause = info.value.__cause__
        assert isinstance(cause, AuthenticationRejected)
        assert cause.result.status is AuthStatus.REJECTED
    # One refused attempt, not a loop that would lock the account.
    assert len(gateway.requests_for("AuthenticateUser")) == 2
    assert gateway.users["alice"].failed_attempts == 1
    assert not gateway.users["alice"].locked


# -- leaving the block ---------------------------------------------------------------------------


def session_tasks() -> list[str]:
    """What the running alphapoint tasks are ("connection", "reconnect", "alarm").

    The gateway's tasks in the same event loop are not named "alphapoint ...".
    """
    names = (task.name or "" for task in anyio.get_running_tasks())
    return sorted(name.split()[1] for name in names if name.startswith("alphapoint "))


async def test_a_session_runs_its_connection_and_a_reconnect_only_after_a_drop(
    driver: Driver, alphapoint_gateway: GatewayFixture
) -> None:
    """No supervisor waits in the background: a connected session is its
    connection's task (on the anyio driver also its alarm task, since its
    reader is busy reading), and a reconnect task exists only from a drop until
    the next connection is in."""
    steady = ["connection"] if driver in CALLBACK_DRIVERS else ["alarm", "connection"]
    at_state: dict[SessionState, list[str]] = {}

    def on_state_change(state: SessionState) -> None:
        at_state.setdefault(state, session_tasks())

    with anyio.fail_after(LIMIT):
        async with managed(
            alphapoint_gateway, keepalive=Keepalive(), on_state_change=on_state_change
        ) as session:
            assert session_tasks() == steady
            async with session.state_changes() as changes:
                await restart(alphapoint_gateway.running)
                await states_until(changes, AUTHENTICATED)
            assert session.connection_number == 2
            assert "reconnect" in at_state[RECONNECTING]
            await wait_until(lambda: session_tasks() == steady)
        assert session_tasks() == []


async def test_a_closed_session_is_freed_without_the_cycle_collector(
    alphapoint_gateway: GatewayFixture,
) -> None:
    """A collector that opens and closes sessions all day leaves no reference
    cycles behind (they cost a collection each): once a connection ends, it
    lets go of its session."""
    gc.collect()
    gc.disable()
    try:
        with anyio.fail_after(LIMIT):
            async with managed(alphapoint_gateway, keepalive=Keepalive()) as session:
                await session.call("Ping")
        (conn,) = [o for o in gc.get_objects() if isinstance(o, Connection)]
        session_ref, conn_ref = weakref.ref(session), weakref.ref(conn)
        del conn
        del session
        assert session_ref() is None
        assert conn_ref() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("logout_on_close", [True, False])
async def test_leaving_the_block_logs_out_and_leaves_nothing_running(
    alphapoint_gateway: GatewayFixture, logout_on_close: bool
) -> None:
    gateway = alphapoint_gateway.gateway
    before = running_tasks()
    with anyio.fail_after(LIMIT):
        async with managed(
            alphapoint_gateway, logout_on_close=logout_on_close, keepalive=Keepalive()
        ) as session:
            assert (await session.call("GetUserInfo"))["UserName"] == "alice"
            assert gateway.connection_count == 1
            assert running_tasks() > before  # the connection's
    assert session.state is CLOSED
    assert not session.is_open
    assert len(gateway.requests_for("LogOut")) == (1 if logout_on_close else 0)
    # The gateway notices the close on its own schedule: poll.
    await wait_until(lambda: gateway.connection_count == 0)
    await wait_until(lambda: running_tasks() == before)


async def test_leaving_the_block_while_reconnecting_leaves_nothing_running(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway, running = alphapoint_gateway.gateway, alphapoint_gateway.running
    before = running_tasks()
    with anyio.fail_after(LIMIT):
        async with (
            managed(alphapoint_gateway, keepalive=Keepalive()) as session,
            session.state_changes() as changes,
        ):
            await running.stop()
            assert await states_until(changes, RECONNECTING) == [RECONNECTING]
    assert session.state is CLOSED
    assert gateway.requests_for("LogOut") == []  # nowhere to send it
    # Nothing new is left (the stopped gateway's own tasks are gone too).
    assert running_tasks() <= before


class Boom(Exception):
    pass


@pytest.mark.parametrize("while_reconnecting", [False, True])
async def test_an_exception_in_the_block_propagates_unchanged(
    alphapoint_gateway: GatewayFixture, while_reconnecting: bool
) -> None:
    running = alphapoint_gateway.running
    boom = Boom("from the block")
    sessions: list[alphapoint.Session] = []

    async def block() -> None:
        keepalive = Keepalive(interval=0.1, timeout=LIMIT)
        async with managed(alphapoint_gateway, keepalive=keepalive) as session:
            sessions.append(session)
            assert (await session.call("GetUserInfo"))["UserName"] == "alice"
            if while_reconnecting:
                async with session.state_changes() as changes:
                    await running.stop()
                    await states_until(changes, RECONNECTING)
            raise boom

    with anyio.fail_after(LIMIT), pytest.raises(Boom) as info:
        await block()
    assert info.value is boom  # not an ExceptionGroup around it
    assert info.value.__cause__ is None
    assert not sessions[0].is_open


@pytest.mark.parametrize(
    ("account", "error"),
    [("wrong_password", AuthenticationRejected), ("locked", AccountLocked)],
)
async def test_a_first_login_that_fails_raises_from_async_with(
    alphapoint_gateway: GatewayFixture, account: str, error: type[AuthenticationError]
) -> None:
    gateway, accounts = alphapoint_gateway.gateway, alphapoint_gateway.accounts
    if account == "locked":
        credentials = accounts.locked
    else:
        credentials = PasswordCredentials("alice", "not-the-password")
    entered = False
    with anyio.fail_after(LIMIT), pytest.raises(AuthenticationError) as info:
        async with managed(alphapoint_gateway, credentials=credentials):
            entered = True
    assert type(info.value) is error
    assert not entered
    assert len(gateway.requests_for("AuthenticateUser")) == 1  # never retried
    await wait_until(lambda: gateway.connection_count == 0)


# -- resubscribing through a restart, with a consumer waiting ------------------------------------


@contextlib.asynccontextmanager
async def consuming(stream: alphapoint.EventStream, into: list[Any]) -> AsyncIterator[anyio.Event]:
    """Read ``stream`` in the background; the event fires once a payload has arrived."""
    arrived = anyio.Event()

    async def consume() -> None:
        async for event in stream:
            into.append(event.payload)
            arrived.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(consume)
        yield arrived
        tasks.cancel_scope.cancel()


async def test_a_waiting_consumer_gets_events_from_the_new_connection(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway, running = alphapoint_gateway.gateway, alphapoint_gateway.running
    received: list[Any] = []
    async with (
        managed(alphapoint_gateway) as session,
        session.subscribe("SubscribeLevel1", LEVEL1) as level1,
        consuming(level1, received) as arrived,
    ):
        async with session.state_changes() as changes:
            await restart(running)
            await states_until(changes, AUTHENTICATED)
        assert await gateway.publish("Level1UpdateEvent", {**LEVEL1, "BestBid": 4.0}) == 1
        with anyio.fail_after(LIMIT):
            await arrived.wait()
    assert received == [{**LEVEL1, "BestBid": 4.0}]

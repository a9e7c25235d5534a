"""The fault matrix: a misbehaving loopback peer, one fault at a time, on both backends.

Every fault comes from :mod:`alphapoint.testing.faults`. For each one, the
test checks what the issue asks of every row: the call ends within its
timeout with a typed error whose message says what went wrong (or, for the
faults a client must simply tolerate, with the right reply); the session is
usable afterwards, on the same connection when the protocol allows it or on
the next one after a reconnect; no task is left running once the blocks have
ended; and, for the event flood, memory stays bounded by the stream's buffer.

Frames are logged at DEBUG throughout, so the logging path meets every fault
too (and no fault may make the reader fail, which it would log at ERROR).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

import anyio
import attrs
import pytest

import alphapoint
from alphapoint import (
    AlphaPointError,
    Backoff,
    ConnectError,
    ConnectionClosed,
    DecodeError,
    EventOverflow,
    HandshakeRefused,
    NetworkError,
    PasswordCredentials,
    Relogin,
    RequestTimeout,
    SessionClosed,
    SessionState,
)
from alphapoint.testing import faults
from alphapoint.testing.faults import Fault, FaultyGateway

from .helpers import LIMIT, SHORT, no_reader_failure, no_task_left

pytestmark = pytest.mark.anyio


#: open_timeout of a session whose reconnect meets a stalled handshake: short, yet
#: ample for a loopback handshake that does finish.
RECONNECT_OPEN_TIMEOUT = 0.5

#: Reconnect at once (a few milliseconds of jitter), forever.
QUICK = Backoff(initial=0.01, maximum=0.05)
QUICK_RELOGIN = Relogin(initial=0.01, maximum=0.05, per_minute=1000, max_in_a_row=None)

CREDENTIALS = PasswordCredentials("alice", "fault-matrix-password")

PONG = {"msg": "PONG"}


# -- helpers ------------------------------------------------------------------------------


def managed(url: str, **options: Any) -> alphapoint.connect:
    """A logged-in session that reconnects (and logs in again) at once."""
    options.setdefault("credentials", CREDENTIALS)
    options.setdefault("reconnect", QUICK)
    options.setdefault("relogin", QUICK_RELOGIN)
    options.setdefault("timeout", LIMIT)
    return alphapoint.connect(url, **options)


def echo_of(function: str) -> Callable[[Any], bool]:
    """A check that a reply is the faulty gateway's normal answer to ``function``."""
    return lambda reply: isinstance(reply, dict) and reply.get("function") == function


async def read_all(events: alphapoint.EventStream, into: list[Any]) -> None:
    async for event in events:
        into.append(event.payload)


def nested_depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list) and value:
        value = value[0]
        depth += 1
    return depth + (1 if value == [] else 0)


# -- faults during a call -------------------------------------------------------------------


@attrs.frozen
class CallFault:
    """One row of the matrix, for a fault met by a call."""

    fault: Fault
    #: The error the call raises, or None when the right reply still arrives.
    error: type[AlphaPointError] | None
    #: What the error message says (lowercase substrings).
    says: tuple[str, ...] = ()
    #: Whether the connection goes on (True) or ends, so the session reconnects.
    survives: bool = True
    #: The call's timeout.
    timeout: float = LIMIT
    #: A check of the reply, when the call succeeds (the normal answer, unless given).
    reply: Callable[[Any], bool] | None = None


CALL_FAULTS = {
    "close": CallFault(
        faults.CLOSE_MID_CALL, ConnectionClosed, ("code 1001", "going away"), survives=False
    ),
    "hang-up": CallFault(
        faults.HANG_UP_MID_CALL, ConnectionClosed, ("closed", "1006"), survives=False
    ),
    "reset": CallFault(
        faults.RESET_MID_CALL, ConnectionClosed, ("closed", "reset by peer"), survives=False
    ),
    "trickle": CallFault(faults.trickle(), None),
    "oversize": CallFault(
        faults.OVERSIZE_REPLY, ConnectionClosed, ("over the size limit",), survives=False
    ),
    "binary": CallFault(
        faults.BINARY_REPLY, RequestTimeout, ("no reply to fault", "binary message"), timeout=SHORT
    ),
    "invalid-utf8": CallFault(
        faults.INVALID_UTF8_REPLY, ConnectionClosed, ("not utf-8",), survives=False
    ),
    "not-json": CallFault(
        faults.NOT_JSON_REPLY, RequestTimeout, ("no reply to fault", "not json"), timeout=SHORT
    ),
    "not-a-frame": CallFault(
        faults.JSON_NOT_A_FRAME, RequestTimeout, ("no reply to fault", "no 'm' key"), timeout=SHORT
    ),
    "stray-reply": CallFault(faults.STRAY_REPLY, None),
    "duplicate-reply": CallFault(faults.DUPLICATE_REPLY, None),
    "deep-nesting": CallFault(
        faults.DEEPLY_NESTED_REPLY, None, reply=lambda reply: nested_depth(reply) == 900
    ),
}


@pytest.mark.parametrize("name", list(CALL_FAULTS))
async def test_fault_during_a_call(name: str, caplog: pytest.LogCaptureFixture) -> None:
    row = CALL_FAULTS[name]
    with no_reader_failure(caplog):
        async with (
            no_task_left(),
            FaultyGateway(row.fault, connections={1}) as gateway,
            managed(gateway.url) as session,
        ):
            assert session.authenticated
            with anyio.fail_after(LIMIT):
                if row.error is None:
                    check = row.reply or echo_of("Fault")
                    assert check(await session.call("Fault", timeout=row.timeout))
                else:
                    with pytest.raises(row.error) as info:
                        await session.call("Fault", timeout=row.timeout)
                    message = str(info.value).lower()
                    for words in row.says:
                        assert words in message
                    assert info.value.retryable
                # Usable: on the same connection, or on the next after a reconnect
                # and a resumed login; and never answered with a stray or duplicate.
                echo = await session.call("Echo")
            assert echo == {
                "function": "Echo",
                "seq": echo["seq"],
                "connection": 1 if row.survives else 2,
            }
            assert session.connection_number == (1 if row.survives else 2)
            assert session.authenticated
            assert session.state is SessionState.AUTHENTICATED
        assert gateway.injected == 1


@pytest.mark.parametrize("name", ["close", "reset", "oversize", "invalid-utf8"])
async def test_connection_ending_faults_end_an_unmanaged_session(name: str) -> None:
    # Without a reconnect policy nothing can go on after the socket is gone:
    # every later call fails at once with the same explanation.
    row = CALL_FAULTS[name]
    async with (
        no_task_left(),
        FaultyGateway(row.fault) as gateway,
        alphapoint.connect(gateway.url, timeout=LIMIT) as session,
    ):
        with anyio.fail_after(LIMIT), pytest.raises(ConnectionClosed) as first:
            await session.call("Fault")
        assert not session.is_open
        assert session.state is SessionState.CLOSED
        with pytest.raises(ConnectionClosed) as later:
            await session.call("Echo")
        assert str(later.value) == str(first.value)
        assert later.value is not first.value


async def test_trickled_events_arrive_whole(caplog: pytest.LogCaptureFixture) -> None:
    flood = faults.event_flood(5)
    slow = Fault("events byte by byte", wrap=faults.trickle().wrap, on_call=flood.on_call)
    with no_reader_failure(caplog):
        async with (
            no_task_left(),
            FaultyGateway(slow) as gateway,
            alphapoint.connect(gateway.url, timeout=LIMIT) as session,
            session.events("FloodEvent") as events,
        ):
            with anyio.fail_after(LIMIT):
                assert await session.call("Fault") == {"events": 5}
                assert [(await events.__anext__()).payload for _ in range(5)] == [
                    {"n": n} for n in range(5)
                ]
            assert session.protocol_errors == 0


# -- faults while opening a connection ----------------------------------------------------------


@attrs.frozen
class HandshakeFault:
    fault: Fault
    says: tuple[str, ...]
    error: type[ConnectError]
    #: Whether a managed session retries it (the default policy): not a 4xx.
    retryable: bool


HANDSHAKE_FAULTS = {
    "stalls": HandshakeFault(
        faults.stalled_handshake(), (f"within {SHORT} s",), NetworkError, retryable=True
    ),
    "hangs-up": HandshakeFault(
        faults.hung_up_handshake(),
        ("closed the connection during the handshake",),
        NetworkError,
        retryable=True,
    ),
    "http-503": HandshakeFault(
        faults.refused_handshake(503, "Service Unavailable"),
        ("refused the websocket upgrade", "http 503 service unavailable"),
        HandshakeRefused,
        retryable=True,
    ),
    "http-403": HandshakeFault(
        faults.refused_handshake(403, "Forbidden"),
        ("refused the websocket upgrade", "http 403"),
        HandshakeRefused,
        retryable=False,
    ),
}


@pytest.mark.parametrize("name", list(HANDSHAKE_FAULTS))
async def test_fault_opening_a_connection(name: str, caplog: pytest.LogCaptureFixture) -> None:
    row = HANDSHAKE_FAULTS[name]
    with no_reader_failure(caplog):
        # Connections 1 and 3 meet the fault.
        async with no_task_left(), FaultyGateway(row.fault, connections={1, 3}) as gateway:
            # The first connection: connect() itself fails, within its open timeout.
            with anyio.fail_after(LIMIT), pytest.raises(ConnectError) as info:
                async with managed(gateway.url, open_timeout=SHORT):
                    pass
            message = str(info.value).lower()
            for words in row.says:
                assert words in message
            assert "127.0.0.1" in message
            assert type(info.value) is row.error
            assert info.value.retryable is row.retryable
            assert alphapoint.is_retryable(info.value) is row.retryable

            # A managed session (connection 2) that loses its connection meets the
            # fault on its first reconnect (3): it carries on once 4 opens if the
            # fault is retryable, and ends with it if not.
            async with managed(gateway.url, open_timeout=RECONNECT_OPEN_TIMEOUT) as session:
                with anyio.fail_after(LIMIT):
                    with pytest.raises(ConnectionClosed):
                        await session.call("HangUp")
                    if row.retryable:
                        echo = await session.call("Echo")
                    else:
                        with pytest.raises(SessionClosed) as ended:
                            await session.call("Echo")
                if row.retryable:
                    assert echo["connection"] == 4
                    assert session.connection_number == 2  # connections that opened
                    assert session.authenticated
                else:
                    assert type(ended.value.__cause__) is row.error
                    assert session.state is SessionState.CLOSED
        assert gateway.injected == 2
        assert gateway.connections == (4 if row.retryable else 3)


# -- every field of the AuthenticateUser reply, mistyped in turn -----------------------------

#: Something shaped like a secret, sent as a mistyped value: it must never be shown.
SECRET_SHAPED = "S3CR3T-5f2b9c0e71d4"

#: (field as the gateway spells it, a value of the wrong type, the path DecodeError names).
MISTYPED = [
    ("Authenticated", "true", "authenticated"),
    ("SessionToken", {"token": SECRET_SHAPED}, "session_token"),
    ("Locked", 0, "locked"),
    ("Requires2FA", SECRET_SHAPED, "requires_2fa"),
    ("TwoFAType", 1, "two_fa_type"),
    ("TwoFAToken", [SECRET_SHAPED], "two_fa_token"),
    ("errormsg", {"message": SECRET_SHAPED}, "errormsg"),
    ("UserId", SECRET_SHAPED, "user_id"),
    ("User", [SECRET_SHAPED], "user"),
    ("User.UserId", 7.5, "user.user_id"),
    ("User.UserName", 7, "user.user_name"),
    ("User.Email", [SECRET_SHAPED], "user.email"),
    ("User.EmailVerified", "yes", "user.email_verified"),
    ("User.AccountId", True, "user.account_id"),
    ("User.OMSId", SECRET_SHAPED, "user.oms_id"),
    ("User.Use2FA", 1, "user.use_2fa"),
]


@pytest.mark.parametrize(("field", "value", "path"), MISTYPED, ids=[m[0] for m in MISTYPED])
async def test_mistyped_login_reply_field(
    field: str, value: Any, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with no_reader_failure(caplog):
        async with no_task_left(), FaultyGateway(faults.login_reply_with(field, value)) as gateway:
            async with alphapoint.connect(gateway.url, timeout=LIMIT) as session:
                with anyio.fail_after(LIMIT), pytest.raises(DecodeError) as info:
                    await session.login(CREDENTIALS)
                error = info.value
                assert error.path == path
                assert str(error).startswith(f"AuthenticateUser reply: field {path!r}: expected ")
                shown = "".join(traceback.format_exception(error)) + repr(error)
                assert SECRET_SHAPED not in shown
                assert not session.authenticated
                # A reply that cannot be read is not a broken connection.
                with anyio.fail_after(LIMIT):
                    assert await session.call("Ping") == PONG
                assert session.is_open

            # A managed session logs in on entry: connect() raises the same error,
            # unwrapped, and leaves nothing behind.
            with anyio.fail_after(LIMIT), pytest.raises(DecodeError) as entry:
                async with managed(gateway.url):
                    pass
            assert entry.value.path == path
        assert gateway.injected == 2
    # Above DEBUG, no record shows the value; at DEBUG the frame log shows
    # what was received, except the values of secret fields.
    assert not [
        r for r in caplog.records if r.levelno > logging.DEBUG and SECRET_SHAPED in r.getMessage()
    ]
    if field in ("SessionToken", "TwoFAToken"):
        assert SECRET_SHAPED not in caplog.text


async def test_unknown_login_reply_fields_may_have_any_type() -> None:
    fault = faults.login_reply_with("EnforceEnable2FA", {"not": ["a", "boolean"]})
    async with (
        no_task_left(),
        FaultyGateway(fault) as gateway,
        alphapoint.connect(gateway.url, timeout=LIMIT) as session,
    ):
        with anyio.fail_after(LIMIT):
            result = await session.login(CREDENTIALS)
        assert session.authenticated
        assert result.user is not None
        assert result.user.user_name == "alice"
    assert gateway.injected == 1


# -- events faster than the consumer reads them ---------------------------------------------------

FLOOD = 5_000
BUFFER = 64


async def test_event_flood_with_a_slow_consumer(caplog: pytest.LogCaptureFixture) -> None:
    with no_reader_failure(caplog):
        async with (
            no_task_left(),
            FaultyGateway(faults.event_flood(FLOOD)) as gateway,
            alphapoint.connect(gateway.url, timeout=LIMIT, event_buffer=BUFFER) as session,
            session.events("FloodEvent") as slow,
            session.events("FloodEvent", buffer=FLOOD) as roomy,
        ):
            # Nobody reads while the gateway floods; its reply comes after the
            # last event, so once the call returns every event has been dispatched.
            with anyio.fail_after(LIMIT):
                assert await session.call("Fault") == {"events": FLOOD}
            got: list[Any] = []
            with anyio.fail_after(LIMIT), pytest.raises(EventOverflow) as info:
                await read_all(slow, got)
            # The slow stream held at most BUFFER events: the first ones, in
            # order; then it ended, saying so, and took no more.
            assert got == [{"n": n} for n in range(BUFFER)]
            assert info.value.dropped == slow.dropped == 1
            assert str(BUFFER) in str(info.value)
            # The reader never waited for it: the stream with room has every event.
            with anyio.fail_after(LIMIT):
                assert [(await roomy.__anext__()).payload["n"] for _ in range(FLOOD)] == list(
                    range(FLOOD)
                )
            assert roomy.dropped == 0
            # The session is unaffected, and so is a stream opened after the flood.
            async with session.events("FloodEvent") as fresh:
                with anyio.fail_after(LIMIT):
                    assert await session.call("Ping") == PONG
                assert fresh.dropped == 0
            assert session.protocol_errors == 0
            assert session.is_open

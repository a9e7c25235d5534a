"""Logging in again without storming the gateway, and resuming that falls back.

Gateways lock an account after a few failed logins in a short time; a client
that answers every LogoutEvent (or every code 20) with an AuthenticateUser can
send thousands a minute. These gateways end every login on purpose, and the
session must back off, pace itself, and finally stop with a typed error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import alphapoint
from alphapoint import Relogin, ReloginStorm, SessionClosed, SessionState
from alphapoint.frame import Frame, MessageType
from alphapoint.testing.faults import login_reply
from alphapoint.testing.scripted import ScriptedConnection, serve_script

from .helpers import LIMIT, wait_until

pytestmark = pytest.mark.anyio

CREDENTIALS = alphapoint.PasswordCredentials("alice", "relogin-password")
QUICK = alphapoint.Backoff(initial=0.01, maximum=0.05)
PONG = {"msg": "PONG"}

Script = Callable[[ScriptedConnection], Awaitable[None]]


def logs_out_every_login(logins: list[str]) -> Script:
    """Answers every AuthenticateUser, with a LogoutEvent in the same write."""

    async def script(connection: ScriptedConnection) -> None:
        seq = 0
        async for request in connection.requests():
            if request.function == "AuthenticateUser":
                logins.append(request.function)
                seq += 1
                await connection.send_together(
                    Frame(MessageType.REPLY, request.seq, request.function, login_reply("t")),
                    Frame(MessageType.EVENT, seq, "LogoutEvent", {}),
                )
            else:
                await connection.reply(request, {"result": True, "errorcode": 0})

    return script


async def ended_with(session: alphapoint.Session) -> BaseException | None:
    """The session's end: what a call raises once it is CLOSED, and its cause."""
    with anyio.fail_after(LIMIT):
        async with session.state_changes() as changes:
            if session.state is not SessionState.CLOSED:
                async for state in changes:
                    if state is SessionState.CLOSED:
                        break
    with pytest.raises(SessionClosed) as info:
        await session.call("Ping")
    return info.value.__cause__


async def test_a_gateway_that_ends_every_login_gets_a_bounded_number_of_them() -> None:
    """The LogoutEvent comes in the same write as each login's reply (under
    asyncio it used to be read before the login finished and then lost, under
    trio it was dropped): each is a re-login, backed off, until ReloginStorm."""
    logins: list[str] = []
    policy = Relogin(initial=0.01, maximum=0.02, max_in_a_row=3)
    async with (
        serve_script(logs_out_every_login(logins)) as server,
        alphapoint.connect(
            server.url, credentials=CREDENTIALS, relogin=policy, reconnect=QUICK
        ) as session,
    ):
        cause = await ended_with(session)
    assert isinstance(cause, ReloginStorm)
    assert cause.in_a_row == 4
    assert not cause.retryable
    assert "4 logins in a row" in str(cause)
    assert len(logins) == 4  # the first login and three re-logins: no more


async def test_logins_are_paced_per_minute(caplog: pytest.LogCaptureFixture) -> None:
    """With ``per_minute=2`` the third AuthenticateUser waits for the minute's window."""
    caplog.set_level(logging.WARNING, logger="alphapoint")
    logins: list[str] = []
    policy = Relogin(initial=0.01, maximum=0.02, per_minute=2, max_in_a_row=None)
    async with (
        serve_script(logs_out_every_login(logins)) as server,
        alphapoint.connect(server.url, credentials=CREDENTIALS, relogin=policy) as session,
    ):
        await wait_until(lambda: "pacing logins" in caplog.text)
        assert len(logins) == 2
        assert session.state is SessionState.AUTHENTICATING
        with pytest.raises(alphapoint.RequestTimeout, match="not ready"):
            await session.call("Ping", timeout=0.05)


async def test_code_20_to_every_call_ends_in_relogin_storm_not_one_login_per_call() -> None:
    logins: list[str] = []

    async def script(connection: ScriptedConnection) -> None:
        async for request in connection.requests():
            if request.function == "AuthenticateUser":
                logins.append(request.function)
                await connection.reply(request, login_reply("t"))
            else:
                refused = {"result": False, "errormsg": "Not Authorized", "errorcode": 20}
                await connection.reply(request, refused)

    policy = Relogin(initial=0.01, maximum=0.02, max_in_a_row=2)
    async with (
        serve_script(script) as server,
        alphapoint.connect(server.url, credentials=CREDENTIALS, relogin=policy) as session,
    ):
        ended: SessionClosed | None = None
        with anyio.fail_after(LIMIT):
            for _ in range(20):
                try:
                    await session.call("GetUserInfo")
                except alphapoint.NotAuthorized:
                    continue  # refused again after the one re-login it earned
                except SessionClosed as exc:
                    ended = exc
                    break
    assert ended is not None, "twenty calls refused with code 20 and the session went on"
    assert isinstance(ended.__cause__, ReloginStorm)
    assert len(logins) == 3  # the first login and two re-logins


# -- a resume that fails falls back to the credentials ---------------------------------------


def raw_reply(request: Frame, payload_text: str) -> str:
    """A reply frame whose ``o`` is ``payload_text`` exactly as given."""
    return json.dumps({"m": 1, "i": request.seq, "n": request.function, "o": payload_text})


#: How the resume fails, by what the gateway does.
RESUMES: dict[str, Callable[[Frame], str | None]] = {
    # A token with a lone surrogate: the client cannot even send WebAuthenticateUser.
    "unsendable token": lambda request: None,
    "undecodable reply": lambda request: raw_reply(request, '{"Authenticated": "yes"}'),
    "refused": lambda request: raw_reply(
        request, '{"result": false, "errormsg": "Not Authorized", "errorcode": 20}'
    ),
}


@pytest.mark.parametrize("how", list(RESUMES))
async def test_a_resume_that_fails_for_any_reason_logs_in_with_the_credentials(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="alphapoint")
    seen: list[str] = []
    token = "\ud800-bad-token" if how == "unsendable token" else "token-1"
    connections = 0

    async def script(connection: ScriptedConnection) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        async for request in connection.requests():
            seen.append(request.function)
            if request.function == "AuthenticateUser":
                await connection.send_text(raw_reply(request, json.dumps(login_reply(token))))
            elif request.function == "WebAuthenticateUser":
                answer = RESUMES[how](request)
                assert answer is not None, "an unsendable token was sent"
                await connection.send_text(answer)
            elif first:
                await connection.abort()  # the first call: drop, so the session reconnects
                return
            else:
                await connection.reply(request, PONG)

    async with (
        serve_script(script) as server,
        alphapoint.connect(server.url, credentials=CREDENTIALS, reconnect=QUICK) as session,
    ):
        with anyio.fail_after(LIMIT):
            with pytest.raises(alphapoint.ConnectionClosed):
                await session.call("Ping")
            assert await session.call("Ping") == PONG
        assert session.authenticated
    expected_resume = [] if how == "unsendable token" else ["WebAuthenticateUser"]
    assert seen == [
        "AuthenticateUser",
        "Ping",
        *expected_resume,
        "AuthenticateUser",
        "Ping",
        "LogOut",  # leaving the block
    ]
    for record in caplog.records:
        assert "bad-token" not in record.getMessage()


def test_the_relogin_policy_backs_off_and_gives_up() -> None:
    policy = Relogin(initial=1.0, maximum=8.0, multiplier=2.0, max_in_a_row=3, jitter=lambda c: c)
    assert [policy.delay(n) for n in range(6)] == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert [policy.gives_up(n) for n in range(5)] == [False, False, False, False, True]
    assert not Relogin(max_in_a_row=None).gives_up(10**6)
    bad: list[dict[str, Any]] = [{"per_minute": 0}, {"initial": 0}, {"stable_after": -1}]
    for options in bad:
        with pytest.raises(alphapoint.UsageError):
            Relogin(**options)
    assert "Relogin(initial=1.0" in repr(Relogin())

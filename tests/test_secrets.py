"""No secret anywhere: the whole flow, failures included, logged at DEBUG and searched.

tests/test_login.py searches reprs, messages and log records around logins on
one connection. This runs everything a secret passes through: password,
API-key and 2FA logins in managed sessions; reconnects that resume with the
session token and reconnects that log in again; a LogoutEvent and its
re-login; a re-login that fails and ends the session; LogOut; every kind of
failed login; a URL and a payload carrying a password; replies carrying
secret-shaped values (well typed and mistyped); and the ``alphapoint
authenticate`` command in subprocesses, one of them logging at DEBUG.

Everything a user or an operator could see is captured: every log record of
the root logger at DEBUG (message, arguments, formatted exception and stack),
every raised exception with its whole formatted traceback chain, the repr and
str of results, errors, credentials and sessions, and the command's stdout and
stderr. Then each secret is searched for in all of it.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import re
import secrets
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
import pytest

import alphapoint
from alphapoint import (
    AccountLocked,
    AlphaPointError,
    ApiKeyCredentials,
    AuthenticationRejected,
    Backoff,
    ConnectError,
    ConnectionClosed,
    DecodeError,
    InvalidPayload,
    InvalidURL,
    NotAuthorized,
    PasswordCredentials,
    Relogin,
    RequestError,
    SessionState,
    Totp,
    TwoFactorRequired,
)
from alphapoint.testing import Gateway, GatewayApiKey, GatewayUser
from alphapoint.testing.faults import FaultyGateway, login_reply_with

from .helpers import LIMIT, texts_of, wrong_code

pytestmark = pytest.mark.anyio

QUICK = Backoff(initial=0.01, maximum=0.05)
#: Log in again at once, a few milliseconds apart, however often the gateway logs us out.
QUICK_RELOGIN = Relogin(initial=0.01, maximum=0.05, per_minute=1000, max_in_a_row=None)


@attrs.define
class Seen:
    """Everything captured: objects to show, raised errors, command output."""

    objects: list[object] = attrs.Factory(list)
    errors: list[BaseException] = attrs.Factory(list)
    outputs: list[str] = attrs.Factory(list)
    codes: list[str] = attrs.Factory(list)

    async def expect(
        self, error: type[BaseException], attempt: Callable[[], Awaitable[object]]
    ) -> BaseException:
        with anyio.fail_after(LIMIT), pytest.raises(error) as info:
            await attempt()
        self.errors.append(info.value)
        return info.value


async def recovered(changes: alphapoint.StateChanges, via: SessionState) -> None:
    """Wait until the session has gone through ``via`` and is logged in again."""
    with anyio.fail_after(LIMIT):
        async for state in changes:
            if state is via:
                break
        async for state in changes:
            if state is SessionState.AUTHENTICATED:
                return


async def through_relogins(
    gateway: Gateway, changes: alphapoint.StateChanges, *, resume: bool = True
) -> None:
    """Drop the connection (the session resumes with its token; skipped unless
    ``resume``), expire the tokens and drop it (it logs in again), then send a
    LogoutEvent (it logs in again on the same connection)."""
    if resume:
        await gateway.drop_connections()
        await recovered(changes, SessionState.RECONNECTING)
    gateway.expire_session_tokens()
    await gateway.drop_connections()
    await recovered(changes, SessionState.RECONNECTING)
    await gateway.logout_event()
    await recovered(changes, SessionState.AUTHENTICATING)


@asynccontextmanager
async def managed(
    url: str, seen: Seen, credentials: alphapoint.Credentials, **options: Any
) -> AsyncIterator[tuple[alphapoint.Session, alphapoint.StateChanges]]:
    async with (
        alphapoint.connect(
            url, credentials=credentials, reconnect=QUICK, relogin=QUICK_RELOGIN, **options
        ) as session,
        session.state_changes() as changes,
    ):
        seen.objects.append(session)
        yield session, changes
    seen.objects.append(session)


async def in_process_flow(
    gateway: Gateway, url: str, people: dict[str, PasswordCredentials], seen: Seen
) -> None:
    alice, bob, carol, dave = (people[name] for name in ("alice", "bob", "carol", "dave"))
    key = ApiKeyCredentials(api_key=API_KEY, api_secret=API_SECRET, user_id="7")
    bad_key = ApiKeyCredentials(api_key=API_KEY, api_secret=WRONG_API_SECRET, user_id="7")
    totp = Totp(TOTP_SECRET)
    seen.objects += [alice, bob, carol, dave, key, bad_key, totp]

    def two_factor() -> str:
        seen.codes.append(totp())
        return seen.codes[-1]

    # Every kind of failed login, as connect() raises it.
    bad_code = wrong_code(TOTP_SECRET)
    seen.codes.append(bad_code)
    for error, credentials, options in [
        (AuthenticationRejected, PasswordCredentials("alice", WRONG_PASSWORD), {}),
        (AuthenticationRejected, bad_key, {}),
        (TwoFactorRequired, bob, {"two_factor": bad_code}),
        (TwoFactorRequired, bob, {}),
    ]:
        await seen.expect(error, functools.partial(_enter, url, credentials=credentials, **options))

    # Failures on a plain session: a lockout, a call before login, a bad payload.
    async with alphapoint.connect(url, timeout=LIMIT) as session:
        await seen.expect(NotAuthorized, lambda: session.call("GetUserInfo"))
        wrong_carol = PasswordCredentials("carol", WRONG_PASSWORD)
        for _ in range(2):
            await seen.expect(AuthenticationRejected, lambda: session.login(wrong_carol))
        await seen.expect(AccountLocked, lambda: session.login(wrong_carol))
        await seen.expect(
            InvalidPayload,
            lambda: session.call("SendOrder", {"Password": ALICE_PASSWORD, "Bad": object()}),
        )
        # An unknown function answered m=5; its request is logged, redacted.
        await seen.expect(
            RequestError, lambda: session.call("NoSuchCall", {"Password": ALICE_PASSWORD})
        )
        seen.objects.append(await session.authenticate(alice))
        seen.objects.append(await session.authenticate_2fa(two_factor()))  # no 2FA pending
        seen.objects.append(session)
    # A password in the URL (HTTP Basic auth): used, never shown.
    with_user_info = url.replace("ws://", f"ws://alice:{ALICE_PASSWORD}@")
    async with alphapoint.connect(with_user_info, timeout=LIMIT) as session:
        assert await session.call("Ping") == {"msg": "PONG"}
        seen.objects.append(session)
    seen.objects.append(session)
    await seen.expect(
        ConnectError, lambda: _enter(f"ws://alice:{ALICE_PASSWORD}@127.0.0.1:1/WSGateway/")
    )
    await seen.expect(InvalidURL, lambda: _enter(f"ws://alice:{ALICE_PASSWORD}@127.0.0.1:x/"))

    # Password: resume after a drop, log in again once the token has expired,
    # and again after a LogoutEvent; then LogOut.
    async with managed(url, seen, alice, timeout=LIMIT) as (session, changes):
        seen.objects.append(await session.call("GetUserInfo"))
        await through_relogins(gateway, changes)
        seen.objects.append(await session.call("GetUserInfo"))
        await session.logout()

    # API key: the same, each login signed with a fresh nonce; LogOut on leaving.
    async with managed(url, seen, key, timeout=LIMIT) as (session, changes):
        await through_relogins(gateway, changes)
        seen.objects.append(session.user)

    # 2FA: every re-login asks the provider for a new code.
    async with managed(url, seen, bob, two_factor=two_factor, timeout=LIMIT) as (session, changes):
        await through_relogins(gateway, changes, resume=False)

    # A re-login that fails ends the session; its calls say why.
    async with managed(url, seen, dave, timeout=LIMIT) as (session, changes):
        gateway.users["dave"].password = secrets.token_urlsafe(16)
        await gateway.logout_event()
        with anyio.fail_after(LIMIT):
            async for state in changes:
                if state is SessionState.CLOSED:
                    break
        await seen.expect(ConnectionClosed, lambda: session.call("GetUserInfo"))

    # Replies carrying secret-shaped values: well typed (kept, never shown) and mistyped.
    replies: list[tuple[str, object, type[AlphaPointError] | None]] = [
        ("TwoFAToken", FAULT_SECRET, None),
        ("SessionToken", {"token": FAULT_SECRET}, DecodeError),
        ("TwoFAToken", [FAULT_SECRET], DecodeError),
    ]
    for field, value, refusal in replies:
        async with (
            FaultyGateway(login_reply_with(field, value)) as faulty,
            alphapoint.connect(faulty.url, timeout=LIMIT) as session,
        ):
            if refusal is None:
                result = await session.login(alice)
                assert result.two_fa_token == FAULT_SECRET
                seen.objects.append(result)
            else:
                await seen.expect(refusal, functools.partial(session.login, alice))
            seen.objects.append(session)


async def _enter(url: str, **options: Any) -> None:
    async with alphapoint.connect(url, timeout=LIMIT, **options):
        pass


# -- the command ------------------------------------------------------------------------

#: ``python -m alphapoint``, but with the root logger at DEBUG on stderr.
DEBUG_CLI = (
    "import logging, sys; "
    "logging.basicConfig(level=logging.DEBUG, format='%(levelname)s %(name)s %(message)s'); "
    "from alphapoint.cli import main; sys.exit(main(sys.argv[1:]))"
)


async def command_runs(url: str, seen: Seen) -> list[int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHAPOINT_")}
    code = Totp(TOTP_SECRET)()
    seen.codes.append(code)
    runs: list[tuple[list[str], dict[str, str]]] = [
        (["--username", "alice"], {"ALPHAPOINT_PASSWORD": ALICE_PASSWORD}),
        (["--username", "alice"], {"ALPHAPOINT_PASSWORD": WRONG_PASSWORD}),
        (
            ["--api-key", API_KEY, "--user-id", "7", "--json"],
            {"ALPHAPOINT_API_SECRET": API_SECRET},
        ),
        (
            ["--username", "bob", "--two-factor-code-env", "CODE", "--json"],
            {"ALPHAPOINT_PASSWORD": BOB_PASSWORD, "CODE": code},
        ),
    ]
    codes: list[int] = [0] * (len(runs) + 1)

    async def run(index: int, argv: list[str], variables: dict[str, str]) -> None:
        completed = await anyio.run_process(argv, input=b"", check=False, env={**env, **variables})
        codes[index] = completed.returncode
        seen.outputs += [completed.stdout.decode(), completed.stderr.decode()]

    python = [sys.executable, "-m", "alphapoint", "authenticate", url]
    with anyio.fail_after(6 * LIMIT):
        async with anyio.create_task_group() as tasks:
            for index, (args, variables) in enumerate(runs):
                tasks.start_soon(run, index, python + args, variables)
            debug = [sys.executable, "-c", DEBUG_CLI, "authenticate", url, "--username", "bob"]
            tasks.start_soon(
                run,
                len(runs),
                [*debug, "--two-factor-code-env", "CODE"],
                {"ALPHAPOINT_PASSWORD": BOB_PASSWORD, "CODE": code},
            )
    return codes


# -- the test ------------------------------------------------------------------------------

ALICE_PASSWORD = secrets.token_urlsafe(16)
BOB_PASSWORD = secrets.token_urlsafe(16)
CAROL_PASSWORD = secrets.token_urlsafe(16)
DAVE_PASSWORD = secrets.token_urlsafe(16)
WRONG_PASSWORD = secrets.token_urlsafe(16)
API_KEY = secrets.token_hex(16)
API_SECRET = secrets.token_hex(16)
WRONG_API_SECRET = secrets.token_hex(16)
TOTP_SECRET = base64.b32encode(secrets.token_bytes(20)).decode()
FAULT_SECRET = "fault-" + secrets.token_hex(12)


def everything_shown(caplog: pytest.LogCaptureFixture, seen: Seen) -> list[str]:
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    texts = [caplog.text, *seen.outputs]
    for record in caplog.records:
        texts += [record.getMessage(), repr(record.args), formatter.format(record)]
        texts += [record.exc_text or "", record.stack_info or ""]
    for error in seen.errors:
        texts += texts_of(error)
        texts.append("".join(traceback.format_exception(error)))
    for value in seen.objects:
        texts += texts_of(value)
    return texts


async def test_no_secret_anywhere_in_the_whole_flow(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="alphapoint")
    gateway = Gateway(
        [
            GatewayUser("alice", ALICE_PASSWORD, user_id=7),
            GatewayUser("bob", BOB_PASSWORD, user_id=8, totp_secret=TOTP_SECRET),
            GatewayUser("carol", CAROL_PASSWORD, user_id=9),
            GatewayUser("dave", DAVE_PASSWORD, user_id=10),
        ],
        [GatewayApiKey(API_KEY, API_SECRET, user_id="7")],
        max_failed_attempts=3,
    )
    people = {
        name: PasswordCredentials(name, password)
        for name, password in [
            ("alice", ALICE_PASSWORD),
            ("bob", BOB_PASSWORD),
            ("carol", CAROL_PASSWORD),
            ("dave", DAVE_PASSWORD),
        ]
    }
    seen = Seen()
    async with gateway.serve() as running:
        await in_process_flow(gateway, running.url, people, seen)
        exit_codes = await command_runs(running.url, seen)

    # The flow really ran: what the gateway received, and what was logged.
    assert exit_codes == [0, 1, 0, 0, 0]
    requests = gateway.requests
    signatures = [r.payload["Signature"] for r in requests if "Signature" in r.payload]
    sent_tokens = [r.payload["SessionToken"] for r in requests if "SessionToken" in r.payload]
    sent_codes = [r.payload["Code"] for r in gateway.requests_for("Authenticate2FA")]
    assert len(signatures) >= 5  # a failure, three logins, the command
    assert len(sent_tokens) >= 4  # resumed sessions
    assert len(sent_codes) >= 5
    assert set(sent_codes) <= set(seen.codes)
    assert len(gateway.issued_tokens) >= 12
    assert len(gateway.requests_for("LogOut")) >= 2
    messages = [r.getMessage() for r in caplog.records]
    for function in ("AuthenticateUser", "WebAuthenticateUser", "Authenticate2FA"):
        assert any(f"n={function} " in m and "<redacted>" in m for m in messages)
    assert any("n=LogOut " in m for m in messages)
    assert any(r.levelno == logging.WARNING and "lost" in r.getMessage() for r in caplog.records)
    assert any("n=AuthenticateUser" in output for output in seen.outputs)  # the DEBUG command
    assert len(seen.errors) >= 13

    secret_strings = [
        ALICE_PASSWORD,
        BOB_PASSWORD,
        CAROL_PASSWORD,
        DAVE_PASSWORD,
        WRONG_PASSWORD,
        API_SECRET,
        WRONG_API_SECRET,
        TOTP_SECRET,
        FAULT_SECRET,
        gateway.users["dave"].password,
        *gateway.issued_tokens,
        *signatures,
    ]
    codes = set(seen.codes)
    for text in everything_shown(caplog, seen):
        for secret in secret_strings:
            assert secret not in text
        for code in codes:
            # A code is six digits: look for it as a number, not inside a longer one.
            assert not re.search(rf"(?<!\d){code}(?!\d)", text)


def test_a_leak_would_be_found(caplog: pytest.LogCaptureFixture) -> None:
    # The search itself: a secret that does reach a log record is found.
    caplog.set_level(logging.DEBUG)
    logging.getLogger("alphapoint.test").debug("oops %s", ALICE_PASSWORD)
    seen = Seen(errors=[ValueError("wrapped")])
    seen.errors[0].__cause__ = RuntimeError(WRONG_PASSWORD)
    shown = everything_shown(caplog, seen)
    assert any(ALICE_PASSWORD in text for text in shown)
    assert any(WRONG_PASSWORD in text for text in shown)

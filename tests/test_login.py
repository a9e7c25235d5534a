"""Logging in over real loopback sockets, against the embedded gateway.

Password and API-key logins, both reply casings, 2FA in every form a caller
can give it, lockout, nonce reuse, user ids kept as given, and secrets kept out
of every repr, message and log record.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import alphapoint
from alphapoint import (
    AccountLocked,
    ApiKeyCredentials,
    AuthenticateResult,
    AuthenticationError,
    AuthenticationRejected,
    AuthStatus,
    NotAuthorized,
    PasswordCredentials,
    Totp,
    TwoFactor,
    TwoFactorRequired,
    User,
)
from alphapoint.signing import sign
from alphapoint.testing import Casing, Gateway, GatewayApiKey, GatewayFixture, GatewayUser

from .helpers import LIMIT, texts_of, wrong_code

pytestmark = pytest.mark.anyio


ALICE = User(
    user_id=7,
    user_name="alice",
    email="alice@example.com",
    email_verified=True,
    account_id=1007,
    oms_id=1,
    use_2fa=False,
)


def assert_logged_in_as_alice(result: AuthenticateResult) -> None:
    assert result.status is AuthStatus.AUTHENTICATED
    assert result.authenticated is True
    assert result.locked is False
    assert result.requires_2fa is False
    assert result.errormsg is None
    assert result.two_fa_type is None
    assert result.user == ALICE
    assert result.session_token is not None
    assert re.fullmatch(r"[0-9a-f]{32}", result.session_token)
    assert result.display_message == "Logged in."


# -- password and API-key logins ------------------------------------------------------


@pytest.mark.parametrize("casing", [Casing.PASCAL, Casing.CAMEL])
async def test_password_login(alphapoint_gateway: GatewayFixture, casing: Casing) -> None:
    alphapoint_gateway.gateway.casing = casing
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        assert not session.authenticated
        assert session.user is None
        result = await session.login(alphapoint_gateway.accounts.password)
        assert_logged_in_as_alice(result)
        assert session.authenticated
        assert session.user == ALICE
        assert "authenticated" in repr(session)
        info = await session.call("GetUserInfo")
        user_id = info["UserId"] if casing is Casing.PASCAL else info["userId"]
        assert user_id == 7
    [request] = alphapoint_gateway.gateway.requests_for("AuthenticateUser")
    assert set(request.payload) == {"UserName", "Password"}


@pytest.mark.parametrize("casing", [Casing.PASCAL, Casing.CAMEL])
async def test_api_key_login(alphapoint_gateway: GatewayFixture, casing: Casing) -> None:
    gateway = alphapoint_gateway.gateway
    gateway.casing = casing
    credentials = alphapoint_gateway.accounts.api_key
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        # The reply really is in the casing under test.
        raw = await session.call("AuthenticateUser", credentials.authenticate_payload())
        expected_key = "Authenticated" if casing is Casing.PASCAL else "authenticated"
        assert raw[expected_key] is True
        assert ("OMSId" if casing is Casing.PASCAL else "omsId") in raw[
            "User" if casing is Casing.PASCAL else "user"
        ]

        result = await session.login(credentials)
        assert_logged_in_as_alice(result)
        assert session.authenticated
        await session.call("GetUserInfo")
    request = gateway.requests_for("AuthenticateUser")[-1]
    payload = request.payload
    assert set(payload) == {"APIKey", "Signature", "UserId", "Nonce"}
    assert all(isinstance(value, str) for value in payload.values())
    assert payload["UserId"] == "7"
    assert payload["APIKey"] == credentials.api_key
    assert payload["Signature"] == sign(
        credentials.api_secret, payload["Nonce"], "7", credentials.api_key
    )


async def test_logout_forgets_the_login(alphapoint_gateway: GatewayFixture) -> None:
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        await session.login(alphapoint_gateway.accounts.password)
        await session.call("GetUserInfo")
        await session.logout()
        assert not session.authenticated
        assert session.user is None
        with pytest.raises(NotAuthorized):
            await session.call("GetUserInfo")


# -- authenticate() returns, login() raises ---------------------------------------------


async def test_authenticate_returns_every_outcome_without_raising(
    alphapoint_gateway: GatewayFixture,
) -> None:
    accounts = alphapoint_gateway.accounts
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        rejected = await session.authenticate(PasswordCredentials("alice", "not-her-password"))
        assert rejected.status is AuthStatus.REJECTED
        assert rejected.authenticated is False
        assert rejected.errormsg == "Invalid username or password"
        assert rejected.display_message == "Invalid username or password"
        assert rejected.session_token is None
        assert not session.authenticated

        locked = await session.authenticate(accounts.locked)
        assert locked.status is AuthStatus.LOCKED
        assert locked.locked is True
        assert locked.errormsg == "User is locked"
        assert not session.authenticated

        pending = await session.authenticate(accounts.two_factor)
        assert pending.status is AuthStatus.TWO_FACTOR_REQUIRED
        assert pending.requires_2fa is True
        assert pending.two_fa_type == "Google"
        assert pending.user is not None
        assert pending.user.user_name == "bob"
        assert pending.user.use_2fa is True
        assert not session.authenticated
        assert session.user is None

        assert_logged_in_as_alice(await session.authenticate(accounts.password))
        assert session.authenticated


async def test_login_raises_rejected_with_the_result(alphapoint_gateway: GatewayFixture) -> None:
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(AuthenticationRejected) as info:
            await session.login(PasswordCredentials("alice", "not-her-password"))
        assert info.value.result.status is AuthStatus.REJECTED
        assert info.value.result.errormsg == "Invalid username or password"
        assert str(info.value) == "Invalid username or password"
        assert not session.authenticated

        with pytest.raises(AuthenticationRejected) as unknown:
            await session.login(PasswordCredentials("nobody", "whatever"))
        assert unknown.value.result.status is AuthStatus.REJECTED


async def test_login_raises_account_locked_with_the_result(
    alphapoint_gateway: GatewayFixture,
) -> None:
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(AccountLocked) as info:
            await session.login(alphapoint_gateway.accounts.locked)
        assert isinstance(info.value, AuthenticationError)
        assert info.value.result.locked is True
        assert info.value.result.status is AuthStatus.LOCKED
        assert not session.authenticated


async def test_login_without_a_code_raises_two_factor_required(
    alphapoint_gateway: GatewayFixture,
) -> None:
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(TwoFactorRequired) as info:
            await session.login(alphapoint_gateway.accounts.two_factor)
        result = info.value.result
        assert result.status is AuthStatus.TWO_FACTOR_REQUIRED
        assert result.two_fa_type == "Google"
        assert str(info.value) == "A two-factor code is required to finish logging in."
        assert not session.authenticated
    # No code was sent.
    assert alphapoint_gateway.gateway.requests_for("Authenticate2FA") == []


# -- two-factor authentication -----------------------------------------------------------


def make_two_factor(kind: str, secret: str, calls: list[str]) -> TwoFactor:
    """The same valid code, given as a string, a sync or async callable, or a Totp."""
    if kind == "string":
        return Totp(secret)()
    if kind == "sync":

        def sync_code() -> str:
            calls.append("sync")
            return Totp(secret)()

        return sync_code
    if kind == "async":

        async def async_code() -> str:
            await anyio.lowlevel.checkpoint()
            calls.append("async")
            return Totp(secret)()

        return async_code
    assert kind == "totp"
    return Totp(secret)


@pytest.mark.parametrize("kind", ["string", "sync", "async", "totp"])
async def test_two_factor_login(alphapoint_gateway: GatewayFixture, kind: str) -> None:
    accounts = alphapoint_gateway.accounts
    calls: list[str] = []
    two_factor = make_two_factor(kind, accounts.two_factor_secret, calls)
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        result = await session.login(accounts.two_factor, two_factor=two_factor)
        assert result.status is AuthStatus.AUTHENTICATED
        assert result.requires_2fa is False
        assert result.user is not None
        assert result.user.user_name == "bob"
        assert result.user_id == 8
        assert result.session_token is not None
        assert session.authenticated
        assert session.user == result.user
        info = await session.call("GetUserInfo")
        assert info["UserName"] == "bob"
    assert calls == ([kind] if kind in ("sync", "async") else [])
    [request] = alphapoint_gateway.gateway.requests_for("Authenticate2FA")
    assert isinstance(request.payload["Code"], str)
    assert re.fullmatch(r"\d{6}", request.payload["Code"])


async def test_wrong_two_factor_code_raises_two_factor_required(
    alphapoint_gateway: GatewayFixture,
) -> None:
    accounts = alphapoint_gateway.accounts
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(TwoFactorRequired) as info:
            await session.login(
                accounts.two_factor, two_factor=wrong_code(accounts.two_factor_secret)
            )
        assert info.value.result.status is AuthStatus.REJECTED
        assert info.value.result.errormsg == "Invalid 2FA code"
        assert str(info.value) == "The two-factor code was not accepted."
        assert not session.authenticated
        with pytest.raises(NotAuthorized):
            await session.call("GetUserInfo")
        # The login still waits for a code: the right one finishes it.
        result = await session.authenticate_2fa(Totp(accounts.two_factor_secret)())
        assert result.status is AuthStatus.AUTHENTICATED
        assert session.authenticated


async def test_two_factor_provider_must_return_a_string(
    alphapoint_gateway: GatewayFixture,
) -> None:
    provider: Any = lambda: 123456  # noqa: E731
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(alphapoint.UsageError, match="string"):
            await session.login(alphapoint_gateway.accounts.two_factor, two_factor=provider)
        assert not session.authenticated


@pytest.mark.parametrize("reply_authenticated", [True, False])
async def test_authenticated_and_requires_2fa_is_not_logged_in(
    reply_authenticated: bool,
) -> None:
    secret = base64.b32encode(secrets.token_bytes(20)).decode()
    gateway = Gateway(
        [GatewayUser("bob", "bob-password", user_id=8, totp_secret=secret)],
        two_factor_reply_authenticated=reply_authenticated,
    )
    credentials = PasswordCredentials("bob", "bob-password")
    async with gateway.serve() as running, alphapoint.connect(running.url) as session:
        raw = await session.call("AuthenticateUser", credentials.authenticate_payload())
        # The trap, as the gateway sets it: Authenticated true *and* Requires2FA true.
        assert raw["Authenticated"] is reply_authenticated
        assert raw["Requires2FA"] is True

        result = await session.authenticate(credentials)
        assert result.authenticated is reply_authenticated
        assert result.status is AuthStatus.TWO_FACTOR_REQUIRED
        assert not session.authenticated
        assert session.user is None
        assert "authenticated" not in repr(session)
        with pytest.raises(NotAuthorized):
            await session.call("GetUserInfo")
        with pytest.raises(TwoFactorRequired):
            await session.login(credentials)
        assert not session.authenticated

        second = await session.authenticate_2fa(Totp(secret)())
        assert second.status is AuthStatus.AUTHENTICATED
        assert session.authenticated
        assert (await session.call("GetUserInfo"))["UserName"] == "bob"


# -- lockout, nonces and user ids ---------------------------------------------------------


async def test_lockout_after_max_failed_attempts() -> None:
    gateway = Gateway([GatewayUser("dave", "dave-password", user_id=11)], max_failed_attempts=3)
    wrong = PasswordCredentials("dave", "guess")
    right = PasswordCredentials("dave", "dave-password")
    async with gateway.serve() as running, alphapoint.connect(running.url) as session:
        # A success resets the count.
        for _ in range(2):
            assert (await session.authenticate(wrong)).status is AuthStatus.REJECTED
        assert (await session.authenticate(right)).status is AuthStatus.AUTHENTICATED
        for _ in range(2):
            with pytest.raises(AuthenticationRejected):
                await session.login(wrong)
        assert not gateway.users["dave"].locked
        with pytest.raises(AccountLocked) as info:
            await session.login(wrong)
        assert info.value.result.errormsg == "User is locked"
        assert gateway.users["dave"].locked
        # Now even the right password is refused.
        with pytest.raises(AccountLocked):
            await session.login(right)
        result = await session.authenticate(right)
        assert result.status is AuthStatus.LOCKED
        assert not session.authenticated


async def test_gateway_refuses_a_reused_nonce(alphapoint_gateway: GatewayFixture) -> None:
    key = alphapoint_gateway.accounts.api_key
    constant = ApiKeyCredentials(
        api_key=key.api_key, api_secret=key.api_secret, user_id=key.user_id, nonces=lambda: "5"
    )
    async with alphapoint.connect(alphapoint_gateway.url) as first:
        assert_logged_in_as_alice(await first.login(constant))
    async with alphapoint.connect(alphapoint_gateway.url) as second:
        with pytest.raises(AuthenticationRejected) as info:
            await second.login(constant)
        assert info.value.result.errormsg == "Nonce already used"
        assert not second.authenticated
    nonces = [
        r.payload["Nonce"] for r in alphapoint_gateway.gateway.requests_for("AuthenticateUser")
    ]
    assert nonces == ["5", "5"]


async def test_default_credentials_log_in_many_times(alphapoint_gateway: GatewayFixture) -> None:
    credentials = alphapoint_gateway.accounts.api_key
    results: list[AuthenticateResult] = []

    async def log_in_twice() -> None:
        async with alphapoint.connect(alphapoint_gateway.url) as session:
            for _ in range(2):
                results.append(await session.login(credentials))
                assert session.authenticated

    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tasks:
            for _ in range(5):
                tasks.start_soon(log_in_twice)
    assert len(results) == 10
    assert all(result.status is AuthStatus.AUTHENTICATED for result in results)
    nonces = [
        r.payload["Nonce"] for r in alphapoint_gateway.gateway.requests_for("AuthenticateUser")
    ]
    assert len(nonces) == 10
    assert len(set(nonces)) == 10


async def test_user_id_is_signed_exactly_as_given(alphapoint_gateway: GatewayFixture) -> None:
    gateway = alphapoint_gateway.gateway
    key = alphapoint_gateway.accounts.api_key  # registered on the gateway with user id "7"
    padded_key = gateway.add_api_key(
        GatewayApiKey(secrets.token_hex(16), secrets.token_hex(16), user_id="007")
    )

    def credentials(api_key: str, api_secret: str, user_id: str | int) -> ApiKeyCredentials:
        return ApiKeyCredentials(api_key=api_key, api_secret=api_secret, user_id=user_id)

    seven = credentials(key.api_key, key.api_secret, "7")
    zero_zero_seven = credentials(key.api_key, key.api_secret, "007")
    signatures = {
        user_id: ApiKeyCredentials(
            key.api_key, key.api_secret, user_id, nonces=lambda: "1234567890"
        ).authenticate_payload()["Signature"]
        for user_id in ("7", "007")
    }
    assert signatures["7"] != signatures["007"]

    async with alphapoint.connect(alphapoint_gateway.url) as session:
        with pytest.raises(AuthenticationRejected):
            await session.login(zero_zero_seven)
        assert gateway.requests_for("AuthenticateUser")[-1].payload["UserId"] == "007"
        assert_logged_in_as_alice(await session.login(seven))
        assert_logged_in_as_alice(await session.login(credentials(key.api_key, key.api_secret, 7)))
        assert gateway.requests_for("AuthenticateUser")[-1].payload["UserId"] == "7"

        # A key registered with "007" accepts exactly "007".
        padded = credentials(padded_key.api_key, padded_key.api_secret, "007")
        assert_logged_in_as_alice(await session.login(padded))
        assert gateway.requests_for("AuthenticateUser")[-1].payload["UserId"] == "007"
        with pytest.raises(AuthenticationRejected):
            await session.login(credentials(padded_key.api_key, padded_key.api_secret, "7"))
        with pytest.raises(AuthenticationRejected):
            await session.login(credentials(padded_key.api_key, padded_key.api_secret, 7))


# -- secrets stay secret --------------------------------------------------------------------


async def test_no_secret_in_any_repr_message_or_log_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="alphapoint")
    alice_password = secrets.token_urlsafe(16)
    bob_password = secrets.token_urlsafe(16)
    wrong_password = secrets.token_urlsafe(16)
    api_key = secrets.token_hex(16)
    api_secret = secrets.token_hex(16)
    wrong_api_secret = secrets.token_hex(16)
    totp_secret = base64.b32encode(secrets.token_bytes(20)).decode()
    gateway = Gateway(
        [
            GatewayUser("alice", alice_password, user_id=7),
            GatewayUser("bob", bob_password, user_id=8, totp_secret=totp_secret),
            GatewayUser("carol", secrets.token_urlsafe(16), user_id=9),
        ],
        [GatewayApiKey(api_key, api_secret, user_id="7")],
        max_failed_attempts=3,
    )
    alice = PasswordCredentials("alice", alice_password)
    bob = PasswordCredentials("bob", bob_password)
    key = ApiKeyCredentials(api_key=api_key, api_secret=api_secret, user_id="7")
    bad_key = ApiKeyCredentials(api_key=api_key, api_secret=wrong_api_secret, user_id="7")
    bad_code = wrong_code(totp_secret)
    shown: list[object] = [alice, bob, key, bad_key, Totp(totp_secret)]
    codes = [bad_code]

    def code() -> str:
        codes.append(Totp(totp_secret)())
        return codes[-1]

    async with gateway.serve() as running, alphapoint.connect(running.url) as session:
        carol = PasswordCredentials("carol", wrong_password)
        failing: list[Callable[[], Awaitable[object]]] = [
            lambda: session.login(PasswordCredentials("alice", wrong_password)),
            lambda: session.login(bad_key),
            lambda: session.login(bob, two_factor=bad_code),
            lambda: session.login(bob),
            lambda: session.login(carol),
            lambda: session.login(carol),
            lambda: session.login(carol),
            lambda: session.call("GetUserInfo"),
        ]
        for attempt in failing:
            with pytest.raises(alphapoint.AlphaPointError) as info:
                await attempt()
            shown.append(info.value)
        results = [
            await session.login(alice),
            await session.login(key),
            await session.login(bob, two_factor=code),
            await session.authenticate(bob),
            await session.authenticate_2fa(code()),
        ]
        shown += results
        tokens = [result.session_token for result in results if result.session_token]
        web = await session.call("WebAuthenticateUser", {"SessionToken": tokens[0]})
        assert web["Authenticated"] is True
        shown.append(session)
        await session.logout()
    assert any(isinstance(error, AccountLocked) for error in shown)
    assert len(tokens) == 4
    signatures = [
        r.payload["Signature"]
        for r in gateway.requests_for("AuthenticateUser")
        if "APIKey" in r.payload
    ]
    assert len(signatures) == 2

    secret_strings = [
        alice_password,
        bob_password,
        wrong_password,
        api_secret,
        wrong_api_secret,
        totp_secret,
        *tokens,
        *signatures,
    ]
    texts = [text for value in shown for text in texts_of(value)]
    # The log really captured the flow at DEBUG, frames included.
    records = caplog.records
    assert any(
        r.name.startswith("alphapoint.")
        and r.levelno == logging.DEBUG
        and "n=AuthenticateUser" in r.getMessage()
        for r in records
    )
    assert any("Authenticate2FA" in r.getMessage() for r in records)
    assert any("<redacted>" in r.getMessage() for r in records)
    texts += [caplog.text, *(r.getMessage() for r in records)]
    texts += [repr(r.args) for r in records]
    for text in texts:
        for secret in secret_strings:
            assert secret not in text
        for two_factor_code in codes:
            # A code is six digits: look for it as a number, not inside a longer one.
            assert not re.search(rf"(?<!\d){two_factor_code}(?!\d)", text)

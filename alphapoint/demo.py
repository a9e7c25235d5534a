"""``alphapoint demo``: every kind of login against the embedded gateway, narrated.

:func:`run_demo` starts a :func:`~alphapoint.testing.demo_gateway` on a free
loopback port and, one connection per step, logs in with a password, with an
API key and through 2FA, and shows a locked account, a wrong password and a
call before login being refused. It prints what happened, never a secret.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import TextIO

from .client import connect
from .credentials import Credentials, PasswordCredentials
from .decoding import decode
from .errors import AlphaPointError, NotAuthorized
from .models import AuthenticateResult, AuthStatus, User
from .session import Session
from .testing.accounts import DemoAccounts, demo_gateway
from .testing.gateway import Gateway
from .totp import Totp

__all__ = ["run_demo"]

#: A step: given the gateway URL and the accounts, whether it went as expected and what to print.
Step = Callable[[str, DemoAccounts], Awaitable[tuple[bool, list[str]]]]


async def run_demo(
    out: TextIO,
    *,
    gateway_and_accounts: tuple[Gateway, DemoAccounts] | None = None,
    host: str = "127.0.0.1",
) -> bool:
    """Run the demo, writing to ``out``; True if every step behaved as expected.

    ``gateway_and_accounts`` is a :func:`demo_gateway` result to use instead of
    a fresh one (a test passes its own, to know which secrets must not appear).
    """
    gateway, accounts = gateway_and_accounts or demo_gateway()
    steps: list[tuple[str, Step]] = [
        ("A call before logging in", _call_before_login),
        (f"Password login as {accounts.password.username}", _password_login),
        (f"API-key login for user id {accounts.api_key.user_id}", _api_key_login),
        (
            f"Password login as {accounts.two_factor.username}, who has two-factor authentication",
            _two_factor_login,
        ),
        (f"Password login as {accounts.locked.username}, whose account is locked", _locked_login),
        (f"Password login as {accounts.password.username} with a wrong password", _wrong_password),
    ]
    failed: list[int] = []
    async with gateway.serve(host=host) as running:
        print(f"Embedded AlphaPoint gateway listening on {running.url}", file=out)
        print("(demo accounts, with secrets generated for this run; none is printed)", file=out)
        for number, (title, step) in enumerate(steps, 1):
            print(f"\n{number}. {title}", file=out)
            try:
                ok, lines = await step(running.url, accounts)
            except AlphaPointError as exc:
                ok, lines = False, [f"error: {exc}"]
            for line in lines:
                print(f"   {line}", file=out)
            if not ok:
                print("   -> NOT what was expected", file=out)
                failed.append(number)
    if failed:
        which = ", ".join(str(number) for number in failed)
        print(f"\nStep(s) {which} did not behave as expected.", file=out)
    else:
        print(f"\nAll {len(steps)} steps behaved as expected.", file=out)
    return not failed


def _describe(result: AuthenticateResult) -> str:
    """One phrase for an authentication reply: its status and whom it names."""
    status = result.status
    if status is AuthStatus.AUTHENTICATED:
        user = result.user
        if user is not None and user.user_name:
            return f"authenticated as {user.user_name} (user id {user.user_id})"
        return f"authenticated (user id {result.user_id})"
    if status is AuthStatus.TWO_FACTOR_REQUIRED:
        return f"two-factor code required ({result.two_fa_type or 'unknown type'})"
    return f"{status.value} ({result.display_message})"


async def _user_info(session: Session) -> str:
    info = decode(User, await session.call("GetUserInfo"), what="GetUserInfo")
    return f"GetUserInfo: {info.user_name}, user id {info.user_id}, account id {info.account_id}"


async def _call_before_login(url: str, accounts: DemoAccounts) -> tuple[bool, list[str]]:
    async with connect(url) as session:
        try:
            await session.call("GetUserInfo")
        except NotAuthorized as exc:
            return True, [f"GetUserInfo: refused, as expected ({exc})"]
        return False, ["GetUserInfo: answered without a login"]


async def _password_login(url: str, accounts: DemoAccounts) -> tuple[bool, list[str]]:
    return await _login(url, accounts.password, "AuthenticateUser")


async def _api_key_login(url: str, accounts: DemoAccounts) -> tuple[bool, list[str]]:
    label = "AuthenticateUser (HMAC-SHA256 signature, fresh nonce)"
    return await _login(url, accounts.api_key, label)


async def _login(url: str, credentials: Credentials, label: str) -> tuple[bool, list[str]]:
    """One AuthenticateUser that must succeed, then GetUserInfo on the logged-in session."""
    async with connect(url) as session:
        result = await session.authenticate(credentials)
        lines = [f"{label}: {_describe(result)}"]
        if result.status is not AuthStatus.AUTHENTICATED:
            return False, lines
        return True, [*lines, await _user_info(session)]


async def _two_factor_login(url: str, accounts: DemoAccounts) -> tuple[bool, list[str]]:
    async with connect(url) as session:
        first = await session.authenticate(accounts.two_factor)
        lines = [f"AuthenticateUser: {_describe(first)}"]
        if first.status is not AuthStatus.TWO_FACTOR_REQUIRED:
            return False, lines
        second = await session.authenticate_2fa(Totp(accounts.two_factor_secret)())
        lines.append(f"Authenticate2FA with the current TOTP code: {_describe(second)}")
        if second.status is not AuthStatus.AUTHENTICATED:
            return False, lines
        return True, [*lines, await _user_info(session)]


async def _locked_login(url: str, accounts: DemoAccounts) -> tuple[bool, list[str]]:
    async with connect(url) as session:
        result = await session.authenticate(accounts.locked)
        ok = result.status is AuthStatus.LOCKED
        return ok, [f"AuthenticateUser: {_describe(result)}" + (", as expected" if ok else "")]


async def _wrong_password(url: str, accounts: DemoAccounts) -> tuple[bool, list[str]]:
    wrong = PasswordCredentials(accounts.password.username, secrets.token_urlsafe(12))
    async with connect(url) as session:
        result = await session.authenticate(wrong)
        ok = result.status is AuthStatus.REJECTED
        lines = [f"AuthenticateUser: {_describe(result)}" + (", as expected" if ok else "")]
        try:
            await session.call("GetUserInfo")
        except NotAuthorized:
            lines.append("GetUserInfo: still refused, the connection is not logged in")
        else:
            ok = False
            lines.append("GetUserInfo: answered after a refused login")
        return ok, lines

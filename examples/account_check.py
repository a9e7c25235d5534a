"""An operations check: can each of these accounts log in? ok / rejected / locked / needs 2FA.

User names come from the arguments or from a file (one per line, ``#``
comments); each password from the environment variable
``ALPHAPOINT_PASSWORD_<USERNAME>``, the name upper-cased with every character
other than a letter or digit turned into ``_`` (``john.doe`` ->
``ALPHAPOINT_PASSWORD_JOHN_DOE``)::

    export ALPHAPOINT_PASSWORD_ALICE=... ALPHAPOINT_PASSWORD_BOB=...
    python examples/account_check.py wss://api.example.com/WSGateway/ alice bob
    export ALPHAPOINT_URL=wss://api.example.com/WSGateway/
    python examples/account_check.py --file users.txt

Each account gets its own connection and one AuthenticateUser
(``alphapoint.checks.check_login``: the outcome is reported, never raised); a
login that succeeds is logged out again. The exit code is 0 when every account
is ok, else 1. Mind that every wrong password counts towards the gateway's lockout.

For operations, ``alphapoint check ACCOUNTS_FILE`` does the same from a TOML
file that names each account's URL and where each secret is (API keys, 2FA,
secrets from commands, JSON Lines output, exit codes); this script shows how
little it takes to build such a check on the library.

With no URL (first argument or ``ALPHAPOINT_URL``) it checks the accounts of
an embedded demo gateway, including a locked one, a 2FA one and an unknown
one, so the demo run reports problems (and exits 1) on purpose.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from collections.abc import Mapping, Sequence

import anyio
import attrs

import alphapoint
from alphapoint.checks import Status, check_login
from alphapoint.testing import demo_gateway

#: At most this many accounts are checked at the same time.
CONCURRENCY = 8


@attrs.frozen
class Check:
    """The outcome for one account."""

    username: str
    result: str  # ok, rejected, locked, needs 2FA, no password, error
    detail: str


def password_variable(username: str) -> str:
    """The environment variable that holds ``username``'s password."""
    return "ALPHAPOINT_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", username.upper())


async def main(url: str | None, usernames: Sequence[str]) -> int:
    """Check ``usernames`` on the gateway at ``url``; returns the exit code."""
    if url is None:
        gateway, accounts = demo_gateway()
        demo_passwords = {
            credentials.username: credentials.password
            for credentials in (accounts.password, accounts.two_factor, accounts.locked)
        }
        demo_passwords["mallory"] = secrets.token_urlsafe(12)  # no such user
        async with gateway.serve() as running:
            print(f"No gateway URL given: checking an embedded demo gateway at {running.url}")
            return await check_all(running.url, usernames or list(demo_passwords), demo_passwords)
    if not usernames:
        print("account_check: give user names as arguments or with --file", file=sys.stderr)
        return 2
    passwords = {
        name: os.environ[password_variable(name)]
        for name in usernames
        if os.environ.get(password_variable(name))
    }
    return await check_all(url, usernames, passwords)


async def check_all(url: str, usernames: Sequence[str], passwords: Mapping[str, str]) -> int:
    """Check every account (several at once), print a table; 0 if all are ok."""
    checks: list[Check | None] = [None] * len(usernames)
    limiter = anyio.CapacityLimiter(CONCURRENCY)

    async def run(index: int, username: str) -> None:
        async with limiter:
            checks[index] = await check_account(url, username, passwords.get(username))

    async with anyio.create_task_group() as tg:
        for index, username in enumerate(usernames):
            tg.start_soon(run, index, username)

    done = [check for check in checks if check is not None]
    width = max([len("ACCOUNT"), *(len(check.username) for check in done)])
    print(f"{'ACCOUNT':<{width}}  {'RESULT':<11}  DETAIL")
    for check in done:
        print(f"{check.username:<{width}}  {check.result:<11}  {check.detail}")
    ok = sum(check.result == "ok" for check in done)
    print(f"{ok} of {len(done)} account(s) ok")
    return 0 if ok == len(done) else 1


async def check_account(url: str, username: str, password: str | None) -> Check:
    """One account's outcome; never raises for a gateway or connection problem.

    The login itself is :func:`alphapoint.checks.check_login`, what ``alphapoint
    check`` runs for each account of an accounts file (it logs out again after a
    login that succeeded); this script only names the outcomes its own way.
    """
    if password is None:
        return Check(username, "no password", f"set {password_variable(username)}")
    credentials = alphapoint.PasswordCredentials(username, password)
    outcome = await check_login(url, credentials, timeout=alphapoint.DEFAULT_TIMEOUT)
    result = outcome.result
    if outcome.status is Status.AUTHENTICATED:
        user = result.user if result is not None else None
        detail = f"user id {user.user_id}, account id {user.account_id}" if user else ""
        return Check(username, "ok", detail)
    if outcome.status is Status.TWO_FACTOR_REQUIRED:
        kind = result.two_fa_type if result is not None else None
        return Check(username, "needs 2FA", f"two-factor type {kind}")
    if outcome.status in (Status.FAILED, Status.USAGE_ERROR):
        return Check(username, "error", outcome.message)
    return Check(username, outcome.status.value, outcome.message)


def read_usernames(path: str) -> list[str]:
    """User names from a file: one a line; blank lines and ``#`` comments are skipped."""
    with open(path, encoding="utf-8") as file:
        lines = (line.split("#", 1)[0].strip() for line in file)
        return [line for line in lines if line]


def parse_args(argv: list[str] | None = None) -> tuple[str | None, list[str]]:
    """The gateway URL (first argument if it is a ws(s):// URL, else $ALPHAPOINT_URL) and names."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("args", nargs="*", metavar="[URL] USERNAME", help="gateway URL, user names")
    parser.add_argument("--file", help="read user names from this file, one a line")
    args = parser.parse_args(argv)
    names: list[str] = list(args.args)
    url = os.environ.get("ALPHAPOINT_URL") or None
    if names and names[0].startswith(("ws://", "wss://")):
        url = names.pop(0)
    if args.file:
        try:
            names += read_usernames(args.file)
        except OSError as exc:
            parser.error(f"cannot read {args.file}: {exc.strerror}")
    return url, names


if __name__ == "__main__":
    url, usernames = parse_args()
    sys.exit(anyio.run(main, url, usernames))

"""The ``alphapoint`` command.

* ``alphapoint demo``: every kind of login against an embedded gateway, narrated.
* ``alphapoint gateway``: run the embedded gateway until Ctrl-C.
* ``alphapoint authenticate URL``: one AuthenticateUser (and Authenticate2FA)
  against a gateway; the outcome is printed and is the exit code (:class:`ExitCode`).

Ctrl-C stops any of them cleanly (connections closed, tasks ended) and exits
130, with one line on stderr, on every Python version.

Secrets never come from the command line (where ``ps`` and shell history see
them): passwords and API secrets come from environment variables or a hidden
prompt, and nothing printed contains one.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import getpass
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import attrs

from . import __version__
from .apex import complete_two_factor
from .client import connect
from .credentials import ApiKeyCredentials, Credentials, PasswordCredentials
from .errors import AlphaPointError, InsecureConnection, InvalidURL
from .models import AuthenticateResult, AuthStatus
from .redaction import REDACTED
from .session import DEFAULT_TIMEOUT
from .testing.accounts import demo_gateway
from .testing.config import GatewayConfigError, load_gateway_config
from .testing.gateway import Casing, Gateway

__all__ = ["API_SECRET_ENV", "PASSWORD_ENV", "ExitCode", "build_parser", "main"]

PASSWORD_ENV = "ALPHAPOINT_PASSWORD"  # noqa: S105 - a variable name, not a password
API_SECRET_ENV = "ALPHAPOINT_API_SECRET"  # noqa: S105 - a variable name


class ExitCode(enum.IntEnum):
    """What ``alphapoint`` exits with."""

    OK = 0  #: authenticated (``demo``: every step behaved as expected)
    REJECTED = 1  #: wrong credentials (``demo``: a step misbehaved)
    USAGE = 2  #: bad arguments, a missing secret, an unusable --config file
    LOCKED = 3  #: the account is locked
    TWO_FACTOR_REQUIRED = 4  #: 2FA is needed and no code, or a wrong one, was given
    FAILURE = 5  #: connection, protocol or timeout failure
    INTERRUPTED = 130  #: stopped by Ctrl-C (SIGINT: 128 + 2, as shells report it)


_STATUS_EXIT = {
    AuthStatus.AUTHENTICATED: ExitCode.OK,
    AuthStatus.REJECTED: ExitCode.REJECTED,
    AuthStatus.LOCKED: ExitCode.LOCKED,
    AuthStatus.TWO_FACTOR_REQUIRED: ExitCode.TWO_FACTOR_REQUIRED,
}


class _UsageError(Exception):
    """A problem with how the command was invoked; exits with :attr:`ExitCode.USAGE`."""


_T = TypeVar("_T")


def main(argv: list[str] | None = None) -> int:
    """Run the command with ``argv`` (``sys.argv[1:]`` by default); returns the exit code.

    The console script and ``python -m alphapoint`` pass the result to ``sys.exit``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], ExitCode] = args.handler
    try:
        return int(handler(args))
    except _UsageError as exc:
        _error(args.command, str(exc))
        return ExitCode.USAGE
    except KeyboardInterrupt:
        # One line; on a terminal, after the "^C" the terminal echoed.
        start = "\n" if sys.stderr is not None and sys.stderr.isatty() else ""
        print(f"{start}alphapoint {args.command}: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


def _run(func: Callable[..., Awaitable[_T]], *args: object) -> _T:
    """``anyio.run(func, *args)``, where Ctrl-C raises KeyboardInterrupt on every Python.

    On Ctrl-C anyio's runner, like ``asyncio.run``, cancels the main task, lets
    it clean up (close its connections, end its tasks), then raises
    KeyboardInterrupt. On Python 3.10, whose tasks cannot be uncancelled, it
    lets the main task's CancelledError out instead: nothing else cancels the
    main task, so that is Ctrl-C too.
    """
    try:
        return anyio.run(func, *args)
    except asyncio.CancelledError:
        if sys.version_info >= (3, 11):
            raise
        raise KeyboardInterrupt from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``alphapoint`` command."""
    parser = argparse.ArgumentParser(
        prog="alphapoint", description="AlphaPoint APEX WebSocket client tools."
    )
    parser.add_argument("--version", action="version", version=f"alphapoint {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="log in every way against an embedded gateway and show what happens",
        description="Start an embedded gateway and log in with a password, an API key and "
        "2FA; show a locked account, a wrong password and a call before login being refused.",
    )
    demo.set_defaults(handler=_demo)

    gateway = commands.add_parser(
        "gateway",
        help="run the embedded gateway until Ctrl-C",
        description="Run the embedded APEX gateway (for developing clients) until Ctrl-C.",
    )
    gateway.add_argument("--host", default="127.0.0.1", help="address to listen on")
    gateway.add_argument(
        "--port", type=_port, default=0, help="port to listen on (default: a free port)"
    )
    gateway.add_argument(
        "--config", metavar="FILE", help="JSON file with users and API keys (known secrets)"
    )
    gateway.add_argument(
        "--casing",
        choices=[casing.value for casing in Casing],
        help="reply key casing: pascal, as live gateways send, or camel, as the docs show",
    )
    gateway.add_argument("-v", "--verbose", action="store_true", help="log logins to stderr")
    gateway.set_defaults(handler=_gateway)

    auth = commands.add_parser(
        "authenticate",
        help="log in once and report the outcome",
        description=f"Send AuthenticateUser (and Authenticate2FA) and report the outcome. "
        f"The password is read from ${PASSWORD_ENV}, the API secret from ${API_SECRET_ENV}; "
        "when unset, they are asked for if stdin is a terminal. Exit codes: 0 authenticated, "
        "1 rejected, 2 usage, 3 locked, 4 two-factor code required or not accepted, "
        "5 connection, protocol or timeout failure.",
    )
    auth.add_argument(
        "url", metavar="URL", help="gateway URL, e.g. wss://api.example.com/WSGateway/"
    )
    who = auth.add_mutually_exclusive_group(required=True)
    who.add_argument("--username", help=f"log in with this user name and ${PASSWORD_ENV}")
    who.add_argument("--api-key", help=f"log in with this API key and ${API_SECRET_ENV}")
    auth.add_argument("--user-id", help="the user id the API key belongs to (with --api-key)")
    auth.add_argument(
        "--two-factor-code-env",
        metavar="VAR",
        help="read the two-factor code from environment variable VAR",
    )
    auth.add_argument("--json", action="store_true", help="print the result as JSON")
    auth.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"connect and reply timeout (default: {DEFAULT_TIMEOUT:g})",
    )
    auth.add_argument(
        "--allow-insecure",
        action="store_true",
        help="allow plain ws:// to a host that is not loopback",
    )
    auth.set_defaults(handler=_authenticate)
    return parser


# -- demo ---------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> ExitCode:
    from .demo import run_demo

    ok = _run(run_demo, sys.stdout)
    return ExitCode.OK if ok else ExitCode.REJECTED


# -- gateway ------------------------------------------------------------------


def _gateway(args: argparse.Namespace) -> ExitCode:
    if args.config is not None:
        try:
            gateway = load_gateway_config(args.config)
        except GatewayConfigError as exc:
            raise _UsageError(str(exc)) from None
        users = [
            _describe_user(user.username, user.totp_secret, user.locked)
            for user in gateway.users.values()
        ]
        notes = [
            f"Users: {', '.join(users) or 'none'}; {len(gateway.api_keys)} API key(s).",
            f"Credentials as set in {args.config}.",
        ]
    else:
        gateway, accounts = demo_gateway()
        notes = [
            f"Demo users: {accounts.password.username} (password), "
            f"{accounts.two_factor.username} (password + TOTP 2FA), "
            f"{accounts.locked.username} (locked); one API key, for user id "
            f"{accounts.api_key.user_id}.",
            "Their secrets are generated afresh for each run and not shown; "
            "use --config FILE to set known ones.",
        ]
    if args.casing is not None:
        gateway.casing = Casing(args.casing)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        _run(_serve, gateway, args.host, args.port, notes)
    except OSError as exc:
        _error(args.command, f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return ExitCode.FAILURE
    print("Stopped.", flush=True)
    return ExitCode.OK


def _describe_user(name: str, totp_secret: str | None, locked: bool) -> str:
    flags = [flag for flag, on in (("2FA", bool(totp_secret)), ("locked", locked)) if on]
    return f"{name} ({', '.join(flags)})" if flags else name


async def _serve(gateway: Gateway, host: str, port: int, notes: list[str]) -> None:
    async with gateway.serve(host=host, port=port) as running:
        # The URL is the first line, flushed at once: scripts read it to find the port.
        print(f"AlphaPoint gateway listening on {running.url}", flush=True)
        for note in notes:
            print(note)
        print("Press Ctrl-C to stop.", flush=True)
        await _until_terminated()


async def _until_terminated() -> None:
    """Return on SIGTERM (``kill``, ``docker stop``): the gateway stops and exits 0.

    Ctrl-C cancels the whole run instead (see :func:`_run`): it exits 130.
    """
    if sys.platform == "win32":
        await anyio.sleep_forever()
    else:
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                return


# -- authenticate -------------------------------------------------------------


def _authenticate(args: argparse.Namespace) -> ExitCode:
    credentials = _credentials(args)
    code = _two_factor_code(args.two_factor_code_env)
    try:
        result = _run(
            _run_authenticate, args.url, credentials, code, args.timeout, args.allow_insecure
        )
    except InvalidURL as exc:
        raise _UsageError(str(exc)) from None
    except InsecureConnection as exc:
        raise _UsageError(f"{exc} (here: --allow-insecure)") from None
    except AlphaPointError as exc:
        _error(args.command, str(exc))
        return ExitCode.FAILURE
    if args.json:
        print(json.dumps(result_json(result), indent=2))
    else:
        for label, value in _result_lines(result):
            print(f"{label + ':':<12}{value}")
    if result.status is AuthStatus.TWO_FACTOR_REQUIRED and code is None:
        _error(args.command, "a two-factor code is required: pass --two-factor-code-env VAR")
    return _STATUS_EXIT[result.status]


def _credentials(args: argparse.Namespace) -> Credentials:
    if args.username is not None:
        if args.user_id is not None:
            raise _UsageError("--user-id goes with --api-key, not --username")
        password = _secret(PASSWORD_ENV, f"Password for {args.username}: ")
        return PasswordCredentials(args.username, password)
    if args.user_id is None:
        raise _UsageError("--api-key needs --user-id")
    secret = _secret(API_SECRET_ENV, "API secret: ")
    return ApiKeyCredentials(api_key=args.api_key, api_secret=secret, user_id=args.user_id)


def _secret(variable: str, prompt: str) -> str:
    """A secret from the environment, or asked for (hidden) when stdin is a terminal."""
    value = os.environ.get(variable)
    if value:
        return value
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(prompt)
    raise _UsageError(f"set {variable} (stdin is not a terminal, so it cannot be asked for)")


def _two_factor_code(variable: str | None) -> str | None:
    if variable is None:
        return None
    code = os.environ.get(variable, "").strip()
    if not code:
        raise _UsageError(f"--two-factor-code-env: the environment variable {variable} is not set")
    return code


async def _run_authenticate(
    url: str,
    credentials: Credentials,
    code: str | None,
    timeout: float,
    allow_insecure: bool,
) -> AuthenticateResult:
    async with connect(
        url, timeout=timeout, open_timeout=timeout, allow_insecure=allow_insecure
    ) as session:
        result = await session.authenticate(credentials)
        if result.status is not AuthStatus.TWO_FACTOR_REQUIRED or code is None:
            return result
        return complete_two_factor(result, await session.authenticate_2fa(code))


def result_json(result: AuthenticateResult) -> dict[str, Any]:
    """``result``'s fields in snake_case, plus ``status``, with its tokens redacted."""
    data = attrs.asdict(result)
    for key in ("session_token", "two_fa_token"):
        if data.get(key) is not None:
            data[key] = REDACTED
    data["status"] = result.status.value
    return data


def _result_lines(result: AuthenticateResult) -> list[tuple[str, object]]:
    user = result.user
    lines: list[tuple[str, object]] = [("status", result.status.value)]
    if user is not None and user.user_name:
        lines.append(("user", user.user_name))
    user_id = user.user_id if user is not None and user.user_id else result.user_id
    if user_id:
        lines.append(("user id", user_id))
    if user is not None and user.account_id:
        lines.append(("account id", user.account_id))
    if result.status is AuthStatus.TWO_FACTOR_REQUIRED and result.two_fa_type:
        lines.append(("2FA type", result.two_fa_type))
    lines.append(("message", result.display_message))
    return lines


# -- helpers ------------------------------------------------------------------


def _error(command: str, message: str) -> None:
    """One line on stderr, however many lines ``message`` had."""
    print(f"alphapoint {command}: error: {' '.join(message.split())}", file=sys.stderr)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port is 0 to 65535")
    return port


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value

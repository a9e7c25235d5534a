"""The ``alphapoint`` command.

* ``alphapoint demo``: every kind of login against an embedded gateway, narrated.
* ``alphapoint gateway``: run the embedded gateway until Ctrl-C.
* ``alphapoint authenticate [URL]``: one login (AuthenticateUser, and
  Authenticate2FA when a code or a TOTP secret is given).
* ``alphapoint check ACCOUNTS_FILE``: log in every account of a TOML file,
  several at once (:mod:`alphapoint.accounts_file`, :mod:`alphapoint.checks`).
* ``alphapoint ping [URL]``: connect and Ping, no credentials.
* ``alphapoint call [URL] FUNCTION [JSON]``: log in, call one function, print the reply.

The outcome is the exit code (:class:`ExitCode`); ``--json`` prints one JSON
record a line for every outcome, failures included, whose ``status`` is the
single truth. ``-v`` tells progress and timings on stderr. The URL defaults
to ``$ALPHAPOINT_URL``. Ctrl-C stops any of them cleanly (connections closed,
tasks ended) and exits 130, with one line on stderr, on every Python version.

Secrets never come from the command line (where ``ps`` and shell history see
them): passwords and API secrets come from environment variables (or a
command, in an accounts file) or a hidden prompt, an option that looks like
one is refused with where the secret goes instead, and nothing printed
contains one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import functools
import getpass
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import anyio
import attrs

from . import __version__
from .checks import (
    Outcome,
    Progress,
    Status,
    Timings,
    account_label,
    check_accounts,
    check_login,
    failure,
    log_in,
    login_outcome,
    open_session,
)
from .credentials import ApiKeyCredentials, Credentials, PasswordCredentials
from .errors import AlphaPointError, InsecureConnection, InvalidURL, UsageError
from .models import AuthenticateResult, AuthStatus
from .session import DEFAULT_TIMEOUT
from .testing.accounts import demo_gateway
from .testing.config import GatewayConfigError, load_gateway_config
from .testing.gateway import Casing, Gateway
from .totp import Totp
from .urls import without_user_info

if TYPE_CHECKING:
    from .accounts_file import AccountSpec

__all__ = [
    "API_SECRET_ENV",
    "PASSWORD_ENV",
    "TOTP_SECRET_ENV",
    "URL_ENV",
    "ExitCode",
    "build_parser",
    "main",
]

PASSWORD_ENV = "ALPHAPOINT_PASSWORD"  # noqa: S105 - a variable name, not a password
"""The environment variable ``authenticate`` and ``call`` read the password from."""
API_SECRET_ENV = "ALPHAPOINT_API_SECRET"  # noqa: S105 - a variable name
"""The environment variable ``authenticate`` and ``call`` read the API secret from."""
TOTP_SECRET_ENV = "ALPHAPOINT_TOTP_SECRET"  # noqa: S105 - a variable name
"""The environment variable a TOTP secret is read from when ``--totp-secret-env`` is not given."""
URL_ENV = "ALPHAPOINT_URL"
"""The environment variable that gives the gateway URL when the command line does not."""


class ExitCode(enum.IntEnum):
    """What ``alphapoint`` exits with (``check``: the worst account's, see :data:`SEVERITY`)."""

    OK = 0  #: authenticated, or ping/call answered (``demo``: every step behaved as expected)
    REJECTED = 1  #: wrong credentials (``demo``: a step misbehaved)
    USAGE = 2  #: bad arguments, a missing secret, an unusable --config or accounts file
    LOCKED = 3  #: the account is locked
    TWO_FACTOR_REQUIRED = 4  #: 2FA is needed and no code, or a wrong one, was given
    FAILURE = 5  #: connection, protocol or timeout failure, or a call the gateway refused
    INTERRUPTED = 130  #: stopped by Ctrl-C (SIGINT: 128 + 2, as shells report it)


STATUS_EXIT = {
    Status.AUTHENTICATED: ExitCode.OK,
    Status.OK: ExitCode.OK,
    Status.REJECTED: ExitCode.REJECTED,
    Status.USAGE_ERROR: ExitCode.USAGE,
    Status.LOCKED: ExitCode.LOCKED,
    Status.TWO_FACTOR_REQUIRED: ExitCode.TWO_FACTOR_REQUIRED,
    Status.FAILED: ExitCode.FAILURE,
}

#: ``check`` exits with the first of these that any account got: an account that
#: could not be checked at all (5, then 2) hides more than one that was checked.
SEVERITY = (
    ExitCode.FAILURE,
    ExitCode.USAGE,
    ExitCode.LOCKED,
    ExitCode.REJECTED,
    ExitCode.TWO_FACTOR_REQUIRED,
    ExitCode.OK,
)

#: Words that mark an option as one that would carry a secret, and where that
#: secret goes instead (the first word found in the option's name wins).
_SECRET_OPTIONS = (
    ("totp", f"${TOTP_SECRET_ENV} or the variable --totp-secret-env VAR names"),
    ("otp", f"${TOTP_SECRET_ENV} or the variable --totp-secret-env VAR names"),
    ("api-secret", f"${API_SECRET_ENV} (or the hidden prompt, on a terminal)"),
    ("secret", f"${API_SECRET_ENV} (or the hidden prompt, on a terminal)"),
    ("pass", f"${PASSWORD_ENV} (or the hidden prompt, on a terminal)"),
    ("pwd", f"${PASSWORD_ENV} (or the hidden prompt, on a terminal)"),
    ("code", "the environment variable --two-factor-code-env VAR names"),
    ("2fa", "the environment variable --two-factor-code-env VAR names"),
    ("token", "nowhere: a session token is never given, the command logs in"),
)


class _UsageError(Exception):
    """A problem with how the command was invoked; exits with :attr:`ExitCode.USAGE`."""


class _ArgumentError(Exception):
    """Argparse's complaint about the command line, raised rather than exiting, so that
    ``--json`` can print its record too."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        unrecognized = "unrecognized arguments: "
        if message.startswith(unrecognized):
            # Name the options only: what follows one may be a value typed by mistake.
            words = message.removeprefix(unrecognized).split()
            options = [word.split("=", 1)[0] for word in words if word.startswith("-")]
            message = unrecognized + (" ".join(options) or "(values not shown)")
        raise _ArgumentError(self, message)


_T = TypeVar("_T")


def main(argv: list[str] | None = None) -> int:
    """Run the command with ``argv`` (``sys.argv[1:]`` by default); returns the exit code.

    The console script and ``python -m alphapoint`` pass the result to ``sys.exit``.
    """
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    wants_json = "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv
    refused = _secret_option(parser, argv)
    if refused is not None:
        print(refused, file=sys.stderr)
        if wants_json:
            message = refused.split(": error: ", 1)[1]
            _print_record(Outcome(Status.USAGE_ERROR, None, None, message, "UsageError"))
        return ExitCode.USAGE
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as exc:
        exc.parser.print_usage(sys.stderr)
        print(f"{exc.parser.prog}: error: {exc}", file=sys.stderr)
        if wants_json:
            _print_record(Outcome(Status.USAGE_ERROR, None, None, str(exc), "UsageError"))
        return ExitCode.USAGE
    handler: Callable[[argparse.Namespace], ExitCode] = args.handler
    try:
        return int(handler(args))
    except _UsageError as exc:
        _error(args.command, str(exc))
        if getattr(args, "json", False):
            _print_record(
                Outcome(
                    Status.USAGE_ERROR,
                    _account_of(args),
                    _url_of(args),
                    _one_line(exc),
                    "UsageError",
                )
            )
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
    parser = _ArgumentParser(
        prog="alphapoint",
        description="AlphaPoint APEX WebSocket client tools. Exit codes: 0 authenticated "
        "(or answered), 1 rejected, 2 usage, 3 locked, 4 two-factor code required or not "
        "accepted, 5 connection, protocol or timeout failure, 130 interrupted.",
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
    _url_argument(auth)
    _login_options(auth)
    _common_options(auth, json_help="print the outcome as one JSON record")
    auth.set_defaults(handler=_authenticate)

    check = commands.add_parser(
        "check",
        help="log in every account of an accounts file and report each",
        description="Log in every account an accounts file (TOML) lists, several at once, "
        "each on its own connection, and report each outcome. The file names where each "
        "secret is (an environment variable or a command), never the secret. Exits with "
        "the worst outcome: 5 (an account could not be reached), then 2 (no secret), "
        "3 locked, 1 rejected, 4 two-factor code required, 0 all authenticated.",
    )
    check.add_argument("accounts_file", metavar="ACCOUNTS_FILE", help="the accounts file (TOML)")
    check.add_argument(
        "--concurrency",
        type=_positive_int,
        default=8,
        metavar="N",
        help="check at most N accounts at once (default: 8)",
    )
    _common_options(
        check,
        json_help="print one JSON record a line per account (JSON Lines)",
        timeout_help="for accounts that set none",
    )
    check.set_defaults(handler=_check)

    ping = commands.add_parser(
        "ping",
        help="connect and Ping the gateway (no credentials)",
        description="Open a connection (TCP, TLS, WebSocket handshake), send an APEX Ping "
        "and report the round-trip time. No credentials are sent, so plain ws:// is "
        "allowed to any host. Exit codes: 0 answered, 5 connection, protocol or timeout "
        "failure.",
    )
    _url_argument(ping)
    _common_options(ping, json_help="print the outcome as one JSON record")
    ping.set_defaults(handler=_ping)

    call = commands.add_parser(
        "call",
        help="log in, call one APEX function and print its reply as JSON",
        description="Log in as authenticate does (same options and environment variables), "
        "call FUNCTION with the JSON payload (default: {}), and print the reply as JSON. "
        "Exit codes as authenticate's; 5 also when the gateway refuses the call.",
    )
    call.add_argument(
        "call",
        nargs="+",
        metavar="[URL] FUNCTION [JSON]",
        help=f"the gateway URL (default: ${URL_ENV}), the function, and its payload",
    )
    _login_options(call)
    _common_options(call, json_help="print the outcome and the reply as one JSON record")
    call.set_defaults(handler=_call)
    return parser


def _url_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "url",
        metavar="URL",
        nargs="?",
        help=f"gateway URL, e.g. wss://api.example.com/WSGateway/ (default: ${URL_ENV})",
    )


def _login_options(command: argparse.ArgumentParser) -> None:
    who = command.add_mutually_exclusive_group(required=True)
    who.add_argument("--username", help=f"log in with this user name and ${PASSWORD_ENV}")
    who.add_argument("--api-key", help=f"log in with this API key and ${API_SECRET_ENV}")
    command.add_argument("--user-id", help="the user id the API key belongs to (with --api-key)")
    second = command.add_mutually_exclusive_group()
    second.add_argument(
        "--two-factor-code-env",
        metavar="VAR",
        help="read the two-factor code from environment variable VAR",
    )
    second.add_argument(
        "--totp-secret-env",
        metavar="VAR",
        help="complete 2FA unattended with the TOTP secret (base32) in environment variable "
        f"VAR (default: ${TOTP_SECRET_ENV}, when set)",
    )
    command.add_argument(
        "--allow-insecure",
        action="store_true",
        help="allow plain ws:// to a host that is not loopback",
    )


def _common_options(
    command: argparse.ArgumentParser, *, json_help: str, timeout_help: str = ""
) -> None:
    command.add_argument("--json", action="store_true", help=json_help)
    command.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"connect and reply timeout{', ' + timeout_help if timeout_help else ''} "
        f"(default: {DEFAULT_TIMEOUT:g})",
    )
    command.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="tell progress and timings on stderr (never a secret)",
    )


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
    url = _url(args)
    credentials = _credentials(args)
    two_factor = _two_factor(args)
    outcome = _run(
        functools.partial(
            check_login,
            url,
            credentials,
            two_factor=two_factor,
            timeout=args.timeout,
            allow_insecure=args.allow_insecure,
            progress=_progress(args),
        )
    )
    _report(args, outcome)
    if args.json:
        _print_record(outcome)
    elif outcome.result is not None:
        for label, value in _result_lines(outcome.result):
            print(f"{label + ':':<12}{value}")
    if outcome.status is Status.TWO_FACTOR_REQUIRED and two_factor is None:
        _error(
            args.command,
            "a two-factor code is required: pass --two-factor-code-env VAR "
            "(or --totp-secret-env VAR)",
        )
    return STATUS_EXIT[outcome.status]


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


def _two_factor(args: argparse.Namespace) -> Callable[[], str] | None:
    """What completes 2FA: a code from --two-factor-code-env, or a :class:`Totp` from
    --totp-secret-env (else ``$ALPHAPOINT_TOTP_SECRET``, when set), or nothing."""
    if args.two_factor_code_env is not None:
        code = os.environ.get(args.two_factor_code_env, "").strip()
        if not code:
            raise _UsageError(
                f"--two-factor-code-env: the environment variable "
                f"{args.two_factor_code_env} is not set"
            )
        return lambda: code
    variable = args.totp_secret_env
    if variable is None and os.environ.get(TOTP_SECRET_ENV):
        variable = TOTP_SECRET_ENV
    if variable is None:
        return None
    secret = os.environ.get(variable, "").strip()
    if not secret:
        raise _UsageError(f"--totp-secret-env: the environment variable {variable} is not set")
    try:
        return Totp(secret)
    except UsageError as exc:  # its message names the problem, never the secret
        raise _UsageError(f"{variable}: {exc}") from None


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


# -- check --------------------------------------------------------------------


def _check(args: argparse.Namespace) -> ExitCode:
    # Imported here: the TOML reader is for this command only (the command starts fast).
    from .accounts_file import AccountsFileError, load_accounts

    try:
        specs = load_accounts(
            args.accounts_file,
            default_url=os.environ.get(URL_ENV) or None,
            default_timeout=args.timeout,
        )
    except AccountsFileError as exc:
        raise _UsageError(str(exc)) from None
    progress = None
    if args.verbose:

        def progress(spec: AccountSpec, line: str) -> None:
            _tell(args.command, f"[{spec.name}] {line}")

    outcomes = _run(
        functools.partial(check_accounts, specs, concurrency=args.concurrency, progress=progress)
    )
    if args.json:
        for outcome in outcomes:
            _print_record(outcome)
    else:
        _print_table(outcomes)
    codes = {STATUS_EXIT[outcome.status] for outcome in outcomes}
    return next(code for code in SEVERITY if code in codes)


def _print_table(outcomes: Sequence[Outcome]) -> None:
    rows = [("ACCOUNT", "STATUS", "MS", "DETAIL")]
    for outcome in outcomes:
        total = sum(outcome.timings.values())
        rows.append((outcome.account or "", outcome.status.value, f"{total:.0f}", _detail(outcome)))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for account, status, ms, detail in rows:
        print(f"{account:<{widths[0]}}  {status:<{widths[1]}}  {ms:>{widths[2]}}  {detail}")
    ok = sum(outcome.status is Status.AUTHENTICATED for outcome in outcomes)
    print(f"{ok} of {len(outcomes)} account(s) authenticated")


def _detail(outcome: Outcome) -> str:
    result = outcome.result
    if outcome.status is Status.AUTHENTICATED and result is not None and result.user is not None:
        return f"user id {result.user.user_id}, account id {result.user.account_id}"
    if outcome.error_kind is not None:
        return f"{outcome.error_kind}: {outcome.message}"
    return outcome.message


# -- ping ---------------------------------------------------------------------


def _ping(args: argparse.Namespace) -> ExitCode:
    url = _url(args)
    outcome = _run(_run_ping, url, args.timeout, _progress(args))
    _report(args, outcome)
    if args.json:
        _print_record(outcome, login=False)
    elif outcome.status is Status.OK:
        print(
            f"{outcome.message} from {outcome.url} in {outcome.timings['ping']:.1f} ms "
            f"(handshake {outcome.timings['connect']:.1f} ms)"
        )
    return STATUS_EXIT[outcome.status]


async def _run_ping(url: str, timeout: float, progress: Progress) -> Outcome:
    """Connect and Ping; no credentials, so plain ws:// may go anywhere."""
    shown = without_user_info(url)
    timings = Timings(progress)
    try:
        async with contextlib.AsyncExitStack() as stack:
            session = await open_session(
                stack, url, timeout=timeout, allow_insecure=True, timings=timings
            )
            with timings.step("ping", label="Ping"):
                reply = await session.call("Ping")
    except AlphaPointError as exc:
        return failure(exc, account=None, url=shown, timings=timings)
    message = reply.get("msg") if isinstance(reply, dict) else None
    text = str(message or "answered")
    return Outcome(Status.OK, None, shown, text, timings=timings.ms, extra={"reply": reply})


# -- call ---------------------------------------------------------------------

#: Calls that carry secrets in their payload: ``call`` refuses them.
_LOGIN_FUNCTIONS = frozenset({"AuthenticateUser", "Authenticate2FA", "WebAuthenticateUser"})


def _call(args: argparse.Namespace) -> ExitCode:
    words = list(args.call)
    if words[0].startswith(("ws://", "wss://")):
        args.url = words.pop(0)
    else:
        args.url = None
    if not words or len(words) > 2:
        raise _UsageError("expected [URL] FUNCTION [JSON]")
    url = _url(args)
    function = words[0]
    if function in _LOGIN_FUNCTIONS:
        raise _UsageError(
            f"{function} carries secrets, which are never arguments: "
            "use alphapoint authenticate, or call logs in by itself"
        )
    payload = _payload(words[1]) if len(words) == 2 else {}
    credentials = _credentials(args)
    two_factor = _two_factor(args)
    outcome = _run(
        _run_call,
        url,
        credentials,
        two_factor,
        function,
        payload,
        args.timeout,
        args.allow_insecure,
        _progress(args),
    )
    _report(args, outcome)
    if args.json:
        _print_record(outcome)
    elif outcome.status is Status.OK:
        print(json.dumps(outcome.extra["reply"], indent=2, ensure_ascii=False))
    elif outcome.status is not Status.FAILED:
        _error(args.command, f"login {outcome.status.value}: {outcome.message}")
    return STATUS_EXIT[outcome.status]


def _payload(text: str) -> Any:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg describes the problem without quoting the text.
        raise _UsageError(f"JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(payload, (dict, list)):
        raise _UsageError("JSON: the payload must be an object or an array")
    return payload


async def _run_call(
    url: str,
    credentials: Credentials,
    two_factor: Callable[[], str] | None,
    function: str,
    payload: Any,
    timeout: float,
    allow_insecure: bool,
    progress: Progress,
) -> Outcome:
    shown = without_user_info(url)
    timings = Timings(progress)
    account = account_label(credentials)
    try:
        async with contextlib.AsyncExitStack() as stack:
            session = await open_session(
                stack, url, timeout=timeout, allow_insecure=allow_insecure, timings=timings
            )
            result = await log_in(session, credentials, two_factor=two_factor, timings=timings)
            if result.status is not AuthStatus.AUTHENTICATED:
                return login_outcome(result, account=account, url=shown, timings=timings)
            with timings.step("call", label=function):
                reply = await session.call(function, payload)
    except AlphaPointError as exc:
        outcome = failure(exc, account=account, url=shown, timings=timings)
        return attrs.evolve(outcome, extra={"function": function, "reply": None})
    return Outcome(
        Status.OK,
        account,
        shown,
        f"{function} replied",
        result=result,
        timings=timings.ms,
        extra={"function": function, "reply": reply},
    )


# -- helpers ------------------------------------------------------------------


def _url(args: argparse.Namespace) -> str:
    url: str | None = args.url or os.environ.get(URL_ENV) or None
    if url is None:
        raise _UsageError(f"give the gateway URL, or set {URL_ENV}")
    args.url = url
    return url


def _progress(args: argparse.Namespace) -> Progress:
    if not args.verbose:
        return lambda line: None
    return lambda line: _tell(args.command, line)


def _tell(command: str, line: str) -> None:
    """A progress line (``-v``) on stderr."""
    print(f"alphapoint {command}: {line}", file=sys.stderr, flush=True)


def _report(args: argparse.Namespace, outcome: Outcome) -> None:
    """A usage error or a failure says one line on stderr, with or without --json."""
    if outcome.status is Status.USAGE_ERROR and outcome.error_kind in (
        InvalidURL.__name__,
        InsecureConnection.__name__,
    ):
        hint = " (here: --allow-insecure)" if outcome.error_kind == "InsecureConnection" else ""
        _error(args.command, outcome.message + hint)
    elif outcome.status in (Status.FAILED, Status.USAGE_ERROR):
        _error(args.command, outcome.message)


def _print_record(outcome: Outcome, *, login: bool = True) -> None:
    """One JSON line on stdout; ``login=False`` leaves out the login's fields."""
    record = outcome.record()
    if not login:
        keep = ("account", "url", "status", "message", "error_kind", "timings_ms")
        record = {key: record[key] for key in keep} | dict(outcome.extra)
    print(json.dumps(record, ensure_ascii=False), flush=True)


def _account_of(args: argparse.Namespace) -> str | None:
    if getattr(args, "username", None):
        return str(args.username)
    if getattr(args, "user_id", None):
        return f"user {args.user_id}"
    return None


def _url_of(args: argparse.Namespace) -> str | None:
    url = getattr(args, "url", None) or os.environ.get(URL_ENV) or None
    return without_user_info(url) if url else None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _error(command: str, message: str) -> None:
    """One line on stderr, however many lines ``message`` had."""
    print(f"alphapoint {command}: error: {' '.join(message.split())}", file=sys.stderr)


def _secret_option(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """The error line for an option that would carry a secret, if ``argv`` has one.

    Argparse would say only "unrecognized arguments"; this says where the
    secret goes, and never repeats what followed the option.
    """
    known = _option_strings(parser)
    command = next((word for word in argv if not word.startswith("-")), None)
    for word in argv:
        if word == "--":
            break
        if not word.startswith("--"):
            continue
        name = word.split("=", 1)[0]
        if name in known:
            continue
        lowered = name.lower()
        for marker, where in _SECRET_OPTIONS:
            if marker in lowered:
                prefix = f"alphapoint {command}" if command else "alphapoint"
                return (
                    f"{prefix}: error: {name}: secrets are never command-line arguments "
                    f"(ps and the shell history would show them); it goes in {where}"
                )
    return None


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of ``parser`` and its subcommands."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action.choices, dict):  # the subcommands: name -> parser
            for sub in action.choices.values():
                if isinstance(sub, argparse.ArgumentParser):
                    found |= _option_strings(sub)
    return found


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port is 0 to 65535")
    return port


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value

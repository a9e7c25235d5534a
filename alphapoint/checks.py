"""Operations checks: log in, ping or call once, and say what happened as one :class:`Outcome`.

What ``alphapoint check``, ``authenticate``, ``ping`` and ``call`` are made of,
and what a script checking accounts can use directly::

    specs = alphapoint.accounts_file.load_accounts("accounts.toml")
    for outcome in await check_accounts(specs, concurrency=8):
        print(outcome.account, outcome.status.value, outcome.message)

A check never raises for what the gateway, the network or a secret's source
did: every account ends in an :class:`Outcome` whose :class:`Status` is the
single truth (its ``record()`` derives every other field from it), with a
one-line message and the kind of error, never a secret.
"""

from __future__ import annotations

import contextlib
import enum
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .apex import complete_two_factor
from .client import connect
from .credentials import ApiKeyCredentials, Credentials, PasswordCredentials
from .errors import AlphaPointError, UsageError
from .models import AuthenticateResult, AuthStatus
from .redaction import REDACTED
from .session import Session
from .totp import Totp
from .urls import without_user_info

if TYPE_CHECKING:
    from .accounts_file import AccountSpec, SecretSource

__all__ = [
    "Outcome",
    "Progress",
    "SecretUnavailable",
    "Status",
    "Timings",
    "account_label",
    "check_account",
    "check_accounts",
    "check_login",
    "failure",
    "log_in",
    "login_outcome",
    "open_session",
    "read_secret",
]

Progress = Callable[[str], None]
"""Where progress lines go (``-v``): a function given one line, without a newline."""


def _quiet(line: str) -> None:
    """The default :data:`Progress`: nothing."""


class Status(enum.Enum):
    """What a check found: the single truth of an :class:`Outcome`."""

    AUTHENTICATED = "authenticated"  #: logged in (2FA completed, if asked for)
    OK = "ok"  #: ``ping`` answered, ``call`` replied
    REJECTED = "rejected"  #: wrong credentials
    LOCKED = "locked"  #: the account is locked
    TWO_FACTOR_REQUIRED = "two_factor_required"  #: 2FA asked for, no code or a refused one
    USAGE_ERROR = "usage_error"  #: not tried: no secret, a bad URL or payload
    FAILED = "failed"  #: connection, protocol, timeout, or a call the gateway refused

    @classmethod
    def of(cls, status: AuthStatus) -> Status:
        """The status for a login's :class:`~alphapoint.AuthStatus`."""
        return cls(status.value)


class SecretUnavailable(UsageError):
    """A secret's source gave nothing: the variable is unset, the command failed.

    The message names the source (``$VAR``, the command's name), never output.
    """


@attrs.frozen
class Outcome:
    """What one check found.

    ``account`` and ``url`` (user info stripped) name what was checked;
    ``message`` is one line fit to show a person; ``error_kind`` is the error's
    class name for a failure; ``result`` the login's decoded reply, if one
    came; ``timings`` the milliseconds each step took; ``extra`` what a
    command adds to its record (a call's reply, say).
    """

    status: Status
    account: str | None
    url: str | None
    message: str
    error_kind: str | None = None
    result: AuthenticateResult | None = attrs.field(default=None, repr=False)
    timings: Mapping[str, float] = attrs.field(factory=dict, repr=False)
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    def record(self) -> dict[str, Any]:
        """A JSON-ready record: every field agrees with ``status``; tokens redacted.

        The login's fields (``authenticated``, ``locked``, ``requires_2fa``...)
        come from ``status``, not from the gateway's raw flags: a gateway that
        answers ``Authenticated: true`` to a login still waiting for its 2FA
        code is not logged in.
        """
        result = self.result
        record: dict[str, Any] = {
            "account": self.account,
            "url": self.url,
            "status": self.status.value,
            "message": self.message,
            "error_kind": self.error_kind,
            "authenticated": self.status in (Status.AUTHENTICATED, Status.OK)
            and result is not None,
            "locked": self.status is Status.LOCKED,
            "requires_2fa": self.status is Status.TWO_FACTOR_REQUIRED,
            "two_fa_type": None,
            "user": None,
            "user_id": None,
            "errormsg": None,
            "session_token": None,
            "two_fa_token": None,
            "addtl_info": None,
        }
        if result is not None:
            record.update(
                two_fa_type=result.two_fa_type,
                user=attrs.asdict(result.user) if result.user is not None else None,
                user_id=result.user_id,
                errormsg=result.errormsg,
                session_token=REDACTED if result.session_token else None,
                two_fa_token=REDACTED if result.two_fa_token else None,
                addtl_info=result.addtl_info,
            )
        record["timings_ms"] = dict(self.timings)
        record.update(self.extra)
        return record


class Timings:
    """Milliseconds per step, each also told to a :data:`Progress` as it ends."""

    def __init__(self, progress: Progress = _quiet) -> None:
        self.ms: dict[str, float] = {}
        self.progress = progress

    @contextlib.contextmanager
    def step(self, name: str, *, label: str | None = None, tell: bool = True) -> Iterator[None]:
        """Time the block as ``name``; tell ``progress`` "<label> N ms" when it succeeds
        (unless ``tell`` is false: the caller tells it, with what the step found)."""
        started = time.perf_counter()
        yield
        elapsed = (time.perf_counter() - started) * 1000
        self.ms[name] = round(elapsed, 3)
        if tell:
            self.progress(f"{label or name} {elapsed:.0f} ms")


def account_label(credentials: Credentials) -> str:
    """How a record names an account logged in with ``credentials``: its user name,
    or ``user N`` for an API key (the key is an identifier, but need not be shown)."""
    if isinstance(credentials, PasswordCredentials):
        return credentials.username
    return f"user {credentials.user_id}"


def failure(
    exc: BaseException, *, account: str | None, url: str | None, timings: Timings
) -> Outcome:
    """The :class:`Outcome` of a check that ended with ``exc``: one line, its kind."""
    status = Status.USAGE_ERROR if isinstance(exc, UsageError) else Status.FAILED
    message = " ".join(str(exc).split()) or type(exc).__name__
    return Outcome(status, account, url, message, type(exc).__name__, timings=timings.ms)


def login_outcome(
    result: AuthenticateResult, *, account: str | None, url: str | None, timings: Timings
) -> Outcome:
    """The :class:`Outcome` of a login that got ``result``."""
    status = Status.of(result.status)
    return Outcome(status, account, url, result.display_message, result=result, timings=timings.ms)


async def read_secret(source: SecretSource, *, timeout: float) -> str:
    """The secret from ``source``: the variable's value, or the command's first line.

    Raises :class:`SecretUnavailable` when there is none; never shows what a
    command printed (on stdout or stderr).
    """
    if source.env is not None:
        value = os.environ.get(source.env, "")
        if not value:
            raise SecretUnavailable(
                f"{source.what}: the environment variable {source.env} is not set"
            )
        return value
    assert source.command is not None
    where = source.describe()
    try:
        with anyio.fail_after(timeout):
            done = await anyio.run_process(list(source.command), input=b"", check=False)
    except TimeoutError:
        raise SecretUnavailable(f"{where} did not finish within {timeout:g} s") from None
    except OSError as exc:
        raise SecretUnavailable(f"{where} could not be run ({exc.strerror or exc})") from None
    if done.returncode != 0:
        raise SecretUnavailable(f"{where} exited with code {done.returncode}")
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    value = lines[0].strip() if lines else ""
    if not value:
        raise SecretUnavailable(f"{where} printed nothing")
    return value


async def open_session(
    stack: contextlib.AsyncExitStack,
    url: str,
    *,
    timeout: float,
    allow_insecure: bool,
    timings: Timings,
) -> Session:
    """Connect (one connection: no reconnects) within ``timeout``; closed with ``stack``."""
    timings.progress(f"connecting to {without_user_info(url)}")
    with timings.step("connect", label="handshake"):
        return await stack.enter_async_context(
            connect(
                url,
                timeout=timeout,
                open_timeout=timeout,
                allow_insecure=allow_insecure,
                keepalive=None,
                reconnect=False,
            )
        )


async def log_in(
    session: Session,
    credentials: Credentials,
    *,
    two_factor: Callable[[], str] | None,
    timings: Timings,
) -> AuthenticateResult:
    """AuthenticateUser, then Authenticate2FA with ``two_factor()`` when asked for one.

    Returns the login's result whatever it says (a :class:`Totp` is a ``two_factor``).
    """
    with timings.step("login", tell=False):
        result = await session.authenticate(credentials)
    timings.progress(f"login {timings.ms['login']:.0f} ms: {result.status.value}")
    if result.status is AuthStatus.TWO_FACTOR_REQUIRED and two_factor is not None:
        code = two_factor()
        with timings.step("two_factor", tell=False):
            second = await session.authenticate_2fa(code)
        result = complete_two_factor(result, second)
        timings.progress(f"2FA {timings.ms['two_factor']:.0f} ms: {result.status.value}")
    return result


async def check_login(
    url: str,
    credentials: Credentials,
    *,
    account: str | None = None,
    two_factor: Callable[[], str] | None = None,
    timeout: float,
    allow_insecure: bool = False,
    progress: Progress = _quiet,
) -> Outcome:
    """Log in once on a new connection and report; logs out again when it succeeded."""
    shown = without_user_info(url)
    timings = Timings(progress)
    account = account or account_label(credentials)
    try:
        async with contextlib.AsyncExitStack() as stack:
            session = await open_session(
                stack, url, timeout=timeout, allow_insecure=allow_insecure, timings=timings
            )
            result = await log_in(session, credentials, two_factor=two_factor, timings=timings)
            # Leaving the block logs out (when logged in) and closes the connection.
        return login_outcome(result, account=account, url=shown, timings=timings)
    except AlphaPointError as exc:
        return failure(exc, account=account, url=shown, timings=timings)


async def check_account(spec: AccountSpec, *, progress: Progress = _quiet) -> Outcome:
    """Read ``spec``'s secrets, log in, and report (never raises for the gateway or a secret).

    ``progress`` hears each step, and last "done: STATUS" (with the error's kind).
    """
    outcome = await _check_account(spec, progress)
    kind = f" ({outcome.error_kind})" if outcome.error_kind else ""
    progress(f"done: {outcome.status.value}{kind}")
    return outcome


async def _check_account(spec: AccountSpec, progress: Progress) -> Outcome:
    shown = without_user_info(spec.url)
    try:
        secret = await read_secret(spec.secret, timeout=spec.timeout)
        credentials: Credentials
        if spec.username is not None:
            credentials = PasswordCredentials(spec.username, secret)
        else:
            assert spec.api_key is not None
            assert spec.user_id is not None
            credentials = ApiKeyCredentials(
                api_key=spec.api_key, api_secret=secret, user_id=spec.user_id
            )
        two_factor = None
        if spec.totp_secret is not None:
            two_factor = Totp(await read_secret(spec.totp_secret, timeout=spec.timeout))
    except UsageError as exc:  # no secret, or a TOTP secret that is not base32
        return failure(exc, account=spec.name, url=shown, timings=Timings())
    return await check_login(
        spec.url,
        credentials,
        account=spec.name,
        two_factor=two_factor,
        timeout=spec.timeout,
        allow_insecure=spec.allow_insecure,
        progress=progress,
    )


async def check_accounts(
    specs: Sequence[AccountSpec],
    *,
    concurrency: int = 8,
    progress: Callable[[AccountSpec, str], None] | None = None,
) -> list[Outcome]:
    """Check every account, at most ``concurrency`` at once; the outcomes in ``specs``' order.

    ``progress(spec, line)`` hears each account's steps (``-v``).
    """
    if concurrency < 1:
        raise UsageError("concurrency must be at least 1")
    outcomes: list[Outcome | None] = [None] * len(specs)
    limiter = anyio.CapacityLimiter(concurrency)

    async def run(index: int, spec: AccountSpec) -> None:
        async with limiter:
            told: Progress = _quiet
            if progress is not None:
                told = lambda line: progress(spec, line)  # noqa: E731 - a closure over spec
            outcomes[index] = await check_account(spec, progress=told)

    async with anyio.create_task_group() as tasks:
        for index, spec in enumerate(specs):
            tasks.start_soon(run, index, spec)
    return [outcome for outcome in outcomes if outcome is not None]

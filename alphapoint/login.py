"""What a session knows about its login, and the steps that log a connection in.

A :class:`Login` remembers the credentials and the 2FA provider to log in
again with, the last result, and the session token to resume with. It does
no I/O of its own: each step is given ``call``, a checked call on one
connection, so the same steps log in the user's ready connection
(:meth:`Session.login`) and a connection the session is still setting up.
What a reply means is :mod:`alphapoint.apex`'s to say.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs

from .apex import complete_two_factor, login_error, second_factor_error
from .credentials import ApiKeyCredentials, Credentials, PasswordCredentials
from .decoding import decode_authenticate_result
from .errors import AlphaPointError, ReloginStorm, TransportError, UsageError
from .models import AuthenticateResult, AuthStatus
from .policies import Relogin
from .redaction import SecretSet
from .totp import Totp

__all__ = ["Call", "Login", "TwoFactor", "two_factor_code"]

logger = logging.getLogger("alphapoint.session")

TwoFactor = str | Callable[[], "str | Awaitable[str]"]
"""A two-factor code, or something that produces one (``Totp(secret)``, a
function that asks a human, an async function that reads a vault). Only a
provider can log in again unattended after a reconnect."""

#: A checked APEX call on one connection: (function, payload) -> reply payload.
Call = Callable[[str, Any], Awaitable[Any]]


async def two_factor_code(two_factor: TwoFactor) -> str:
    """The code from a string or from a (sync or async) provider."""
    if isinstance(two_factor, str):
        return two_factor
    code = two_factor()
    if inspect.isawaitable(code):
        code = await code
    if not isinstance(code, str):
        raise UsageError("the two-factor provider must return a string code")
    return code


class Login:
    """A session's login: how to log in again, and what the last login said."""

    def __init__(
        self,
        credentials: Credentials | None,
        two_factor: TwoFactor | None,
        *,
        resume: bool,
        relogin: Relogin | None = None,
    ) -> None:
        #: What a new connection logs in with (None: the session does not log in by
        #: itself), and its 2FA provider: set by :meth:`remember`.
        self.credentials: Credentials | None = None
        self.two_factor: TwoFactor | None = None
        self.resume = resume
        #: The last authentication step's result on the current connection.
        self.result: AuthenticateResult | None = None
        #: The last successful login's result, which a resume carries over.
        self.last_login: AuthenticateResult | None = None
        #: The token a new connection resumes with (WebAuthenticateUser).
        self.session_token: str | None = None
        #: Every secret this login has sent or been given, to scrub from what the
        #: gateway sends back (its connections scrub with it too).
        self.secrets = SecretSet()
        self.remember(credentials, two_factor)
        #: How to log in again when the gateway ends a login, without storming it.
        self.relogin = relogin or Relogin()
        #: Re-logins in a row after logins that did not last (the policy's n).
        self.relogins_in_a_row = 0
        #: anyio's clock; the session sets its connection's, the same time read
        #: without asking which library runs.
        self.clock: Callable[[], float] = anyio.current_time
        #: When the session last became logged in (anyio's clock).
        self.logged_in_at = -math.inf
        #: When the last automatic AuthenticateUser were sent (at most per_minute).
        # (maxlen by position: deque parses a keyword argument at some 1.7 k instructions.)
        self._sent_at: deque[float] = deque(maxlen=self.relogin.per_minute)

    def relogin_delay(self) -> float | ReloginStorm:
        """The gateway ended the login: how long to wait before logging in again,
        or the error to end the session with (:class:`Relogin`)."""
        policy = self.relogin
        lasted = self.clock() - self.logged_in_at >= policy.stable_after
        self.relogins_in_a_row = 0 if lasted else self.relogins_in_a_row + 1
        in_a_row = self.relogins_in_a_row
        if policy.gives_up(in_a_row):
            return ReloginStorm(
                f"the gateway ended {in_a_row} logins in a row within {policy.stable_after} s "
                "of each: not logging in again",
                in_a_row=in_a_row,
            )
        return policy.delay(in_a_row)

    async def pace(self) -> None:
        """Wait, if need be, so that at most ``per_minute`` automatic logins go in 60 s."""
        times = self._sent_at
        if len(times) == times.maxlen:
            wait = times[0] + 60.0 - self.clock()
            if wait > 0:
                logger.warning("pacing logins: the next in %.1f s", wait)
                await anyio.sleep(wait)
        times.append(self.clock())

    def remember(self, credentials: Credentials | None, two_factor: TwoFactor | None) -> None:
        """Log in again with these, from now on; their secrets are scrubbed for good."""
        self.credentials, self.two_factor = credentials, two_factor
        if isinstance(credentials, PasswordCredentials):
            self.secrets.add(credentials.password)
        elif isinstance(credentials, ApiKeyCredentials):
            self.secrets.add(credentials.api_secret)
        if isinstance(two_factor, Totp):
            self.secrets.add(two_factor.secret)

    def __repr__(self) -> str:
        return f"<Login credentials={self.credentials!r} resume={self.resume}>"

    @property
    def automatic(self) -> bool:
        """Whether a new connection has something to log in (or resume) with."""
        return self.credentials is not None or (self.resume and self.session_token is not None)

    def record(self, result: AuthenticateResult) -> AuthenticateResult:
        """Remember the outcome of one authentication step on the current connection.

        Its tokens are secrets from now on, and the gateway's message is
        scrubbed of every secret (a gateway may echo a password in it).
        """
        secrets = self.secrets
        if result.session_token:
            secrets.add(result.session_token, recent=True)
        if result.two_fa_token:  # (usually none: no call)
            secrets.add(result.two_fa_token, recent=True)
        if result.errormsg and secrets:
            result = attrs.evolve(result, errormsg=secrets.scrub(result.errormsg))
        status = result.status  # (a property: asked once)
        if status is AuthStatus.AUTHENTICATED:
            self.result = self.last_login = result
            self.session_token = result.session_token or self.session_token
        elif status is not AuthStatus.TWO_FACTOR_REQUIRED or self.result is None:
            self.result = result
        return result

    def lost(self) -> None:
        """The gateway ended the login (LogoutEvent, code 20), and its token with it:
        a resume would only be refused, so the next login uses the credentials."""
        self.result = None
        self.session_token = None

    def forget(self) -> None:
        """The user logged out: nothing to log in again with (the secrets stay scrubbed)."""
        self.result = self.last_login = self.session_token = self.credentials = None

    async def authenticate(self, call: Call, credentials: Credentials) -> AuthenticateResult:
        """One AuthenticateUser, decoded and remembered, whatever it says."""
        payload = credentials.authenticate_payload()
        secrets = self.secrets
        # Each one a call only if it is there (an API key signs, a user sends a password).
        if (password := payload.get("Password")) is not None:
            secrets.add(password)
        if (signature := payload.get("Signature")) is not None:
            secrets.add(signature, recent=True)
        reply = await call("AuthenticateUser", payload)
        return self.record(decode_authenticate_result(reply, function="AuthenticateUser"))

    async def authenticate_2fa(self, call: Call, code: str) -> AuthenticateResult:
        """One Authenticate2FA, decoded and remembered, whatever it says."""
        if not isinstance(code, str):
            raise UsageError("a two-factor code must be a string")
        self.secrets.add(code, recent=True)
        reply = await call("Authenticate2FA", {"Code": code})
        return self.record(decode_authenticate_result(reply, function="Authenticate2FA"))

    async def log_in(
        self,
        call: Call,
        credentials: Credentials,
        two_factor: TwoFactor | None,
        *,
        pace: Callable[[], Awaitable[None]] | None = None,
    ) -> AuthenticateResult:
        """AuthenticateUser, then Authenticate2FA if asked; the result once logged in.

        ``pace`` is awaited just before AuthenticateUser (the session's limit
        on logins per minute). Raises the :class:`AuthenticationError` that
        :mod:`.apex` names otherwise.
        """
        if pace is not None:
            await pace()
        result = await self.authenticate(call, credentials)
        if result.status is AuthStatus.AUTHENTICATED:  # (login_error's None, without its call)
            return result
        error = login_error(result, can_answer_2fa=two_factor is not None)
        if error is not None:
            raise error
        assert two_factor is not None
        second = await self.authenticate_2fa(call, await two_factor_code(two_factor))
        error = second_factor_error(second)
        if error is not None:
            raise error
        return self.record(complete_two_factor(result, second))

    async def log_in_connection(self, call: Call, *, url: str) -> None:
        """Log a connection in (the session's own doing): resume with the session
        token, else the credentials, paced (:meth:`pace`)."""
        token = self.session_token if self.resume else None
        if token is not None:
            try:
                reply = await call("WebAuthenticateUser", {"SessionToken": token})
                resumed = decode_authenticate_result(reply, function="WebAuthenticateUser")
            except TransportError:
                raise  # the connection is gone: a login on it would fail too
            except AlphaPointError as exc:
                # Refused, unreadable, unanswered, or a token that cannot even
                # be sent: whatever went wrong, the credentials still work.
                logger.info("resuming on %s failed (%s)", url, type(exc).__name__)
                resumed = None
            if resumed is not None and resumed.status is AuthStatus.AUTHENTICATED:
                # WebAuthenticateUser names no user: keep what the login said.
                previous = self.result or self.last_login or resumed
                self.record(attrs.evolve(previous, session_token=resumed.session_token or token))
                logger.info("session %s resumed with its session token", url)
                return
            logger.info("session token refused by %s; logging in again", url)
            self.session_token = None
        self.result = None
        if self.credentials is not None:
            await self.log_in(call, self.credentials, self.two_factor, pace=self.pace)

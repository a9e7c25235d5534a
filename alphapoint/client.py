"""``connect()``: the way in. Makes a :class:`Session` and owns the block it lives in.

Exceptions from the block propagate unchanged (never wrapped in an
ExceptionGroup); leaving the block closes the session and waits for every
task it started.
"""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Callable
from types import TracebackType

from .credentials import Credentials
from .drivers import DEFAULT_MAX_MESSAGE_SIZE, Driver
from .errors import UsageError
from .login import TwoFactor
from .open_limit import OpenLimiter
from .policies import Backoff, Keepalive, Relogin, is_retryable
from .session import DEFAULT_TIMEOUT, Session, SessionOptions
from .state import SessionState

__all__ = ["connect"]

#: The reconnect policy of ``reconnect=True``: frozen, so every session shares one.
_DEFAULT_BACKOFF = Backoff()


class connect:
    """Open a :class:`Session` to ``url``; close it when the block ends.

    Without ``credentials`` this is one connection: when it drops, calls fail
    with :class:`ConnectionClosed`. With ``credentials`` (and ``two_factor``,
    ideally a :class:`Totp`) the session logs in on entry and is *managed*: it
    reconnects with ``reconnect`` (a :class:`Backoff`; ``True`` for the
    default, ``False`` for none), resumes with the session token first unless
    ``resume=False``, and logs in again after a LogoutEvent, as ``relogin``
    (a :class:`Relogin`) allows: backoff between re-logins that follow each
    other, a cap on logins per minute, and :class:`ReloginStorm` once the
    gateway keeps ending every login.

    ``timeout`` is every call's default; ``open_timeout`` bounds the TCP, TLS
    and WebSocket handshakes; ``close_timeout`` bounds closing. ``keepalive``
    pings after idle time and drops a connection that does not answer
    (``None`` turns it off). ``ssl`` replaces the default (verifying) TLS
    context for ``wss://``. ``proxy`` is a proxy URL, ``True`` for the
    environment's (``HTTPS_PROXY``...), or ``None``. Plain ``ws://`` is allowed
    only to loopback unless ``allow_insecure``. ``event_buffer`` bounds each
    event stream. ``on_state_change`` is called with every new
    :class:`SessionState`. ``retryable`` decides which errors another
    connection attempt may mend (by default :func:`is_retryable`: the error's
    own ``retryable`` attribute). ``driver`` picks how bytes move (see
    :mod:`alphapoint.drivers`; ``"auto"`` is right for nearly everyone).
    ``open_limiter`` bounds how many connections are set up at once (opened,
    logged in, resubscribed; a reconnect too): by default the event loop's
    shared limit of :data:`DEFAULT_OPEN_LIMIT`, or an ``anyio.CapacityLimiter``
    of your own, or ``None`` for no bound. Waiting for a turn is not part of
    ``open_timeout`` (see :mod:`alphapoint.open_limit`).

    The first connection fails fast: entering the block raises
    :class:`ConnectError` if the gateway cannot be reached. A bot that should
    start while the exchange is in maintenance passes
    ``wait_for_gateway=True``: the first connection is then retried with the
    ``reconnect`` policy, for retryable errors only (wrong credentials still
    fail at once); bound the wait with ``Backoff(max_attempts=...)`` or a
    timeout around the block.

    Exceptions from the block propagate unchanged (never wrapped in an
    ExceptionGroup); leaving the block logs out (unless
    ``logout_on_close=False``), closes the WebSocket with 1000, and waits for
    every task the session started.
    """

    __slots__ = ("_session",)

    def __init__(
        self,
        url: str,
        *,
        credentials: Credentials | None = None,
        two_factor: TwoFactor | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        reconnect: Backoff | bool | None = None,
        relogin: Relogin = Relogin(),  # noqa: B008 - frozen, shared safely
        keepalive: Keepalive | None = Keepalive(),  # noqa: B008 - frozen, shared safely
        resume: bool = True,
        logout_on_close: bool = True,
        retryable: Callable[[BaseException], bool] | None = None,
        open_timeout: float = 10.0,
        close_timeout: float = 5.0,
        ssl: ssl_module.SSLContext | None = None,
        proxy: str | bool | None = True,
        allow_insecure: bool = False,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        event_buffer: int = 1024,
        on_state_change: Callable[[SessionState], None] | None = None,
        driver: Driver = "auto",
        wait_for_gateway: bool = False,
        open_limiter: OpenLimiter = "shared",
    ) -> None:
        """Check the arguments and make the session; nothing connects until ``async with``."""
        if reconnect is None:
            reconnect = credentials is not None
        policy = _DEFAULT_BACKOFF if reconnect is True else reconnect or None
        if wait_for_gateway and policy is None:
            raise UsageError("wait_for_gateway retries with the reconnect policy: give one")
        options = SessionOptions(
            timeout=timeout,
            reconnect=policy,
            keepalive=keepalive,
            logout_on_close=logout_on_close,
            retryable=retryable or is_retryable,
            event_buffer=event_buffer,
            on_state_change=on_state_change,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            ssl=ssl,
            proxy=proxy,
            allow_insecure=allow_insecure,
            max_message_size=max_message_size,
            driver=driver,
            wait_for_gateway=wait_for_gateway,
            open_limiter=open_limiter,
        )
        self._session = Session(
            url,
            options,
            credentials=credentials,
            two_factor=two_factor,
            resume=resume,
            relogin=relogin,
        )

    async def __aenter__(self) -> Session:
        await self._session._enter()
        return self._session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._session._exit()

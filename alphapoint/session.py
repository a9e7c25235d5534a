"""The session: stays logged in across connections, for as long as it is open.

A :class:`Session` outlives its sockets. It owns one task group (opened by
:func:`connect`) that runs the current connection (its reader, deadlines and
keepalive: :meth:`Connection.run`) and, only when that connection drops, a
reconnect task that reconnects with backoff, resumes the login with the
session token (or logs in again), re-sends every live subscription, and only
then lets waiting calls through.

Calls are never re-sent after a drop: one in flight fails at once with the
retryable :class:`ConnectionClosed`, since the gateway may have acted on it
(orders are not idempotent). The only exception is a call refused with code
20 (Not Authorized) on a session that believed it was logged in: the gateway
did not act on it, so it is sent once more after the re-login.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import logging
import math
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final

import anyio
import anyio.abc
import attrs

from .connection import Connection
from .credentials import Credentials
from .decoding import decode_authenticate_result
from .drivers import DEFAULT_MAX_MESSAGE_SIZE, Driver, open_websocket
from .errors import (
    AccountLocked,
    AlphaPointError,
    AuthenticationError,
    AuthenticationRejected,
    ConnectionClosed,
    NotAuthorized,
    RequestError,
    RequestTimeout,
    SessionClosed,
    TwoFactorRequired,
)
from .events import KNOWN_SUBSCRIPTIONS, EventStream, Inbox, Subscription, instrument_matcher
from .frame import Frame, MessageType
from .models import AuthenticateResult, AuthStatus, Event, User
from .policies import Backoff, Keepalive, is_retryable
from .urls import without_user_info

__all__ = [
    "DEFAULT_TIMEOUT",
    "Session",
    "SessionState",
    "StateChanges",
    "TwoFactor",
    "connect",
]

logger = logging.getLogger("alphapoint.session")

#: Seconds a call waits for its reply unless told otherwise.
DEFAULT_TIMEOUT: Final = 10.0

#: A two-factor code, or something that produces one (``Totp(secret)``, a
#: function that asks a human, an async function that reads a vault). Only a
#: provider can log in again unattended after a reconnect.
TwoFactor = str | Callable[[], "str | Awaitable[str]"]

_USE_DEFAULT: Any = object()
_OPERATION_IN_PROCESS = 107


class SessionState(enum.Enum):
    """Where a session is in its life; see :meth:`Session.state_changes`."""

    CONNECTING = "connecting"  #: opening the first connection
    AUTHENTICATING = "authenticating"  #: logging in (or resuming) on a connection
    CONNECTED = "connected"  #: open, not logged in (no credentials, or before login())
    AUTHENTICATED = "authenticated"  #: logged in: calls go through
    RECONNECTING = "reconnecting"  #: the connection dropped; waiting or reconnecting
    CLOSED = "closed"  #: finished, by the user or after giving up


@attrs.frozen
class _Options:
    """How to open each connection (the same every time)."""

    open_timeout: float
    close_timeout: float
    ssl: ssl_module.SSLContext | None
    allow_insecure: bool
    max_message_size: int | None
    proxy: str | bool | None
    driver: Driver


class Session:
    """An APEX session. Made by :func:`connect`; use it inside ``async with``.

    Every method may be called concurrently from many tasks.
    """

    def __init__(
        self,
        url: str,
        *,
        options: _Options,
        timeout: float | None,
        credentials: Credentials | None,
        two_factor: TwoFactor | None,
        reconnect: Backoff | None,
        keepalive: Keepalive | None,
        resume: bool,
        logout_on_close: bool,
        retryable: Callable[[BaseException], bool],
        event_buffer: int,
        on_state_change: Callable[[SessionState], None] | None,
    ) -> None:
        self._connect_url = url
        #: The URL as shown in reprs, logs and task names: any user:password@ masked.
        self._url = without_user_info(url)
        self._options = options
        self._timeout = timeout
        self._credentials = credentials
        self._two_factor = two_factor
        self._reconnect = reconnect
        self._keepalive = keepalive
        self._resume = resume
        self._logout_on_close = logout_on_close
        self._retryable = retryable
        self._event_buffer = event_buffer
        self._on_state_change = on_state_change
        self._state = SessionState.CONNECTING
        self._state_streams: list[StateChanges] = []
        self._task_group: anyio.abc.TaskGroup | None = None
        #: How many of the session's tasks have been started and not yet ended.
        self._running = 0
        self._conn: Connection | None = None
        #: The connection calls went through last, until it drops: its drop starts a reconnect.
        self._installed: Connection | None = None
        self._connections = 0
        #: Reconnect attempts since the last connection that lasted (sets the delay).
        self._attempt = 0
        self._up_since = 0.0
        self._ready = anyio.Event()
        self._terminal: BaseException | None = None
        self._closing = False
        self._relogging = False
        #: How many times the session found its login gone (LogoutEvent, code 20).
        self._relogins = 0
        self._streams: list[EventStream] = []
        self._result: AuthenticateResult | None = None
        #: The last login's result, which a resume on a new connection carries over.
        self._login: AuthenticateResult | None = None
        self._session_token: str | None = None

    def __repr__(self) -> str:
        return f"<Session {self._url} {self._state.value}>"

    # -- state ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The gateway's URL."""
        return self._connect_url

    @property
    def state(self) -> SessionState:
        """Where the session is now."""
        return self._state

    @property
    def is_open(self) -> bool:
        """Whether calls can still be made (now, or once reconnected)."""
        return self._terminal is None and not self._closing

    @property
    def authenticated(self) -> bool:
        """Whether the session is logged in on its current connection."""
        return self._result is not None and self._result.status is AuthStatus.AUTHENTICATED

    @property
    def user(self) -> User | None:
        """The logged-in user, as AuthenticateUser described it."""
        return self._result.user if self.authenticated and self._result else None

    @property
    def connection_number(self) -> int:
        """How many connections this session has opened (1, then +1 per reconnect)."""
        return self._connections

    @property
    def protocol_errors(self) -> int:
        """How many messages on the current connection could not be read as APEX frames."""
        return self._conn.protocol_errors if self._conn is not None else 0

    def state_changes(self, *, buffer: int = 64) -> StateChanges:
        """An async iterator of every state the session enters from now on.

        ``async with session.state_changes() as changes: async for state in
        changes: ...`` is the pattern for code that handles each connection
        itself (say, re-reading balances after every reconnect).
        """
        return StateChanges(self, buffer)

    def _set_state(self, state: SessionState) -> None:
        if state is self._state:
            return
        self._state = state
        logger.info("session %s is %s", self._url, state.value)
        for stream in tuple(self._state_streams):
            stream._offer(state)
        if self._on_state_change is not None:
            try:
                self._on_state_change(state)
            except Exception:
                logger.exception("on_state_change callback failed")

    # -- calls ----------------------------------------------------------------

    async def call(
        self,
        function: str,
        payload: Mapping[str, Any] | list[Any] | None = None,
        *,
        timeout: float | None = _USE_DEFAULT,
    ) -> Any:
        """Call an APEX function and return its decoded reply payload.

        Waits for the session to be ready (while reconnecting), then sends the
        request once, all within ``timeout`` (the session's default unless
        given; ``None`` waits forever). Raises :class:`RequestError` (the most
        specific subclass for the code) when the gateway answers ``result:
        false`` (except code 107, "Operation In Process", which is returned)
        or with an ``m=5`` error frame; :class:`RequestTimeout`;
        :class:`ConnectionClosed` if the connection drops first.
        """
        frame = await self.request(function, payload, timeout=timeout)
        return _check_reply(frame)

    async def request(
        self,
        function: str,
        payload: Mapping[str, Any] | list[Any] | None = None,
        *,
        message_type: MessageType = MessageType.REQUEST,
        timeout: float | None = _USE_DEFAULT,
    ) -> Frame:
        """Send one frame and return the reply frame unchecked (``m`` 1 or 5).

        The low-level form of :meth:`call`, for callers that read error frames
        themselves.
        """
        if timeout is _USE_DEFAULT:
            timeout = self._timeout
        conn = self._ready_now()
        if conn is not None:  # the usual case: no wait, no cancel scope
            deadline = math.inf if timeout is None else conn.clock() + timeout
        else:
            deadline = math.inf if timeout is None else anyio.current_time() + timeout
            conn = await self._wait_ready(function, timeout, deadline)
        sent_logged_in, relogins = self.authenticated, self._relogins
        frame = await conn.request(
            message_type, function, payload, deadline=deadline, timeout=timeout
        )
        if not self._refused_after_logout(conn, frame, sent_logged_in):
            return frame
        # Refused, not acted on: send it once more after the re-login
        # (one re-login for every call refused at once: the first starts it).
        if self._relogins == relogins:
            self._start_relogin(conn)
        conn = await self._wait_ready(function, timeout, deadline)
        return await conn.request(
            message_type, function, payload, deadline=deadline, timeout=timeout
        )

    def _ready_now(self) -> Connection | None:
        """The current connection if calls may go through it now."""
        # Invariant: ``_ready`` is set only while ``_conn`` is open (a closing
        # connection clears it at once, see ``_connection_closed``) or once the
        # session has ended.
        if self._terminal is None and self._ready.is_set():
            conn = self._conn
            assert conn is not None
            assert conn.is_open
            return conn
        return None

    async def _wait_ready(
        self, function: str, timeout: float | None, deadline: float
    ) -> Connection:
        """The current connection, once it is usable, by ``deadline``.

        Raises :class:`RequestTimeout` when the session is not ready in time
        and the session's error once it has ended.
        """
        with anyio.CancelScope(deadline=deadline):
            while self._terminal is None and not self._ready.is_set():
                await self._ready.wait()
        if self._terminal is not None:
            raise self._terminal_error()
        conn = self._ready_now()
        if conn is None:
            raise RequestTimeout(
                f"the session was not ready for {function} within {timeout} s",
                function=function,
                timeout=timeout,
            )
        return conn

    def _terminal_error(self) -> ConnectionClosed:
        terminal = self._terminal
        if isinstance(terminal, ConnectionClosed):
            return terminal.copy()
        error = SessionClosed(f"the session has ended: {terminal}")
        error.__cause__ = terminal
        return error

    async def _call_on(
        self,
        conn: Connection,
        function: str,
        payload: Mapping[str, Any] | list[Any] | None,
        *,
        message_type: MessageType = MessageType.REQUEST,
        timeout: float | None = _USE_DEFAULT,
    ) -> Any:
        """A checked call on one given connection (login, resubscribe, logout),
        whether or not calls may go through it yet."""
        if timeout is _USE_DEFAULT:
            timeout = self._timeout
        deadline = math.inf if timeout is None else conn.clock() + timeout
        frame = await conn.request(
            message_type, function, payload, deadline=deadline, timeout=timeout
        )
        return _check_reply(frame)

    # -- authentication ------------------------------------------------------

    async def authenticate(
        self, credentials: Credentials, *, timeout: float | None = _USE_DEFAULT
    ) -> AuthenticateResult:
        """Send one AuthenticateUser and return the decoded reply, whatever it says.

        Rejected, locked and 2FA-pending replies are results, not errors; this
        raises only for transport, protocol and timeout failures. API-key
        credentials are signed with a fresh nonce on every call.
        """
        reply = await self.call(
            "AuthenticateUser", credentials.authenticate_payload(), timeout=timeout
        )
        return self._record(decode_authenticate_result(reply, function="AuthenticateUser"))

    async def authenticate_2fa(
        self, code: str, *, timeout: float | None = _USE_DEFAULT
    ) -> AuthenticateResult:
        """Send Authenticate2FA with ``code`` and return the decoded reply."""
        if not isinstance(code, str):
            raise TypeError("a two-factor code must be a string")
        reply = await self.call("Authenticate2FA", {"Code": code}, timeout=timeout)
        return self._record(decode_authenticate_result(reply, function="Authenticate2FA"))

    async def login(
        self,
        credentials: Credentials,
        *,
        two_factor: TwoFactor | None = None,
        timeout: float | None = _USE_DEFAULT,
    ) -> AuthenticateResult:
        """Log in, completing 2FA with ``two_factor`` when the gateway asks for it.

        Returns the result once the session is logged in, and remembers the
        credentials to log in again after a reconnect. Raises
        :class:`AuthenticationRejected`, :class:`AccountLocked` or
        :class:`TwoFactorRequired` (each carrying the result) otherwise.
        """
        result = await self._login_steps(
            lambda function, payload: self.call(function, payload, timeout=timeout),
            credentials,
            two_factor,
        )
        self._credentials, self._two_factor = credentials, two_factor
        return result

    async def _login_steps(
        self,
        call: Callable[[str, Any], Awaitable[Any]],
        credentials: Credentials,
        two_factor: TwoFactor | None,
    ) -> AuthenticateResult:
        """AuthenticateUser, then Authenticate2FA if asked, through ``call``."""
        reply = await call("AuthenticateUser", credentials.authenticate_payload())
        result = self._record(decode_authenticate_result(reply, function="AuthenticateUser"))
        status = result.status
        if status is AuthStatus.AUTHENTICATED:
            return result
        if status is AuthStatus.LOCKED:
            raise AccountLocked(result)
        if status is AuthStatus.REJECTED:
            raise AuthenticationRejected(result)
        if two_factor is None:
            raise TwoFactorRequired(result)
        code = await _two_factor_code(two_factor)
        reply = await call("Authenticate2FA", {"Code": code})
        second = self._record(decode_authenticate_result(reply, function="Authenticate2FA"))
        if second.status is AuthStatus.LOCKED:
            raise AccountLocked(second)
        if second.status is not AuthStatus.AUTHENTICATED:
            raise TwoFactorRequired(second, message="The two-factor code was not accepted.")
        merged = attrs.evolve(
            result,
            authenticated=True,
            requires_2fa=False,
            session_token=second.session_token or result.session_token,
            user_id=second.user_id,
        )
        return self._record(merged)

    async def logout(self, *, timeout: float | None = _USE_DEFAULT) -> None:
        """Send LogOut: the gateway forgets the login and its session token.

        The session stays connected, and will not log in again by itself.
        """
        await self.call("LogOut", timeout=timeout)
        self._result = None
        self._login = None
        self._session_token = None
        self._credentials = None
        self._set_state(SessionState.CONNECTED)

    def _record(self, result: AuthenticateResult) -> AuthenticateResult:
        """Remember the outcome of an authentication step on this connection."""
        if result.status is AuthStatus.AUTHENTICATED:
            self._result = self._login = result
            self._session_token = result.session_token or self._session_token
            if self._state is not SessionState.AUTHENTICATING:
                self._set_state(SessionState.AUTHENTICATED)
        elif result.status is not AuthStatus.TWO_FACTOR_REQUIRED or self._result is None:
            self._result = result
        return result

    async def _authenticate_connection(self, conn: Connection) -> None:
        """Log a new connection in: resume with the session token, else the credentials."""
        token = self._session_token if self._resume else None
        if token is not None:
            try:
                reply = await self._call_on(conn, "WebAuthenticateUser", {"SessionToken": token})
                resumed = decode_authenticate_result(reply, function="WebAuthenticateUser")
            except RequestError:
                resumed = None
            if resumed is not None and resumed.status is AuthStatus.AUTHENTICATED:
                # WebAuthenticateUser names no user: keep what the login said.
                previous = self._result or self._login or resumed
                self._record(attrs.evolve(previous, session_token=resumed.session_token or token))
                logger.info("session %s resumed with its session token", self._url)
                return
            logger.info("session token refused by %s; logging in again", self._url)
            self._session_token = None
        self._result = None
        if self._credentials is not None:
            credentials = self._credentials
            await self._login_steps(
                lambda function, payload: self._call_on(conn, function, payload),
                credentials,
                self._two_factor,
            )

    def _refused_after_logout(self, conn: Connection, frame: Frame, sent_logged_in: bool) -> bool:
        """Whether ``frame`` is code 20 to a call sent while this session believed it logged in."""
        if self._credentials is None or not sent_logged_in or conn is not self._conn:
            return False
        payload = frame.payload
        return (
            isinstance(payload, dict)
            and _field(payload, "result") is False
            and _error_code(payload) == NotAuthorized.error_code
        )

    def _start_relogin(self, conn: Connection) -> None:
        """The gateway logged this connection out: log in again on it, in the background."""
        self._relogins += 1
        self._result = None
        # The gateway ended this login, and its session token with it: a
        # resume would only be refused, so the re-login uses the credentials.
        self._session_token = None
        if self._credentials is None or self._relogging or self._task_group is None:
            if self._credentials is None:
                self._set_state(SessionState.CONNECTED)
            return
        self._relogging = True
        self._unready()
        self._set_state(SessionState.AUTHENTICATING)
        self._start(self._relogin, conn, name="alphapoint re-login")

    async def _relogin(self, conn: Connection) -> None:
        try:
            await self._authenticate_connection(conn)
            await self._resubscribe(conn)
        except AuthenticationError as exc:
            # A password that stopped working will not start again by retrying.
            self._finish(exc)
            await conn.abort(ConnectionClosed(f"re-login failed: {exc}"))
            return
        except AlphaPointError as exc:
            await conn.abort(ConnectionClosed(f"re-login failed: {exc}"))
            return
        finally:
            self._relogging = False
        self._install(conn)

    # -- events and subscriptions -----------------------------------------

    def events(
        self,
        *functions: str,
        buffer: int | None = None,
        match: Callable[[Event], bool] | None = None,
    ) -> EventStream:
        """A stream of the ``m=3`` events named ``functions`` (every event if none).

        ``async with session.events("LogoutEvent") as events: async for event
        in events: ...``. The stream lives as long as the session, across
        reconnects. It holds at most ``buffer`` unread events (the session's
        ``event_buffer`` by default); a consumer that falls further behind gets
        :class:`EventOverflow` after the events it did receive.
        """
        size = self._event_buffer if buffer is None else buffer
        return EventStream(self, frozenset(functions), size, match)

    def subscribe(
        self,
        function: str,
        payload: Mapping[str, Any] | None = None,
        *,
        events: Iterable[str] | None = None,
        unsubscribe: str | None = None,
        buffer: int | None = None,
        match: Callable[[Event], bool] | None = None,
    ) -> Subscription:
        """Subscribe (``m=2``) and iterate over the events it starts.

        ``async with session.subscribe("SubscribeLevel1", {"OMSId": 1,
        "InstrumentId": 1}) as level1: async for event in level1: ...``. The
        subscription is sent again after every reconnect and re-login; leaving
        the block sends the unsubscribe call (``m=4``). For the known
        subscribe functions (:data:`KNOWN_SUBSCRIPTIONS`) the event names and
        the unsubscribe call are filled in, and a payload naming an
        ``InstrumentId`` keeps only that instrument's events.
        """
        body = dict(payload or {})
        known_events, known_unsubscribe = KNOWN_SUBSCRIPTIONS.get(function, (frozenset(), None))
        names = frozenset(events) if events is not None else known_events
        if not names:
            raise ValueError(f"name the events {function} starts: events=[...]")
        return Subscription(
            self,
            function,
            body,
            events=names,
            unsubscribe=unsubscribe if unsubscribe is not None else known_unsubscribe,
            buffer=self._event_buffer if buffer is None else buffer,
            match=match if match is not None else instrument_matcher(body),
        )

    def _attach(self, stream: EventStream) -> None:
        if self._terminal is not None or self._closing:
            raise (
                self._terminal_error() if self._terminal else SessionClosed("the session is closed")
            )
        self._streams.append(stream)

    def _detach(self, stream: EventStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)

    async def _send_subscription(self, subscription: Subscription) -> None:
        frame = await self.request(
            subscription.function, subscription.payload, message_type=MessageType.SUBSCRIBE
        )
        subscription.snapshot = _check_reply(frame)

    async def _send_unsubscribe(self, subscription: Subscription) -> None:
        conn = self._conn
        if conn is None or not conn.is_open or subscription.unsubscribe_function is None:
            return
        await self._call_on(
            conn,
            subscription.unsubscribe_function,
            subscription.payload,
            message_type=MessageType.UNSUBSCRIBE,
            timeout=self._options.close_timeout,
        )

    async def _resubscribe(self, conn: Connection) -> None:
        """Send every live subscription again on a new (or re-logged-in) connection."""
        for stream in tuple(self._streams):
            if not isinstance(stream, Subscription):
                continue
            try:
                stream.snapshot = await self._call_on(
                    conn, stream.function, stream.payload, message_type=MessageType.SUBSCRIBE
                )
            except RequestError as exc:
                stream.end(exc)
                continue
            stream.resubscribed += 1

    def _on_event(self, conn: Connection, event: Event) -> None:
        """Called by a connection's reader for every event."""
        for stream in tuple(self._streams):
            if stream.wants(event):
                stream.offer(event)
        if event.function == "LogoutEvent" and conn is self._conn and self.authenticated:
            logger.info("the gateway logged session %s out", self._url)
            self._start_relogin(conn)

    # -- connections ----------------------------------------------------------

    def _start(self, fn: Callable[..., Awaitable[None]], *args: Any, name: str) -> None:
        """Start one of the session's tasks, counted in ``_running`` until it ends."""
        assert self._task_group is not None
        self._running += 1
        self._task_group.start_soon(self._counted, fn, args, name=name)

    async def _counted(self, fn: Callable[..., Awaitable[None]], args: tuple[Any, ...]) -> None:
        try:
            await fn(*args)
        finally:
            self._running -= 1

    async def _open_connection(self) -> Connection:
        """Open, start the connection's task, log in, resubscribe. Raises, leaving nothing open."""
        assert self._task_group is not None
        options = self._options
        websocket = await open_websocket(
            self._connect_url,
            ssl=options.ssl,
            open_timeout=options.open_timeout,
            close_timeout=options.close_timeout,
            max_message_size=options.max_message_size,
            allow_insecure=options.allow_insecure,
            proxy=options.proxy,
            driver=options.driver,
        )
        self._connections += 1
        conn = Connection(
            websocket,
            url=self._url,
            on_event=self._on_event,
            on_closed=self._connection_closed,
            close_timeout=options.close_timeout,
            number=self._connections,
        )
        self._start(conn.run, self._keepalive, name=f"alphapoint connection {self._url}")
        try:
            if self._credentials is not None or (self._resume and self._session_token):
                self._set_state(SessionState.AUTHENTICATING)
            self._conn = conn
            await self._authenticate_connection(conn)
            await self._resubscribe(conn)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await conn.abort(ConnectionClosed("the connection was abandoned"))
            raise
        return conn

    def _connection_closed(self, conn: Connection) -> None:
        """Called the moment a connection ends: stop letting calls through it.

        The drop of an installed connection starts the reconnect task (a
        connection that fails while it is set up is the opener's to handle).
        """
        if conn is not self._conn or self._closing or self._terminal is not None:
            return
        error = conn.error or ConnectionClosed("the connection closed")
        if self._reconnect is None:
            self._finish(error)
            return
        self._unready()
        if conn is self._installed:
            self._installed = None
            self._start(self._reconnect_after, error, name=f"alphapoint reconnect {self._url}")

    def _install(self, conn: Connection) -> None:
        """``conn`` is ready: let calls through."""
        self._conn = self._installed = conn
        if not conn.is_open:
            self._connection_closed(conn)  # it closed under the login: replace it
            return
        self._up_since = anyio.current_time()
        self._set_state(
            SessionState.AUTHENTICATED if self.authenticated else SessionState.CONNECTED
        )
        self._ready.set()

    def _unready(self) -> None:
        if self._ready.is_set():
            self._ready = anyio.Event()

    async def _reconnect_after(self, error: BaseException) -> None:
        """The installed connection dropped with ``error``: replace it, with backoff."""
        policy = self._reconnect
        assert policy is not None
        logger.warning("session %s lost its connection: %s", self._url, error)
        self._result = None
        self._set_state(SessionState.RECONNECTING)
        if anyio.current_time() - self._up_since >= policy.reset_after:
            self._attempt = 0
        # max_attempts bounds consecutive *failed* attempts; ``_attempt``
        # (which only reset_after resets) sets the delay.
        failures = 0
        while not self._closing:
            if policy.gives_up(failures):
                self._finish(error)
                return
            await anyio.sleep(policy.delay(self._attempt))
            self._attempt += 1
            try:
                conn = await self._open_connection()
            except Exception as exc:  # noqa: BLE001 - the retry policy decides
                error = exc
                failures += 1
                if not self._retryable(exc):
                    self._finish(exc)
                    return
                logger.warning("reconnecting to %s failed: %s", self._url, exc)
                self._set_state(SessionState.RECONNECTING)
                continue
            self._install(conn)
            return

    def _finish(self, error: BaseException) -> None:
        """The session has ended for good: fail waiters, end streams, state CLOSED."""
        if self._terminal is not None:
            return
        self._terminal = error
        self._ready.set()
        stream_error = None if isinstance(error, SessionClosed) else error
        for stream in tuple(self._streams):
            stream.end(stream_error if isinstance(stream_error, AlphaPointError) else None)
        self._set_state(SessionState.CLOSED)
        for changes in tuple(self._state_streams):
            changes._end()

    async def aclose(self) -> None:
        """Log out (unless turned off), close the WebSocket with 1000, stop every task.

        Bounded by the close timeout, even when cancelled. Idempotent.
        """
        if self._closing:
            return
        self._closing = True
        with anyio.CancelScope(shield=True):
            conn = self._conn
            if conn is not None and conn.is_open and self._logout_on_close and self.authenticated:
                with contextlib.suppress(AlphaPointError):
                    await self._call_on(conn, "LogOut", None, timeout=self._options.close_timeout)
            self._finish(SessionClosed("the session was closed"))
            if conn is not None:
                await conn.aclose(SessionClosed("the session was closed"))
        if self._task_group is not None and self._running:
            # A reconnect, a re-login, a reader still draining: stop them.
            # (Cancelling formats a task's repr and interrupts this task too,
            # so it is skipped when every task has already ended.)
            self._task_group.cancel_scope.cancel()


class StateChanges:
    """The states a session enters, as an async iterator; see :meth:`Session.state_changes`."""

    def __init__(self, session: Session, buffer: int) -> None:
        self._session = session
        # A slow reader loses the oldest states, never the latest.
        self._inbox: Inbox[SessionState] = Inbox(maxlen=buffer)

    async def __aenter__(self) -> StateChanges:
        self._session._state_streams.append(self)
        if self._session._terminal is not None:
            self._inbox.close()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self in self._session._state_streams:
            self._session._state_streams.remove(self)

    def __aiter__(self) -> StateChanges:
        return self

    async def __anext__(self) -> SessionState:
        return await self._inbox.get()

    def _offer(self, state: SessionState) -> None:
        self._inbox.put(state)

    def _end(self) -> None:
        self._inbox.close()


def _check_reply(frame: Frame) -> Any:
    """The payload of a reply, or the :class:`RequestError` it stands for."""
    payload = frame.payload
    if frame.type is MessageType.ERROR:
        if isinstance(payload, dict):
            message = _field(payload, "errormsg")
            raise RequestError.for_code(
                frame.function,
                message if isinstance(message, str) else "error frame",
                code=_error_code(payload),
                detail=_field(payload, "detail"),
            )
        raise RequestError.for_code(
            frame.function, payload if isinstance(payload, str) else "error frame", code=None
        )
    if isinstance(payload, dict) and _field(payload, "result") is False:
        code = _error_code(payload)
        if code != _OPERATION_IN_PROCESS:
            message = _field(payload, "errormsg")
            raise RequestError.for_code(
                frame.function,
                message if isinstance(message, str) else "",
                code=code,
                detail=_field(payload, "detail"),
            )
    return payload


def _field(payload: dict[str, Any], name: str) -> Any:
    """A standard-response field, as sent lowercase or capitalised."""
    if name in payload:
        return payload[name]
    return payload.get(name[:1].upper() + name[1:])


def _error_code(payload: dict[str, Any]) -> int | None:
    code = _field(payload, "errorcode")
    return code if type(code) is int else None


async def _two_factor_code(two_factor: TwoFactor) -> str:
    """The code from a string or from a (sync or async) provider."""
    if isinstance(two_factor, str):
        return two_factor
    code = two_factor()
    if inspect.isawaitable(code):
        code = await code
    if not isinstance(code, str):
        raise TypeError("the two-factor provider must return a string code")
    return code


class connect:
    """Open a :class:`Session` to ``url``; close it when the block ends.

    Without ``credentials`` this is one connection: when it drops, calls fail
    with :class:`ConnectionClosed`. With ``credentials`` (and ``two_factor``,
    ideally a :class:`Totp`) the session logs in on entry and is *managed*: it
    reconnects with ``reconnect`` (a :class:`Backoff`; ``True`` for the
    default, ``False`` for none), resumes with the session token first unless
    ``resume=False``, and logs in again after a LogoutEvent.

    ``timeout`` is every call's default; ``open_timeout`` bounds the TCP, TLS
    and WebSocket handshakes; ``close_timeout`` bounds closing. ``keepalive``
    pings after idle time and drops a connection that does not answer
    (``None`` turns it off). ``ssl`` replaces the default (verifying) TLS
    context for ``wss://``. ``proxy`` is a proxy URL, ``True`` for the
    environment's (``HTTPS_PROXY``...), or ``None``. Plain ``ws://`` is allowed
    only to loopback unless ``allow_insecure``. ``event_buffer`` bounds each
    event stream. ``on_state_change`` is called with every new
    :class:`SessionState`.

    Exceptions from the block propagate unchanged (never wrapped in an
    ExceptionGroup); leaving the block logs out (unless
    ``logout_on_close=False``), closes the WebSocket with 1000, and waits for
    every task the session started.
    """

    def __init__(
        self,
        url: str,
        *,
        credentials: Credentials | None = None,
        two_factor: TwoFactor | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        reconnect: Backoff | bool | None = None,
        keepalive: Keepalive | None = Keepalive(),  # noqa: B008 - frozen, shared safely
        resume: bool = True,
        logout_on_close: bool = True,
        retryable: Callable[[BaseException], bool] = is_retryable,
        open_timeout: float = 10.0,
        close_timeout: float = 5.0,
        ssl: ssl_module.SSLContext | None = None,
        proxy: str | bool | None = True,
        allow_insecure: bool = False,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        event_buffer: int = 1024,
        on_state_change: Callable[[SessionState], None] | None = None,
        driver: Driver = "auto",
    ) -> None:
        if reconnect is None:
            reconnect = credentials is not None
        policy = Backoff() if reconnect is True else reconnect or None
        self._session = Session(
            url,
            options=_Options(
                open_timeout=open_timeout,
                close_timeout=close_timeout,
                ssl=ssl,
                allow_insecure=allow_insecure,
                max_message_size=max_message_size,
                proxy=proxy,
                driver=driver,
            ),
            timeout=timeout,
            credentials=credentials,
            two_factor=two_factor,
            reconnect=policy,
            keepalive=keepalive,
            resume=resume,
            logout_on_close=logout_on_close,
            retryable=retryable,
            event_buffer=event_buffer,
            on_state_change=on_state_change,
        )
        self._task_group: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Session:
        session = self._session
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        session._task_group = task_group
        try:
            conn = await session._open_connection()
        except BaseException:
            session._closing = True
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            raise
        session._install(conn)
        self._task_group = task_group
        return session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task_group is not None
        await self._session.aclose()
        # Every task of the session is cancelled or done: exit the task group
        # without handing it the block's exception, so that exception
        # propagates as it is, never wrapped in an ExceptionGroup.
        await self._task_group.__aexit__(None, None, None)

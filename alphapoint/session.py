"""The session: stays logged in across connections, for as long as it is open.

A :class:`Session` outlives its sockets. It owns its tasks (through a
:mod:`.task_owner`, made by :func:`connect`): the current connection's (its
reader, deadlines and keepalive: :meth:`Connection.run`) and, only when that
connection drops, a reconnect task that reconnects with backoff, resumes the
login with the session token (or logs in again), re-sends every live
subscription, and only then lets waiting calls through.

The session is put together from parts that each keep one thing: its state
(:mod:`.state`, every legal move in one table), its login (:mod:`.login`), its
streams (:mod:`.hub`), and what replies mean (:mod:`.apex`). This module is
what ties them to connections.

Calls are never re-sent after a drop: one in flight fails at once with the
retryable :class:`ConnectionClosed`, since the gateway may have acted on it
(orders are not idempotent). The only exception is a call refused with code
20 (Not Authorized) on a session that believed it was logged in: the gateway
did not act on it, so it is sent once more after the re-login.
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl as ssl_module
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, TypeVar, overload

import anyio
import attrs

from .apex import check_reply, check_reply_fields, refused_as_not_logged_in
from .connection import Connection
from .credentials import Credentials
from .decoding import decode
from .drivers import DEFAULT_MAX_MESSAGE_SIZE, Driver, Loop, current_loop, open_websocket
from .errors import (
    AlphaPointError,
    AuthenticationError,
    ConnectionClosed,
    NotAuthorized,
    ReloginStorm,
    SessionClosed,
    UsageError,
)
from .events import EventStream, StateChanges, Subscription
from .frame import Frame, MessageType
from .gate import Gate
from .hub import EventHub
from .login import Call, Login, TwoFactor
from .models import AuthenticateResult, AuthStatus, Event, User
from .open_limit import OpenLimiter, default_open_limiter, take_turn
from .policies import Backoff, Keepalive, Relogin, is_retryable
from .state import ACCEPTS_CALLS, SessionState, StateMachine, Trigger
from .task_owner import TaskOwner, TrioTaskOwner, new_task_owner
from .urls import without_user_info

__all__ = ["DEFAULT_TIMEOUT", "Session", "SessionOptions", "SessionState", "StateChanges"]

logger = logging.getLogger("alphapoint.session")

#: Seconds a call waits for its reply unless told otherwise.
DEFAULT_TIMEOUT: Final = 10.0
"""Seconds a call waits for its reply unless told otherwise (``connect(timeout=...)``)."""

T = TypeVar("T")


class _SessionTimeout:
    """The default of every call's ``timeout``: the one given to :func:`connect`."""

    def __repr__(self) -> str:
        return "<the session's timeout>"


_USE_DEFAULT: Any = _SessionTimeout()

#: Read on every call: module globals cost less than the enums' attributes.
_REQUEST = MessageType.REQUEST
_AUTHENTICATED = SessionState.AUTHENTICATED
_CLOSED = SessionState.CLOSED


@attrs.frozen
class SessionOptions:
    """Everything :func:`connect` was told but the login; see there for each."""

    timeout: float | None = DEFAULT_TIMEOUT
    reconnect: Backoff | None = None
    keepalive: Keepalive | None = Keepalive()  # noqa: RUF009 - frozen, shared safely
    logout_on_close: bool = True
    retryable: Callable[[BaseException], bool] = is_retryable
    event_buffer: int = 1024
    on_state_change: Callable[[SessionState], None] | None = None
    open_timeout: float = 10.0
    close_timeout: float = 5.0
    ssl: ssl_module.SSLContext | None = None
    proxy: str | bool | None = True
    allow_insecure: bool = False
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    driver: Driver = "auto"
    wait_for_gateway: bool = False
    open_limiter: OpenLimiter = "shared"


class Session:
    """An APEX session. Made by :func:`connect`; use it inside ``async with``.

    Every method may be called concurrently from many tasks.
    """

    def __init__(
        self,
        url: str,
        options: SessionOptions,
        *,
        credentials: Credentials | None = None,
        two_factor: TwoFactor | None = None,
        resume: bool = True,
        relogin: Relogin = Relogin(),  # noqa: B008 - frozen, shared safely
    ) -> None:
        """Made by :func:`connect`, which documents each argument; enter that, not this."""
        login = Login(credentials, two_factor, resume=resume, relogin=relogin)
        self._connect_url = url
        #: The URL as shown in reprs, logs and task names: any user:password@ masked.
        self._url = without_user_info(url)
        self._options = options
        self._timeout = options.timeout  # read on every call
        #: ``anyio.current_time()``: once a connection is made, its driver's own
        #: clock (the same time, read without asking which library runs).
        self._clock: Callable[[], float] = anyio.current_time
        self._login = login
        self._machine = StateMachine()
        self._hub = EventHub()
        #: Where calls wait: open in CONNECTED and AUTHENTICATED, ended once CLOSED.
        self._gate = Gate()
        #: Starts, cancels and waits for the session's tasks (from _enter() on),
        #: and which event loop runs them.
        self._owner: TaskOwner | None = None
        self._loop: Loop | None = None
        #: The newest connection: being set up, or installed.
        self._conn: Connection | None = None
        #: The connection calls go through, until it drops: its drop starts a reconnect.
        self._installed: Connection | None = None
        self._connections = 0
        #: Reconnect attempts since the last connection that lasted (sets the delay).
        self._attempt = 0
        self._up_since = 0.0
        #: How many times the session found its login gone (LogoutEvent, code 20).
        self._relogins = 0
        #: A connection being logged in whose login the gateway ended meanwhile.
        self._lost_in_setup: Connection | None = None

    def __repr__(self) -> str:
        return f"<Session {self._url} {self.state.value}>"

    # -- state ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The gateway's URL."""
        return self._connect_url

    @property
    def state(self) -> SessionState:
        """Where the session is now."""
        return self._machine.state

    @property
    def is_open(self) -> bool:
        """Whether calls can still be made (now, or once reconnected)."""
        return self._machine.open

    @property
    def authenticated(self) -> bool:
        """Whether the session is logged in on its current connection."""
        return self._machine.state is SessionState.AUTHENTICATED

    @property
    def user(self) -> User | None:
        """The logged-in user, as AuthenticateUser described it."""
        result = self._login.result
        return result.user if self.authenticated and result is not None else None

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
        return StateChanges(self._hub, buffer)

    def _fire(self, trigger: Trigger) -> None:
        """Move the state machine, and act on a change of state."""
        machine = self._machine
        before = machine.state
        state = machine.fire(trigger)
        if state is before:
            return
        if state is _AUTHENTICATED:
            self._login.logged_in_at = self._clock()
        if state in ACCEPTS_CALLS:  # (machine.accepts_calls, without its call)
            assert self._installed is not None
            assert self._installed.is_open  # a drop moves the state at once
            self._gate.open(self._installed)
        elif state is not _CLOSED and self._gate.connection is not None:
            self._gate.shut()  # (shut already, usually: no call)
        if logger.isEnabledFor(logging.INFO):  # (state.value: two calls of Python)
            logger.info("session %s is %s", self._url, state.value)
        if self._hub.watched:  # nobody watches, usually: no call
            self._hub.publish_state(state)
        on_state_change = self._options.on_state_change
        if on_state_change is not None:
            try:
                on_state_change(state)
            except Exception:
                logger.exception("on_state_change callback failed")

    # -- calls ----------------------------------------------------------------

    @overload
    async def call(
        self,
        function: str,
        payload: Mapping[str, Any] | list[Any] | None = None,
        *,
        timeout: float | None = ...,
        model: None = None,
    ) -> Any: ...

    @overload
    async def call(
        self,
        function: str,
        payload: Mapping[str, Any] | list[Any] | None = None,
        *,
        timeout: float | None = ...,
        model: type[T],
    ) -> T: ...

    async def call(
        self,
        function: str,
        payload: Mapping[str, Any] | list[Any] | None = None,
        *,
        timeout: float | None = _USE_DEFAULT,
        model: type[T] | None = None,
    ) -> Any:
        """Call an APEX function and return its reply payload.

        The payload is the decoded JSON, or with ``model`` an instance of it:
        an attrs class or a dataclass (or a type such as ``list[Product]``),
        read in any key casing by the converter that reads the login reply
        (:func:`alphapoint.decode`); a reply of another shape raises
        :class:`DecodeError` naming the field.

        Waits for the session to be ready (while reconnecting), then sends the
        request once, all within ``timeout`` (the session's default unless
        given; ``None`` waits forever). Raises :class:`RequestError` (the most
        specific subclass for the code) when the gateway answers ``result:
        false`` (except code 107, "Operation In Process", which is returned)
        or with an ``m=5`` error frame; :class:`RequestTimeout`;
        :class:`ConnectionClosed` if the connection drops first.
        """
        # _send() for a session that is ready, inline: a coroutine less per call.
        if timeout is _USE_DEFAULT:
            timeout = self._timeout
        conn = self._gate.connection
        if conn is None:
            reply = await self._send(MessageType.REQUEST, function, payload, timeout, checked=True)
        else:
            deadline = math.inf if timeout is None else conn.clock() + timeout
            logged_in = self._machine.state is _AUTHENTICATED
            relogins = self._relogins
            kind, _, name, reply = await conn.exchange(
                _REQUEST, function, payload, deadline=deadline, timeout=timeout
            )
            try:
                reply = check_reply_fields(kind, name, reply, self._login.secrets)
            except NotAuthorized:
                if not (kind is MessageType.REPLY and self._login_ended(logged_in, conn)):
                    raise
                reply = await self._send_again(
                    conn, relogins, _REQUEST, function, payload, timeout, deadline
                )
        return reply if model is None else decode(model, reply, what=function)

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
        frame: Frame = await self._send(message_type, function, payload, timeout, checked=False)
        return frame

    async def _send(
        self,
        message_type: MessageType,
        function: str,
        payload: Mapping[str, Any] | list[Any] | None,
        timeout: float | None,
        *,
        checked: bool,
        on_reply: Callable[[Frame], None] | None = None,
    ) -> Any:
        """Send once the gate is open; the reply frame, or its payload if ``checked``
        (:func:`~alphapoint.apex.check_reply`, scrubbed of the login's secrets).

        A reply refusing the call with code 20 while the session believed it
        was logged in means the gateway ended the login: the call was not
        acted on, so it is sent once more after the re-login (one re-login
        for every call refused at once: the first starts it).
        """
        if timeout is _USE_DEFAULT:
            timeout = self._timeout
        conn = self._gate.connection
        if conn is not None:  # the usual case: no wait, no cancel scope
            deadline = math.inf if timeout is None else conn.clock() + timeout
        else:
            deadline = math.inf if timeout is None else anyio.current_time() + timeout
            conn = await self._gate.wait(function, timeout, deadline)
        logged_in = self._machine.state is _AUTHENTICATED
        relogins = self._relogins
        frame = await conn.request(
            message_type, function, payload, deadline=deadline, timeout=timeout, on_reply=on_reply
        )
        # Checked once: a refusal with code 20 is found by the error it raises.
        if checked:
            try:
                return check_reply(frame, self._login.secrets)
            except NotAuthorized:
                if not (frame.type is MessageType.REPLY and self._login_ended(logged_in, conn)):
                    raise
        elif not (refused_as_not_logged_in(frame) and self._login_ended(logged_in, conn)):
            return frame
        return await self._send_again(
            conn,
            relogins,
            message_type,
            function,
            payload,
            timeout,
            deadline,
            checked=checked,
            on_reply=on_reply,
        )

    async def _send_again(
        self,
        conn: Connection,
        relogins: int,
        message_type: MessageType,
        function: str,
        payload: Mapping[str, Any] | list[Any] | None,
        timeout: float | None,
        deadline: float,
        *,
        checked: bool = True,
        on_reply: Callable[[Frame], None] | None = None,
    ) -> Any:
        """A call sent on ``conn`` and refused because the gateway ended the login:
        sent once more after the re-login (which the first such refusal starts)."""
        if self._relogins == relogins:
            self._start_relogin(conn)
        conn = await self._gate.wait(function, timeout, deadline)
        frame = await conn.request(
            message_type, function, payload, deadline=deadline, timeout=timeout, on_reply=on_reply
        )
        return check_reply(frame, self._login.secrets) if checked else frame

    def _login_ended(self, logged_in: bool, conn: Connection) -> bool:
        """Whether code 20 to a call sent on ``conn`` means the gateway ended our login."""
        return logged_in and self._login.credentials is not None and conn is self._installed

    # -- authentication ------------------------------------------------------

    def _user_call(self, timeout: float | None) -> Call:
        return lambda function, payload: self.call(function, payload, timeout=timeout)

    def _user_step(self, result: AuthenticateResult) -> AuthenticateResult:
        """The user's own authentication step on the ready connection: logged in by it,
        or out (a refused login ends the one before)."""
        if self._machine.accepts_calls:
            if result.status is AuthStatus.AUTHENTICATED:
                self._fire(Trigger.LOGGED_IN)
            elif result.status is not AuthStatus.TWO_FACTOR_REQUIRED and self.authenticated:
                self._fire(Trigger.LOGGED_OUT)
        return result

    async def authenticate(
        self, credentials: Credentials, *, timeout: float | None = _USE_DEFAULT
    ) -> AuthenticateResult:
        """Send one AuthenticateUser and return the decoded reply, whatever it says.

        Rejected, locked and 2FA-pending replies are results, not errors; this
        raises only for transport, protocol and timeout failures. API-key
        credentials are signed with a fresh nonce on every call.
        """
        result = await self._login.authenticate(self._user_call(timeout), credentials)
        return self._user_step(result)

    async def authenticate_2fa(
        self, code: str, *, timeout: float | None = _USE_DEFAULT
    ) -> AuthenticateResult:
        """Send Authenticate2FA with ``code`` and return the decoded reply."""
        return self._user_step(await self._login.authenticate_2fa(self._user_call(timeout), code))

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
        login = self._login
        try:
            result = await login.log_in(self._user_call(timeout), credentials, two_factor)
        except AuthenticationError as exc:
            self._user_step(exc.result)
            raise
        login.remember(credentials, two_factor)
        return self._user_step(result)

    async def logout(self, *, timeout: float | None = _USE_DEFAULT) -> None:
        """Send LogOut: the gateway forgets the login and its session token.

        The session stays connected, and will not log in again by itself.
        """
        await self.call("LogOut", timeout=timeout)
        self._login.forget()
        if self._machine.accepts_calls:
            self._fire(Trigger.LOGGED_OUT)

    def _start_relogin(self, conn: Connection) -> None:
        """The gateway ended the login on ``conn``: log in again on it, in the background,
        as the :class:`Relogin` policy allows."""
        if self._machine.state is SessionState.AUTHENTICATING:
            self._lost_in_setup = conn  # ended while being made: again, once it is
            return
        if self._machine.state is not SessionState.AUTHENTICATED or self._machine.closing:
            return  # not logged in (any more), or leaving
        self._relogins += 1
        self._login.lost()
        if self._login.credentials is None:
            self._fire(Trigger.LOGGED_OUT)
            return
        delay = self._login.relogin_delay()
        if isinstance(delay, ReloginStorm):
            logger.error("session %s: %s", self._url, delay)
            self._finish(delay)
            self._start(conn.abort, ConnectionClosed(str(delay)), name="alphapoint abort")
            return
        self._fire(Trigger.LOGIN_LOST)
        self._start(self._relogin, conn, delay, name="alphapoint re-login")

    async def _relogin(self, conn: Connection, delay: float) -> None:
        try:
            if delay > 0:
                logger.info("session %s logs in again in %.1f s", self._url, delay)
                await anyio.sleep(delay)
            await self._login.log_in_connection(conn.caller(timeout=self._timeout), url=self._url)
            await self._resubscribe(conn, same_connection=True)
        except AuthenticationError as exc:
            # A password that stopped working will not start again by retrying.
            self._finish(exc)
            await conn.abort(ConnectionClosed(f"re-login failed: {exc}"))
            return
        except AlphaPointError as exc:
            await conn.abort(ConnectionClosed(f"re-login failed: {exc}"))
            return
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
        size = self._options.event_buffer if buffer is None else buffer
        return EventStream(self._hub, frozenset(functions), size, match)

    def subscribe(
        self,
        function: str,
        payload: Mapping[str, Any] | None = None,
        *,
        events: Iterable[str] | None = None,
        unsubscribe: str | None = None,
        buffer: int | None = None,
        match: Callable[[Event], bool] | None = None,
        message_type: MessageType = MessageType.REQUEST,
    ) -> Subscription:
        """Subscribe and iterate over the events it starts.

        ``async with session.subscribe("SubscribeLevel1", {"OMSId": 1,
        "InstrumentId": 1}) as level1: async for event in level1: ...``. The
        request is an ordinary ``m=0`` call, as live gateways expect (pass
        ``message_type=MessageType.SUBSCRIBE`` for ``m=2``/``m=4``), and its
        reply, checked like any call's, is ``snapshot``. It is sent again after
        every reconnect and re-login; leaving the block sends the unsubscribe
        call. For the known subscribe functions
        (:data:`alphapoint.events.KNOWN_SUBSCRIPTIONS`)
        the event names and the unsubscribe call are filled in. A payload
        naming an ``InstrumentId`` (or a ``Symbol``) gets only that
        instrument's events, object- and array-shaped alike; ``match=``
        filters by a rule of your own instead.
        """
        return Subscription(
            self._hub,
            function,
            payload or {},
            events=events,
            unsubscribe=unsubscribe,
            buffer=self._options.event_buffer if buffer is None else buffer,
            match=match,
            send=self._send_subscription,
            cancel=self._send_unsubscribe,
            message_type=message_type,
        )

    async def _send_subscription(self, subscription: Subscription) -> None:
        subscription.snapshot = await self._send(
            subscription.message_type,
            subscription.function,
            subscription.payload,
            _USE_DEFAULT,
            checked=True,
            on_reply=subscription.replied,
        )

    async def _send_unsubscribe(self, subscription: Subscription) -> None:
        conn = self._conn
        unsubscribe = subscription.unsubscribe_function
        if not self.is_open or conn is None or not conn.is_open or unsubscribe is None:
            return
        kind, timeout = subscription.unsubscribe_type, self._options.close_timeout
        await conn.caller(message_type=kind, timeout=timeout)(unsubscribe, subscription.payload)

    async def _resubscribe(self, conn: Connection, *, same_connection: bool) -> None:
        """Send every live subscription again on a new (or re-logged-in) connection.

        One still being entered is left to its own call, which waits for this
        connection or is sent again after the re-login: sent from here too, it
        would be subscribed twice (and refused 909).
        """
        for stream in self._hub.streams():
            if isinstance(stream, Subscription) and stream.subscribed:
                call = conn.caller(message_type=stream.message_type, timeout=self._timeout)
                await stream.resend(call, same_connection=same_connection)

    def _on_events(self, conn: Connection, events: deque[Event]) -> None:
        """Called by a connection's reader with the events its reads left, in order.

        The hub routes them all in one call, but stops right after a
        LogoutEvent: the re-login starts before any later event is routed,
        as when the events came one at a time.
        """
        deliver_all = self._hub.deliver_all
        while events:
            if deliver_all(events, until="LogoutEvent"):
                self._logged_out(conn)

    def _logged_out(self, conn: Connection) -> None:
        """The gateway sent ``conn`` a LogoutEvent."""
        logger.info("the gateway logged session %s out", self._url)
        if conn is self._installed:
            self._start_relogin(conn)
        elif conn is self._conn:
            self._lost_in_setup = conn  # with the login reply: again, once it is installed

    # -- connections ----------------------------------------------------------

    def _start(self, fn: Callable[..., Awaitable[None]], *args: Any, name: str) -> None:
        """Start one of the session's tasks (a reconnect, a re-login, an abort)."""
        assert self._owner is not None
        self._owner.start(self._guarded(fn, args), name=name)

    async def _guarded(self, fn: Callable[..., Awaitable[None]], args: tuple[Any, ...]) -> None:
        """A task of the session's: a failure of its own (a bug, or an injected
        policy that raised) ends the session with :class:`ConnectionClosed`,
        rather than vanishing or leaving ``connect`` in an ExceptionGroup."""
        try:
            await fn(*args)
        except Exception as exc:
            logger.exception("session %s: a task of the session failed", self._url)
            error = ConnectionClosed(f"a task of the session failed: {type(exc).__name__}")
            error.__cause__ = exc
            self._finish(error)
            conn = self._conn
            if conn is not None and conn.is_open:
                await conn.abort(error.copy())

    async def _open_connection(self) -> Connection:
        """Open, start the connection's task, log in, resubscribe, after waiting for a
        turn (:mod:`.open_limit`). Raises, leaving nothing open.

        One coroutine for all of it: every await of the opening and the login
        resumes through each frame above it.
        """
        options = self._options
        limiter = options.open_limiter
        if limiter == "shared":
            limiter = default_open_limiter()
        if limiter is not None:
            # On behalf of the session: a task may open several sessions, one at a time.
            await take_turn(limiter, self)
        try:
            websocket = await open_websocket(
                self._connect_url,
                ssl=options.ssl,
                open_timeout=options.open_timeout,
                close_timeout=options.close_timeout,
                max_message_size=options.max_message_size,
                allow_insecure=options.allow_insecure,
                proxy=options.proxy,
                driver=options.driver,
                loop=self._loop,
            )
            self._connections += 1
            self._clock = self._login.clock = websocket.clock
            conn = Connection(
                websocket,
                url=self._url,
                on_events=self._on_events,
                on_closed=self._connection_closed,
                close_timeout=options.close_timeout,
                number=self._connections,
                secrets=self._login.secrets,
            )
            # conn.run() catches its own failures: its task needs no _guarded().
            assert self._owner is not None
            self._owner.start(
                conn.run(options.keepalive), name=f"alphapoint connection {self._url}"
            )
            try:
                if self._login.automatic:
                    self._fire(Trigger.OPENED)
                self._conn = conn
                await self._login.log_in_connection(
                    conn.caller(timeout=self._timeout), url=self._url
                )
                if self._hub.attached:  # (none, usually: no coroutine)
                    await self._resubscribe(conn, same_connection=False)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await conn.abort(ConnectionClosed("the connection was abandoned"))
                raise
            return conn
        finally:
            if limiter is not None:
                limiter.release_on_behalf_of(self)

    def _connection_closed(self, conn: Connection) -> None:
        """Called the moment a connection ends: stop letting calls through it.

        The drop of an installed connection starts the reconnect task (a
        connection that fails while it is set up is the opener's to handle).
        """
        if conn is not self._conn or not self._machine.open:
            return
        error = conn.error or ConnectionClosed("the connection closed")
        if self._options.reconnect is None:
            self._finish(error)
        elif conn is self._installed:
            self._installed = None
            self._start(self._reconnect_after, error, name=f"alphapoint reconnect {self._url}")
            self._fire(Trigger.DROPPED)

    def _install(self, conn: Connection) -> bool:
        """``conn`` is logged in and resubscribed: let calls through. False if leaving."""
        if not self._machine.open:
            return False
        self._conn = self._installed = conn
        if not conn.is_open:
            self._connection_closed(conn)  # it closed under the login: replace it
            return True
        self._up_since = self._clock()
        result = self._login.result
        authenticated = result is not None and result.status is AuthStatus.AUTHENTICATED
        self._fire(Trigger.READY if authenticated else Trigger.READY_ANONYMOUS)
        if self._lost_in_setup is conn:
            self._lost_in_setup = None
            self._start_relogin(conn)
        return True

    async def _reconnect_after(self, error: BaseException) -> None:
        """The installed connection dropped with ``error``: replace it, with backoff."""
        policy = self._options.reconnect
        assert policy is not None
        logger.warning("session %s lost its connection: %s", self._url, error)
        self._login.result = None
        if self._clock() - self._up_since >= policy.reset_after:
            self._attempt = 0
        # max_attempts bounds consecutive *failed* attempts; ``_attempt``
        # (which only reset_after resets) sets the delay.
        failures = 0
        while self._machine.open:
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
                if not self._options.retryable(exc):
                    self._finish(exc)
                    return
                logger.warning("reconnecting to %s failed: %s", self._url, exc)
                if self._machine.open:
                    self._fire(Trigger.DROPPED)
                continue
            if not self._install(conn):
                await conn.aclose(SessionClosed("the session was closed"))
            return

    def _finish(self, error: BaseException) -> None:
        """The session has ended for good: fail waiters, end streams, state CLOSED."""
        if self._machine.state is _CLOSED:  # (machine.closed, without its call)
            return
        self._gate.end(error)
        self._fire(Trigger.ENDED)
        stream_error = error if isinstance(error, AlphaPointError) else None
        if isinstance(error, SessionClosed):
            stream_error = None
        # The gate's method, not the session's: the hub keeps it, and must not
        # keep the session (a reference cycle).
        self._hub.end(stream_error, attach_error=self._gate.ended_error)

    async def aclose(self) -> None:
        """Log out (unless turned off), close the WebSocket with 1000, stop every task.

        All of it within the close timeout, even when cancelled: the LogOut
        has half of it at most, the closing handshake the rest. Idempotent.
        """
        if self._machine.closing:
            return
        self._machine.closing = True
        close_timeout = self._options.close_timeout
        deadline = self._clock() + close_timeout
        conn = self._conn
        logout = self._options.logout_on_close and self.authenticated
        if logout and conn is not None and conn.is_open:
            with anyio.CancelScope(shield=True), contextlib.suppress(AlphaPointError):
                await conn.caller(timeout=close_timeout / 2)("LogOut", None)
        closed = SessionClosed("the session was closed")  # each raise makes its copy
        self._finish(closed)
        if conn is not None:
            # Shielded by itself from its first line: no checkpoint between the
            # LogOut's shield and its own, so a cancellation cannot cut in.
            await conn.aclose(closed, deadline=deadline)
        if self._owner is not None:
            # A reconnect, a re-login, a reader still draining: stop them.
            self._owner.cancel_all()

    # -- the block that owns the session's tasks ------------------------------

    async def _enter(self) -> None:
        """Make the task owner and open the first connection (``async with connect(...)``)."""
        if self._owner is not None or self._machine.state is not SessionState.CONNECTING:
            raise UsageError("a connect(...) object can be entered only once")
        # Which loop runs, asked once: the owner and every opening need it.
        self._loop = current_loop()
        owner = self._owner = new_task_owner(self._loop)
        if isinstance(owner, TrioTaskOwner):  # its nursery is entered here
            await owner.open()
        try:
            if self._options.wait_for_gateway:
                conn = await self._open_first_connection()
            else:  # fails fast: one coroutine less on every connect()
                conn = await self._open_connection()
        except BaseException:
            self._machine.closing = True
            owner.cancel_all()
            await owner.wait_all()
            raise
        self._install(conn)

    async def _open_first_connection(self) -> Connection:
        """The first connection: fails fast, unless told to wait for the gateway.

        With ``wait_for_gateway``, a retryable failure (a gateway in
        maintenance, a network not up yet) is retried as the reconnect policy
        retries a dropped connection: with its backoff, at most
        ``max_attempts`` attempts in all. Anything else (wrong credentials, a bad
        certificate) still fails at once.
        """
        policy = self._options.reconnect if self._options.wait_for_gateway else None
        failed = 0
        while True:
            try:
                return await self._open_connection()
            except Exception as exc:
                failed += 1
                if policy is None or not self._options.retryable(exc) or policy.gives_up(failed):
                    raise
                logger.warning("connecting to %s failed, will retry: %s", self._url, exc)
            await anyio.sleep(policy.delay(failed - 1))

    async def _exit(self) -> None:
        """Close, and wait for every task of the session."""
        assert self._owner is not None
        await self.aclose()
        # Every task of the session is cancelled or done: wait for each. The
        # block's exception is not the owner's: it propagates as it is, never
        # wrapped in an ExceptionGroup.
        await self._owner.wait_all()

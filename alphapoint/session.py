"""The session: one WebSocket, many concurrent calls, events, and login.

This is the one module with tasks. A single reader task, owned by the task
group that :func:`connect` opens, reads every message and either resolves the
pending call with the same ``i`` (only for a reply, ``m`` 1 or 5; never for an
event, whose ``i`` is the gateway's own counter) or hands the event to its
subscribers. Calls from any number of tasks share the socket; each waits for
its own reply within its own timeout. When the connection ends, every pending
call fails at once with :class:`ConnectionClosed`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import ssl as ssl_module
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Final

import anyio
import anyio.abc
import attrs

from .credentials import Credentials
from .decoding import decode_authenticate_result
from .errors import (
    AccountLocked,
    AlphaPointError,
    AuthenticationRejected,
    ConnectionClosed,
    EventOverflow,
    FrameError,
    ProtocolError,
    RequestError,
    RequestTimeout,
    SessionClosed,
    TwoFactorRequired,
)
from .frame import Frame, MessageType, decode_frame, encode_frame
from .models import AuthenticateResult, AuthStatus, Event, User
from .redaction import redact
from .transport import DEFAULT_MAX_MESSAGE_SIZE, WebSocket, open_websocket

__all__ = ["DEFAULT_TIMEOUT", "EventStream", "Session", "TwoFactor", "connect"]

logger = logging.getLogger("alphapoint.session")

#: Seconds a call waits for its reply unless told otherwise.
DEFAULT_TIMEOUT: Final = 10.0

#: A two-factor code, or something that produces one (``Totp(secret)``, a
#: function that asks a human, an async function that reads a vault).
TwoFactor = str | Callable[[], "str | Awaitable[str]"]

_USE_DEFAULT: Any = object()

# APEX standard response: {"result": false, "errormsg": ..., "errorcode": N, "detail": ...}
_OPERATION_IN_PROCESS = 107


class _Pending:
    """One call waiting for its reply."""

    __slots__ = ("error", "event", "frame", "function")

    def __init__(self, function: str) -> None:
        self.function = function
        self.event = anyio.Event()
        self.frame: Frame | None = None
        self.error: AlphaPointError | None = None


class Session:
    """An open APEX session. Made by :func:`connect`; use it inside ``async with``.

    Every method may be called concurrently from many tasks.
    """

    def __init__(
        self,
        websocket: WebSocket,
        *,
        url: str,
        timeout: float | None = DEFAULT_TIMEOUT,
        close_timeout: float = 5.0,
        event_buffer: int = 1024,
    ) -> None:
        self._ws = websocket
        self._url = url
        self._timeout = timeout
        self._close_timeout = close_timeout
        self._event_buffer = event_buffer
        self._pending: dict[int, _Pending] = {}
        self._next_seq = 2
        self._subscribers: list[EventStream] = []
        self._closed: ConnectionClosed | None = None
        self._reader_done = anyio.Event()
        self._last_protocol_error: ProtocolError | None = None
        self._protocol_errors = 0
        self._result: AuthenticateResult | None = None
        self._session_token: str | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "authenticated" if self.authenticated else "open"
        return f"<Session {self._url} {state}>"

    # -- state ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The gateway's URL."""
        return self._url

    @property
    def is_open(self) -> bool:
        """Whether calls can still be made."""
        return self._closed is None

    @property
    def authenticated(self) -> bool:
        """Whether the last authentication on this connection ended logged in."""
        return self._result is not None and self._result.status is AuthStatus.AUTHENTICATED

    @property
    def user(self) -> User | None:
        """The logged-in user, as AuthenticateUser described it."""
        return self._result.user if self.authenticated and self._result else None

    @property
    def protocol_errors(self) -> int:
        """How many messages from the gateway could not be read as APEX frames."""
        return self._protocol_errors

    # -- calls ----------------------------------------------------------------

    async def call(
        self,
        function: str,
        payload: Mapping[str, Any] | list[Any] | None = None,
        *,
        timeout: float | None = _USE_DEFAULT,
    ) -> Any:
        """Call an APEX function and return its decoded reply payload.

        Raises :class:`RequestError` (the most specific subclass for the code)
        when the gateway answers ``result: false`` (except code 107, "Operation
        In Process", which is returned) or with an ``m=5`` error frame;
        :class:`RequestTimeout` after ``timeout`` seconds (the session's
        default unless given; ``None`` waits forever);
        :class:`ConnectionClosed` if the connection ends first.
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
        """Send one frame and return the reply frame, unchecked (``m`` 1 or 5).

        The low-level form of :meth:`call`, for subscriptions (``m=2``/``m=4``)
        and for callers that read error frames themselves.
        """
        if self._closed is not None:
            raise self._closed_error()
        if timeout is _USE_DEFAULT:
            timeout = self._timeout
        seq = self._next_seq
        self._next_seq += 2
        request = Frame(message_type, seq, function, {} if payload is None else payload)
        text = encode_frame(request)
        pending = _Pending(function)
        self._pending[seq] = pending
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("> %s", _describe(request))
        try:
            with anyio.fail_after(math.inf if timeout is None else timeout):
                await self._ws.send_text(text)
                await pending.event.wait()
        except TimeoutError:
            if pending.frame is None and pending.error is None:
                raise self._timeout_error(function, timeout) from None
        except ConnectionClosed:
            # The socket failed under the send; the reader records why.
            if pending.error is None:
                raise
        finally:
            self._pending.pop(seq, None)
        if pending.error is not None:
            raise pending.error
        assert pending.frame is not None
        return pending.frame

    def _timeout_error(self, function: str, timeout: float | None) -> RequestTimeout:
        message = f"no reply to {function} within {timeout} s"
        if self._last_protocol_error is not None:
            message += (
                f"; the gateway sent {self._protocol_errors} unreadable message(s), "
                f"the last: {self._last_protocol_error}"
            )
        return RequestTimeout(message, function=function, timeout=timeout)

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

        Returns the result once the session is logged in. Raises
        :class:`AuthenticationRejected`, :class:`AccountLocked` or
        :class:`TwoFactorRequired` (each carrying the result) otherwise.
        """
        result = await self.authenticate(credentials, timeout=timeout)
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
        second = await self.authenticate_2fa(code, timeout=timeout)
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
        """Send LogOut: the gateway forgets the login and its session token."""
        await self.call("LogOut", timeout=timeout)
        self._result = None
        self._session_token = None

    def _record(self, result: AuthenticateResult) -> AuthenticateResult:
        """Remember the outcome of an authentication step on this connection."""
        if result.status is AuthStatus.AUTHENTICATED:
            self._result = result
            self._session_token = result.session_token or self._session_token
        elif result.status is not AuthStatus.TWO_FACTOR_REQUIRED or self._result is None:
            self._result = result
        return result

    # -- events ---------------------------------------------------------------

    def events(self, *functions: str, buffer: int | None = None) -> EventStream:
        """A stream of the ``m=3`` events named ``functions`` (every event if none).

        Use it as ``async with session.events("LogoutEvent") as events:
        async for event in events: ...``. Each stream holds at most ``buffer``
        unread events (the session's ``event_buffer`` by default); a consumer
        that falls further behind gets :class:`EventOverflow` after the events
        it did receive, so a gap is never silent and the reader never blocks.
        """
        size = self._event_buffer if buffer is None else buffer
        if size < 1:
            raise ValueError("buffer must be at least 1")
        return EventStream(self, frozenset(functions), size)

    # -- the reader -----------------------------------------------------------

    async def _read_loop(self) -> None:
        """Read every message until the connection ends; never raises."""
        error: ConnectionClosed
        try:
            while True:
                message = await self._ws.receive()
                self._dispatch(message)
        except ConnectionClosed as exc:
            error = exc
        except Exception as exc:  # pragma: no cover - a bug here must not hang callers
            logger.exception("alphapoint session reader failed")
            error = ConnectionClosed(f"the session's reader failed: {type(exc).__name__}")
            await self._ws.abort()
        finally:
            self._reader_done.set()
        self._shutdown(error)

    def _dispatch(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self._protocol_error(
                FrameError(f"the gateway sent a binary message ({len(message)} bytes)")
            )
            return
        try:
            frame = decode_frame(message)
        except FrameError as exc:
            self._protocol_error(exc)
            return
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("< %s", _describe(frame))
        kind = frame.type
        if kind is MessageType.REPLY or kind is MessageType.ERROR:
            pending = self._pending.pop(frame.seq, None)
            if pending is None:
                logger.debug("reply to %s i=%d matches no pending call", frame.function, frame.seq)
            else:
                pending.frame = frame
                pending.event.set()
        elif kind is MessageType.EVENT:
            event = Event(frame.function, frame.payload, frame.seq)
            for subscriber in tuple(self._subscribers):
                subscriber._offer(event)
        else:
            self._protocol_error(
                FrameError(f"the gateway sent a client message type m={int(kind)}")
            )

    def _protocol_error(self, error: ProtocolError) -> None:
        """A message that is not APEX: count it and log it; the connection goes on.

        The gateway answers nothing to text it cannot read, so neither do we;
        a call whose reply was lost this way times out, and its
        :class:`RequestTimeout` says what was received instead.
        """
        self._protocol_errors += 1
        self._last_protocol_error = error
        logger.warning("ignoring a message from %s: %s", self._url, error)

    def _shutdown(self, error: ConnectionClosed) -> None:
        """The connection has ended: fail every pending call and end every event stream."""
        if self._closed is None:
            self._closed = error
        for pending in self._pending.values():
            if pending.frame is None and pending.error is None:
                pending.error = self._closed_error()
                pending.event.set()
        self._pending.clear()
        for subscriber in tuple(self._subscribers):
            subscriber._end(
                None if isinstance(self._closed, SessionClosed) else self._closed_error()
            )

    def _closed_error(self) -> ConnectionClosed:
        """A fresh copy of the error that closed the session (one per raise)."""
        closed = self._closed
        assert closed is not None
        copy = type(closed)(str(closed), code=closed.code, reason=closed.reason)
        copy.__cause__ = closed.__cause__
        return copy

    # -- closing --------------------------------------------------------------

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the session: fail pending calls, close the WebSocket, wait for the reader.

        Idempotent; bounded by the session's close timeout, even when cancelled.
        """
        with anyio.CancelScope(shield=True):
            self._shutdown(SessionClosed("the session was closed"))
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send_close(code, reason)
            with anyio.move_on_after(self._close_timeout):
                await self._reader_done.wait()
            await self._ws.abort()


def _check_reply(frame: Frame) -> Any:
    """The payload of a reply, or the :class:`RequestError` it stands for."""
    payload = frame.payload
    if frame.type is MessageType.ERROR:
        if isinstance(payload, dict):
            code = _error_code(payload)
            message = _field(payload, "errormsg")
            raise RequestError.for_code(
                frame.function,
                message if isinstance(message, str) else "error frame",
                code=code,
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


def _describe(frame: Frame) -> str:
    """A frame for a DEBUG log line, with secrets redacted."""
    return f"m={int(frame.type)} i={frame.seq} n={frame.function} o={redact(frame.payload)!r}"


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


class EventStream:
    """Events from one session, for one consumer; see :meth:`Session.events`."""

    def __init__(self, session: Session, functions: frozenset[str], buffer: int) -> None:
        self._session = session
        self._functions = functions
        self._buffer = buffer
        self._queue: deque[Event] = deque()
        self._waiter: anyio.Event | None = None
        self._ended = False
        self._error: AlphaPointError | None = None
        self._dropped = 0
        self._entered = False

    async def __aenter__(self) -> EventStream:
        if self._session._closed is not None:
            raise self._session._closed_error()
        self._entered = True
        self._session._subscribers.append(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Unsubscribed: reading on yields what was queued, then stops (never hangs).
        self._end(None)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        if not self._entered:
            raise RuntimeError("enter the event stream with `async with` before iterating it")
        while True:
            if self._queue:
                return self._queue.popleft()
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._waiter = anyio.Event()
            await self._waiter.wait()

    @property
    def dropped(self) -> int:
        """Events lost because this consumer fell behind."""
        return self._dropped

    def _offer(self, event: Event) -> None:
        """Called by the session's reader: queue the event if this stream wants it."""
        if self._functions and event.function not in self._functions:
            return
        if len(self._queue) >= self._buffer:
            self._dropped += 1
            self._end(
                EventOverflow(
                    f"event consumer fell behind: more than {self._buffer} unread events",
                    dropped=self._dropped,
                )
            )
            return
        self._queue.append(event)
        self._wake()

    def _end(self, error: AlphaPointError | None) -> None:
        if not self._ended:
            self._ended = True
            self._error = error
            self._detach()
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def _detach(self) -> None:
        subscribers = self._session._subscribers
        if self in subscribers:
            subscribers.remove(self)


class connect:
    """Open a :class:`Session` to ``url``; close it when the block ends.

    ``timeout`` is every call's default timeout; ``open_timeout`` bounds the
    TCP, TLS and WebSocket handshakes; ``close_timeout`` bounds the closing
    handshake. ``ssl`` replaces the default (verifying) TLS context for
    ``wss://``. Plain ``ws://`` is allowed only to loopback unless
    ``allow_insecure``. ``event_buffer`` bounds each event stream.

    Exceptions from the block propagate unchanged (never wrapped in an
    ExceptionGroup); leaving the block closes the WebSocket with 1000 and
    waits for the reader task.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        open_timeout: float = 10.0,
        close_timeout: float = 5.0,
        ssl: ssl_module.SSLContext | None = None,
        allow_insecure: bool = False,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        event_buffer: int = 1024,
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._ssl = ssl
        self._allow_insecure = allow_insecure
        self._max_message_size = max_message_size
        self._event_buffer = event_buffer
        self._task_group: anyio.abc.TaskGroup | None = None
        self._session: Session | None = None

    async def __aenter__(self) -> Session:
        websocket = await open_websocket(
            self._url,
            ssl=self._ssl,
            open_timeout=self._open_timeout,
            close_timeout=self._close_timeout,
            max_message_size=self._max_message_size,
            allow_insecure=self._allow_insecure,
        )
        session = Session(
            websocket,
            url=self._url,
            timeout=self._timeout,
            close_timeout=self._close_timeout,
            event_buffer=self._event_buffer,
        )
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        task_group.start_soon(session._read_loop, name=f"alphapoint reader {self._url}")
        self._task_group = task_group
        self._session = session
        return session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._session is not None
        assert self._task_group is not None
        await self._session.aclose()
        # The reader never raises and has finished (or been cancelled by the
        # close timeout): exit the task group without handing it the block's
        # exception, so that exception propagates as it is, never grouped.
        self._task_group.cancel_scope.cancel()
        await self._task_group.__aexit__(None, None, None)

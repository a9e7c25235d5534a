"""The synchronous client: :func:`connect` for code that runs no event loop.

Choose it for operations scripts, cron jobs, notebooks and one-off checks:
code that wants ``session.call("GetUserInfo")`` to return a value, and holds
one or a few sessions. Choose the async client (:func:`alphapoint.connect`)
for bots and collectors: many sessions and streams in one thread, cancellation
and deadlines of your own, and no thread per session.

The sync client adds no behaviour of its own: a :class:`SyncSession` runs the
async :class:`~alphapoint.Session` on an event loop in a background thread
(one per client) and blocks the calling thread until each operation is done.
Timeouts, reconnects, re-logins, the LogOut on close and every error are the
async session's, raised as the same types (never wrapped in an
ExceptionGroup or a ``concurrent.futures`` error). Waiting for the next event
is the one new wait: it is bounded by the stream's ``timeout`` and raises the
builtin ``TimeoutError``, as ``anyio.fail_after`` would around the async
iterator.

The thread runs asyncio (or trio, with ``backend="trio"``) and is named after
the gateway's URL. It is a daemon thread, stopped and joined by
:meth:`SyncSession.close` (or the end of the ``with`` block) within the close
timeout; a client never closed is closed when the interpreter exits (logging
out), so a forgotten ``close()`` never keeps a script from ending. Callbacks
(``on_state_change``, ``match``, a two-factor provider) run on that thread:
they must not block, and calling the client's blocking methods from them
raises :class:`UsageError` (it would wait for itself forever).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import logging
import ssl as ssl_module
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, overload

import anyio
from anyio.from_thread import BlockingPortal

from .client import connect as connect_async
from .credentials import Credentials
from .drivers import DEFAULT_MAX_MESSAGE_SIZE, Driver
from .errors import SessionClosed, UsageError
from .events import EventStream, Subscription
from .frame import MessageType
from .login import TwoFactor
from .models import AuthenticateResult, Event, User
from .open_limit import OpenLimiter
from .policies import Backoff, Keepalive, Relogin
from .session import DEFAULT_TIMEOUT, Session
from .state import SessionState
from .urls import without_user_info

__all__ = [
    "BlockingIterator",
    "SyncEventStream",
    "SyncSession",
    "SyncSubscription",
    "connect",
]

logger = logging.getLogger("alphapoint.sync")

T = TypeVar("T")

#: The event loops a sync client can run its session on.
Backend = Literal["asyncio", "trio"]

#: Seconds the client's thread gets beyond the close timeout to end its loop.
SHUTDOWN_GRACE = 5.0


class _Default:
    """A default that stands for another setting, shown by its name in ``help()``."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return f"<{self._name}>"


_SESSION_TIMEOUT: Any = _Default("the session's timeout")
_STREAM_TIMEOUT: Any = _Default("the stream's timeout")


def _timeout(timeout: float | None) -> dict[str, float | None]:
    """The ``timeout=`` to hand the async session: none when the caller gave none."""
    return {} if timeout is _SESSION_TIMEOUT else {"timeout": timeout}


def connect(
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
    backend: Backend = "asyncio",
) -> SyncSession:
    """Open a session to ``url`` and return it once open (and logged in, with
    ``credentials``); close it with ``close()`` or a ``with`` block.

    The arguments are :func:`alphapoint.connect`'s, with the same meaning,
    and ``backend``, the event loop the client's thread runs. Opening raises
    what entering ``alphapoint.connect(...)`` raises (:class:`ConnectError`,
    an :class:`AuthenticationError`...), after the thread has ended.
    ``on_state_change`` is called on the client's thread. Each client runs
    a loop of its own, so an ``open_limiter`` (an ``anyio.CapacityLimiter``)
    cannot be shared between clients.
    """

    def open_session() -> connect_async:
        return connect_async(
            url,
            credentials=credentials,
            two_factor=two_factor,
            timeout=timeout,
            reconnect=reconnect,
            relogin=relogin,
            keepalive=keepalive,
            resume=resume,
            logout_on_close=logout_on_close,
            retryable=retryable,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            ssl=ssl,
            proxy=proxy,
            allow_insecure=allow_insecure,
            max_message_size=max_message_size,
            event_buffer=event_buffer,
            on_state_change=on_state_change,
            driver=driver,
            wait_for_gateway=wait_for_gateway,
            open_limiter=open_limiter,
        )

    return SyncSession(open_session, url=url, close_timeout=close_timeout, backend=backend)


class SyncSession:
    """An APEX session for code without an event loop; made by :func:`connect`.

    Each method blocks until the async session's operation is done and returns
    its result or raises its error. Methods may be called from many threads at
    once, never from the client's own thread (a callback). After
    :meth:`close`, calls raise :class:`SessionClosed`.
    """

    def __init__(
        self,
        open_session: Callable[[], AbstractAsyncContextManager[Session]],
        *,
        url: str,
        close_timeout: float,
        backend: Backend = "asyncio",
    ) -> None:
        self._open_session = open_session
        self._url = without_user_info(url)
        self._close_timeout = close_timeout
        self._backend = backend
        self._session: Session | None = None
        self._portal: BlockingPortal | None = None
        #: Set on the loop to close; None once closing has begun (or if opening failed).
        self._stop: anyio.Event | None = None
        #: Guards ``_stop``: no operation is handed to a loop that is stopping.
        self._lock = threading.Lock()
        self._opened = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run_loop, name=f"alphapoint.sync {self._url}", daemon=True
        )
        self._thread.start()
        self._opened.wait()
        error, self._error = self._error, None
        if error is not None:
            self._thread.join()  # it has nothing left to do but end
            raise error
        atexit.register(self.close)

    def __repr__(self) -> str:
        return f"<SyncSession {self._url} {self.state.value}>"

    def __enter__(self) -> SyncSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the client's thread --------------------------------------------------

    def _run_loop(self) -> None:
        try:
            anyio.run(self._serve, backend=self._backend)
        except BaseException as exc:  # noqa: BLE001 - raised again by the thread that waits
            self._error = exc
        finally:
            self._opened.set()

    async def _serve(self) -> None:
        """Open the session, take operations until told to stop, then close it.

        The session is closed before the portal stops taking operations: every
        operation still waiting ends the way the async session ends it
        (:class:`SessionClosed` for a call, the end for an event stream).
        """
        async with self._open_session() as session, BlockingPortal() as portal:
            stop = anyio.Event()
            self._session, self._portal, self._stop = session, portal, stop
            self._opened.set()
            await stop.wait()
            await session.aclose()

    def _run(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation`` on the client's loop; its result, or its error as it is."""
        self._check_thread()
        with self._lock:
            if self._stop is None:
                raise SessionClosed("the session was closed")
            assert self._portal is not None
            try:
                future = self._portal.start_task_soon(operation)
            except RuntimeError as exc:  # the portal stopped: its loop ended by itself
                raise SessionClosed("the session has ended") from exc
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            # The loop ended under the operation: the session is gone.
            raise SessionClosed("the session was closed") from None
        except BaseException:
            future.cancel()  # interrupted (Ctrl-C): the operation stops too
            raise

    def _check_thread(self) -> None:
        if threading.current_thread() is self._thread:
            raise UsageError(
                "a sync client's blocking methods cannot be called from its own thread"
                " (a callback such as on_state_change): it would wait for itself forever"
            )

    # -- state ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The gateway's URL, as given."""
        assert self._session is not None
        return self._session.url

    @property
    def state(self) -> SessionState:
        """Where the session is now (``CLOSED`` once closed)."""
        assert self._session is not None
        return self._session.state

    @property
    def authenticated(self) -> bool:
        """Whether the session is logged in on its current connection."""
        assert self._session is not None
        return self._session.authenticated

    @property
    def user(self) -> User | None:
        """The logged-in user, as AuthenticateUser described it."""
        assert self._session is not None
        return self._session.user

    # -- calls ----------------------------------------------------------------

    @overload
    def call(
        self,
        function: str,
        payload: Mapping[str, Any] | list[Any] | None = None,
        *,
        timeout: float | None = ...,
        model: None = None,
    ) -> Any: ...

    @overload
    def call(
        self,
        function: str,
        payload: Mapping[str, Any] | list[Any] | None = None,
        *,
        timeout: float | None = ...,
        model: type[T],
    ) -> T: ...

    def call(
        self,
        function: str,
        payload: Mapping[str, Any] | list[Any] | None = None,
        *,
        timeout: float | None = _SESSION_TIMEOUT,
        model: type[T] | None = None,
    ) -> Any:
        """Call an APEX function and return its reply payload (see :meth:`Session.call`).

        With ``model`` (an attrs class or a dataclass) the reply is decoded into
        it by the converter that reads the login reply; a reply of another
        shape raises :class:`DecodeError` naming the field.
        """
        session = self._session
        assert session is not None
        return self._run(lambda: session.call(function, payload, model=model, **_timeout(timeout)))

    def authenticate(
        self, credentials: Credentials, *, timeout: float | None = _SESSION_TIMEOUT
    ) -> AuthenticateResult:
        """Send one AuthenticateUser and return the reply, whatever it says
        (see :meth:`Session.authenticate`)."""
        session = self._session
        assert session is not None
        return self._run(lambda: session.authenticate(credentials, **_timeout(timeout)))

    def authenticate_2fa(
        self, code: str, *, timeout: float | None = _SESSION_TIMEOUT
    ) -> AuthenticateResult:
        """Send Authenticate2FA with ``code`` and return the reply."""
        session = self._session
        assert session is not None
        return self._run(lambda: session.authenticate_2fa(code, **_timeout(timeout)))

    def login(
        self,
        credentials: Credentials,
        *,
        two_factor: TwoFactor | None = None,
        timeout: float | None = _SESSION_TIMEOUT,
    ) -> AuthenticateResult:
        """Log in, completing 2FA with ``two_factor`` when asked (see :meth:`Session.login`).

        Raises :class:`AuthenticationRejected`, :class:`AccountLocked` or
        :class:`TwoFactorRequired` when the session does not end logged in.
        """
        session = self._session
        assert session is not None
        return self._run(
            lambda: session.login(credentials, two_factor=two_factor, **_timeout(timeout))
        )

    def logout(self, *, timeout: float | None = _SESSION_TIMEOUT) -> None:
        """Send LogOut; the session stays connected (see :meth:`Session.logout`)."""
        session = self._session
        assert session is not None
        self._run(lambda: session.logout(**_timeout(timeout)))

    # -- events ---------------------------------------------------------------

    def events(
        self,
        *functions: str,
        buffer: int | None = None,
        match: Callable[[Event], bool] | None = None,
        timeout: float | None = None,
    ) -> SyncEventStream:
        """A blocking iterator of the events named ``functions`` (every event if none).

        ``with session.events("LogoutEvent") as events: for event in events:
        ...``. Each wait for the next event lasts at most ``timeout`` seconds
        (``None``: until an event comes or the session closes), then raises
        ``TimeoutError``. Otherwise as :meth:`Session.events`.
        """
        assert self._session is not None
        stream = self._session.events(*functions, buffer=buffer, match=match)
        return SyncEventStream(self, stream, timeout)

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
        timeout: float | None = None,
    ) -> SyncSubscription:
        """Subscribe, and iterate over the events it starts (see :meth:`Session.subscribe`).

        ``with session.subscribe("SubscribeLevel1", {"OMSId": 1, "InstrumentId":
        1}) as level1: for event in level1: ...``; ``timeout`` bounds each wait
        for the next event, as in :meth:`events`.
        """
        assert self._session is not None
        subscription = self._session.subscribe(
            function,
            payload,
            events=events,
            unsubscribe=unsubscribe,
            buffer=buffer,
            match=match,
            message_type=message_type,
        )
        return SyncSubscription(self, subscription, timeout)

    # -- closing --------------------------------------------------------------

    def close(self) -> None:
        """Log out (unless turned off), close the connection, and end the thread.

        Bounded by the close timeout (and a few seconds for the loop to end).
        Operations blocked in other threads end with the async session's
        errors: :class:`SessionClosed` for a call, the end for an event
        iteration. Closing again does nothing more.
        """
        self._check_thread()
        with self._lock:
            stop, self._stop = self._stop, None
            if stop is not None:
                assert self._portal is not None
                with contextlib.suppress(RuntimeError):  # its loop ended by itself
                    self._portal.call(stop.set)
        self._thread.join(self._close_timeout + SHUTDOWN_GRACE)
        if self._thread.is_alive():
            logger.warning("%s did not end within the close timeout", self._thread.name)
        atexit.unregister(self.close)
        error, self._error = self._error, None
        if error is not None:
            raise error


class BlockingIterator(Generic[T]):
    """A blocking iterator over one of the session's async iterators.

    Each wait for the next item lasts at most ``timeout`` seconds, then raises
    ``TimeoutError``; iteration ends when the async iterator does, or when the
    session closes.
    """

    def __init__(
        self, client: SyncSession, anext: Callable[[], Awaitable[T]], timeout: float | None
    ) -> None:
        self._client = client
        self._anext = anext
        #: The longest wait for the next item (``None``: until one comes or it ends).
        self.timeout = timeout

    def __iter__(self) -> BlockingIterator[T]:
        return self

    def __next__(self) -> T:
        return self.next()

    def next(self, timeout: float | None = _STREAM_TIMEOUT) -> T:
        """The next item, within ``timeout`` seconds (``TimeoutError`` if none comes).

        Raises ``StopIteration`` once the iteration, or the session, has ended.
        """
        if timeout is _STREAM_TIMEOUT:
            timeout = self.timeout
        anext = self._anext
        try:
            items = self._client._run(lambda: _within(anext, timeout))
        except SessionClosed:
            raise StopIteration from None  # closed, its thread gone: the stream has ended
        if not items:
            raise StopIteration
        return items[0]


async def _within(anext: Callable[[], Awaitable[T]], timeout: float | None) -> list[T]:
    """``[await anext()]`` within ``timeout``, or ``[]`` once the iteration has ended."""
    with anyio.move_on_after(timeout):
        try:
            return [await anext()]
        except StopAsyncIteration:
            return []
    raise TimeoutError(f"nothing came within {timeout} s")


class SyncEventStream(BlockingIterator[Event]):
    """A blocking iterator of events; made by :meth:`~alphapoint.sync.SyncSession.events`.

    Use it in a ``with`` block, and iterate inside. Iteration ends when the
    session closes (or raises the error it ended with, :class:`EventOverflow`
    for a consumer that fell behind).
    """

    def __init__(self, client: SyncSession, stream: EventStream, timeout: float | None) -> None:
        super().__init__(client, stream.__anext__, timeout)
        self._stream = stream

    def __repr__(self) -> str:
        names = ",".join(sorted(self._stream.functions)) or "every event"
        return f"<{type(self).__name__} {names}>"

    def __enter__(self) -> SyncEventStream:
        stream = self._stream
        self._client._run(stream.__aenter__)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stream = self._stream
        # Once the session is closed, it has ended every stream itself.
        with contextlib.suppress(SessionClosed):
            self._client._run(lambda: stream.__aexit__(None, None, None))

    def decoded(self, model: type[T]) -> BlockingIterator[T]:
        """The events' payloads as ``model`` rows: ``for entry in book.decoded(Level2Entry)``
        (see :meth:`EventStream.decoded`); ``timeout`` as the stream's."""
        return BlockingIterator(self._client, self._stream.decoded(model).__anext__, self.timeout)

    @property
    def dropped(self) -> int:
        """Events lost because this consumer fell behind."""
        return self._stream.dropped


class SyncSubscription(SyncEventStream):
    """A gateway subscription as a blocking iterator.

    Made by :meth:`~alphapoint.sync.SyncSession.subscribe`.
    """

    def __init__(self, client: SyncSession, stream: Subscription, timeout: float | None) -> None:
        super().__init__(client, stream, timeout)
        self._subscription = stream

    def __enter__(self) -> SyncSubscription:
        super().__enter__()
        return self

    @property
    def snapshot(self) -> Any:
        """The subscribe call's reply, refreshed on every resubscription."""
        return self._subscription.snapshot

    def snapshot_rows(self, model: type[T]) -> list[T]:
        """The ``snapshot`` as ``model`` rows (a book's entries, the last trades...)."""
        return self._subscription.snapshot_rows(model)

    @property
    def resubscribed(self) -> int:
        """How many times the subscription was sent again (reconnects, re-logins)."""
        return self._subscription.resubscribed

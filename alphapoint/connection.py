"""One WebSocket to the gateway: sequence numbers, pending calls, the reader.

A :class:`Connection` lives exactly as long as its socket. Its reader resolves
the pending call with the same ``i`` only for a reply (``m`` 1 or 5), never
for an event (whose ``i`` is the gateway's own counter), and hands events to
the session. When the socket ends, every pending call fails at once with
:class:`ConnectionClosed`. The session (:mod:`alphapoint.session`) runs each
connection's :meth:`Connection.run` in a task of its own and replaces the
connection after a drop.

Timeouts are deadlines kept with the pending calls, not a cancel scope per
call: the driver's alarm (:meth:`BaseWebSocket.set_alarm`) rings at the
earliest deadline, and the calls whose time is up fail with
:class:`RequestTimeout`; the same alarm sends the keepalive Ping. A call then
costs a comparison, where a cancel scope with a timer cost more than the rest
of the call's bookkeeping together (docs/performance.md).

An idle connection's alarm rings once per keepalive interval, and is handled
where it rings (:meth:`Connection._on_alarm_now`): the Ping is written there
when the driver can write without waiting, and its reply moves the alarm to
the next interval, so no task wakes for it (docs/performance.md, "Idle cost").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import attrs

from .apex import check_reply_fields
from .decoding import slot_setters
from .drivers.asyncio_protocol import CallbackWebSocket
from .drivers.base import BaseWebSocket
from .drivers.loop import EventLike
from .errors import (
    AlphaPointError,
    ConnectionClosed,
    FrameError,
    PayloadError,
    ProtocolError,
    RequestTimeout,
)
from .frame import Fields, Frame, MessageType, decode_fields, encode
from .models import Event
from .policies import Keepalive
from .redaction import SecretSet, redact

__all__ = ["UNREADABLE_LOG_INTERVAL", "Connection"]

logger = logging.getLogger("alphapoint.connection")

#: Messages that cannot be read are logged at WARNING at most once in this
#: many seconds per connection; the others are counted, and the count is
#: logged when the interval ends (or the connection does).
UNREADABLE_LOG_INTERVAL = 1.0


class _Book:
    """What a call waiting for its reply keeps, and until when (anyio's clock).

    Set by :meth:`Connection.exchange` (inline), not by an ``__init__``: on
    the future a call waits on under asyncio, one of Python would cost as much
    as the second object it saves. A keepalive Ping's book is its
    :class:`_Pinger`.
    """

    __slots__ = ()

    #: The call's function and timeout (for its error), and its deadline.
    function: str
    timeout: float | None
    deadline: float
    #: Called with the reply frame where it is read, before any later frame.
    on_reply: Callable[[Frame], None] | None
    #: Whether the request was written, and logged at DEBUG (its reply is
    #: logged if it was: one look at the logger's level per call, not two).
    sent: bool
    logged: bool
    #: The reply's fields (type, seq, function, payload), once it came, or the error.
    reply: Fields | None
    error: AlphaPointError | None

    def unsent_by_deadline(self, now: float) -> bool:
        """Whether the call's time ran out before its request was written."""
        return not self.sent and now >= self.deadline


#: Keepalive Pings fall due on a grid of this many seconds (at most a tenth of
#: the interval), up to one step early: the Pings of many idle sessions due
#: in the same tenth of a second share one wake-up of the event loop, and
#: their replies are read together (docs/performance.md, "Idle sessions").
KEEPALIVE_GRID = 0.1


class _Pending(_Book):
    """A call waiting for its reply on an event of the loop's (trio's; see
    :class:`_FuturePending` for asyncio)."""

    __slots__ = (
        "deadline",
        "error",
        "event",
        "function",
        "logged",
        "on_reply",
        "reply",
        "sent",
        "timeout",
    )

    def __init__(self, event: EventLike) -> None:
        self.event = event

    def wake(self) -> None:
        """The reply (or an error) is in: the caller goes on."""
        self.event.set()

    def wait(self) -> Awaitable[object]:
        return self.event.wait()


class _FuturePending(_Book, asyncio.Future[None]):
    """A call waiting for its reply under asyncio: the call's future itself, so
    that a call makes one object where it made two (the bookkeeping and an event)."""

    __slots__ = ("deadline", "error", "function", "logged", "on_reply", "reply", "sent", "timeout")

    def wake(self) -> None:
        if not self.done():  # cancelled: the caller is gone
            self.set_result(None)

    def wait(self) -> _FuturePending:
        return self


#: A call waiting for its reply, under either loop.
_Call = _Pending | _FuturePending


def _ping_format() -> str:
    """A keepalive Ping's text with ``%d`` for its ``i``: :func:`encode`'s own
    text (one writer of the envelope), made once, so that a Ping costs the
    format of one number, not an envelope's encoding (docs/performance.md,
    "Idle and the keepalive Ping, eighth session")."""
    mark = str(2**62 + 12345)  # no other part of the text can hold it
    text = encode(MessageType.REQUEST, int(mark), "Ping", {})
    if text.count(mark) != 1 or "%" in text:
        raise RuntimeError("a Ping's text cannot be formatted")  # pragma: no cover
    return text.replace(mark, "%d")


_PING = _ping_format()


class _Pinger(_Book):
    """The keepalive in :meth:`Connection.run`, and the book of its Ping in flight.

    A Ping is sent only when none waits (its reply came, or it went
    unanswered and the connection is dropped), so the pinger itself stands in
    the connection's pending calls for its Ping, and the reply is matched,
    checked and logged as any call's: a Ping makes no object of its own (no
    future or event, no frame for its reply) and keeps nothing of the reply.
    """

    __slots__ = (
        "_conn",
        "_grid",
        "_policy",
        "_ws",
        "deadline",
        "error",
        "logged",
        "reply",
        "sent",
        "timeout",
        "waiting",
    )

    #: The book's fields that are the same for every Ping (see _Book).
    function = "Ping"
    on_reply = None

    def __init__(self, conn: Connection, policy: Keepalive) -> None:
        self._conn = conn
        self._ws = conn._ws
        self._policy = policy
        self._grid = min(KEEPALIVE_GRID, policy.interval / 10)
        self.timeout = policy.timeout
        #: Whether a Ping is in flight and not answered (by ``deadline``).
        self.waiting = False
        self.deadline = math.inf
        self.sent = self.logged = False
        self.reply: Fields | None = None
        self.error: AlphaPointError | None = None
        conn._ws.calls_in_flight = self.calls_in_flight

    def calls_in_flight(self) -> bool:
        """Whether the connection waits for a reply other than the keepalive Ping's
        (the driver's reader then reads itself: see StreamWebSocket._park)."""
        waiting = len(self._conn._pending)
        if self.waiting and self.error is None:
            waiting -= 1  # the Ping in flight
        return waiting > 0

    def wake_at(self) -> float:
        """When :meth:`check` has something to do: the Ping in flight is out of
        time, or (none in flight) a Ping is due, ``interval`` after the last bytes
        came, rounded down to the grid."""
        if self.waiting:
            return self.deadline
        grid = self._grid
        # (The driver's attribute, without the connection's property.)
        return math.floor((self._ws.last_received + self._policy.interval) / grid) * grid

    async def check(self, now: float) -> bool:
        """Ping if idle; false (and the connection dropped) if a Ping went unanswered."""
        if self.waiting:
            if now >= self.deadline:
                await self._conn._keepalive_failed(self)
                return False
            return True
        if now >= self.wake_at():
            text = _PING % self._start(now)
            # Not written by the deadline, or the connection ended: both are
            # found by the alarm (at the deadline, or by the reader).
            with contextlib.suppress(TimeoutError, ConnectionClosed):
                await self._ws.send_text(text, deadline=self.deadline)
                self.sent = True
        return True

    def check_now(self, now: float) -> bool:
        """:meth:`check` where the alarm rang, if it needs no wait: false if it does
        (a Ping went unanswered, or the driver cannot write one without waiting)."""
        if self.waiting:
            return now < self.deadline
        if now >= self.wake_at():
            if not self._ws.send_text_now(_PING % self._conn._next_seq):
                return False
            self._start(now)
            self.sent = True
        return True

    def _start(self, now: float) -> int:
        """A new Ping: its sequence number, and its entry among the pending calls."""
        conn = self._conn
        seq = conn._next_seq
        conn._next_seq = seq + 2
        self.waiting = True
        self.deadline = deadline = now + self._policy.timeout
        self.sent = False
        self.logged = logger.isEnabledFor(logging.DEBUG)  # its reply is logged then
        self.reply = self.error = None
        conn._pending[seq] = self
        self._ws.set_alarm(deadline)
        return seq

    def wake(self) -> None:
        """The reader matched the Ping's reply (``reply``), or refused it (``error``:
        the alarm drops the connection at the deadline). Answered, the next look
        is an interval after the reply, not at the Ping's deadline."""
        if self.reply is not None:
            self.reply = None  # nothing of it is kept until the next Ping
            self.waiting = False
            self._ws.reset_alarm(self._conn._next_alarm())

    def wait(self) -> Awaitable[object]:
        raise RuntimeError("nobody waits for a keepalive Ping's reply")


class Connection:
    """The APEX protocol over one open WebSocket.

    ``request()`` may be called from any number of tasks; ``run()`` must run
    in exactly one task for replies to arrive and deadlines to be kept.
    """

    def __init__(
        self,
        websocket: BaseWebSocket,
        *,
        url: str,
        on_event: Callable[[Connection, Event], None] | None = None,
        on_events: OnEvents | None = None,
        on_closed: Callable[[Connection], None] | None = None,
        close_timeout: float = 5.0,
        number: int = 1,
        secrets: SecretSet | None = None,
    ) -> None:
        self._ws = websocket
        #: ``anyio.current_time()``, read the cheapest way this connection's
        #: driver knows: the driver's own function, not a method around it
        #: (every call reads it).
        self.clock: Callable[[], float] = websocket.clock
        #: Secret values this client sent: scrubbed from the gateway's words
        #: (close reasons, malformed frames) in errors and log records.
        self._secrets = secrets
        if secrets is not None:
            websocket.secrets = secrets
        self._url = url
        if (on_event is None) == (on_events is None):
            raise TypeError("give Connection one of on_event (each event) or on_events (a batch)")
        #: What the events are handed to, a backlog at a time (see _on_wakeup).
        self._on_event: OnEvents = on_events if on_events is not None else _each(on_event)
        self._on_closed = on_closed
        self._close_timeout = close_timeout
        #: Which connection of its session this is (1, 2, ... after reconnects).
        self.number = number
        self._pending: dict[int, _Call | _Pinger] = {}
        #: Whether a call waits on a future of its own (asyncio's, or uvloop's
        #: loop): see _FuturePending.
        factory: object = websocket.new_event
        self._futures = isinstance(factory, type) and issubclass(factory, asyncio.Future)
        self._next_seq = 2
        self._error: ConnectionClosed | None = None
        #: Whether run() has ended, and what aclose() waits on for it (made
        #: only when it has to wait: an open connection holds none).
        self._reader_finished = False
        self._reader_done: EventLike | None = None
        #: Whether aclose() can do without cancel scopes: under asyncio, on a
        #: driver whose close frame and abort never wait (see aclose()).
        self._native_close = self._futures and websocket.on_callbacks
        #: The keepalive, while run() runs with one.
        self._pinger: _Pinger | None = None
        #: Events left by the read for the reader task (a read's worth at most).
        self._backlog: deque[Event] = deque()
        #: Messages that could not be read as APEX frames, and the last one's
        #: error: counts, not the messages (a flood of them must not pile up).
        self.protocol_errors = 0
        self.last_protocol_error: ProtocolError | None = None
        #: Unreadable messages not logged yet (see UNREADABLE_LOG_INTERVAL),
        #: and when the next may be.
        self._unlogged = 0
        self._log_unreadable_at = -math.inf

    @property
    def is_open(self) -> bool:
        return self._error is None

    @property
    def last_received(self) -> float:
        """:meth:`clock`'s time when bytes last arrived (for keepalive)."""
        return self._ws.last_received

    @property
    def error(self) -> ConnectionClosed | None:
        """Why the connection ended, once it has."""
        return self._error

    # -- requests -------------------------------------------------------------

    async def request(
        self,
        message_type: MessageType,
        function: str,
        payload: Mapping[str, Any] | list[Any] | None,
        *,
        deadline: float = math.inf,
        timeout: float | None = None,
        on_reply: Callable[[Frame], None] | None = None,
    ) -> Frame:
        """Send one frame and wait for the reply frame with its ``i``; see :meth:`exchange`."""
        return Frame(
            *await self.exchange(
                message_type,
                function,
                payload,
                deadline=deadline,
                timeout=timeout,
                on_reply=on_reply,
            )
        )

    async def exchange(
        self,
        message_type: MessageType,
        function: str,
        payload: Mapping[str, Any] | list[Any] | None,
        *,
        deadline: float = math.inf,
        timeout: float | None = None,
        on_reply: Callable[[Frame], None] | None = None,
    ) -> Fields:
        """Send one frame and wait for the reply with its ``i``: the reply's fields
        (:func:`~alphapoint.frame.decode_fields`), which a call's path reads
        without making a :class:`Frame`.

        Raises :class:`RequestTimeout` if no reply has come by ``deadline``
        (on :meth:`clock`; ``timeout`` is what its message names). Cancelling
        it forgets the call (a late reply is then dropped). ``on_reply`` is
        called with the reply where the reader reads it, so that what it does
        takes effect before any frame that came after the reply (a
        subscription learning which instrument it is, before its events).
        """
        if self._error is not None:
            raise self.closed_error()
        # _register's work, inline: this is every call's path.
        ws = self._ws
        seq = self._next_seq
        self._next_seq = seq + 2
        pending: _Call = _FuturePending() if self._futures else _Pending(ws.new_event())
        # The book's fields, set here: this is every call's path.
        pending.function = function
        pending.timeout = timeout
        pending.deadline = deadline
        pending.on_reply = on_reply
        pending.sent = False
        pending.logged = False
        pending.reply = None
        pending.error = None
        calls = self._pending
        calls[seq] = pending
        if deadline < ws._alarm_at:  # set_alarm()'s test, without the call for most calls
            ws.set_alarm(deadline)
        if payload is None:
            payload = {}
        text = encode(message_type, seq, function, payload)  # no Frame unless it is logged
        if logger.isEnabledFor(logging.DEBUG):
            pending.logged = True
            logger.debug(
                "> %s", describe(Frame(message_type, seq, function, payload), self._secrets)
            )
        try:
            # Written at once where the driver can (no coroutine for the send),
            # unless the driver would rather gather the messages of calls in
            # flight into one write.
            if (ws.coalesces and len(calls) > 1) or not ws.send_text_now(text):
                await ws.send_text(text, deadline=deadline, coalesce=len(calls) > 1)
            pending.sent = True
            if self._futures:
                await pending  # type: ignore[misc]  # the future itself (no call of its wait())
            else:
                await pending.wait()
        except ConnectionClosed:
            # The socket failed under the send: the reader says why, unless the
            # call was out of time first (the anyio driver drops a connection
            # whose write outlives a deadline).
            if pending.error is None:
                if not pending.unsent_by_deadline(self.clock()):
                    raise
                pending.error = self.timeout_error(pending)
        except TimeoutError:
            # The send could not start before the deadline (the peer stopped reading).
            if pending.error is None:
                pending.error = self.timeout_error(pending)
        finally:
            calls.pop(seq, None)
        if pending.error is not None:
            raise pending.error
        assert pending.reply is not None
        return pending.reply

    def caller(
        self, *, message_type: MessageType = MessageType.REQUEST, timeout: float | None
    ) -> Callable[[str, Any], Awaitable[Any]]:
        """A checked call on this connection: (function, payload) -> the reply's payload,
        or the :class:`RequestError` it stands for (:func:`alphapoint.apex.check_reply`)."""

        async def call(function: str, payload: Any) -> Any:
            deadline = math.inf if timeout is None else self.clock() + timeout
            kind, _, name, reply = await self.exchange(
                message_type, function, payload, deadline=deadline, timeout=timeout
            )
            return check_reply_fields(kind, name, reply, self._secrets)

        return call

    # -- time -----------------------------------------------------------------

    async def _on_alarm(self, now: float) -> float:
        """The alarm rang: fail the calls out of time, and ping (or drop) an idle connection.

        Returns when to ring next: the earliest deadline, or the keepalive's next look.
        """
        if self._unlogged and now >= self._log_unreadable_at:
            self._log_unlogged(now)
        pinger = self._pinger
        if pinger is not None and self._error is None and not await pinger.check(now):
            return math.inf  # the gateway did not answer: the connection is dropped
        return self._next_alarm(now)

    def _on_alarm_now(self, now: float) -> float | None:
        """:meth:`_on_alarm` where the alarm rang, without waiting; ``None`` if it must wait."""
        if self._unlogged and now >= self._log_unreadable_at:
            self._log_unlogged(now)
        pinger = self._pinger
        if pinger is not None and self._error is None and not pinger.check_now(now):
            return None
        return self._next_alarm(now)

    def _next_alarm(self, now: float = -math.inf) -> float:
        """When the alarm must ring next: the earliest deadline of the calls
        waiting, the keepalive's next look, the next log of unreadable messages.
        With ``now`` (a ring), the calls out of time by then fail first.

        A loop and comparisons, not ``min`` over a generator: most of the time
        one call waits or none (an idle connection's keepalive Ping), and this
        runs at every ring and every Ping's reply.
        """
        wake = math.inf
        for pending in self._pending.values():
            if pending.deadline < wake:
                wake = pending.deadline
        if wake <= now:
            self._expire(now)
            return self._next_alarm()
        pinger = self._pinger
        if pinger is not None:
            look = pinger.wake_at()
            if look < wake:
                wake = look
        if self._unlogged and self._log_unreadable_at < wake:
            wake = self._log_unreadable_at
        return wake

    async def _keepalive_failed(self, ping: _Pinger) -> None:
        logger.warning("no reply to a keepalive Ping from %s within %s s", self._url, ping.timeout)
        await self.abort(
            ConnectionClosed(f"the gateway did not answer a keepalive Ping within {ping.timeout} s")
        )

    def _expire(self, now: float) -> None:
        expired = [seq for seq, p in self._pending.items() if p.deadline <= now]
        for seq in expired:
            pending = self._pending.pop(seq)
            pending.error = self.timeout_error(pending)
            pending.wake()

    def timeout_error(self, pending: _Book) -> RequestTimeout:
        """The error for a call out of time, saying what the gateway sent instead."""
        function, timeout = pending.function, pending.timeout
        if pending.sent:
            message = f"no reply to {function} within {timeout} s"
        else:
            message = f"could not send {function} within {timeout} s (the gateway is not reading)"
        if self.last_protocol_error is not None:
            message += (
                f"; the gateway sent {self.protocol_errors} unreadable message(s), "
                f"the last: {self.last_protocol_error}"
            )
        return RequestTimeout(message, function=function, timeout=timeout)

    # -- the reader -----------------------------------------------------------

    async def run(self, keepalive: Keepalive | None = None) -> None:
        """Read every message and keep every deadline until the connection ends; never raises.

        With ``keepalive``, sends a ``Ping`` after ``keepalive.interval``
        seconds without traffic, and drops the connection when no reply comes
        within ``keepalive.timeout`` (a half-open connection is found within
        interval + timeout).
        """
        try:
            if keepalive is not None:
                self._pinger = _Pinger(self, keepalive)
                self._ws.set_alarm(self._pinger.wake_at())
            self._ws.on_alarm_now = self._on_alarm_now
            await self._ws.run(self._on_message, self._on_wakeup, self._on_alarm)
        except ConnectionClosed as exc:
            self.fail(exc)
        except Exception as exc:  # a bug here must fail the calls, not hang them
            logger.exception("alphapoint connection reader failed")
            self.fail(ConnectionClosed(f"the connection's reader failed: {type(exc).__name__}"))
            with anyio.CancelScope(shield=True):
                await self._ws.abort()
        finally:
            if self._unlogged:
                self._log_unlogged(self.clock())
            # Also when cancelled: the owner is shutting down; no call may hang.
            if self._error is None:
                self.fail(ConnectionClosed("the connection was closed"))
            self._reader_finished = True
            if self._reader_done is not None:
                self._reader_done.set()
            # Nothing will call back any more: let go of the owner, so that a
            # closed session and its connection are freed at once, not by the
            # cycle collector.
            self._on_event, self._on_closed = _no_events, None
            self._pinger = None
            self._ws.on_alarm_now = None
            self._ws.calls_in_flight = None

    def _on_message(self, message: str | bytes) -> bool:
        """Resolve a reply's call right where it was read; leave events for the task.

        Under asyncio this runs in the socket's read callback, so the caller
        wakes up without a hop through the reader task. Events (which reach
        user code and may start a re-login) go to the backlog, for
        :meth:`_on_wakeup`. A message that cannot be read is counted and
        logged here, and nothing of it is kept.
        """
        if isinstance(message, bytes):
            self._unreadable(
                FrameError(f"the gateway sent a binary message ({len(message)} bytes)")
            )
            return False
        try:
            fields = decode_fields(message)
        except FrameError as exc:
            self._unreadable(exc)
            return False
        kind, seq, function, payload = fields
        if kind is _EVENT:
            # The event as its consumers get it, made once (no frame first),
            # through its slots as its __init__ would (see _EVENT_SLOTS).
            event = _new(Event)
            _set_function(event, function)
            _set_payload(event, payload)
            _set_seq(event, seq)
            self._backlog.append(event)
            return True
        if kind is _REPLY or kind is _ERROR:
            # No Frame on a call's path: the caller takes the fields.
            pending = self._pending.pop(seq, None)
            if pending is None:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("< %s", describe(Frame(*fields), self._secrets))
                    logger.debug(
                        "reply to %s i=%d matches no pending call", self._shown(function), seq
                    )
            else:
                if pending.logged:  # as its request was (DEBUG was on when it was sent)
                    logger.debug("< %s", describe(Frame(*fields), self._secrets))
                pending.reply = fields
                if pending.on_reply is not None:
                    pending.on_reply(Frame(*fields))
                pending.wake()
            return False
        self._unreadable(FrameError(f"the gateway sent a client message type m={int(kind)}"))
        return False

    def _on_wakeup(self) -> None:
        """Hand the events the reads left in the backlog to the owner (in the reader task).

        In one call for all of them (``on_events``): a burst's events reach
        their streams without a call per event on the way (docs/performance.md,
        "The events' hand-over, seventh session").
        """
        backlog = self._backlog
        if not backlog:
            return
        if logger.isEnabledFor(logging.DEBUG):  # asked once per wake-up, not per event
            # Each logged as it is handed over, one at a time (the log's order).
            one: deque[Event] = deque()
            while backlog:
                event = backlog.popleft()
                frame = Frame(MessageType.EVENT, event.seq, event.function, event.payload)
                logger.debug("< %s", describe(frame, self._secrets))
                one.append(event)
                self._on_event(self, one)
            return
        self._on_event(self, backlog)

    def _unreadable(self, error: ProtocolError) -> None:
        """A message that is not APEX: count it, log it (rate-limited); the connection goes on.

        The gateway answers nothing to text it cannot read, so neither do we;
        a call whose reply was lost this way times out, and its timeout error
        says what was received instead. A reply whose envelope was read but
        whose payload is refused (:class:`PayloadError`) fails its call at once.
        """
        error.__traceback__ = None  # its frames hold the message: keep none of it
        if self._secrets:
            error.args = tuple(
                self._secrets.scrub(a) if isinstance(a, str) else a for a in error.args
            )
        if isinstance(error, PayloadError) and error.message_type in _REPLY_TYPES:
            pending = self._pending.pop(error.seq, None)
            if pending is not None:
                # A copy of its own: the caller's traceback must not end up in
                # last_protocol_error (a reference cycle through the caller's frames).
                pending.error = PayloadError(
                    str(error),
                    path=error.path,
                    function=error.function,
                    seq=error.seq,
                    message_type=error.message_type,
                )
                pending.wake()
        self.protocol_errors += 1
        self.last_protocol_error = error
        now = self.clock()
        if now >= self._log_unreadable_at:
            self._log_unreadable_at = now + UNREADABLE_LOG_INTERVAL
            unlogged, self._unlogged = self._unlogged, 0
            if unlogged:
                logger.warning(
                    "ignoring a message from %s: %s (and %d earlier one(s) not logged)",
                    self._url,
                    error,
                    unlogged,
                )
            else:
                logger.warning("ignoring a message from %s: %s", self._url, error)
        else:
            self._unlogged += 1
            self._ws.set_alarm(self._log_unreadable_at)

    def _log_unlogged(self, now: float) -> None:
        """Log how many unreadable messages went unlogged since the last record."""
        unlogged, self._unlogged = self._unlogged, 0
        self._log_unreadable_at = now + UNREADABLE_LOG_INTERVAL
        logger.warning(
            "ignored %d more unreadable message(s) from %s without logging each; the last: %s",
            unlogged,
            self._url,
            self.last_protocol_error,
        )

    def _shown(self, text: str) -> str:
        """Text from the gateway for a log record: scrubbed, and cut if it is long."""
        if self._secrets:
            text = self._secrets.scrub(text)
        return text if len(text) <= 100 else f"<{len(text)} characters>"

    # -- ending ---------------------------------------------------------------

    def fail(self, error: ConnectionClosed) -> None:
        """Mark the connection ended: every pending call fails now with ``error``."""
        if self._error is not None:
            return
        self._error = error
        now = self.clock()
        for pending in self._pending.values():
            if pending.reply is None and pending.error is None:
                if pending.unsent_by_deadline(now):  # that is what ended it
                    pending.error = self.timeout_error(pending)
                else:
                    pending.error = self.closed_error()
                pending.wake()
        self._pending.clear()
        if self._on_closed is not None:
            self._on_closed(self)

    def closed_error(self) -> ConnectionClosed:
        """A fresh copy of the error that ended the connection (one per raise)."""
        assert self._error is not None
        return self._error.copy()

    async def abort(self, error: ConnectionClosed) -> None:
        """Drop the socket now (a dead peer): pending calls fail with ``error``."""
        self.fail(error)
        await self._ws.abort()

    async def aclose(
        self,
        error: ConnectionClosed,
        *,
        code: int = 1000,
        reason: str = "",
        deadline: float | None = None,
    ) -> None:
        """Close cleanly: fail pending calls with ``error``, close the WebSocket, await the reader.

        Bounded by ``deadline`` (the close timeout from now, by default), and
        runs to the end even when cancelled.
        """
        if self._native_close:
            # The asyncio and picows drivers write the close frame and abort
            # without waiting, so no cancellation can cut in there: only the
            # reader's end is waited for, without two cancel scopes (each
            # about 20 function calls under asyncio) unless cancelled.
            self.fail(error)
            if deadline is None:
                deadline = self.clock() + self._close_timeout
            try:
                try:  # noqa: SIM105 - contextlib.suppress: three calls of Python more a close
                    await self._ws.send_close(code, reason)
                except ConnectionClosed:
                    pass
                if not self._reader_finished:
                    await self._reader_ended(deadline)
            finally:
                await self._ws.abort()
            return
        with anyio.CancelScope(shield=True):
            self.fail(error)
            if deadline is None:
                deadline = self.clock() + self._close_timeout
            # One bound for all of it, whatever the gateway does: sending the
            # close frame may wait for the send lock or for room to write.
            with anyio.CancelScope(deadline=deadline):
                with contextlib.suppress(ConnectionClosed):
                    await self._ws.send_close(code, reason)
                # The reader drains the socket until the peer's close frame and EOF.
                if not self._reader_finished:
                    if self._reader_done is None:
                        self._reader_done = anyio.Event()
                    await self._reader_done.wait()
            await self._ws.abort()

    async def _reader_ended(self, deadline: float) -> None:
        """Wait until :meth:`run` has ended, by ``deadline``, on a future of the
        loop's; cancelled meanwhile, go on waiting (shielded), then re-raise."""
        done = self._reader_done = self._ws.new_event()
        # (_native_close: it is one; no isinstance of an ABC, two calls of Python.)
        websocket: CallbackWebSocket = self._ws  # type: ignore[assignment]
        # The connection's alarm ends the wait at the deadline: no timer of
        # the loop's own, unless no alarm clock rings the connection now.
        timer = None
        if not websocket.close_by(deadline, done.set):
            # The connection's clock is the loop's.
            timer = asyncio.get_running_loop().call_at(deadline, done.set)
        try:
            # (_native_close: the event is a future of the loop's; awaited
            # itself, without a call of its wait().)
            await done  # type: ignore[misc]
            return
        except asyncio.CancelledError:
            if self._reader_finished:
                raise
            # Shielded from here on: a cancel scope's cancellation is not
            # delivered again and again while it waits.
            with anyio.CancelScope(shield=True), anyio.CancelScope(deadline=deadline):
                done = self._reader_done = self._ws.new_event()
                await done.wait()
            raise
        finally:
            if timer is not None:
                timer.cancel()


#: What a connection hands its events to: every event of the deque, taken
#: from its left in order (the connection's backlog, which it refills).
OnEvents = Callable[["Connection", "deque[Event]"], None]


def _each(on_event: Callable[[Connection, Event], None] | None) -> OnEvents:
    """``on_events`` for an owner that takes the events one at a time."""
    assert on_event is not None

    def on_events(conn: Connection, events: deque[Event]) -> None:
        while events:
            on_event(conn, events.popleft())

    return on_events


def _no_events(conn: Connection, events: deque[Event]) -> None:
    """A closed connection's ``on_events``: it reads no more events."""


#: An event is made as attrs' __init__ makes it, without the calls around the
#: stores (``type.__call__``, ``__init__``, the bound ``object.__setattr__``):
#: ``object.__new__`` and each field's slot setter, in the order of its fields
#: (``decoding.slot_setters``, which the generated decoders use too): about 3 k
#: instructions an event against 4.7 k (docs/performance.md, "Fan-out, sixth
#: session"). Event stays the frozen attrs class users see.
_EVENT_SLOTS = slot_setters(Event)
if _EVENT_SLOTS is None or [f.name for f in attrs.fields(Event)] != ["function", "payload", "seq"]:
    raise RuntimeError("Event is not built by its slots any more")  # pragma: no cover
_set_function, _set_payload, _set_seq = _EVENT_SLOTS
_new = object.__new__

_REPLY_TYPES = (int(MessageType.REPLY), int(MessageType.ERROR))
#: Read for every message: module globals cost less than the enum's attributes.
_REPLY = MessageType.REPLY
_ERROR = MessageType.ERROR
_EVENT = MessageType.EVENT


def describe(frame: Frame, secrets: SecretSet | None = None) -> str:
    """A frame for a DEBUG log line, with secrets redacted.

    Secret fields are redacted by name (:func:`redact`); with ``secrets``,
    every secret value is also scrubbed wherever it appears (a gateway may
    echo a password under any key, or in the function name).
    """
    text = f"m={int(frame.type)} i={frame.seq} n={frame.function} o={redact(frame.payload)!r}"
    return secrets.scrub(text) if secrets else text

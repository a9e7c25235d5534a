"""A WebSocket over an anyio byte stream, driven by websockets' Sans-I/O protocol.

websockets' ``ClientProtocol``/``ServerProtocol`` parse and build frames without
doing any I/O; this module moves their bytes over an anyio TCP or TLS stream, so
the same code runs under asyncio and trio. It is used by the client session
(under trio, through proxies, or when chosen) and by the embedded gateway alike.

Rules it keeps (each one a bug in a naive driver):

* everything ``data_to_send()`` returns is written after every
  ``receive_data()``: pongs and close echoes ride on it;
* one writer at a time: the reader writes too, so writes share a lock;
* frames that arrive in the same read as the handshake response are kept;
* anyio's ``EndOfStream``/``BrokenResourceError``/``ClosedResourceError`` and
  ``OSError`` become ``receive_eof()`` here, and :class:`ConnectionClosed` for
  the caller;
* a TLS stream cannot half-close, so it is closed instead;
* waiting for the peer's half of a closing handshake is bounded;
* a write of the reader's (pongs, a close echo) that cannot finish within
  ``close_timeout`` means the gateway stopped reading: the connection is
  dropped (the reader, blocked in that write, reads nothing meanwhile, so the
  answers waiting are at most a read's worth);
* starting the closing handshake waits for the send lock, which the reader
  may hold, at most ``close_timeout``: then the connection is dropped.

Under trio, a connection the driver opened itself (plain TCP, no proxy) reads
and writes its socket directly (:meth:`StreamWebSocket._read_socket`), as
trio's own socket does, without anyio's stream and trio's socket wrappers
around it: an idle read parks on ``wait_readable`` through one coroutine of
the driver's, not three, and the keepalive Ping is written where the alarm
rings (``send_text_now``), so an idle connection needs no alarm task (see
:meth:`StreamWebSocket._keep_alarm`). Each layer was objects made at every
read and kept until the next, ten seconds or more later: old enough to reach
the garbage collector's oldest generation, whose collections walk every
object of every session (docs/performance.md, "Idle sessions").

Such a connection's reader task parks while idle (:meth:`StreamWebSocket._park`),
and the task that keeps the loop's timer reads its socket for it, through an
epoll of the alarm clock's own (alarms.py), as asyncio's read callbacks do:
trio has no I/O callbacks, and a task's read is a wake-up through its
scheduler and a new one-shot registration of the socket with its epoll, at
every read (docs/performance.md, "Idle under trio, sixth session").
"""

from __future__ import annotations

import logging
import math
import socket
import ssl as ssl_module
import sys
from typing import Any, NoReturn

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.tls import TLSStream
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import CLOSED, OPEN, Protocol
from websockets.proxy import Proxy
from websockets.uri import WebSocketURI

from ..errors import NetworkError
from ..proxy import open_proxy_stream, wrap_tls
from .alarms import AlarmClock, current_alarm_clock
from .base import (
    DEFAULT_MAX_FRAGMENTS,
    READ_SLICE,
    BaseWebSocket,
    OnAlarm,
    OnMessage,
    OnWakeup,
)
from .loop import Wakeup, lone_cancellation, new_wakeup

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio depends on there
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["READ_SIZE", "StreamWebSocket", "open_stream_websocket"]

#: Bytes asked of the stream per read.
READ_SIZE = 65536

logger = logging.getLogger("alphapoint.drivers")


class StreamWebSocket(BaseWebSocket):
    """One open WebSocket connection over an anyio byte stream.

    ``run()`` or ``receive()`` must be called by a single task (the
    session's reader, a server's handler); ``send_text()`` may be called from
    any number of tasks.
    """

    def __init__(
        self,
        protocol: Protocol,
        stream: anyio.abc.ByteStream,
        *,
        close_timeout: float = 5.0,
        frames: list[Any] | None = None,
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
        direct: bool = False,
    ) -> None:
        super().__init__(protocol, close_timeout=close_timeout, max_fragments=max_fragments)
        self._stream = stream
        #: The socket itself, read and written directly (``direct``, under trio):
        #: see the module's docstring. The stream still owns and closes it.
        self._socket: socket.socket | None = None
        if direct:
            import trio

            self._socket = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            self._trio = trio.lowlevel
            self._trio_closed = trio.ClosedResourceError
        #: Whether the socket's last read filled its buffer (more is likely waiting).
        self._socket_full = False
        #: Under trio (with epoll), the reader task of a direct connection parks
        #: while idle and the alarm clock's leader reads its socket for it
        #: (see _park): the descriptor registered with the clock (-1: none),
        #: whether the task is parked, what the leader's read left it to do
        #: (answers to write, a failure to act on, events, a bug to raise), and
        #: whether the socket was readable while the task read it itself.
        self._poll_fd = -1
        self._parked = False
        self._poll_tail = False
        self._poll_wakeup = False
        self._poll_error: Exception | None = None
        self._poll_seen = False
        self._stashed: list[bytes] | None = None
        self._reader_wake: Wakeup | None = None
        self._on_message: OnMessage | None = None
        #: Whether the reader reads itself for now (a run of calls: see _park),
        #: and whether the last message was a call's reply: then a call sent
        #: while the reader is parked, before the alarm rings, has it read again.
        self._stay = False
        self._hot = False
        #: Bytes of a frame written where the alarm rang that the socket did
        #: not take at once: written before anything else, by the alarm task.
        self._tail = b""
        # fast_acquire: taking a free lock does not yield to the event loop
        # (the write under it does), which saves a loop iteration per send.
        self._send_lock = anyio.Lock(fast_acquire=True)
        #: Messages waiting for the send lock, with their deadlines, by ticket (see _send).
        #: (Made when a message goes in, dropped when emptied: an idle
        #: connection keeps none.)
        self._outbox: dict[int, tuple[Opcode, bytes, float]] | None = None
        #: The earliest deadline of the messages being written, while a write is under way.
        self._write_deadline = math.inf
        self._next_ticket = 0
        self._stream_closed = False
        #: What the alarm task waits on (made when it first starts), whether the
        #: alarm rang with work for it (see BaseWebSocket._ring), and whether it
        #: runs: under trio only while it has work or keeps the loop's timer
        #: (see _keep_alarm), started again in run()'s task group when needed.
        self._alarm_wake: Wakeup | None = None
        self._alarm_task_due = False
        self._alarm_task_running = False
        self._alarm_group: Any = None
        self._on_alarm: OnAlarm | None = None
        #: What on_alarm raised (a bug), for run() to raise.
        self._alarm_bug: Exception | None = None
        #: Whether the protocol may hold answers (pongs, a close echo) to frames
        #: that came with the handshake response; every later answer is written
        #: right after the read that caused it.
        self._answers_queued = bool(frames)
        if frames:
            self._process(frames)

    # -- sending --------------------------------------------------------------

    async def send_text(
        self, text: str, *, deadline: float = math.inf, coalesce: bool = False
    ) -> None:
        # Concurrent sends share a write anyway (the outbox, below).
        await self._send(Opcode.TEXT, text.encode(), deadline)

    async def send_texts_together(self, texts: list[str]) -> None:
        """Send several text messages in one write, so that they arrive back to back
        (a test server's tool: the client then reads them in one read)."""
        async with self._send_lock:
            if self._protocol.state is not OPEN:
                raise self._closed_error("the connection is closed")
            for text in texts:
                self._protocol.send_text(text.encode())
            await self._flush()

    def send_text_now(self, text: str) -> bool:
        """Write one text message now, without waiting (a keepalive Ping, where
        the alarm rang), if this driver writes its socket directly and no writer is under
        way. What the socket does not take at once (its buffer is full) is
        left for the alarm task, which writes it before anything else."""
        sock = self._socket
        if (
            sock is None
            or self._send_lock.locked()
            or self._outbox
            or self._tail
            or self._protocol.state is not OPEN
            or self._stream_closed
        ):
            return False
        if self._hot:
            self._call_sent()
        self._protocol.send_text(text.encode())
        data = b"".join(self._protocol.data_to_send())
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return True  # the socket failed: the reader sees it end, and says why
        if sent < len(data):
            self._tail = data[sent:]
            self._alarm_for_task()
        return True

    async def send_binary(self, data: bytes) -> None:
        """Send one binary message (the gateway's fault injection uses it)."""
        await self._send(Opcode.BINARY, data, math.inf)

    async def _send(self, opcode: Opcode, data: bytes, deadline: float) -> None:
        """Send one message, in one write with those of the senders waiting with it.

        The message waits in the outbox for the send lock. Whoever gets the
        lock first hands every waiting message to the protocol and writes them
        all at once, so under load one write carries many senders' messages
        (the others then find theirs sent). A sender out of time (or
        cancelled) while it waits for the lock leaves nothing behind if its
        message was not taken: that message is never sent.

        Only that wait carries a cancel scope; a sender that finds the lock
        free (the usual case) writes without one. A write under way cannot be
        taken back, as part of a frame may be on the wire: one that outlives
        the deadline of a message it carries (the gateway stopped reading)
        drops the connection, when the alarm rings at that deadline.
        """
        if self._protocol.state is not OPEN:
            raise self._closed_error("the connection is closed")
        if self._hot:
            self._call_sent()
        # A cancellation already due is raised here, before the message is
        # handed over, not inside the write (see _write).
        await anyio.lowlevel.checkpoint_if_cancelled()
        ticket = self._next_ticket
        self._next_ticket = ticket + 1
        outbox = self._outbox
        if outbox is None:
            outbox = self._outbox = {}
        outbox[ticket] = (opcode, data, deadline)
        try:
            if self._send_lock.locked() and deadline != math.inf:
                acquired = False
                with anyio.CancelScope(deadline=deadline):
                    await self._send_lock.acquire()
                    acquired = True
                if not acquired:
                    if self._outbox is not None and ticket in self._outbox:
                        raise TimeoutError  # never handed to the protocol: not sent
                    return  # being written by the sender that holds the lock
            else:
                await self._send_lock.acquire()  # a free lock is taken without yielding
            try:
                await self._write_outbox(ticket)
            finally:
                self._send_lock.release()
        finally:
            outbox = self._outbox
            if outbox is not None:
                outbox.pop(ticket, None)
                if not outbox:
                    self._outbox = None

    async def _write_outbox(self, ticket: int) -> None:
        """Write every message in the outbox. Call with the send lock held."""
        outbox = self._outbox
        if outbox is None or ticket not in outbox:
            return  # written by the sender that held the lock before us
        if self._protocol.state is not OPEN:
            raise self._closed_error("the connection is closed")
        deadline = math.inf
        for kind, message, message_deadline in outbox.values():
            if kind is Opcode.TEXT:
                self._protocol.send_text(message)
            else:
                self._protocol.send_binary(message)
            deadline = min(deadline, message_deadline)
        self._outbox = None
        self._write_deadline = deadline
        self.set_alarm(deadline)
        try:
            await self._flush()
        finally:
            self._write_deadline = math.inf

    async def send_close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake, within ``close_timeout``, or drop the connection.

        The send lock may be held for ever by a writer the gateway does not
        read from (the reader, writing a pong): closing never waits for it
        longer than ``close_timeout``.
        """
        with anyio.move_on_after(self._close_timeout):
            async with self._send_lock:
                if self._protocol.state is OPEN:
                    self._protocol.send_close(code, reason)
                    self._unpark()  # the reader waits for the answer itself, bounded
                    await self._flush()
                return
        if self._lost is None:
            self._lost = (
                f"the gateway stopped reading (the close frame could not be sent "
                f"within {self._close_timeout} s)"
            )
        await self.abort()

    async def _flush(self, *, quiet: bool = False) -> None:
        """Write what the protocol has queued, in one write. Call with the send lock held.

        A write that fails aborts the stream; it raises :class:`ConnectionClosed`
        unless ``quiet`` (the reader's flushes: its next read reports the end).
        """
        await self._write(self._protocol.data_to_send(), quiet=quiet)

    async def _flush_after_read(self) -> None:
        """Write what a read queued (a pong, a close echo), taking the lock only if needed.

        While the lock is free nothing can come between emptying the queue
        here and taking the lock (neither yields), so the common case, a read
        that queued nothing, needs no lock at all. While a sender holds the
        lock, the reader waits its turn like any writer.
        """
        stashed = self._stashed
        if stashed is not None:  # a read of the clock's leader queued them (see _poll_ready)
            self._stashed = None
            async with self._send_lock:
                await self._write_answers(stashed + self._protocol.data_to_send())
            return
        if self._send_lock.locked():
            async with self._send_lock:
                await self._write_answers(self._protocol.data_to_send())
            return
        chunks = self._protocol.data_to_send()
        if chunks:
            async with self._send_lock:
                await self._write_answers(chunks)

    async def _write_answers(self, chunks: list[bytes]) -> None:
        """Write the reader's answers (pongs, a close echo). Call with the send lock held.

        Within ``close_timeout``: a gateway that does not read them is
        dropped by the alarm, as for a request that outlives its deadline.
        """
        if not chunks:
            return
        self._write_deadline = deadline = self.clock() + self._close_timeout
        self.set_alarm(deadline)
        try:
            await self._write(chunks, quiet=True)
        finally:
            self._write_deadline = math.inf

    async def _write(self, chunks: list[bytes], *, quiet: bool) -> None:
        """Write ``chunks`` taken from the protocol. Call with the send lock held."""
        if (not chunks and not self._tail) or self._stream_closed:
            return
        try:
            data = b"".join(chunks)
            if self._tail:
                data, self._tail = self._tail + data, b""
            if data:
                if self._socket is not None:
                    await self._write_socket(data)
                else:
                    await self._stream.send(data)
            # websockets asks for a half-close with a final b"".
            if chunks and not chunks[-1] and not self._stream_closed:
                if isinstance(self._stream, TLSStream):
                    await self.abort()  # TLS cannot half-close
                else:
                    await self._stream.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, RuntimeError):
            # RuntimeError: uvloop's, for a half-close of a transport the peer
            # has closed already (a client that fails the connection and
            # hangs up at once, as picows does).
            await self.abort()
            if not quiet:
                raise self._closed_error("the connection was lost while sending") from None
        except anyio.get_cancelled_exc_class():
            # Cut off part-way (trio writes in pieces, and TLS has sealed the
            # records): what follows would not parse. Nothing more goes out.
            with anyio.CancelScope(shield=True):
                await self.abort()
            raise

    # -- receiving ------------------------------------------------------------

    async def run(self, on_message: OnMessage, on_wakeup: OnWakeup, on_alarm: OnAlarm) -> NoReturn:
        # This task reads; the alarm's work that must wait needs a task of its
        # own (see _keep_alarm), which ends with it.
        error: Exception
        self._on_alarm = on_alarm
        if self._socket is not None:
            # Under trio, in a nursery of trio's own: anyio's task group around
            # it keeps a task handle, two events and a cancel scope more, for
            # the life of the connection.
            import trio

            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    error = await self._read_all(nursery, on_message, on_wakeup)
                    nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # Both tasks catch every Exception: only a cancellation from
                # outside gets here, raised as one Cancelled (as anyio does).
                cancelled = lone_cancellation(group)
                if cancelled is None:
                    raise
                raise cancelled from None
            finally:
                self._on_alarm = None
        else:
            try:
                async with anyio.create_task_group() as task_group:
                    error = await self._read_all(task_group, on_message, on_wakeup)
                    task_group.cancel_scope.cancel()
            finally:
                self._on_alarm = None
        # Raised here, never as an ExceptionGroup: what on_alarm raised (which
        # ended the reading), else why the reading ended.
        try:
            raise self._alarm_bug or error
        finally:
            del error  # its traceback holds this frame: no reference cycle

    async def _read_all(self, group: Any, on_message: OnMessage, on_wakeup: OnWakeup) -> Exception:
        """Keep the alarm with the loop's timer, its task in ``group`` (a task
        group or nursery), and deliver every message until the reading ends;
        return why it ended."""
        clock = current_alarm_clock()
        self._alarm_group = group
        clock.join(self)
        direct = self._socket is not None
        if direct:
            self._on_message = on_message
        try:
            if clock.keeps_a_task(self):
                self._start_alarm_task()
            while True:
                if direct and self._may_park(clock):
                    await self._park(on_wakeup)
                    continue
                message = await self.receive()
                if direct:  # before on_message answers a call
                    self._hot = self._calls_in_flight()
                    if not self._hot:
                        self._stay = False
                if on_message(message):
                    on_wakeup()
        except Exception as exc:  # noqa: BLE001 - run() raises it, outside the task group
            return exc
        finally:
            self._stop_polling()
            self._on_message = None
            # Before the alarm task is cancelled: the timer is handed on to a
            # connection that goes on, never to this one.
            self._alarm_group = None
            self._alarm_at = -math.inf  # set_alarm() now never moves it
            clock.leave(self)

    # -- parking: the clock's leader reads (trio) ----------------------------------

    def _may_park(self, clock: AlarmClock) -> bool:
        """Whether the reader task may park while the clock's leader reads its socket:
        the owner waits for no reply but its keepalive's, nothing is left of the
        last read, the connection is open and not closing, and a leader reads
        (under trio, with epoll)."""
        return (
            not self._stay
            and self.calls_in_flight is not None
            and not self._calls_in_flight()
            and clock.reads()
            and not self._poll_seen
            and not self._socket_full
            and not self._messages
            and not self._unread
            and not self._answers_queued
            and self._failure is None
            and not self._stream_closed
            and self._protocol.state is OPEN
            and not self._protocol.close_expected()
            and (self._poll_fd >= 0 or self._start_polling(clock))
        )

    def _calls_in_flight(self) -> bool:
        calls_in_flight = self.calls_in_flight
        return calls_in_flight is not None and calls_in_flight()

    def _start_polling(self, clock: AlarmClock) -> bool:
        assert self._socket is not None
        self._poll_fd = self._socket.fileno()
        if not clock.read_for(self):
            self._poll_fd = -1
            return False
        return True

    def _stop_polling(self) -> None:
        if self._poll_fd >= 0:
            clock = self._alarm_clock
            if clock is not None:
                clock.stop_reading_for(self)
            self._poll_fd = -1

    async def _park(self, on_wakeup: OnWakeup) -> None:
        """Wait, while idle, for the clock's leader to read this socket (_poll_ready).

        Under trio a task's read is a wake-up through trio's scheduler and a
        new registration of the socket with trio's epoll (one-shot) at every
        wait. Parked, a read of the leader's costs neither: it reads the
        socket, resolves the replies (``on_message``, as asyncio's read
        callbacks do), and wakes this task only for what must be done here
        (answers to write, events, the end of the connection, and a reply to
        a call). Calls come in runs, and the leader's read of a reply costs
        more than the task's own: a call sent while the reader is parked
        after a call's reply (before the alarm rings) wakes it to read
        itself (:meth:`_call_sent`), and a message that came while a call
        waited keeps it reading, until one comes while only the keepalive's
        Ping waits (its reply, on an idle connection): then it parks.
        """
        wake = self._reader_wake
        if wake is None:
            wake = self._reader_wake = new_wakeup()
        self._parked = True
        try:
            await wake.wait()
        finally:
            self._parked = False
        error = self._poll_error
        if error is not None:
            self._poll_error = None
            raise error
        if self._poll_tail:
            self._poll_tail = False
            await self._finish_read()
        if self._poll_wakeup:
            self._poll_wakeup = False
            on_wakeup()

    def _call_sent(self) -> None:
        """A message went out: if it follows a call's reply, a run of calls may
        be under way, which this task reads itself (see _park)."""
        if self._hot and self._parked:
            self._hot = False
            self._stay = True
            # Not the leader's any more while the task reads: else each
            # reply would wake the leader too (registered again when it parks).
            self._stop_polling()
            self._unpark()

    def _ring(self, now: float) -> None:
        self._hot = False  # the keepalive's Ping is not a run of calls
        super()._ring(now)

    def _unpark(self) -> None:
        """Wake the parked reader task: it reads its socket itself again."""
        if self._parked:
            self._parked = False
            assert self._reader_wake is not None
            self._reader_wake.set()

    def _poll_ready(self) -> None:
        """The clock's leader saw the socket readable: read it here if the task is parked
        (else the task reads it, and must not park before it has)."""
        if not self._parked:
            self._poll_seen = True
            return
        sock = self._socket
        assert sock is not None
        try:
            data = self._recv_now(sock)
        except OSError as exc:
            if self._lost is None:  # say why in the ConnectionClosed message
                self._lost = exc.strerror or type(exc).__name__
            data = b""
        if data is None:
            return  # nothing after all
        self._hot = self._calls_in_flight()  # a call's reply, likely
        protocol = self._protocol
        try:
            if data:
                self.last_received = self.clock()
                if len(data) > READ_SLICE:
                    self._unread, self._unread_at = data, 0
                    data = self._next_slice()
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            self._process(protocol.events_received())
            messages, on_message = self._messages, self._on_message
            assert on_message is not None
            while messages:
                if on_message(messages.popleft()):
                    self._poll_wakeup = True
            chunks = protocol.data_to_send()
            if chunks:
                self._stashed = chunks
            elif not (
                self._poll_wakeup
                or self._unread
                or self._socket_full
                or self._failure is not None
                or protocol.parser_exc is not None
                or protocol.state is not OPEN
            ):
                return  # all done here: the task stays parked
            self._poll_tail = True
        except Exception as exc:  # noqa: BLE001 - a bug: run() raises it
            self._poll_error = exc
        self._unpark()

    def _start_alarm_task(self) -> None:
        if self._alarm_wake is None:
            self._alarm_wake = new_wakeup()
        self._alarm_task_running = True
        self._alarm_group.start_soon(self._keep_alarm, name="alphapoint alarm")

    async def _keep_alarm(self) -> None:
        """The alarm's work that must wait (see BaseWebSocket._ring).

        Under asyncio it waits for such work for the life of the connection
        (the loop's timer rings without it). Under trio it ends once its work
        is done, unless it keeps the loop's timer (alarms.py): an idle
        connection, whose Pings are written where the alarm rings, has no task
        of its own for the alarm, and no coroutines kept for it.
        """
        clock, on_alarm, wake = self._alarm_clock, self._on_alarm, self._alarm_wake
        if clock is None or on_alarm is None or wake is None:
            self._alarm_task_running = False
            return  # the connection left the clock before this task ran
        try:
            while self._alarm_clock is clock:  # until the connection leaves the clock
                if not self._alarm_task_due:
                    if not clock.keeps_a_task(self):
                        return  # started again when work comes (_wake_alarm_task)
                    # Wait for a ring with work (or, leading the loop's timer
                    # under trio, ring the others: see alarms.py).
                    await clock.wait(self, wake)
                    continue
                self._alarm_task_due = False
                clock.step_down(self)  # this may wait: the timer goes on without it
                self._unpark()  # nor may the reader wait for this task to read for it
                if self._tail:
                    await self._write_tail()
                if self._alarm_error is not None:  # on_alarm_now raised (a bug)
                    self._alarm_bug = self._alarm_error
                    await self.abort()
                    return
                now = self.clock()
                if self._write_deadline <= now:
                    # A write outlived a deadline: the gateway stopped reading,
                    # and part of a frame may be on the wire. Drop the connection.
                    self._lost = "the gateway stopped reading (a write outlived its deadline)"
                    await self.abort()
                else:
                    self.set_alarm(self._write_deadline)
                self.set_alarm(await on_alarm(now))
        except Exception as exc:  # noqa: BLE001 - a bug: run() raises it
            self._alarm_bug = exc
            await self.abort()
        finally:
            self._alarm_task_running = False
            # Under asyncio, anyio's task group keeps the CancelledError that
            # ends this task in a reference cycle, and with it this frame: let
            # go of the owner here, or only the cycle collector would free it.
            del on_alarm

    async def _write_tail(self) -> None:
        """Write what the socket did not take of a frame written where the alarm
        rang, within ``close_timeout``, or drop the connection (the gateway
        stopped reading): this task is the one that would drop it."""
        with anyio.move_on_after(self._close_timeout) as scope:
            async with self._send_lock:
                await self._write([], quiet=True)
        if scope.cancelled_caught and self._lost is None:
            self._lost = (
                f"the gateway stopped reading (a message could not be written "
                f"within {self._close_timeout} s)"
            )
            await self.abort()

    def reset_alarm(self, when: float) -> None:
        # Never later than a write under way must be looked at.
        super().reset_alarm(min(when, self._write_deadline))

    def _alarm_now_allowed(self, now: float) -> bool:
        if self._write_deadline <= now:
            return False  # a write outlived its deadline: the task drops the connection
        self.set_alarm(self._write_deadline)
        return True

    def _alarm_for_task(self) -> None:
        self._alarm_task_due = True
        self._wake_alarm_task()

    def _wake_alarm_task(self) -> None:
        """Wake the alarm task from its wait (to do its work, or to lead the timer),
        or start it if it does not run (and the connection still reads)."""
        if self._alarm_task_running:
            if self._alarm_wake is not None:
                self._alarm_wake.set()
            if self._alarm_clock is not None:
                self._alarm_clock.poke(self)  # leading the timer, it waits on the epoll
        elif self._alarm_group is not None:
            self._start_alarm_task()

    async def receive(self) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`ConnectionClosed` once the connection has closed, with
        the close code and reason, or the protocol violation that ended it.
        """
        while True:
            if self._messages:
                return self._messages.popleft()
            if self._protocol.state is CLOSED:
                await self.abort()
                raise self._closed_error("the connection closed")
            if self._answers_queued:
                # Answers to frames that came with the handshake response (a
                # close echo, a pong) must not wait for this read.
                self._answers_queued = False
                async with self._send_lock:
                    await self._write_answers(self._protocol.data_to_send())
            if self._unread:
                # The rest of a large read, a slice at a time (READ_SLICE),
                # giving the other tasks (the alarm) a turn in between.
                await anyio.lowlevel.checkpoint()
                self._protocol.receive_data(self._next_slice())
            else:
                data = b""
                if self._protocol.close_expected():
                    # Closing: the peer has a bounded time to finish its half.
                    with anyio.move_on_after(self._close_timeout):
                        data = await self._read()
                else:
                    data = await self._read()
                if data:
                    self.last_received = self.clock()
                    if len(data) > READ_SLICE:
                        self._unread, self._unread_at = data, 0
                        data = self._next_slice()
                    self._protocol.receive_data(data)
                else:
                    self._protocol.receive_eof()
            self._process(self._protocol.events_received())
            await self._finish_read()

    async def _finish_read(self) -> None:
        """After a read: write its answers (pongs, a close echo); end a connection it failed."""
        await self._flush_after_read()
        self._check_parser()
        if self._failure is not None:
            # We failed the connection (bad frame, oversize, bad UTF-8):
            # the close frame is sent; do not wait for the peer.
            self._unread, self._unread_at = b"", 0
            await self.abort()
            self._protocol.receive_eof()

    async def _read(self) -> bytes:
        """Bytes from the stream, or ``b""`` at its end, however it ended."""
        if self._stream_closed:
            return b""
        if self._socket is not None:
            return await self._read_socket(self._socket)
        try:
            return await self._stream.receive(READ_SIZE)
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return b""
        except (anyio.BrokenResourceError, OSError) as exc:
            # Say why in the ConnectionClosed message ("Connection reset by peer").
            cause = exc if isinstance(exc, OSError) else exc.__cause__
            if isinstance(cause, OSError) and self._lost is None:
                self._lost = cause.strerror or type(cause).__name__
            return b""

    async def _read_socket(self, sock: socket.socket) -> bytes:
        """:meth:`_read` from the socket itself, under trio: a checkpoint.

        As ``trio.socket`` reads, with one coroutine between the reader and
        trio's wait, not three. After a read that did not fill its buffer, the
        kernel's was empty: the next read waits for it first, rather than fail
        a call with ``EAGAIN`` (an exception and its traceback, kept for as
        long as the wait, which for an idle connection is until the next
        Ping's reply).
        """
        lowlevel = self._trio
        try:
            if self._socket_full:
                await lowlevel.checkpoint_if_cancelled()
                data = self._recv_now(sock)
                if data is not None:
                    await lowlevel.cancel_shielded_checkpoint()
                    return data
            while True:
                try:
                    await lowlevel.wait_readable(sock)
                except self._trio_closed:  # closed under the wait (abort)
                    return b""
                data = self._recv_now(sock)
                if data is not None:
                    return data
        except OSError as exc:
            if self._lost is None:  # say why in the ConnectionClosed message
                self._lost = exc.strerror or type(exc).__name__
            return b""

    def _recv_now(self, sock: socket.socket) -> bytes | None:
        """What the socket has now (``None``: nothing yet)."""
        self._poll_seen = False  # what the clock's leader saw is read here
        try:
            data = sock.recv(READ_SIZE)
        except BlockingIOError:
            return None
        self._socket_full = len(data) == READ_SIZE
        return data

    async def _write_socket(self, data: bytes) -> None:
        """Write all of ``data`` to the socket itself, under trio: a checkpoint.

        Raises ``OSError``, or anyio's ``ClosedResourceError`` when the stream
        is closed under the wait.
        """
        lowlevel, sock = self._trio, self._socket
        assert sock is not None
        await lowlevel.checkpoint_if_cancelled()
        view = memoryview(data)
        while True:
            try:  # noqa: SIM105 - not contextlib.suppress: no object made per write
                view = view[sock.send(view) :]
            except BlockingIOError:
                pass  # waited for below, not in here: the error is not kept meanwhile
            if not view:
                break
            try:
                await lowlevel.wait_writable(sock)
            except self._trio_closed:
                raise anyio.ClosedResourceError from None
        await lowlevel.cancel_shielded_checkpoint()

    # -- closing --------------------------------------------------------------

    async def abort(self) -> None:
        if not self._stream_closed:
            self._stream_closed = True
            self._stop_polling()  # before the descriptor's number can be reused
            self._unpark()  # the reader finds the stream closed
            await anyio.aclose_forcefully(self._stream)


# -- opening ------------------------------------------------------------------


async def open_stream_websocket(
    uri: WebSocketURI,
    protocol: ClientProtocol,
    *,
    ssl: ssl_module.SSLContext | None,
    proxy: Proxy | None,
    close_timeout: float,
    max_fragments: int = DEFAULT_MAX_FRAGMENTS,
) -> StreamWebSocket:
    """Connect (through ``proxy`` if given), send the handshake request ``protocol``
    holds, and read the response.

    The caller bounds the time and checks ``protocol.handshake_exc``. Raises
    what the stream raises (``OSError``, ``ssl.SSLError``, anyio's errors) or
    :class:`NetworkError`; on any error the stream is closed.
    """
    stream: anyio.abc.ByteStream | None = None
    direct = False
    try:
        if proxy is not None:
            stream = await open_proxy_stream(proxy, uri)
            if ssl is not None:
                stream = await wrap_tls(stream, uri.host, ssl)
        elif ssl is not None:
            stream = await anyio.connect_tcp(
                uri.host,
                uri.port,
                ssl_context=ssl,
                tls_hostname=uri.host,
                tls_standard_compatible=False,
            )
        else:
            stream = await anyio.connect_tcp(uri.host, uri.port)
            direct = _trio_socket_stream(stream)
        for data in protocol.data_to_send():
            await stream.send(data)
        frames = await _read_handshake(protocol, stream)
    except BaseException:
        if stream is not None:
            await anyio.aclose_forcefully(stream)
        raise
    return StreamWebSocket(
        protocol,
        stream,
        close_timeout=close_timeout,
        frames=frames,
        max_fragments=max_fragments,
        direct=direct,
    )


async def _read_handshake(protocol: ClientProtocol, stream: anyio.abc.ByteStream) -> list[Any]:
    """Read until the handshake response; return the frames that came with it.

    When the server answered something that is not HTTP, no response will
    come: ``protocol.handshake_exc`` says what, for the caller to report.
    """
    while True:
        try:
            data = await stream.receive(READ_SIZE)
        except anyio.EndOfStream:
            protocol.receive_eof()
            raise NetworkError("the server closed the connection during the handshake") from None
        protocol.receive_data(data)
        events = protocol.events_received()
        if events:
            assert isinstance(events[0], Response)
            return events[1:]
        if protocol.handshake_exc is not None:
            return []


def _trio_socket_stream(stream: anyio.abc.ByteStream) -> bool:
    """Whether ``stream`` is a plain TCP socket under trio (not TLS, not a proxy's):
    then the driver reads and writes the socket itself."""
    if not isinstance(stream, anyio.abc.SocketStream) or isinstance(stream, TLSStream):
        return False
    try:
        import trio

        trio.lowlevel.current_task()
    except (ImportError, RuntimeError):
        return False  # asyncio: anyio's stream over its transport
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    return isinstance(sock, socket.socket) and sock.type == socket.SOCK_STREAM

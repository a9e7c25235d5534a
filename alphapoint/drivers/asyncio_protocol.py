"""A client WebSocket on asyncio's protocol callbacks (asyncio and uvloop).

The anyio stream driver (:mod:`.anyio_stream`) reads in a task: every reply
then crosses from the socket to the reader task and from the reader task to
the caller, and anyio's stream adds a checkpoint per write and a pause and
resume of reading per read. Here the event loop hands bytes to
``data_received``, which feeds websockets' Sans-I/O protocol and passes each
message to the connection's ``on_message`` at once, so a reply wakes its
caller directly, as websockets' own asyncio client and picows do. That is a
call round trip with one task switch instead of three (docs/performance.md).

Used for direct connections when the running loop is asyncio's (or uvloop);
trio and connections through a proxy use the anyio driver. Both keep the rules
of :mod:`.anyio_stream`: whatever the protocol queues is written after
every read, a TLS connection is closed rather than half-closed, and the wait
for the peer's half of a closing handshake is bounded.
"""

from __future__ import annotations

import asyncio
import math
import ssl as ssl_module
from collections.abc import Callable
from typing import NoReturn, cast

import anyio
from websockets.client import ClientProtocol
from websockets.protocol import CLOSED, OPEN
from websockets.uri import WebSocketURI

from ..errors import NetworkError
from .alarms import loop_alarm_clock
from .base import (
    DEFAULT_MAX_FRAGMENTS,
    DEFAULT_MAX_SEND_BUFFER,
    READ_SLICE,
    BaseWebSocket,
    OnAlarm,
    OnMessage,
    OnWakeup,
)
from .loop import asyncio_clock_and_event

__all__ = ["AsyncioWebSocket", "CallbackWebSocket", "open_asyncio_websocket"]


class CallbackWebSocket(BaseWebSocket):
    """A driver whose bytes arrive in the event loop's callbacks (asyncio, uvloop).

    What the asyncio protocol driver and the picows driver share: messages are
    handed to ``on_message`` in the read callback, ``run()``'s task waits for
    wake-ups (events, the alarm, the end), senders wait while the transport's
    buffer is over its high-water mark, and the transport is closed or aborted
    at the end. A subclass moves the bytes and says when it has finished.

    ``run()`` must be called by a single task; ``send_text()`` may be called
    from any number of tasks (a write never waits unless the peer stopped
    reading, so there is no lock).
    """

    def __init__(
        self,
        protocol: ClientProtocol | None,
        *,
        close_timeout: float,
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
        max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
        max_message_size: int | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        super().__init__(
            protocol,
            close_timeout=close_timeout,
            max_fragments=max_fragments,
            max_send_buffer=max_send_buffer,
            max_message_size=max_message_size,
            clock_and_event=asyncio_clock_and_event(loop),
        )
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._on_message: OnMessage | None = None
        #: Whether an on_message asked for on_wakeup since the last one ran.
        self._wakeup_due = False
        #: Whether the alarm rang with work for run()'s task since it looked.
        self._alarm_rang = False
        #: The run() task's wait, while it waits.
        self._waiter: asyncio.Future[None] | None = None
        #: Whether the transport has ended (connection_lost was called).
        self._ended = False
        #: What on_message raised (a bug): run() raises it in the task.
        self._bug: Exception | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        #: When a close's wait must end, and what ends it (see close_by).
        self._close_by = math.inf
        self._close_expired: Callable[[], object] | None = None
        #: Senders waiting for the transport's buffer to drain.
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        #: Bytes the reads added to the buffer since it last went over its
        #: high-water mark (pongs, a close echo): bounded by max_send_buffer.
        self._answers_waiting = 0

    on_callbacks = True

    def _finished(self) -> bool:
        """Whether the connection has ended (``run()`` then raises ``ConnectionClosed``)."""
        return self._ended

    # -- the transport's flow control -----------------------------------------

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._answers_waiting = 0
        self._set_drained()

    # -- reading --------------------------------------------------------------

    def _deliver_messages(self, budget: int | None = None, per_message: int = 0) -> None:
        """Hand the messages read to ``on_message``; with ``budget``, about so many
        characters of them, each counted ``per_message`` more (the rest wait
        for another call). A message at a time, without a call around each (a
        held slice of a burst of events comes this way); if ``on_message``
        raises (a bug), the connection is dropped and ``run()`` raises it."""
        on_message = self._on_message
        if on_message is None:
            return  # kept until run() starts (frames that came with the handshake)
        messages = self._messages
        popleft = messages.popleft
        left = math.inf if budget is None else budget
        while messages and left > 0:
            message = popleft()
            left -= len(message) + per_message
            try:
                wakeup = on_message(message)
            except Exception as exc:  # noqa: BLE001 - a bug: run() raises it in the task
                self._on_message_failed(exc)
                return
            if wakeup and not self._wakeup_due:
                # Wake the task now, before later replies wake their callers:
                # an event is handled before a reply that came after it.
                # (Once due, the task is woken already, or looks before it
                # waits.)
                self._wakeup_due = True
                self._wake()

    def _on_message_failed(self, exc: Exception) -> None:
        """``on_message`` raised ``exc`` (a bug): drop the connection; ``run()`` raises it."""
        self._bug = exc
        self._on_message = None
        self._abort_transport()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self, on_message: OnMessage, on_wakeup: OnWakeup, on_alarm: OnAlarm) -> NoReturn:
        self._on_message = on_message
        clock = loop_alarm_clock(self._loop)  # (the loop it runs on: no asking which)
        clock.join(self)
        try:
            self._deliver_messages()
            while True:
                if self._wakeup_due:
                    self._wakeup_due = False
                    on_wakeup()
                    continue
                if self._bug is not None:
                    raise self._bug
                if self._finished():
                    self._close_transport()
                    raise self._closed_error("the connection closed")
                if self._alarm_rang:
                    self._alarm_rang = False
                    if self._alarm_error is not None:
                        raise self._alarm_error
                    self.set_alarm(await on_alarm(self.clock()))
                    continue
                self._waiter = self._loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        finally:
            self._on_message = None
            self._alarm_at = -math.inf  # set_alarm() now never moves it
            clock.leave(self)

    # -- the alarm ------------------------------------------------------------

    def close_by(self, deadline: float, expired: Callable[[], object]) -> bool:
        """Call ``expired`` at ``deadline`` (a close's wait for the peer's half ends
        then, and its caller aborts the connection); false, and nothing done,
        if no alarm clock rings this connection now.

        The alarm rings it (at most a tick late, never early), on the loop's
        one timer for every connection's alarm, which is usually armed for
        then or earlier already: a close then makes no timer of its own (about
        20 k instructions under asyncio: docs/performance.md, "The login's
        remaining gap").
        """
        if self._alarm_clock is None:
            return False
        self._close_by, self._close_expired = deadline, expired
        self.set_alarm(deadline)
        return True

    def _ring(self, now: float) -> None:
        if now >= self._close_by:
            expired, self._close_by, self._close_expired = self._close_expired, math.inf, None
            if expired is not None:
                expired()
        super()._ring(now)
        if self._close_by != math.inf and not self._ended:
            self.set_alarm(self._close_by)  # kept whatever the owner moved the alarm to

    def _alarm_for_task(self) -> None:
        self._alarm_rang = True
        self._wake()

    # -- writing --------------------------------------------------------------

    async def _drain(self, deadline: float) -> None:
        """Wait until the peer reads enough for the buffer to drain, by ``deadline``."""
        with anyio.CancelScope(deadline=deadline):
            while self._paused and not self._ended:
                if self._drained is None:
                    self._drained = self._loop.create_future()
                await asyncio.shield(self._drained)
        if self._paused and not self._ended:
            raise TimeoutError

    def _set_drained(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _count_answers(self, size: int) -> bool:
        """``size`` bytes of answers (pongs, a close echo) were written after a read.

        They cannot wait for the buffer to drain, so while it is full they are
        counted against ``max_send_buffer``; past it, the gateway is not
        reading, and the connection is dropped (false).
        """
        if not self._paused:
            return True
        self._answers_waiting += size
        if self._answers_waiting <= self._max_send_buffer:
            return True
        if self._lost is None:
            self._lost = (
                f"the gateway stopped reading (more than {self._max_send_buffer} bytes of "
                f"answers to it, pongs, waiting to be sent)"
            )
        self._abort_transport()
        return False

    # -- closing --------------------------------------------------------------

    def _close_transport(self) -> None:
        """Close once what is buffered is written (a close frame, say)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def _abort_transport(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def abort(self) -> None:
        self._abort_transport()


class AsyncioWebSocket(CallbackWebSocket, asyncio.Protocol):
    """One client WebSocket whose bytes arrive through asyncio's callbacks.

    A sender waits while the transport's buffer is over its high-water mark;
    the answers to what the gateway sends (pongs, a close echo) cannot wait,
    as they are written where the read is handled. A gateway that sends and
    does not read would make them pile up without end: more than
    ``max_send_buffer`` bytes of them added while the buffer is full drop the
    connection.
    """

    def __init__(
        self,
        protocol: ClientProtocol,
        *,
        close_timeout: float,
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
        max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
    ) -> None:
        super().__init__(
            protocol,
            close_timeout=close_timeout,
            max_fragments=max_fragments,
            max_send_buffer=max_send_buffer,
        )
        #: Done once the handshake response (or something that is not one) came.
        self._handshake: asyncio.Future[None] = self._loop.create_future()
        #: Whether sent messages wait for a write later in this turn of the loop.
        self._corked = False

    coalesces = True

    def _finished(self) -> bool:
        return self._ended or self._protocol.state is CLOSED

    # -- asyncio's callbacks --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.last_received = self.clock()
        if len(data) <= READ_SLICE:
            self._protocol.receive_data(data)
            self._after_read()
            return
        # A large read: a slice now, the rest in later turns of the loop, with
        # reading paused meanwhile (the bytes wait in the kernel, not here).
        self._unread, self._unread_at = data, 0
        self._feed_slice()

    def _feed_slice(self) -> None:
        """Feed the next slice of a large read; schedule the next, or resume reading."""
        transport = self._transport
        if self._ended or transport is None:
            return  # connection_lost fed what was left
        self._protocol.receive_data(self._next_slice())
        self._after_read()
        if transport.is_closing():
            self._unread, self._unread_at = b"", 0  # failed or closed: nothing more is read
        elif self._unread:
            transport.pause_reading()
            self._loop.call_soon(self._feed_slice)
        elif not transport.is_reading():
            transport.resume_reading()

    def _feed_unread(self) -> None:
        """Feed what is left of a large read, at once (the connection is ending)."""
        if self._unread and self._protocol.state is not CLOSED:
            data, at = self._unread, self._unread_at
            self._unread, self._unread_at = b"", 0
            self._protocol.receive_data(data[at:])

    def eof_received(self) -> None:
        # The closing handshake never needs to write after EOF; returning
        # None lets the transport close (TLS cannot half-close anyway).
        if not self._handshake.done():
            # No response, or part of one, then EOF: a lost connection (as
            # the anyio driver says), not an answer that is not HTTP.
            self._handshake.set_exception(
                NetworkError("the server closed the connection during the handshake")
            )
        self._protocol.receive_eof()
        self._after_read()

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        if isinstance(exc, OSError) and self._lost is None:
            # Say why in the ConnectionClosed message ("Connection reset by peer").
            self._lost = exc.strerror or type(exc).__name__
        if self._protocol.state is not CLOSED:
            if self._failure is None:
                self._feed_unread()
            self._protocol.receive_eof()
            self._process(self._protocol.events_received())
        if self._close_timer is not None:
            self._close_timer.cancel()
        if not self._handshake.done():
            self._handshake.set_exception(
                NetworkError("the server closed the connection during the handshake")
            )
        self._set_drained()
        self._deliver_messages()
        self._wake()

    # -- reading --------------------------------------------------------------

    def _after_read(self) -> None:
        events = self._protocol.events_received()
        if not self._handshake.done():
            if events:
                del events[0]  # the response: the opener reads handshake_exc
                self._handshake.set_result(None)
            elif self._protocol.handshake_exc is not None:
                self._handshake.set_result(None)  # not HTTP: the opener reports it
        self._process(events)
        self._write_queued(answers=True)  # pongs, a close echo, EOF
        protocol = self._protocol
        if protocol.parser_exc is not None:
            self._check_parser()
        state = protocol.state
        if self._failure is not None or state is CLOSED:
            # Closed, or we failed it (bad frame, oversize, bad UTF-8): the
            # close frame is written; do not wait for the peer.
            self._close_transport()
        elif state is not OPEN and protocol.close_expected() and self._close_timer is None:
            # Closing: the peer has a bounded time to finish its half.
            self._close_timer = self._loop.call_later(self._close_timeout, self._abort_transport)
        self._deliver_messages()

    def send_text_now(self, text: str) -> bool:
        # (_finished() as it reads while the protocol is OPEN.)
        if self._paused or self._ended or self._protocol.state is not OPEN:
            return False
        self._protocol.send_text(text.encode())
        self._write_queued()
        return True

    # -- writing --------------------------------------------------------------

    async def send_text(
        self, text: str, *, deadline: float = math.inf, coalesce: bool = False
    ) -> None:
        if self._paused and self._protocol.state is OPEN:
            await self._drain(deadline)
        if self._protocol.state is not OPEN or self._ended:
            raise self._closed_error("the connection is closed")
        self._protocol.send_text(text.encode())
        if not coalesce:
            self._write_queued()
        elif not self._corked:
            # Messages sent in this turn of the loop go out together, next turn.
            self._corked = True
            self._loop.call_soon(self._uncork)

    def _uncork(self) -> None:
        self._corked = False
        self._write_queued()

    async def send_close(self, code: int = 1000, reason: str = "") -> None:
        if self._protocol.state is OPEN and not self._ended:
            self._protocol.send_close(code, reason)
            self._write_queued()

    def _write_queued(self, *, answers: bool = False) -> None:
        """Write what the protocol has queued; websockets asks for EOF with a final b"".

        ``answers``: written after a read (pongs, a close echo), which cannot
        wait for the buffer to drain, so they are counted against
        ``max_send_buffer`` while it is full.
        """
        chunks = self._protocol.data_to_send()
        transport = self._transport
        if not chunks or transport is None or transport.is_closing():
            return
        data = b"".join(chunks)
        if data:
            transport.write(data)
            if answers and not self._count_answers(len(data)):
                return
        if not chunks[-1]:
            if transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()  # TLS cannot half-close


async def open_asyncio_websocket(
    uri: WebSocketURI,
    protocol: ClientProtocol,
    *,
    ssl: ssl_module.SSLContext | None,
    close_timeout: float,
    max_fragments: int = DEFAULT_MAX_FRAGMENTS,
    max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
) -> AsyncioWebSocket:
    """Connect, send the handshake request ``protocol`` holds, and read the response.

    The caller bounds the time and checks ``protocol.handshake_exc``. Raises
    what ``loop.create_connection`` raises (``OSError``, ``ssl.SSLError``) or
    :class:`NetworkError`; on any error the connection is closed.
    """
    loop = asyncio.get_running_loop()
    websocket = AsyncioWebSocket(
        protocol,
        close_timeout=close_timeout,
        max_fragments=max_fragments,
        max_send_buffer=max_send_buffer,
    )
    await loop.create_connection(
        lambda: websocket,
        uri.host,
        uri.port,
        ssl=ssl,
        server_hostname=uri.host if ssl is not None else None,
    )
    try:
        websocket._write_queued()
        await websocket._handshake
    except BaseException:
        websocket._abort_transport()
        raise
    return websocket

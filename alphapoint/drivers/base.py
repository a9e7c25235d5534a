"""What every WebSocket driver shares: messages out of frames, and why it ended.

websockets' Sans-I/O ``Protocol`` parses and builds frames without doing any
I/O; a driver moves its bytes. The drivers (:mod:`alphapoint.drivers`) are
one over an anyio byte stream (:mod:`.anyio_stream`: trio, proxies, the
embedded gateway) and one on asyncio's protocol callbacks
(:mod:`.asyncio_protocol`: a direct connection under asyncio or uvloop). This
base holds what does not depend on how bytes move, and imports neither loop:
turning frames into messages, failing on bad UTF-8 or a broken frame, and the
:class:`ConnectionClosed` that says why the connection ended.

A driver delivers messages to its owner through :meth:`BaseWebSocket.run`:
``on_message(message)`` is called for every message as soon as it is read;
when it returns true, ``on_wakeup()`` is called soon after in the task that
runs ``run()``. Under asyncio ``on_message`` runs in the read callback, so it
must do only what is safe there (resolve a future, set an event, append to a
queue); whatever needs the task (starting tasks, callbacks to user code) is
left for ``on_wakeup``.

``run()`` also keeps the owner's one alarm, at the time
:meth:`BaseWebSocket.set_alarm` last set (the earliest asked for). The
loop's one timer for every connection (:mod:`.alarms`) rings it: first
``on_alarm_now(now)`` (the owner's :attr:`BaseWebSocket.on_alarm_now`, if
set) is called right there, and returns when it wants to be rung next, or
``None`` when it has work that must wait; then ``on_alarm(now)`` is awaited in
a task (the asyncio driver's ``run()`` task; the anyio driver, whose task is
busy reading, keeps a second task) and returns the same. Either way a
connection keeps its deadlines without a task of its owner's, without a cancel
scope per call, and an idle connection's rings cost no task at all.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

from websockets.frames import Opcode
from websockets.protocol import CLOSED, OPEN, Protocol

from ..errors import ConnectionClosed, HandshakeRefused, ProtocolError
from .loop import EventLike, native_clock_and_event

if TYPE_CHECKING:
    from ..redaction import SecretSet
    from .alarms import AlarmClock

__all__ = [
    "DEFAULT_MAX_FRAGMENTS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_SEND_BUFFER",
    "READ_SLICE",
    "BaseWebSocket",
    "EventLike",
    "OnAlarm",
    "OnAlarmNow",
    "OnMessage",
    "OnWakeup",
    "QuietLogger",
    "refused_upgrade",
    "websockets_logger",
]

#: The largest incoming message accepted, in bytes (APEX replies are small;
#: large snapshots fit well under this).
DEFAULT_MAX_MESSAGE_SIZE = 4 * 2**20

#: The most frames one incoming message may come in. websockets bounds the
#: bytes of a fragmented message (``max_message_size`` counts them all), but
#: not the frames: a message of empty continuation frames that never sets FIN
#: would go on for ever. 4,096 lets a 4 MiB message come in 1 KiB fragments;
#: more fail the connection with close code 1008.
DEFAULT_MAX_FRAGMENTS = 4096

#: The most bytes fed to websockets' parser at once. A read of many small
#: messages (a flood of garbage, say) is handled a slice at a time, giving the
#: event loop (and so the alarm: calls' deadlines) a turn between slices: a
#: read of 256 KiB of two-byte frames would otherwise be some 130,000 messages
#: handled in one go, close to a second. A slice of 4 KiB is at most 2,048
#: messages; a large reply costs one more turn of the loop per 4 KiB, which
#: did not show in the time to receive a 1.2 MB reply (docs/reliability.md).
#: Reads of this size or less (nearly every reply) are fed whole.
READ_SLICE = 4096

#: The most bytes of answers (pongs, a close echo) that may wait to be sent
#: while the send buffer is full. A sender waits for room; an answer cannot,
#: as it is written where the read is handled: a gateway that floods pings and
#: never reads would make pongs pile up without end (under asyncio: the anyio
#: driver's reader waits for room, and so reads no more, which bounds them to
#: a read's worth). More than this drops the connection.
DEFAULT_MAX_SEND_BUFFER = 4 * 2**20

#: Handles one message where it was read; true asks for an ``OnWakeup`` call.
OnMessage = Callable[[str | bytes], bool]
#: Runs in the reader's task, after an ``OnMessage`` returned true.
OnWakeup = Callable[[], None]
#: Runs when the alarm rings, with the clock's time; returns when to ring next.
OnAlarm = Callable[[float], Awaitable[float]]
#: Runs where the alarm rings, first: when to ring next, or None to await ``OnAlarm``.
OnAlarmNow = Callable[[float], "float | None"]


class QuietLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The logger handed to a WebSocket library: never DEBUG, nor below ``lowest``.

    websockets (and picows) log every frame's contents at DEBUG, passwords
    included; this library logs frames itself, with secrets redacted.
    """

    def __init__(
        self, logger: logging.Logger, extra: dict[str, Any], *, lowest: int = logging.INFO
    ) -> None:
        super().__init__(logger, extra)
        self.lowest = lowest

    def isEnabledFor(self, level: int) -> bool:
        return level >= self.lowest and self.logger.isEnabledFor(level)


websockets_logger = QuietLogger(logging.getLogger("alphapoint.websockets"), {})


def refused_upgrade(where: str, status: int | None, detail: str) -> HandshakeRefused:
    """The error for a handshake the server answered with anything but 101.

    ``status`` and its reason phrase as ``detail``; or no status (not HTTP,
    or a 101 that is not a valid upgrade) and what was wrong with it.
    """
    if status is not None:
        return HandshakeRefused(
            f"{where} refused the WebSocket upgrade: HTTP {status} {detail}", status=status
        )
    return HandshakeRefused(f"WebSocket handshake with {where} failed: {detail}", status=None)


class BaseWebSocket(ABC):
    """One WebSocket connection's protocol state, whatever moves its bytes."""

    #: websockets' Sans-I/O protocol, for the drivers built on it; the picows
    #: driver parses frames itself and overrides what reads it (``_close_state``,
    #: ``_fail_with``, ``is_open``).
    _protocol: Protocol

    def __init__(
        self,
        protocol: Protocol | None,
        *,
        close_timeout: float,
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
        max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
        max_message_size: int | None = None,
        clock_and_event: tuple[Callable[[], float], Callable[[], EventLike]] | None = None,
    ) -> None:
        if protocol is not None:
            self._protocol = protocol
        self._close_timeout = close_timeout
        self._max_fragments = max_fragments
        self._max_send_buffer = max_send_buffer
        #: The bytes of a fragmented message, bounded here only for a driver
        #: whose parser bounds frames, not messages (websockets bounds both).
        self._max_message_size = max_message_size
        self._messages: deque[str | bytes] = deque()
        #: The message being assembled: its bytes so far (not a list of
        #: fragments: an empty fragment costs nothing), its opcode, its frames.
        self._fragments = bytearray()
        self._fragment_opcode: Opcode | None = None
        self._fragment_count = 0
        #: Secret values to scrub from what the gateway says (close reasons), if any.
        self.secrets: SecretSet | None = None
        #: A large read not yet fed to the parser (see READ_SLICE), and how far in.
        self._unread = b""
        self._unread_at = 0
        #: Why the connection failed, when this side failed it (and whether
        #: its message was scrubbed of secrets yet).
        self._failure: ProtocolError | None = None
        self._failure_scrubbed = False
        #: The OS error that ended the stream under a read, if one did.
        self._lost: str | None = None
        #: anyio's clock (``anyio.current_time()``), and a maker of the event a
        #: call waits on (set from ``on_message``), read the cheapest way; given
        #: by a driver that knows its loop (without asking which library runs).
        self.clock, self.new_event = (
            clock_and_event if clock_and_event is not None else native_clock_and_event()
        )
        #: The clock when bytes last arrived (for keepalive).
        self.last_received = self.clock()
        #: When the alarm rings next (see :meth:`set_alarm`): ``inf`` for never,
        #: ``-inf`` once ``run()`` has ended (nothing moves it any more).
        self._alarm_at = math.inf
        #: The loop's timer that rings it, while ``run()`` keeps the alarm.
        self._alarm_clock: AlarmClock | None = None
        #: The owner's quick look when the alarm rings (see the module's docstring).
        self.on_alarm_now: OnAlarmNow | None = None
        #: What ``on_alarm_now`` raised (a bug): ``run()`` raises it in its task.
        self._alarm_error: Exception | None = None

    @property
    def is_open(self) -> bool:
        """Whether messages can still be sent."""
        return self._protocol.state is OPEN

    @abstractmethod
    async def run(self, on_message: OnMessage, on_wakeup: OnWakeup, on_alarm: OnAlarm) -> NoReturn:
        """Deliver every message until the connection ends, then raise :class:`ConnectionClosed`.

        Call it from one task only; see the module's docstring for where each
        callback runs. Whatever a callback raises (a bug), ``run()`` raises.
        """

    def set_alarm(self, when: float) -> None:
        """Ring the alarm at ``when`` (on :attr:`clock`) if that is earlier than set.

        Cheap when it is not earlier, as for most calls: their deadlines come
        after the one the alarm is already set for.
        """
        if when < self._alarm_at:
            self._alarm_at = when
            clock = self._alarm_clock
            if clock is not None:  # run() keeps the alarm: file it with the loop's timer
                clock.file(self, when)

    def reset_alarm(self, when: float) -> None:
        """Ring the alarm at ``when``, even if that is later than set (``inf``: not at all).

        For an owner whose earliest time went away (a keepalive Ping was
        answered): the ring filed for the old time finds nothing due and costs
        the connection nothing.
        """
        if self._alarm_at != -math.inf and when != self._alarm_at:
            self._alarm_at = when
            clock = self._alarm_clock
            if clock is not None and when != math.inf:
                clock.file(self, when)

    def _ring(self, now: float) -> None:
        """The loop's timer rang this connection's alarm (:mod:`.alarms`).

        The owner's quick look first, right here; what must wait goes to the
        task that keeps the alarm.
        """
        self._alarm_at = math.inf
        on_alarm_now = self.on_alarm_now
        if on_alarm_now is not None and self._alarm_now_allowed(now):
            try:
                when = on_alarm_now(now)
            except Exception as exc:  # noqa: BLE001 - a bug: run() raises it in its task
                self._alarm_error = exc
            else:
                if when is not None:
                    self.set_alarm(when)
                    return
        self._alarm_for_task()

    def _alarm_now_allowed(self, now: float) -> bool:
        """Whether a ring at ``now`` may be handled where it rang (the driver has nothing due)."""
        return True

    @abstractmethod
    def _alarm_for_task(self) -> None:
        """The alarm rang with work that must wait: have ``run()``'s task await ``on_alarm``."""

    def _wake_alarm_task(self) -> None:  # noqa: B027 - only some drivers have such a task
        """Wake the task that keeps the alarm, if it waits (a driver with such a task)."""

    #: Whether bytes arrive in the event loop's callbacks (:class:`.CallbackWebSocket`):
    #: then writing a close frame and aborting never wait. (A class attribute:
    #: ``isinstance`` of an ABC is a call of Python.)
    on_callbacks = False

    #: Whether :meth:`send_text` gathers the messages of calls in flight
    #: (``coalesce``) into one write: then a call among others is not sent
    #: with :meth:`send_text_now`, which writes at once.
    coalesces = False

    #: The owner's: whether it waits for replies to calls other than its
    #: keepalive's Ping (``None``: not told). Under trio the anyio driver's
    #: reader parks only while it does not (see StreamWebSocket._park).
    calls_in_flight: Callable[[], bool] | None = None

    def send_text_now(self, text: str) -> bool:
        """Send one text message now, without waiting, if the driver can: else false,
        and nothing is sent (the message then goes through :meth:`send_text`, which
        waits for room or says why it cannot be sent). A call's request is sent so
        when it can, and a keepalive Ping where the alarm rings."""
        return False

    @abstractmethod
    async def send_text(
        self, text: str, *, deadline: float = math.inf, coalesce: bool = False
    ) -> None:
        """Send one text message.

        ``coalesce`` says that other messages are likely to follow at once
        (other calls are in flight): the driver may then hold this one for the
        rest of the event loop's turn and write them all in one system call.

        Raises :class:`ConnectionClosed` if the connection is not open, and
        ``TimeoutError`` if the message could not be written by ``deadline``
        (anyio's clock): the peer stopped reading and the buffers are full.
        """

    @abstractmethod
    async def send_close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; :meth:`run` ends when it completes.

        The caller bounds the wait for the peer's half: it calls :meth:`abort`
        by its deadline (:meth:`Connection.aclose <alphapoint.connection.Connection.aclose>`
        does, whatever happens), so a driver need not keep a timer of its own.
        """

    @abstractmethod
    async def abort(self) -> None:
        """Close the connection now, without any handshake. Idempotent."""

    # -- frames to messages ---------------------------------------------------

    def _next_slice(self) -> bytes:
        """The next :data:`READ_SLICE` bytes of the large read being fed."""
        data, at = self._unread, self._unread_at
        self._unread_at = end = at + READ_SLICE
        if end >= len(data):
            self._unread, self._unread_at = b"", 0
        return data[at:end]

    def _process(self, frames: list[Any]) -> None:
        """Assemble message frames into messages; control frames need nothing here.

        websockets' ``max_size`` bounds the bytes of a message, fragments
        included; the number of fragments is bounded here.
        """
        for frame in frames:
            self._assemble(frame.opcode, frame.fin, frame.data)

    def _assemble(self, opcode: Opcode, fin: bool, data: bytes) -> None:
        """One data frame: a message if it is whole, else a fragment kept (bounded)."""
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if fin:
                self._deliver(opcode, data)
            else:
                self._fragment_opcode = opcode
                self._fragments = bytearray(data)
                self._fragment_count = 1
        elif opcode is Opcode.CONT and (kind := self._fragment_opcode) is not None:
            self._fragment_count += 1
            if self._fragment_count > self._max_fragments:
                self._too_many_fragments()
                return  # the connection is failed: nothing more is read
            limit = self._max_message_size
            if limit is not None and len(self._fragments) + len(data) > limit:
                read = len(self._fragments)
                self._fragments, self._fragment_opcode = bytearray(), None
                self._fail_once(
                    ProtocolError(  # said as websockets says it
                        f"the peer sent a message over the size limit (frame with "
                        f"{len(data)} bytes after reading {read} bytes exceeds limit "
                        f"of {limit} bytes)"
                    ),
                    1009,
                    "message too big",
                )
                return
            self._fragments += data
            if fin:
                message = self._fragments
                self._fragments, self._fragment_opcode = bytearray(), None
                self._deliver(kind, message)

    def _too_many_fragments(self) -> None:
        self._fragments, self._fragment_opcode = bytearray(), None
        self._fail_once(
            ProtocolError(f"the peer sent a message in more than {self._max_fragments} fragments"),
            1008,
            "too many fragments",
        )

    def _fail_once(self, failure: ProtocolError, code: int, reason: str) -> None:
        """This side fails the connection (close ``code``), unless it already has."""
        if self._failure is None:
            self._failure = failure
            self._fail_with(code, reason)

    def _fail_with(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and drop the connection (websockets' ``fail``)."""
        if self._protocol.state is OPEN:
            self._protocol.fail(code, reason)

    def _deliver(self, opcode: Opcode, data: bytes | bytearray) -> None:
        if opcode is Opcode.BINARY:
            self._messages.append(bytes(data))
            return
        try:
            self._messages.append(data.decode())
        except UnicodeDecodeError:
            self._fail_once(
                ProtocolError("the peer sent a text message that is not UTF-8"),
                1007,
                "invalid UTF-8",
            )

    def _check_parser(self) -> None:
        """Record why websockets' parser failed the connection, if it did."""
        parser_exc = self._protocol.parser_exc
        if (
            parser_exc is not None
            and self._failure is None
            and not isinstance(parser_exc, EOFError)
        ):
            # EOFError is a plain connection loss, not a violation.
            self._failure = _describe_parser_error(parser_exc)

    # -- why it ended ---------------------------------------------------------

    def _close_state(self) -> tuple[int | None, str, bool]:
        """The close code and reason so far, and whether the peer's close frame came."""
        protocol = self._protocol
        received = protocol.close_rcvd
        if protocol.state is CLOSED:
            code, reason = protocol.close_code, protocol.close_reason or ""
        elif received is not None:
            # Closing: the peer's close frame already says why.
            code, reason = int(received.code), received.reason
        else:
            code, reason = None, ""
        return code, reason, received is not None

    def _closed_error(self, message: str) -> ConnectionClosed:
        code, reason, received = self._close_state()
        secrets = self.secrets
        # (Nothing to scrub, usually: no call of the set's __bool__.)
        if (reason or self._failure is not None) and secrets:
            # The gateway's words (a close reason may echo a password).
            if reason:
                reason = secrets.scrub(reason)
            if self._failure is not None and not self._failure_scrubbed:
                self._failure_scrubbed = True
                self._failure.args = tuple(
                    secrets.scrub(a) if isinstance(a, str) else a for a in self._failure.args
                )
        if self._failure is not None:
            message = f"{message}: {self._failure}"
        elif code is not None:
            message = f"{message} (code {code}{': ' + reason if reason else ''})"
        if self._failure is None and self._lost is not None and not received:
            message = f"{message}: {self._lost}"  # lost, not closed by the peer
        error = ConnectionClosed(message, code=code, reason=reason)
        error.__cause__ = self._failure
        return error


def _describe_parser_error(exc: Exception) -> ProtocolError:
    """A ProtocolError saying why websockets failed the connection."""
    name = type(exc).__name__
    if name == "PayloadTooBig":
        return ProtocolError(f"the peer sent a message over the size limit ({exc})")
    return ProtocolError(f"the peer broke the WebSocket protocol ({name}: {exc})")

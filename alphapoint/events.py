"""Event streams and subscriptions: what the gateway pushes, for one consumer each.

Each stream holds at most ``buffer`` unread events. The session's reader never
blocks on a slow consumer: when a stream is full, it ends with
:class:`EventOverflow` after the consumer has read the events it did get, so a
gap is never silent and memory stays bounded.

A stream knows only its owner (:class:`StreamOwner`, the session's
:class:`~alphapoint.hub.EventHub`), which routes events to it. A
:class:`Subscription` also sends its subscribe request through the function it
is given, is sent again after every reconnect and re-login, and unsubscribes
when the block ends. :class:`StateChanges` streams a session's states the
same way.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import anyio

from .decoding import decode_rows
from .drivers.loop import EventLike, native_clock_and_event
from .errors import AlphaPointError, AlreadySubscribed, EventOverflow, RequestError, UsageError
from .frame import Frame, MessageType
from .instruments import snapshot_instrument, subscription_key
from .models import Event
from .state import SessionState

__all__ = [
    "KNOWN_SUBSCRIPTIONS",
    "Batches",
    "Decoded",
    "EventStream",
    "Inbox",
    "MergedStream",
    "StateChanges",
    "StreamOwner",
    "Subscription",
    "merge",
]

T = TypeVar("T")

#: Subscribe function -> (the events it starts, the function that stops it).
KNOWN_SUBSCRIPTIONS: Mapping[str, tuple[frozenset[str], str | None]] = {
    "SubscribeLevel1": (frozenset({"Level1UpdateEvent"}), "UnsubscribeLevel1"),
    "SubscribeLevel2": (frozenset({"Level2UpdateEvent"}), "UnsubscribeLevel2"),
    "SubscribeTrades": (frozenset({"TradeDataUpdateEvent"}), "UnsubscribeTrades"),
    "SubscribeTicker": (frozenset({"TickerDataUpdateEvent"}), "UnsubscribeTicker"),
    "SubscribeAccountEvents": (
        frozenset(
            {
                "AccountPositionEvent",
                "OrderStateEvent",
                "OrderTradeEvent",
                "NewOrderRejectEvent",
                "CancelOrderRejectEvent",
                "CancelAllOrdersRejectEvent",
                "CancelReplaceOrderRejectEvent",
                "PendingDepositUpdate",
                "TransactionEvent",
                "DepositTicketUpdateEvent",
                "WithdrawTicketUpdateEvent",
                "MarketStateUpdate",
            }
        ),
        None,
    ),
}


class Inbox(Generic[T]):
    """Items for one consumer: ``put`` never blocks (the session's reader calls
    it), ``get`` waits; after ``close`` the consumer reads what is queued, then
    the end (``StopAsyncIteration``, or the error given).

    ``maxlen`` drops the oldest item when full; without it the owner bounds
    the queue to ``limit`` (see :meth:`EventStream.offer`).
    """

    # Slots: the hub reads an inbox for every event (docs/performance.md,
    # "The events' hand-over, seventh session").
    __slots__ = ("_error", "_new_event", "_queue", "_waiter", "closed", "limit")

    def __init__(self, maxlen: int | None = None, *, limit: int = 0) -> None:
        self._queue: deque[T] = deque(maxlen=maxlen)
        #: The most items the owner lets wait here (0: not bounded by the owner).
        self.limit = limit
        #: What the consumer waits on, while it waits: the loop's own event
        #: (a bare future under asyncio), made by the factory found at the
        #: first wait. An anyio event cost a look-up of the running library, an
        #: asyncio event, its deque and a future at every wait, and a consumer
        #: of one of many subscriptions waits for nearly every event.
        self._waiter: EventLike | None = None
        self._new_event: Callable[[], EventLike] | None = None
        self.closed = False
        self._error: BaseException | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, item: T) -> None:
        self._queue.append(item)
        if self._waiter is not None:
            self._wake()

    def close(self, error: BaseException | None = None) -> None:
        if not self.closed:
            self.closed = True
            self._error = error
            self._wake()

    async def get(self) -> T:
        while not self._queue:
            await self._wait()
        return self._queue.popleft()

    async def get_batch(self) -> list[T]:
        """Every queued item, at least one: waits only while none is queued."""
        while not self._queue:
            await self._wait()
        return self.take_all()

    def take_all(self) -> list[T]:
        """Every queued item, maybe none; once closed and empty, the error, if any."""
        queue = self._queue
        if queue:
            batch = list(queue)
            queue.clear()
            return batch
        if self.closed and self._error is not None:
            raise self._error
        return []

    async def _wait(self) -> None:
        """Wait for an item, or raise the end (the queue is empty)."""
        if self.closed:
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        new_event = self._new_event
        if new_event is None:
            new_event = self._new_event = native_clock_and_event()[1]
        self._waiter = waiter = new_event()
        await waiter.wait()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None


class StreamOwner(Protocol):
    """What a stream needs of the one that feeds it: to be let in, and let go."""

    def attach(self, stream: EventStream) -> None:
        """Start routing events to ``stream``; raises once the session has ended."""

    def detach(self, stream: EventStream) -> None:
        """Stop routing events to ``stream``."""

    def rekey(self, stream: EventStream, instrument: Any) -> None:
        """Route ``stream`` by ``instrument`` from now on (``None``: every instrument)."""


class EventStream:
    """Events from one session for one consumer; made by :meth:`Session.events`.

    Use it as an async context manager, and iterate over it inside: an event
    at a time (``async for event in stream``), or every event buffered at
    each wake-up (``async for batch in stream.batches()``). Several streams
    are read in one task through :func:`merge`.
    """

    # Slots for what the hub reads for every event (a small working set at
    # 1,000 subscriptions), and a __dict__ (made only if used) and weak
    # references as before: a stream takes attributes of its user's.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_dropped",
        "_entered",
        "_inbox",
        "_merged",
        "_open",
        "_owner",
        "functions",
        "instrument",
        "match",
    )

    def __init__(
        self,
        owner: StreamOwner,
        functions: frozenset[str],
        buffer: int,
        match: Callable[[Event], bool] | None = None,
        *,
        instrument: Any = None,
    ) -> None:
        if buffer < 1:
            raise UsageError("buffer must be at least 1")
        self._owner = owner
        #: The event names this stream takes (every event if empty).
        self.functions = functions
        #: The user's own filter, if any.
        self.match = match
        #: The instrument this stream takes (``None``: every instrument).
        self.instrument = instrument
        #: Where its events wait: its own, or the one of the merge it is in.
        self._inbox: Inbox[Event] = Inbox(limit=buffer)
        self._dropped = 0
        self._entered = False
        #: Until it ends: routed to, and its end not yet told to its inbox.
        self._open = True
        #: The merge it is read through, if any.
        self._merged: MergedStream | None = None

    async def __aenter__(self) -> EventStream:
        self._owner.attach(self)
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Unsubscribed: reading on yields what was queued, then stops (never hangs).
        self.end(None)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        return await self._readable().get()

    def batches(self) -> Batches:
        """Every event buffered at each wake-up, as a list (never empty):
        ``async for batch in stream.batches(): ...``.

        The same events, end and errors as iterating the stream, with one
        wake-up of the consumer for all the events a read brought instead of
        one for each. Iterate the stream or its batches, not both at once.
        """
        return Batches(self._readable())

    def receive_nowait(self) -> list[Event]:
        """The events buffered now, maybe none, without waiting.

        Once the stream has ended with an error (:class:`EventOverflow`, the
        session's) and its events are taken, raises that error; after a
        clean end, returns ``[]`` (see :attr:`ended`).
        """
        return self._readable().take_all()

    @property
    def ended(self) -> bool:
        """Whether the stream has ended (events it holds may still be read)."""
        return not self._open

    def _readable(self) -> Inbox[Event]:
        if not self._entered:
            raise UsageError("enter the event stream with `async with` before iterating it")
        if self._merged is not None:
            raise UsageError("this stream is merged: read its events through the merge")
        return self._inbox

    def decoded(self, model: type[T]) -> Decoded[T]:
        """The events' payloads as ``model`` rows: ``async for entry in
        book.decoded(Level2Entry)``.

        An event carrying an array of rows (Level2, trades, ticker) yields each
        row; one carrying an object (Level1, account events) yields it. A
        payload that does not fit ``model`` raises :class:`DecodeError`.
        Iterate either the stream or this view, not both.
        """
        return Decoded(self, model)

    @property
    def dropped(self) -> int:
        """Events lost because this consumer fell behind."""
        return self._dropped

    def offer(self, event: Event) -> None:
        """Queue ``event`` (called by the session's reader, never blocks)."""
        inbox = self._inbox
        queue = inbox._queue
        if len(queue) >= inbox.limit:
            if not self._open:
                return
            self._dropped += 1
            self.end(
                EventOverflow(
                    f"event consumer fell behind: more than {inbox.limit} unread events",
                    dropped=self._dropped,
                )
            )
            return
        if inbox.closed:
            return
        queue.append(event)
        if inbox._waiter is not None:
            inbox._wake()

    def end(self, error: AlphaPointError | None) -> None:
        """No more events: iteration ends after the queued ones, raising ``error`` if given."""
        if self._open:
            self._open = False
            self._owner.detach(self)
            if self._merged is not None:
                self._merged._member_ended(error)
            else:
                self._inbox.close(error)


class Batches:
    """A stream's events a wake-up's worth at a time; see :meth:`EventStream.batches`."""

    __slots__ = ("_inbox",)

    def __init__(self, inbox: Inbox[Event]) -> None:
        self._inbox = inbox

    def __aiter__(self) -> Batches:
        return self

    async def __anext__(self) -> list[Event]:
        return await self._inbox.get_batch()


class MergedStream:
    """The events of several streams, in the order they came, for one task; see :func:`merge`."""

    def __init__(self, streams: Iterable[EventStream], *, buffer: int | None = None) -> None:
        members = tuple(streams)
        if not members:
            raise UsageError("merge at least one event stream")
        if len({id(stream) for stream in members}) != len(members):
            raise UsageError("a stream is given twice to merge()")
        for stream in members:
            if stream._merged is not None:
                raise UsageError("a stream can be in one merge only")
        limit = max(stream._inbox.limit for stream in members) if buffer is None else buffer
        if limit < 1:
            raise UsageError("buffer must be at least 1")
        #: The streams merged, in the order given.
        self.streams = members
        self._inbox: Inbox[Event] = Inbox(limit=limit)
        self._open_members = 0
        error: AlphaPointError | None = None
        for stream in members:
            own = stream._inbox
            # What the stream holds already comes first, in its own order.
            self._inbox._queue.extend(own._queue)
            own._queue.clear()
            stream._inbox, stream._merged = self._inbox, self
            if stream._open:
                self._open_members += 1
            elif error is None and isinstance(own._error, AlphaPointError):
                error = own._error
        if error is not None or not self._open_members:
            self._member_ended(error)

    def __aiter__(self) -> MergedStream:
        return self

    async def __anext__(self) -> Event:
        return await self._inbox.get()

    def batches(self) -> Batches:
        """Every event buffered at each wake-up, as a list (never empty); see
        :meth:`EventStream.batches`."""
        return Batches(self._inbox)

    def receive_nowait(self) -> list[Event]:
        """The events buffered now, maybe none; see :meth:`EventStream.receive_nowait`."""
        return self._inbox.take_all()

    @property
    def ended(self) -> bool:
        """Whether the merge has ended (events it holds may still be read)."""
        return self._inbox.closed

    @property
    def dropped(self) -> int:
        """Events lost because this consumer fell behind."""
        return sum(stream.dropped for stream in self.streams)

    def _member_ended(self, error: AlphaPointError | None) -> None:
        """A stream ended: with an error, the merge ends with it (and every
        stream with it); without, the merge ends with the last of them."""
        if self._inbox.closed:
            return
        if error is None:
            self._open_members -= 1
            if self._open_members > 0:
                return
        self._inbox.close(error)
        for stream in self.streams:
            stream.end(None)  # no more routing to the others (they call back: closed)


def merge(*streams: EventStream, buffer: int | None = None) -> MergedStream:
    """Read several event streams (subscriptions...) in one task.

    ``async for batch in alphapoint.merge(*subscriptions).batches(): ...``
    takes every event buffered at each wake-up, from all of them, in the
    order they came: with a task per subscription, each event wakes a task
    of its own (docs/performance.md, "Fan-out"). The streams stay entered
    (their ``async with`` blocks subscribe and unsubscribe); from now on
    their events, and those they hold already, are read here, not from them.

    It holds at most ``buffer`` unread events (the largest of the streams'
    by default); a consumer that falls further behind gets
    :class:`EventOverflow` after the events it did receive. A stream that
    ends with an error (an overflow, the session's error, a refused
    resubscribe) ends the merge with it, after the events before it; the
    merge ends cleanly once every stream has.
    """
    return MergedStream(streams, buffer=buffer)


class Decoded(Generic[T]):
    """An event stream's payloads as typed rows; see :meth:`EventStream.decoded`."""

    def __init__(self, stream: EventStream, model: type[T]) -> None:
        self._stream = stream
        self._model = model
        self._rows: deque[T] = deque()

    def __aiter__(self) -> Decoded[T]:
        return self

    async def __anext__(self) -> T:
        while not self._rows:
            event = await self._stream.__anext__()
            self._rows.extend(decode_rows(self._model, event.payload, what=event.function))
        return self._rows.popleft()


class Subscription(EventStream):
    """A gateway subscription and the events it starts; see :meth:`Session.subscribe`.

    ``snapshot`` is the subscribe call's reply (the order book, the last
    trades...), refreshed each time the subscription is sent again after a
    reconnect; ``resubscribed`` counts those times.
    """

    __slots__ = (
        "_cancel",
        "_send",
        "function",
        "message_type",
        "payload",
        "resubscribed",
        "snapshot",
        "subscribed",
        "unsubscribe_function",
    )

    def __init__(
        self,
        owner: StreamOwner,
        function: str,
        payload: Mapping[str, Any],
        *,
        events: Iterable[str] | None,
        unsubscribe: str | None,
        buffer: int,
        match: Callable[[Event], bool] | None,
        send: Callable[[Subscription], Awaitable[None]],
        cancel: Callable[[Subscription], Awaitable[None]],
        message_type: MessageType = MessageType.REQUEST,
    ) -> None:
        payload = dict(payload)
        # The known subscriptions' event names and unsubscribe call, unless given.
        known_events, known_unsubscribe = KNOWN_SUBSCRIPTIONS.get(function, (frozenset(), None))
        names = frozenset(events) if events is not None else known_events
        if not names:
            raise UsageError(f"name the events {function} starts: events=[...]")
        # Events are routed by the instrument the payload names, unless the
        # user filters them with a match of their own.
        instrument = subscription_key(payload) if match is None else None
        super().__init__(owner, names, buffer, match, instrument=instrument)
        self.function = function
        self.payload = payload
        self.unsubscribe_function = unsubscribe if unsubscribe is not None else known_unsubscribe
        #: How it is sent: ``m=0`` as live gateways expect, or ``m=2`` (then
        #: unsubscribed with ``m=4``) for gateways that follow the documentation.
        self.message_type = message_type
        self.snapshot: Any = None
        self.resubscribed = 0
        #: Whether the subscribe call has been answered: until then it is the
        #: entering task's to send (and send again after a code-20 re-login),
        #: not the reconnects' and re-logins' that send the live ones again.
        self.subscribed = False
        self._send = send
        self._cancel = cancel

    def snapshot_rows(self, model: type[T]) -> list[T]:
        """The ``snapshot`` as ``model`` rows (a book's entries, the last trades...)."""
        return decode_rows(model, self.snapshot, what=self.function)

    @property
    def unsubscribe_type(self) -> MessageType:
        """How the unsubscribe call goes: as the subscribe did (``m=4`` after ``m=2``)."""
        if self.message_type is MessageType.SUBSCRIBE:
            return MessageType.UNSUBSCRIBE
        return self.message_type

    async def resend(
        self, call: Callable[[str, Any], Awaitable[Any]], *, same_connection: bool
    ) -> None:
        """Send the subscription again through ``call`` (a new or re-logged-in connection).

        On the connection it was made on (a re-login), code 909 "Already
        Subscribed" means it still is: live gateways keep a subscription
        across a re-login. Any other refusal ends the stream with that error.
        """
        try:
            self.snapshot = await call(self.function, self.payload)
        except RequestError as exc:
            if not (same_connection and isinstance(exc, AlreadySubscribed)):
                self.end(exc)
                return
        self.resubscribed += 1

    async def __aenter__(self) -> Subscription:
        self._owner.attach(self)
        self._entered = True
        try:
            await self._send(self)
        except BaseException:
            self._owner.detach(self)
            raise
        self.subscribed = True
        return self

    def replied(self, frame: Frame) -> None:
        """The subscribe call's reply, where it was read (before any later event).

        Subscribed by Symbol: the snapshot says which instrument id that is,
        and events name the id; if it does not say, take every instrument.
        """
        if isinstance(self.instrument, tuple) and frame.type is MessageType.REPLY:
            self._owner.rekey(self, snapshot_instrument(self.function, frame.payload))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end(None)
        if self.unsubscribe_function is not None:
            # Best effort: the block is over whether or not the gateway hears it.
            with contextlib.suppress(AlphaPointError), anyio.CancelScope(shield=True):
                await self._cancel(self)


class StateChanges:
    """The states a session enters, as an async iterator; see :meth:`Session.state_changes`."""

    def __init__(self, owner: StateOwner, buffer: int) -> None:
        self._owner = owner
        # A slow reader loses the oldest states, never the latest.
        self._inbox: Inbox[SessionState] = Inbox(maxlen=buffer)

    async def __aenter__(self) -> StateChanges:
        self._owner.watch(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._owner.unwatch(self)

    def __aiter__(self) -> StateChanges:
        return self

    async def __anext__(self) -> SessionState:
        return await self._inbox.get()

    def offer(self, state: SessionState) -> None:
        """Queue ``state`` (never blocks; the oldest is lost when full)."""
        self._inbox.put(state)

    def end(self) -> None:
        """The session has ended: iteration stops after the queued states."""
        self._inbox.close()


class StateOwner(Protocol):
    """What a :class:`StateChanges` needs of the one that feeds it."""

    def watch(self, changes: StateChanges) -> None:
        """Start offering states to ``changes`` (ended at once if the session has)."""

    def unwatch(self, changes: StateChanges) -> None:
        """Stop offering states to ``changes``."""

"""Event streams and subscriptions: what the gateway pushes, for one consumer each.

Each stream holds at most ``buffer`` unread events. The session's reader never
blocks on a slow consumer: when a stream is full, it ends with
:class:`EventOverflow` after the consumer has read the events it did get, so a
gap is never silent and memory stays bounded.

A :class:`Subscription` also sends its ``m=2`` request, is sent again after
every reconnect and re-login, and unsubscribes when the block ends.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from .errors import AlphaPointError, EventOverflow
from .models import Event

if TYPE_CHECKING:
    from .session import Session

__all__ = ["KNOWN_SUBSCRIPTIONS", "EventStream", "Inbox", "Subscription"]

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
    the queue (see :meth:`EventStream.offer`).
    """

    def __init__(self, maxlen: int | None = None) -> None:
        self._queue: deque[T] = deque(maxlen=maxlen)
        self._waiter: anyio.Event | None = None
        self.closed = False
        self._error: BaseException | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, item: T) -> None:
        self._queue.append(item)
        self._wake()

    def close(self, error: BaseException | None = None) -> None:
        if not self.closed:
            self.closed = True
            self._error = error
            self._wake()

    async def get(self) -> T:
        while True:
            if self._queue:
                return self._queue.popleft()
            if self.closed:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._waiter = anyio.Event()
            await self._waiter.wait()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None


class EventStream:
    """Events from one session for one consumer; made by :meth:`Session.events`.

    Use it as an async context manager, and iterate over it inside.
    """

    def __init__(
        self,
        session: Session,
        functions: frozenset[str],
        buffer: int,
        match: Callable[[Event], bool] | None = None,
    ) -> None:
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        self._session = session
        self._functions = functions
        self._match = match
        self._buffer = buffer
        self._inbox: Inbox[Event] = Inbox()
        self._dropped = 0
        self._entered = False

    async def __aenter__(self) -> EventStream:
        self._session._attach(self)
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
        if not self._entered:
            raise RuntimeError("enter the event stream with `async with` before iterating it")
        return await self._inbox.get()

    @property
    def dropped(self) -> int:
        """Events lost because this consumer fell behind."""
        return self._dropped

    def wants(self, event: Event) -> bool:
        """Whether this stream takes ``event``."""
        if self._functions and event.function not in self._functions:
            return False
        return self._match is None or self._match(event)

    def offer(self, event: Event) -> None:
        """Queue ``event`` (called by the session's reader, never blocks)."""
        if self._inbox.closed:
            return
        if len(self._inbox) >= self._buffer:
            self._dropped += 1
            self.end(
                EventOverflow(
                    f"event consumer fell behind: more than {self._buffer} unread events",
                    dropped=self._dropped,
                )
            )
            return
        self._inbox.put(event)

    def end(self, error: AlphaPointError | None) -> None:
        """No more events: iteration ends after the queued ones, raising ``error`` if given."""
        if not self._inbox.closed:
            self._session._detach(self)
            self._inbox.close(error)


class Subscription(EventStream):
    """A gateway subscription (``m=2``) and the events it starts; see :meth:`Session.subscribe`.

    ``snapshot`` is the subscribe call's reply (the order book, the last
    trades...), refreshed each time the subscription is sent again after a
    reconnect; ``resubscribed`` counts those times.
    """

    def __init__(
        self,
        session: Session,
        function: str,
        payload: Mapping[str, Any],
        *,
        events: frozenset[str],
        unsubscribe: str | None,
        buffer: int,
        match: Callable[[Event], bool] | None,
    ) -> None:
        super().__init__(session, events, buffer, match)
        self.function = function
        self.payload = dict(payload)
        self.unsubscribe_function = unsubscribe
        self.snapshot: Any = None
        self.resubscribed = 0

    async def __aenter__(self) -> Subscription:
        self._session._attach(self)
        self._entered = True
        try:
            await self._session._send_subscription(self)
        except BaseException:
            self._session._detach(self)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end(None)
        if self.unsubscribe_function is not None and self._session.is_open:
            # Best effort: the block is over whether or not the gateway hears it.
            with contextlib.suppress(AlphaPointError), anyio.CancelScope(shield=True):
                await self._session._send_unsubscribe(self)


def instrument_matcher(payload: Mapping[str, Any]) -> Callable[[Event], bool] | None:
    """For a subscription naming an ``InstrumentId``: only that instrument's events."""
    instrument = payload.get("InstrumentId")
    if instrument is None:
        return None

    def match(event: Event) -> bool:
        # Array-shaped updates (Level2, Trades) carry no named id: keep them.
        data = event.payload
        return not isinstance(data, dict) or data.get("InstrumentId", instrument) == instrument

    return match

"""The event hub: each event reaches exactly the streams that take it, found by
event name and instrument, whatever the number of streams.

The hub is pure (no I/O): these tests drive it directly. How the routing costs
per event as subscriptions grow is a benchmark (``benchmarks/dispatch.py``,
docs/performance.md), not a timed test; what is asserted here is the work
itself: which streams are asked, not how long it took.
"""

from __future__ import annotations

import weakref
from collections import deque
from typing import Any

import anyio
import pytest

import alphapoint
from alphapoint.events import EventStream, StateChanges, Subscription
from alphapoint.hub import EventHub
from alphapoint.models import Event
from alphapoint.state import SessionState

from .helpers import LIMIT


class CountingStream(EventStream):
    """A stream that counts how often the hub offered it an event."""

    def __init__(self, hub: EventHub, functions: frozenset[str], **options: Any) -> None:
        super().__init__(hub, functions, 1_000_000, **options)
        self.offered = 0
        self.taken: list[Event] = []

    def offer(self, event: Event) -> None:
        self.offered += 1
        self.taken.append(event)
        super().offer(event)


LEVEL1 = frozenset({"Level1UpdateEvent"})


def level1(instrument: Any, **fields: Any) -> Event:
    return Event("Level1UpdateEvent", {"InstrumentId": instrument, **fields}, 1)


@pytest.mark.parametrize("count", [1, 10, 1000])
def test_an_event_is_offered_only_to_its_instruments_stream(count: int) -> None:
    hub = EventHub()
    streams = [CountingStream(hub, LEVEL1, instrument=n) for n in range(count)]
    for stream in streams:
        hub.attach(stream)
    for n in range(count):
        hub.deliver(level1(n, BestBid=n))
    # One offer per event, to its own stream: the others were never asked.
    assert [s.offered for s in streams] == [1] * count
    assert all(s.taken[0].payload["InstrumentId"] == n for n, s in enumerate(streams))


def test_events_without_an_instrument_reach_every_stream_of_their_name() -> None:
    hub = EventHub()
    keyed = [CountingStream(hub, LEVEL1, instrument=n) for n in range(3)]
    other = CountingStream(hub, frozenset({"TradeDataUpdateEvent"}), instrument=1)
    for stream in [*keyed, other]:
        hub.attach(stream)
    hub.deliver(Event("Level1UpdateEvent", [[1, 2, 3]], 1))  # array-shaped
    hub.deliver(Event("Level1UpdateEvent", {"OMSId": 1}, 2))  # names no instrument
    assert [s.offered for s in keyed] == [2, 2, 2]
    assert other.offered == 0


def test_unkeyed_streams_filter_with_their_match_and_catch_alls_take_everything() -> None:
    hub = EventHub()
    matched = CountingStream(hub, LEVEL1, match=lambda e: e.payload["BestBid"] > 5)
    everything = CountingStream(hub, frozenset())
    keyed = CountingStream(hub, LEVEL1, instrument=2)
    for stream in (matched, everything, keyed):
        hub.attach(stream)
    for bid in range(10):
        hub.deliver(level1(2, BestBid=bid))
    hub.deliver(Event("LogoutEvent", {}, 3))
    assert matched.offered == 4
    assert everything.offered == 11
    assert keyed.offered == 10


def test_a_detached_stream_is_forgotten_and_routes_are_removed() -> None:
    hub = EventHub()
    first = CountingStream(hub, LEVEL1, instrument=1)
    second = CountingStream(hub, LEVEL1, instrument=1)
    hub.attach(first)
    hub.attach(second)
    first.end(None)
    first.end(None)  # idempotent
    hub.deliver(level1(1))
    assert (first.offered, second.offered) == (0, 1)
    assert hub.streams() == [second]
    second.end(None)
    assert hub.streams() == []
    hub.deliver(level1(1))
    assert second.offered == 1


def test_a_stream_that_overflows_leaves_the_others_routed() -> None:
    hub = EventHub()
    small = EventStream(hub, LEVEL1, 1, instrument=1)
    big = CountingStream(hub, LEVEL1, instrument=1)
    hub.attach(small)
    hub.attach(big)
    for n in range(3):
        hub.deliver(level1(1, n=n))
    assert small.dropped == 1
    assert big.offered == 3
    assert hub.streams() == [big]


def test_the_end_ends_every_stream_and_refuses_new_ones() -> None:
    hub = EventHub()
    stream = CountingStream(hub, LEVEL1, instrument=1)
    hub.attach(stream)
    states = StateChanges(hub, 4)
    hub.watch(states)
    hub.publish_state(SessionState.RECONNECTING)
    error = alphapoint.ConnectionClosed("gone")
    hub.end(error, attach_error=lambda: alphapoint.SessionClosed("ended"))
    assert hub.streams() == []
    with pytest.raises(alphapoint.SessionClosed, match="ended"):
        hub.attach(CountingStream(hub, LEVEL1))
    late = StateChanges(hub, 4)
    hub.watch(late)  # ended at once: iterating it stops


def _entered(stream: EventStream) -> EventStream:
    """``stream`` attached and readable, as its ``async with`` leaves it."""
    stream._owner.attach(stream)
    stream._entered = True
    return stream


def test_deliver_all_routes_a_batch_as_deliver_routes_each_event() -> None:
    """The batch path takes the usual event's shortcut (one plain stream of its
    instrument) and every other case through deliver: the same streams get the
    same events, in order."""
    hub = EventHub()
    one = _entered(EventStream(hub, LEVEL1, 100, instrument=1))
    two = _entered(EventStream(hub, LEVEL1, 100, instrument=2))
    counted = CountingStream(hub, frozenset({"TradeDataUpdateEvent"}), instrument=1)
    hub.attach(counted)  # a subclass with an offer of its own: asked for each of its events
    shared = [CountingStream(hub, frozenset({"TickerDataUpdateEvent"}), instrument=1)]
    shared.append(CountingStream(hub, frozenset({"TickerDataUpdateEvent"}), instrument=1))
    for stream in shared:
        hub.attach(stream)
    events = deque(
        [
            level1(1, n=0),
            level1(2, n=1),
            level1(3, n=2),  # no stream of instrument 3
            Event("Level1UpdateEvent", {"OMSId": 1}, 4),  # names no instrument: both
            Event("TradeDataUpdateEvent", [[0, 1, 2]], 5),  # array-shaped, instrument 1
            Event("TickerDataUpdateEvent", {"InstrumentId": 1}, 6),  # two streams of it
            Event("NoSuchEvent", {"InstrumentId": 1}, 7),  # no route
            level1(1, n=3),
            Event("TradeDataUpdateEvent", {"InstrumentId": 1}, 8),  # to the subclass
        ]
    )
    assert hub.deliver_all(events, until="LogoutEvent") is False
    assert not events
    assert [e.seq for e in one.receive_nowait()] == [1, 4, 1]
    assert [(e.seq, e.payload.get("n")) for e in two.receive_nowait()] == [(1, 1), (4, None)]
    assert [e.seq for e in counted.taken] == [5, 8]
    assert [s.offered for s in shared] == [1, 1]


def test_deliver_all_stops_right_after_the_event_named_until() -> None:
    hub = EventHub()
    stream = _entered(EventStream(hub, LEVEL1, 100, instrument=1))
    everything = _entered(EventStream(hub, frozenset(), 100))
    events = deque([level1(1, n=0), Event("LogoutEvent", {}, 2), level1(1, n=1)])
    assert hub.deliver_all(events, until="LogoutEvent") is True
    # The LogoutEvent was delivered; the event after it waits for the next call.
    assert [e.function for e in everything.receive_nowait()] == [
        "Level1UpdateEvent",
        "LogoutEvent",
    ]
    assert [e.payload["n"] for e in stream.receive_nowait()] == [0]
    assert [e.payload["n"] for e in events] == [1]
    assert hub.deliver_all(events, until="LogoutEvent") is False
    assert [e.payload["n"] for e in stream.receive_nowait()] == [1]


def test_deliver_all_ends_a_full_stream_with_an_overflow_after_its_events() -> None:
    hub = EventHub()
    small = _entered(EventStream(hub, LEVEL1, 2, instrument=1))
    other = _entered(EventStream(hub, LEVEL1, 100, instrument=2))
    events = deque(level1(1 + n % 2, n=n) for n in range(8))
    assert hub.deliver_all(events, until="LogoutEvent") is False
    assert small.dropped == 1
    assert small.ended
    assert [e.payload["n"] for e in small.receive_nowait()] == [0, 2]
    with pytest.raises(alphapoint.EventOverflow):
        small.receive_nowait()
    assert [e.payload["n"] for e in other.receive_nowait()] == [1, 3, 5, 7]
    assert hub.streams() == [other]


def test_deliver_all_feeds_a_merge_in_the_order_the_events_came() -> None:
    hub = EventHub()
    streams = [_entered(EventStream(hub, LEVEL1, 100, instrument=n)) for n in (1, 2, 3)]
    merged = alphapoint.merge(*streams)
    events = deque(level1(1 + n % 3, n=n) for n in range(9))
    assert hub.deliver_all(events, until="LogoutEvent") is False
    assert [e.payload["n"] for e in merged.receive_nowait()] == list(range(9))


def test_deliver_all_leaves_the_events_after_one_whose_match_raised() -> None:
    """A stream's match that raises goes through deliver_all; the events before
    it and itself are taken from the batch, the ones after it are left in it,
    as when each was taken before it was handed over."""
    hub = EventHub()
    plain = _entered(EventStream(hub, LEVEL1, 100, instrument=1))

    def picky(event: Event) -> bool:
        if event.payload["n"] == 2:
            raise LookupError("the user's match failed")
        return True

    _entered(EventStream(hub, frozenset({"TradeDataUpdateEvent"}), 100, picky))
    events = deque(
        [
            level1(1, n=0),
            Event("TradeDataUpdateEvent", {"InstrumentId": 1, "n": 1}, 2),
            Event("TradeDataUpdateEvent", {"InstrumentId": 1, "n": 2}, 3),
            level1(1, n=3),
        ]
    )
    with pytest.raises(LookupError, match="the user's match failed"):
        hub.deliver_all(events, until="LogoutEvent")
    assert [e.payload["n"] for e in events] == [3]
    assert [e.payload["n"] for e in plain.receive_nowait()] == [0]
    assert hub.deliver_all(events, until="LogoutEvent") is False
    assert [e.payload["n"] for e in plain.receive_nowait()] == [3]


def test_deliver_all_stops_after_until_when_streams_of_its_name_are_keyed() -> None:
    """A stream keyed by instrument for the very name that stops a batch: its
    events are still compared with ``until``."""
    hub = EventHub()
    logouts = _entered(EventStream(hub, frozenset({"LogoutEvent"}), 100, instrument=1))
    plain = _entered(EventStream(hub, LEVEL1, 100, instrument=1))
    events = deque([level1(1, n=0), Event("LogoutEvent", {"InstrumentId": 1}, 2), level1(1, n=1)])
    assert hub.deliver_all(events, until="LogoutEvent") is True
    assert [e.seq for e in logouts.receive_nowait()] == [2]
    assert [e.payload["n"] for e in plain.receive_nowait()] == [0]
    assert [e.payload["n"] for e in events] == [1]


def test_deliver_all_follows_streams_as_they_come_and_go() -> None:
    """The batch path's shortcut follows every attach and detach: a stream of
    every instrument, a second stream of one instrument, a stream of every
    name, a stream with a match, and their leaving again."""
    hub = EventHub()
    one = _entered(EventStream(hub, LEVEL1, 100, instrument=1))

    def batch(*ns: int) -> None:
        assert hub.deliver_all(deque(level1(1, n=n) for n in ns), until="LogoutEvent") is False

    def taken(stream: EventStream) -> list[int]:
        return [e.payload["n"] for e in stream.receive_nowait()]

    batch(0)
    unkeyed = _entered(EventStream(hub, LEVEL1, 100))
    batch(1)
    assert (taken(one), taken(unkeyed)) == ([0, 1], [1])
    unkeyed.end(None)
    second = _entered(EventStream(hub, LEVEL1, 100, instrument=1))
    batch(2)
    assert (taken(one), taken(second)) == ([2], [2])
    second.end(None)
    everything = _entered(EventStream(hub, frozenset(), 100))
    batch(3)
    assert (taken(one), taken(everything)) == ([3], [3])
    everything.end(None)
    one.end(None)
    assert taken(one) == []
    picky = _entered(EventStream(hub, LEVEL1, 100, lambda e: e.payload["n"] % 2 == 0))
    hub.rekey(picky, 1)  # keyed, with a match of its own
    batch(4, 5, 6)
    assert taken(picky) == [4, 6]
    picky.end(None)
    last = _entered(EventStream(hub, LEVEL1, 100, instrument=1))
    batch(7)
    assert taken(last) == [7]
    assert hub.streams() == [last]


def test_streams_take_attributes_of_their_users_and_weak_references() -> None:
    """Streams keep the hub's per-event reads in slots, and what users could do
    with them before: set attributes of their own, refer to them weakly."""

    async def send(subscription: Subscription) -> None:
        """Not called: the subscription is never entered."""

    hub = EventHub()
    subscription = Subscription(
        hub,
        "SubscribeLevel1",
        {"OMSId": 1, "InstrumentId": 1},
        events=None,
        unsubscribe=None,
        buffer=10,
        match=None,
        send=send,
        cancel=send,
    )
    for stream in (EventStream(hub, LEVEL1, 10), subscription):
        stream.label = "mine"  # type: ignore[attr-defined]
        assert stream.label == "mine"  # type: ignore[attr-defined]
        assert weakref.ref(stream)() is stream
    assert subscription.instrument == 1
    assert subscription.functions == LEVEL1
    assert subscription.unsubscribe_function == "UnsubscribeLevel1"


@pytest.mark.anyio
async def test_subscriptions_route_each_instrument_to_its_own_stream(
    alphapoint_gateway: Any,
) -> None:
    """End to end: two Level1 subscriptions on one session, each gets only its own."""
    gateway = alphapoint_gateway.gateway
    with anyio.fail_after(LIMIT):
        got_one, got_two = await _two_instruments(alphapoint_gateway, gateway)
    assert [p["InstrumentId"] for p in got_one] == [1, 1, 1]
    assert [p["InstrumentId"] for p in got_two] == [2, 2, 2]
    assert [p["LastTradedPx"] for p in got_two] == [0, 1, 2]


async def _two_instruments(fixture: Any, gateway: Any) -> tuple[list[Any], list[Any]]:
    async with alphapoint.connect(fixture.url) as session:
        await session.login(fixture.accounts.password)
        async with (
            session.subscribe("SubscribeLevel1", {"OMSId": 1, "InstrumentId": 1}) as one,
            session.subscribe("SubscribeLevel1", {"OMSId": 1, "InstrumentId": 2}) as two,
        ):
            assert isinstance(one, Subscription)
            for n in range(3):
                for instrument in (1, 2):
                    payload = {"OMSId": 1, "InstrumentId": instrument, "LastTradedPx": n}
                    assert await gateway.publish("Level1UpdateEvent", payload) == 1
            got_one = [(await one.__anext__()).payload for _ in range(3)]
            got_two = [(await two.__anext__()).payload for _ in range(3)]
    return got_one, got_two

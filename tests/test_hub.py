"""The event hub: each event reaches exactly the streams that take it, found by
event name and instrument, whatever the number of streams.

The hub is pure (no I/O): these tests drive it directly. How the routing costs
per event as subscriptions grow is a benchmark (``benchmarks/dispatch.py``,
docs/performance.md), not a timed test; what is asserted here is the work
itself: which streams are asked, not how long it took.
"""

from __future__ import annotations

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

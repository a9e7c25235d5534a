"""Many subscriptions read in one task: ``merge()``, ``batches()`` and ``receive_nowait()``.

A collector with a task per subscription wakes a task for nearly every event;
a merge takes every subscription's events in one queue, read a wake-up's
worth at a time. These tests hold it to the rules of a single stream: bounded,
its gap never silent (``EventOverflow`` after the events it did get), ending
after what it holds. A stream of every Level1 event, read beside the merge,
says when the events have reached the session (no polling, no timing).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import alphapoint
from alphapoint import Event, EventOverflow, Subscription, UsageError
from alphapoint.testing import GatewayFixture

from .helpers import LIMIT

pytestmark = pytest.mark.anyio

LEVEL1 = "Level1UpdateEvent"


def level1(instrument: int, n: int) -> dict[str, Any]:
    return {"OMSId": 1, "InstrumentId": instrument, "BestBid": n}


def connect(fixture: GatewayFixture) -> alphapoint.connect:
    return alphapoint.connect(fixture.url, credentials=fixture.accounts.password)


def subscribe(session: alphapoint.Session, instrument: int, **options: Any) -> Subscription:
    return session.subscribe("SubscribeLevel1", {"OMSId": 1, "InstrumentId": instrument}, **options)


@contextlib.asynccontextmanager
async def two_instruments(
    fixture: GatewayFixture,
) -> AsyncIterator[tuple[alphapoint.EventStream, Subscription, Subscription]]:
    """A logged-in session's stream of every Level1 event, and its subscriptions to 1 and 2."""
    async with (
        connect(fixture) as session,
        session.events(LEVEL1) as everything,
        subscribe(session, 1) as one,
        subscribe(session, 2) as two,
    ):
        yield everything, one, two


async def publish(fixture: GatewayFixture, *instruments: int) -> None:
    """One Level1 event per instrument given, in order, ``BestBid`` counting from 0."""
    for n, instrument in enumerate(instruments):
        assert await fixture.gateway.publish(LEVEL1, level1(instrument, n)) == 1


async def reached(everything: alphapoint.EventStream, count: int) -> None:
    """Wait until ``count`` events have reached the session (and so every stream)."""
    for _ in range(count):
        await everything.__anext__()


def bids(events: list[Event]) -> list[tuple[int, int]]:
    return [(e.payload["InstrumentId"], e.payload["BestBid"]) for e in events]


async def test_a_merge_yields_every_subscriptions_events_in_the_order_they_came(
    alphapoint_gateway: GatewayFixture,
) -> None:
    async with (
        connect(alphapoint_gateway) as session,
        subscribe(session, 1) as one,
        subscribe(session, 2) as two,
        subscribe(session, 3) as three,
    ):
        merged = alphapoint.merge(one, two, three)
        assert merged.streams == (one, two, three)
        with anyio.fail_after(LIMIT):
            await publish(alphapoint_gateway, 1, 3, 2, 1, 3)
            got = [await merged.__anext__() for _ in range(5)]
        assert bids(got) == [(1, 0), (3, 1), (2, 2), (1, 3), (3, 4)]
        assert merged.receive_nowait() == []
        assert not merged.ended
        assert merged.dropped == 0


async def test_batches_take_every_buffered_event_at_one_wake_up(
    alphapoint_gateway: GatewayFixture,
) -> None:
    async with two_instruments(alphapoint_gateway) as (everything, one, two):
        merged = alphapoint.merge(one, two)
        with anyio.fail_after(LIMIT):
            await publish(alphapoint_gateway, 1, 2, 2, 1)
            await reached(everything, 4)
            # All four are buffered: one batch holds them all.
            batches = merged.batches()
            assert bids(await batches.__anext__()) == [(1, 0), (2, 1), (2, 2), (1, 3)]
            await publish(alphapoint_gateway, 2)
            assert bids(await batches.__anext__()) == [(2, 0)]


async def test_one_subscriptions_batches_and_receive_nowait(
    alphapoint_gateway: GatewayFixture,
) -> None:
    async with (
        connect(alphapoint_gateway) as session,
        session.events(LEVEL1) as everything,
        subscribe(session, 1) as one,
    ):
        assert one.receive_nowait() == []
        with anyio.fail_after(LIMIT):
            await publish(alphapoint_gateway, 1, 1, 1)
            await reached(everything, 3)
            assert bids(one.receive_nowait()) == [(1, 0), (1, 1), (1, 2)]
            assert one.receive_nowait() == []
            await publish(alphapoint_gateway, 1, 1)
            await reached(everything, 2)
            async for batch in one.batches():
                assert bids(batch) == [(1, 0), (1, 1)]
                break
    # Unsubscribed: a batch iteration ends, receive_nowait has nothing.
    assert one.ended
    assert [batch async for batch in one.batches()] == []
    assert one.receive_nowait() == []


async def test_what_a_stream_held_before_the_merge_comes_first(
    alphapoint_gateway: GatewayFixture,
) -> None:
    async with two_instruments(alphapoint_gateway) as (everything, one, two):
        with anyio.fail_after(LIMIT):
            await publish(alphapoint_gateway, 2, 1)
            await reached(everything, 2)
            merged = alphapoint.merge(one, two)
            await publish(alphapoint_gateway, 1)
            await reached(everything, 1)
            assert bids(merged.receive_nowait()) == [(1, 1), (2, 0), (1, 0)]


async def test_a_merge_that_falls_behind_gets_event_overflow_after_what_it_got(
    alphapoint_gateway: GatewayFixture,
) -> None:
    async with two_instruments(alphapoint_gateway) as (everything, one, two):
        merged = alphapoint.merge(one, two, buffer=2)
        with anyio.fail_after(LIMIT):
            await publish(alphapoint_gateway, 1, 2, 2, 1, 2)
            await reached(everything, 5)
        # Ended by the third event: no more are routed to either stream.
        assert (merged.ended, one.ended, two.ended) == (True, True, True)
        assert (merged.dropped, one.dropped, two.dropped) == (1, 0, 1)
        batches = merged.batches()
        assert bids(await batches.__anext__()) == [(1, 0), (2, 1)]
        with pytest.raises(EventOverflow) as info:
            await batches.__anext__()
        assert info.value.dropped == 1
        assert "more than 2 unread events" in str(info.value)
        # The error is raised again, never a silent end.
        with pytest.raises(EventOverflow):
            merged.receive_nowait()
        with pytest.raises(EventOverflow):
            await merged.__anext__()


async def test_a_merge_ends_once_every_stream_has_after_what_it_holds(
    alphapoint_gateway: GatewayFixture,
) -> None:
    async with (
        connect(alphapoint_gateway) as session,
        session.events(LEVEL1) as everything,
    ):
        async with contextlib.AsyncExitStack() as stack:
            one = await stack.enter_async_context(subscribe(session, 1))
            async with subscribe(session, 2) as two:
                merged = alphapoint.merge(one, two)
                with anyio.fail_after(LIMIT):
                    await publish(alphapoint_gateway, 1)
                    await reached(everything, 1)
            assert not merged.ended
        assert merged.ended
        assert bids([event async for event in merged]) == [(1, 0)]


async def test_leaving_one_subscription_leaves_the_merge_open(
    alphapoint_gateway: GatewayFixture,
) -> None:
    async with (
        connect(alphapoint_gateway) as session,
        session.events(LEVEL1) as everything,
        subscribe(session, 1) as one,
    ):
        async with subscribe(session, 2) as two:
            merged = alphapoint.merge(one, two)
            with anyio.fail_after(LIMIT):
                await publish(alphapoint_gateway, 2)
                await reached(everything, 1)
        assert two.ended
        assert not merged.ended
        with anyio.fail_after(LIMIT):
            await publish(alphapoint_gateway, 1)
            got = [await merged.__anext__() for _ in range(2)]
        assert bids(got) == [(2, 0), (1, 0)]
        assert alphapoint_gateway.gateway.subscribers("SubscribeLevel1") == 1
    # The session has ended: so has the merge.
    assert merged.ended
    assert [event async for event in merged] == []


async def test_a_merged_stream_is_read_only_through_its_merge(
    alphapoint_gateway: GatewayFixture,
) -> None:
    async with (
        connect(alphapoint_gateway) as session,
        subscribe(session, 1) as one,
        subscribe(session, 2) as two,
    ):
        alphapoint.merge(one)
        with pytest.raises(UsageError, match="merged"):
            await one.__anext__()
        with pytest.raises(UsageError, match="merged"):
            one.batches()
        with pytest.raises(UsageError, match="merged"):
            one.receive_nowait()
        with pytest.raises(UsageError, match="one merge only"):
            alphapoint.merge(two, one)
        with pytest.raises(UsageError, match="twice"):
            alphapoint.merge(two, two)
        with pytest.raises(UsageError, match="at least one"):
            alphapoint.merge()
        with pytest.raises(UsageError, match="at least 1"):
            alphapoint.merge(two, buffer=0)
        # Refused merges leave the stream readable on its own.
        assert two.receive_nowait() == []


async def test_a_stream_not_entered_cannot_be_read_in_batches(
    alphapoint_gateway: GatewayFixture,
) -> None:
    async with connect(alphapoint_gateway) as session:
        stream = session.events(LEVEL1)
        with pytest.raises(UsageError, match="async with"):
            stream.receive_nowait()
        with pytest.raises(UsageError, match="async with"):
            stream.batches()

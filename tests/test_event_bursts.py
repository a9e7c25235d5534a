"""A consumer that keeps up never overflows, however the reads come.

Under uvloop one turn of the loop used to deliver a whole burst of reads before
the consumer task ran: a subscriber that only counted events got EventOverflow
with the default ``event_buffer`` (1,024) at a steady 50,000 events a second.
Reads are now handed over in slices with a turn of the loop between them, so
the consumer runs between slices. A consumer that really falls behind still
gets the typed overflow.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

import alphapoint
from alphapoint.frame import Frame, MessageType
from alphapoint.testing.scripted import ScriptedConnection, serve_script

from .helpers import LIMIT

pytestmark = pytest.mark.anyio

BURST = 20_000


def bursting(count: int) -> object:
    """Answers the first request, then writes ``count`` events in one write."""

    async def script(connection: ScriptedConnection) -> None:
        request = await connection.receive_frame()
        await connection.reply(request, {"msg": "PONG"})
        events = [Frame(MessageType.EVENT, n, "TickEvent", {"n": n}) for n in range(count)]
        await connection.send_together(*events)
        await connection.wait_closed()

    return script


async def test_a_consumer_that_keeps_up_gets_a_burst_whole() -> None:
    async with (
        serve_script(bursting(BURST)) as server,  # type: ignore[arg-type]
        alphapoint.connect(server.url, logout_on_close=False) as session,
        session.events("TickEvent") as ticks,
    ):
        with anyio.fail_after(LIMIT):
            await session.call("Ping")
            seen = 0
            async for event in ticks:
                assert event.payload["n"] == seen
                seen += 1
                if seen == BURST:
                    break
        assert ticks.dropped == 0


async def test_a_consumer_that_falls_behind_still_gets_event_overflow() -> None:
    async with (
        serve_script(bursting(5_000)) as server,  # type: ignore[arg-type]
        alphapoint.connect(server.url, logout_on_close=False, event_buffer=100) as session,
        session.events("TickEvent") as ticks,
    ):
        seen = 0

        async def read_slowly() -> None:
            nonlocal seen
            async for _ in ticks:
                seen += 1
                await anyio.sleep(0.01)  # far slower than the gateway

        with anyio.fail_after(LIMIT):
            await session.call("Ping")
            with pytest.raises(alphapoint.EventOverflow) as info:
                await read_slowly()
    assert info.value.dropped >= 1
    assert seen >= 100  # what it did receive came first

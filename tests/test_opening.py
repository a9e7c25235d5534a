"""Opening a connection without paying for what a login does not need (issue 16).

The asyncio and picows drivers' openers are bounded by a timer of the loop's
own (:class:`AsyncioDeadline`), not by anyio's ``fail_after``; a set-up takes a
free turn of the open limiter without yielding (:func:`take_turn`). Both must
behave as what they replace: a timeout is a ``TimeoutError``, any other
cancellation goes through, and nobody jumps the limiter's queue.
"""

from __future__ import annotations

import asyncio
import sys

import anyio
import pytest

from alphapoint.drivers.alarms import TICK, AsyncioDeadline, current_alarm_clock
from alphapoint.open_limit import take_turn
from alphapoint.testing.pytest_plugin import GatewayFixture

from .helpers import LIMIT, open_and_ping, wait_until

pytestmark = pytest.mark.anyio

#: asyncio's loop and uvloop's (AsyncioDeadline is for asyncio tasks only).
ASYNCIO_LOOPS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
]


@pytest.mark.parametrize("anyio_backend", ASYNCIO_LOOPS)
async def test_an_expired_deadline_ends_the_block_with_timeout_error() -> None:
    with pytest.raises(TimeoutError), AsyncioDeadline(0):
        await asyncio.get_running_loop().create_future()  # never done
    task = asyncio.current_task()
    assert task is not None
    if sys.version_info >= (3, 11):
        assert task.cancelling() == 0  # its own cancellation taken back
    await asyncio.sleep(0)  # and nothing is left to cancel the task later


@pytest.mark.parametrize("anyio_backend", ASYNCIO_LOOPS)
async def test_a_deadline_that_does_not_expire_leaves_the_task_alone() -> None:
    with AsyncioDeadline(LIMIT) as deadline:
        await asyncio.sleep(0)
    assert not deadline.expired
    await asyncio.sleep(0)


@pytest.mark.parametrize("anyio_backend", ASYNCIO_LOOPS)
async def test_a_deadline_stays_filed_when_the_last_connection_leaves_the_alarm_clock(
    alphapoint_gateway: GatewayFixture,
) -> None:
    """Under asyncio's own loop the deadline is kept by the loop's alarm clock, as
    a member of its own: a session that opens and closes meanwhile (its
    connection the last to leave the clock, which then forgets what is filed)
    does not take it away. (uvloop keeps it on a timer of its own, in C.)"""
    if type(asyncio.get_running_loop()).call_at is not asyncio.BaseEventLoop.call_at:
        with AsyncioDeadline(LIMIT) as deadline:
            assert deadline._clock is None
            assert deadline._handle is not None
            assert await open_and_ping(alphapoint_gateway.url) == {"msg": "PONG"}
        assert deadline._handle.cancelled()
        assert not deadline.expired
        return
    with AsyncioDeadline(LIMIT) as deadline:
        clock = current_alarm_clock()
        assert clock.next_ring() <= deadline._alarm_at + TICK
        assert await open_and_ping(alphapoint_gateway.url) == {"msg": "PONG"}
        assert deadline in clock._members
        assert any(deadline in filed for filed in clock._buckets.values())
        assert clock.next_ring() <= deadline._alarm_at + TICK
    assert deadline not in clock._members  # left with its block: rung no more
    assert not deadline.expired


@pytest.mark.parametrize("anyio_backend", ASYNCIO_LOOPS)
async def test_a_cancellation_from_elsewhere_goes_through_unchanged() -> None:
    with anyio.CancelScope() as scope:
        scope.cancel()
        with AsyncioDeadline(LIMIT) as deadline:
            await asyncio.get_running_loop().create_future()
    assert scope.cancelled_caught
    assert not deadline.expired


async def test_a_free_turn_is_taken_at_once() -> None:
    limiter = anyio.CapacityLimiter(2)
    borrower = object()
    await take_turn(limiter, borrower)
    assert limiter.borrowed_tokens == 1
    with pytest.raises(RuntimeError):  # one turn per borrower, as anyio's acquire says
        await take_turn(limiter, borrower)
    limiter.release_on_behalf_of(borrower)
    assert limiter.borrowed_tokens == 0


async def test_a_newcomer_does_not_take_a_turn_ahead_of_one_waiting() -> None:
    limiter = anyio.CapacityLimiter(1)
    first, second, third = object(), object(), object()
    order: list[str] = []

    async def wait(borrower: object, name: str) -> None:
        await take_turn(limiter, borrower)
        order.append(name)
        limiter.release_on_behalf_of(borrower)

    await take_turn(limiter, first)
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(wait, second, "second")
            await wait_until(lambda: limiter.statistics().tasks_waiting == 1)
            limiter.release_on_behalf_of(first)  # the token is the waiting one's now
            await wait(third, "third")
    assert order == ["second", "third"]

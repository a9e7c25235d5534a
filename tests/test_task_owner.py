"""The session's tasks and their owner (:mod:`alphapoint.task_owner`).

Under asyncio and uvloop a session's tasks are the loop's own, in a set of the
session's; under trio they are in anyio's task group. Either way: every task
is awaited before ``async with connect(...)`` exits, a cancellation from
outside ends the session and its tasks, a task that fails ends the session
with a typed error (never an ExceptionGroup out of ``connect``, never a task
that vanishes), and no task is left. Against the embedded gateway.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import anyio
import pytest

import alphapoint
from alphapoint import Backoff, ConnectionClosed, SessionState
from alphapoint.testing import GatewayFixture

from .helpers import LIMIT, no_jitter, no_task_left, wait_until

CLOSED = SessionState.CLOSED
RECONNECTING = SessionState.RECONNECTING


class Boom(Exception):
    """A bug in a policy the session was given."""


def broken_jitter(cap: float) -> float:
    raise Boom("the jitter policy is broken")


def reconnecting(fixture: GatewayFixture, policy: Backoff) -> alphapoint.connect:
    """alice's session on the fixture's gateway, reconnecting with ``policy``, no keepalive."""
    return alphapoint.connect(
        fixture.url, credentials=fixture.accounts.password, reconnect=policy, keepalive=None
    )


async def stop_gateway_until(
    fixture: GatewayFixture, session: alphapoint.Session, wanted: SessionState
) -> None:
    """Stop the gateway (its connections cut), then wait for the session to be ``wanted``."""
    async with session.state_changes() as changes:
        await fixture.running.stop()
        with anyio.fail_after(LIMIT):
            async for state in changes:
                if state is wanted:
                    return


@pytest.mark.anyio
async def test_a_cancellation_from_outside_ends_the_session_and_every_task(
    alphapoint_gateway: GatewayFixture,
) -> None:
    """Cancelled while its reconnect task waits out the backoff: the block exits
    cancelled, the session is closed, and neither task is left."""
    policy = Backoff(initial=LIMIT * 10, maximum=LIMIT * 10, jitter=no_jitter)
    async with no_task_left():
        with anyio.fail_after(LIMIT), anyio.CancelScope() as scope:
            async with reconnecting(alphapoint_gateway, policy) as session:
                await stop_gateway_until(alphapoint_gateway, session, RECONNECTING)
                scope.cancel()
                await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert session.state is CLOSED


@pytest.mark.anyio
async def test_a_call_in_flight_when_the_block_is_cancelled_fails_and_nothing_is_left(
    alphapoint_gateway: GatewayFixture,
) -> None:
    """A call waiting in a task outside the block fails with a typed error when
    the block is cancelled and the session closes under it; no task of the
    session is left."""
    errors: list[BaseException] = []
    gateway = alphapoint_gateway.gateway

    @gateway.route("Hang")
    async def hang(payload: object, context: object) -> None:
        await anyio.sleep_forever()

    async def call(session: alphapoint.Session) -> None:
        try:
            await session.call("Hang", timeout=None)
        except alphapoint.AlphaPointError as exc:
            errors.append(exc)

    async with no_task_left():
        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tg:
                with anyio.CancelScope() as scope:
                    async with alphapoint.connect(
                        alphapoint_gateway.url, credentials=alphapoint_gateway.accounts.password
                    ) as session:
                        tg.start_soon(call, session)
                        await wait_until(
                            lambda: bool(alphapoint_gateway.gateway.requests_for("Hang"))
                        )
                        scope.cancel()
                        await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert session.state is CLOSED
    assert len(errors) == 1
    assert isinstance(errors[0], ConnectionClosed)


@pytest.mark.anyio
@pytest.mark.parametrize("raise_in_block", [False, True])
async def test_a_task_that_fails_ends_the_session_with_a_typed_error(
    alphapoint_gateway: GatewayFixture, caplog: pytest.LogCaptureFixture, raise_in_block: bool
) -> None:
    """The reconnect task fails (its jitter policy raises): the session ends
    with ConnectionClosed naming the failure; the block goes on uncancelled,
    its own exception comes out of ``connect`` as it is, and no ExceptionGroup
    ever does."""
    caplog.set_level(logging.ERROR, logger="alphapoint")
    policy = Backoff(initial=0.01, maximum=0.05, jitter=broken_jitter)
    boom = Boom("from the block")
    failures: list[BaseException] = []

    async def block() -> None:
        async with reconnecting(alphapoint_gateway, policy) as session:
            await stop_gateway_until(alphapoint_gateway, session, CLOSED)
            # The block is not cancelled: it goes on, and calls fail typed.
            await anyio.lowlevel.checkpoint()
            with pytest.raises(ConnectionClosed) as info:
                await session.call("Ping")
            failures.append(info.value)
            if raise_in_block:
                raise boom

    async with no_task_left():
        with anyio.fail_after(LIMIT):
            if raise_in_block:
                with pytest.raises(Boom) as raised:
                    await block()
                assert raised.value is boom  # not an ExceptionGroup around it
            else:
                await block()
    (failure,) = failures
    assert "a task of the session failed: Boom" in str(failure)
    messages = [record.getMessage() for record in caplog.records]
    assert any("a task of the session failed" in message for message in messages)


@pytest.mark.parametrize("loop", ["asyncio"] if sys.platform == "win32" else ["asyncio", "uvloop"])
def test_a_native_asyncio_cancellation_waits_for_every_task(
    alphapoint_gateway: GatewayFixture, loop: str
) -> None:
    """``task.cancel()`` (what ``asyncio.wait_for`` and ``asyncio.timeout`` do)
    on a task inside ``async with connect(...)``: the task ends cancelled, the
    session closed, and every task of the session has ended with it."""
    seen: dict[str, object] = {}

    async def main() -> None:
        before = asyncio.all_tasks()
        entered = asyncio.Event()

        async def block() -> None:
            async with alphapoint.connect(
                alphapoint_gateway.url, credentials=alphapoint_gateway.accounts.password
            ) as session:
                seen["session"] = session
                await session.call("Ping")
                entered.set()
                await asyncio.Event().wait()  # until cancelled

        task = asyncio.create_task(block())
        await asyncio.wait_for(entered.wait(), LIMIT)
        task.cancel()
        await asyncio.wait_for(asyncio.wait([task]), LIMIT)
        seen["cancelled"] = task.cancelled()
        seen["left"] = sorted(t.get_name() for t in asyncio.all_tasks() - before - {task})

    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
    assert seen["cancelled"] is True
    assert seen["left"] == []
    session = seen["session"]
    assert isinstance(session, alphapoint.Session)
    assert session.state is CLOSED

"""Connection set-ups wait for a turn (alphapoint/open_limit.py): at most
``open_limiter``'s tokens at once, the loop's shared limiter by default, and the
wait is not part of ``open_timeout``. Real sessions against the embedded
gateway over loopback, on every loop of the matrix; progress is observed
through the limiter's statistics and the gateway's log, never by timing.
"""

from __future__ import annotations

from functools import partial

import anyio
import pytest

import alphapoint
from alphapoint import SessionState
from alphapoint.testing.pytest_plugin import GatewayFixture

from .helpers import LIMIT, SHORT, hold_session, wait_until

pytestmark = pytest.mark.anyio


async def taken(limiter: anyio.CapacityLimiter) -> object:
    """Take ``limiter``'s token (of one) on behalf of the test; the borrower returned."""
    holder = object()
    await limiter.acquire_on_behalf_of(holder)
    return holder


async def test_a_set_up_waits_for_a_token_of_its_limiter(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway, url = alphapoint_gateway.gateway, alphapoint_gateway.url
    limiter = anyio.CapacityLimiter(1)
    holder = await taken(limiter)
    opened: list[alphapoint.Session] = []
    leave = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(hold_session, url, opened, leave, open_limiter=limiter))
        await wait_until(lambda: limiter.statistics().tasks_waiting == 1)
        assert gateway.requests == []  # not even connected: it waits before opening
        limiter.release_on_behalf_of(holder)
        await wait_until(lambda: len(opened) == 1)
        assert opened[0].state is SessionState.CONNECTED
        assert limiter.borrowed_tokens == 0  # given back once the set-up is done
        leave.set()


async def test_the_wait_for_a_turn_is_not_part_of_open_timeout(
    alphapoint_gateway: GatewayFixture,
) -> None:
    url, credentials = alphapoint_gateway.url, alphapoint_gateway.accounts.password
    limiter = anyio.CapacityLimiter(1)
    holder = await taken(limiter)
    opened: list[alphapoint.Session] = []
    leave = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            partial(
                hold_session,
                url,
                opened,
                leave,
                credentials=credentials,
                open_limiter=limiter,
                open_timeout=SHORT,
            )
        )
        await wait_until(lambda: limiter.statistics().tasks_waiting == 1)
        # Time must pass here, not an event: longer than open_timeout in the queue.
        await anyio.sleep(SHORT * 2)
        limiter.release_on_behalf_of(holder)
        await wait_until(lambda: len(opened) == 1)
        assert opened[0].authenticated
        leave.set()


async def test_sessions_share_the_loops_limiter_by_default_and_none_opts_out(
    alphapoint_gateway: GatewayFixture,
) -> None:
    url, credentials = alphapoint_gateway.url, alphapoint_gateway.accounts.password
    shared = alphapoint.default_open_limiter()
    assert shared is alphapoint.default_open_limiter()
    assert shared.total_tokens == alphapoint.DEFAULT_OPEN_LIMIT
    holder = object()
    shared.total_tokens = 1
    try:
        await shared.acquire_on_behalf_of(holder)
        opened: list[alphapoint.Session] = []
        unbounded: list[alphapoint.Session] = []
        leave = anyio.Event()
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(partial(hold_session, url, opened, leave, credentials=credentials))
            await wait_until(lambda: shared.statistics().tasks_waiting == 2)
            # open_limiter=None: no turn to wait for, while the shared one is taken.
            tg.start_soon(
                partial(
                    hold_session, url, unbounded, leave, credentials=credentials, open_limiter=None
                )
            )
            await wait_until(lambda: len(unbounded) == 1)
            assert opened == []
            shared.release_on_behalf_of(holder)
            with anyio.fail_after(LIMIT):
                await wait_until(lambda: len(opened) == 2)
            assert all(session.authenticated for session in opened)
            leave.set()
    finally:
        shared.total_tokens = alphapoint.DEFAULT_OPEN_LIMIT


async def test_a_reconnect_waits_for_a_turn_too(alphapoint_gateway: GatewayFixture) -> None:
    gateway, url = alphapoint_gateway.gateway, alphapoint_gateway.url
    limiter = anyio.CapacityLimiter(1)
    fast = alphapoint.Backoff(initial=0.01, maximum=0.05, jitter=lambda cap: cap)
    async with alphapoint.connect(
        url,
        credentials=alphapoint_gateway.accounts.password,
        open_limiter=limiter,
        reconnect=fast,
        keepalive=None,
    ) as session:
        holder = object()
        await limiter.acquire_on_behalf_of(holder)
        logins = len(gateway.requests_for("AuthenticateUser"))
        await gateway.drop_connections()
        await wait_until(lambda: limiter.statistics().tasks_waiting == 1)
        assert len(gateway.requests_for("AuthenticateUser")) == logins
        limiter.release_on_behalf_of(holder)
        await wait_until(lambda: session.authenticated and session.connection_number == 2)

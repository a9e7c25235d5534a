"""The loop's one timer for every connection's alarm (alphapoint/drivers/alarms.py).

Sessions on one event loop share it: each one's keepalive and call deadlines
are still kept, whichever sessions come and go (under trio the timer is kept
by one connection's task at a time, and handed on when it leaves), and no
task is left once the last one has gone. Real sessions against the embedded
gateway or a scripted server, over loopback, on every loop of the matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import anyio
import pytest

import alphapoint
from alphapoint import Keepalive, RequestTimeout
from alphapoint.drivers.alarms import TICK, AlarmClock, current_alarm_clock
from alphapoint.testing.pytest_plugin import GatewayFixture
from alphapoint.testing.scripted import ScriptedConnection, serve_script

from .helpers import LIMIT, SHORT, hold_session, no_task_left, wait_until

pytestmark = pytest.mark.anyio

#: Ping after 50 ms of silence; never give up on a reply within a test.
QUICK_PINGS = Keepalive(interval=0.05, timeout=LIMIT)


def pings_on(fixture: GatewayFixture) -> Callable[[int], int]:
    """How many Pings the gateway got on one of its connections (by number)."""
    gateway = fixture.gateway
    return lambda connection: sum(
        1 for request in gateway.requests_for("Ping") if request.connection == connection
    )


def opened_more_than(opened: list[alphapoint.Session], n: int) -> bool:
    return len(opened) > n


async def test_every_session_of_a_loop_keeps_pinging_as_others_leave(
    alphapoint_gateway: GatewayFixture,
) -> None:
    """Three sessions ping on one timer; the first to start (under trio, the one
    that keeps the timer) leaves, and the other two go on pinging."""
    gateway, pings = alphapoint_gateway.gateway, pings_on(alphapoint_gateway)
    url, credentials = alphapoint_gateway.url, alphapoint_gateway.accounts.password
    opened: list[alphapoint.Session] = []
    leave = [anyio.Event() for _ in range(3)]
    async with no_task_left(), anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(
                partial(
                    hold_session,
                    url,
                    opened,
                    leave[n],
                    credentials=credentials,
                    keepalive=QUICK_PINGS,
                )
            )
            # One at a time: the first session joins the timer first.
            await wait_until(partial(opened_more_than, opened, n))
        connections = [r.connection for r in gateway.requests_for("AuthenticateUser")]
        await wait_until(lambda: all(pings(c) >= 2 for c in connections))
        leave[0].set()
        later = {c: pings(c) for c in connections[1:]}
        await wait_until(lambda: all(pings(c) >= later[c] + 2 for c in later))
        leave[1].set()
        leave[2].set()
    assert not current_alarm_clock()._members  # the last to leave took the timer with it


async def test_a_call_deadline_is_kept_when_the_session_keeping_the_timer_leaves() -> None:
    """A call waiting for a reply that never comes times out, although the
    session that joined the timer first (under trio: keeps it) left meanwhile."""
    received = anyio.Event()

    async def script(connection: ScriptedConnection) -> None:
        async for request in connection.requests():  # answers nothing
            if request.function == "GetOpenOrders":
                received.set()

    opened: list[alphapoint.Session] = []
    leave = anyio.Event()
    async with no_task_left(), serve_script(script) as server, anyio.create_task_group() as tg:
        tg.start_soon(partial(hold_session, server.url, opened, leave, keepalive=QUICK_PINGS))
        await wait_until(lambda: len(opened) == 1)
        async with alphapoint.connect(server.url) as second, anyio.create_task_group() as calls:

            async def call() -> None:
                with pytest.raises(RequestTimeout) as info:
                    await second.call("GetOpenOrders", timeout=SHORT)
                assert info.value.function == "GetOpenOrders"

            with anyio.fail_after(LIMIT):
                calls.start_soon(call)
                await received.wait()
                leave.set()


async def test_a_ring_comes_at_its_time_or_within_a_tick_after_never_before(
    alphapoint_gateway: GatewayFixture,
) -> None:
    """The calls' deadlines are filed by tick: a call out of time fails once its
    deadline has passed, whatever tick it was filed in."""
    alphapoint_gateway.gateway.answer_pings = False

    async with alphapoint.connect(alphapoint_gateway.url, keepalive=None) as session:
        for timeout in (SHORT, SHORT + TICK / 3, SHORT + TICK / 2):
            conn = session._conn
            assert conn is not None
            start = conn.clock()
            with anyio.fail_after(LIMIT), pytest.raises(RequestTimeout):
                await session.call("Ping", timeout=timeout)
            assert conn.clock() >= start + timeout


class Target:
    """A connection as the clock sees it (the Alarmed protocol): records its rings."""

    def __init__(self) -> None:
        self._alarm_at = math.inf
        self._alarm_clock: AlarmClock | None = None
        self.rung: list[float] = []

    def clock(self) -> float:
        return 0.0

    def _ring(self, now: float) -> None:
        self._alarm_at = math.inf
        self.rung.append(now)

    def _wake_alarm_task(self) -> None:
        pass


class ArmedClock(AlarmClock):
    """The clock's filing and ringing, with the timer's time recorded instead of kept."""

    def __init__(self) -> None:
        super().__init__()
        self.armed: list[float] = []

    def _arm(self, when: float) -> None:
        self.armed.append(when)


@pytest.mark.parametrize("k", [3, 29_999_996, 123_456_789])
def test_a_time_just_after_a_tick_is_rung_at_the_next_tick_never_before(k: int) -> None:
    """``ceil(when / TICK)`` can round down for a time a hair after a multiple of
    the tick: the ring must then come a tick later, not be dropped."""
    clock, target = ArmedClock(), Target()
    clock.join(target)  # type: ignore[arg-type]
    boundary = k * TICK
    when = math.nextafter(boundary, math.inf)
    target._alarm_at = when
    clock.file(target, when)  # type: ignore[arg-type]
    assert clock.next_ring() >= when
    clock.ring_due(boundary)
    assert target.rung == []
    clock.ring_due(clock.next_ring())
    assert target.rung == [clock.armed[0]]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_message_the_socket_cannot_take_at_once_is_finished_or_drops(
    deaf_gateway_url: str,
) -> None:
    """Under trio a keepalive Ping is written straight to the socket where the
    alarm rings (``send_text_now``: no task wakes for it). When the socket
    does not take all of it (the gateway stopped reading and the buffers are
    full), the rest is left to the connection's alarm task, which drops the
    connection once it could not write it within ``close_timeout``.

    Messages go out that way until the buffers are full, whatever their size
    on this machine."""
    async with (
        alphapoint.connect(
            deaf_gateway_url, logout_on_close=False, close_timeout=SHORT, keepalive=None
        ) as session,
        session.state_changes() as changes,
    ):
        conn = session._conn
        assert conn is not None
        websocket = conn._ws
        assert websocket._socket is not None  # type: ignore[attr-defined]
        big = "x" * 2**20
        for _ in range(1024):  # 1 GiB: far more than any machine's socket buffers
            assert websocket.send_text_now(big)
            if websocket._tail:  # type: ignore[attr-defined]
                break
        else:
            pytest.fail("1 GiB of messages never filled the buffers")
        assert not websocket.send_text_now("{}")  # the rest goes first: nothing jumps it
        with anyio.fail_after(LIMIT):  # no reconnect: the session closes
            assert [state async for state in changes] == [alphapoint.SessionState.CLOSED]
        with pytest.raises(alphapoint.ConnectionClosed) as info:
            await session.call("Ping")
    assert "the gateway stopped reading (a message could not be written" in str(info.value)

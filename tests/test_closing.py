"""Closing a session: a closing handshake bounded by ``close_timeout``, and the
alarm clock's timer left armed by a session that leaves (issue 16).

The asyncio and picows drivers keep no timer of their own for the peer's
half of a closing handshake this side starts: :meth:`Connection.aclose` waits
for it on one timer of the loop's and aborts the connection by its deadline.
Whatever the gateway does with the close frame, the block ends, the gateway
has read a close frame with code 1000 first, and then the client hangs up.

The loop's alarm clock (asyncio, uvloop) leaves its timer armed when the
last connection leaves, rather than cancel it (a login would otherwise make
and cancel a timer for a keepalive Ping it never sends): a connection that
joins later is still rung at its time, whether it wants a ring before or
after the one the timer was left at.
"""

from __future__ import annotations

import anyio
import pytest

import alphapoint
from alphapoint import Keepalive
from alphapoint.testing.hostile import ClientFrame, RawPeer, serve_raw
from alphapoint.testing.pytest_plugin import GatewayFixture

from .helpers import LIMIT, SHORT, no_task_left, wait_until

pytestmark = pytest.mark.anyio


class _CloseUnanswered:
    """A gateway that reads the client's close frame and never answers it."""

    def __init__(self) -> None:
        self.close_frame: ClientFrame | None = None
        self.frames_after_close = 0
        #: Set once the close frame has been read (or the client went without one).
        self.close_read = anyio.Event()
        #: Set once the client has hung up (EOF or a reset on the socket).
        self.hung_up = anyio.Event()

    async def __call__(self, peer: RawPeer) -> None:
        await peer.handshake()
        self.close_frame = await peer.read_until_close()
        self.close_read.set()
        try:
            while True:  # reads on, answers nothing
                await peer.read_frame()
                self.frames_after_close += 1
        except (anyio.EndOfStream, OSError):  # the client has gone
            self.hung_up.set()


async def test_a_close_frame_never_answered_is_hung_up_on_by_the_close_timeout() -> None:
    gateway = _CloseUnanswered()
    with anyio.fail_after(LIMIT):
        async with no_task_left(), serve_raw(gateway) as server:
            async with alphapoint.connect(
                server.url, close_timeout=SHORT, keepalive=None, logout_on_close=False
            ) as session:
                assert session.is_open
            assert not session.is_open
            await gateway.hung_up.wait()
    assert gateway.close_frame is not None
    assert gateway.close_frame.close_code == 1000
    assert gateway.frames_after_close == 0


async def test_a_close_cancelled_while_the_gateway_keeps_it_waiting_still_hangs_up() -> None:
    """Cancelled while it waits for the gateway's half, the close still ends by
    its deadline and the client hangs up; the cancellation comes out after."""
    gateway = _CloseUnanswered()
    with anyio.fail_after(LIMIT):
        async with no_task_left(), serve_raw(gateway) as server:
            with anyio.CancelScope() as scope:
                async with alphapoint.connect(
                    server.url, close_timeout=SHORT, keepalive=None, logout_on_close=False
                ) as session:
                    assert session.is_open
                    async with anyio.create_task_group() as tg:

                        async def cancel_once_the_close_frame_is_read() -> None:
                            await gateway.close_read.wait()
                            scope.cancel()

                        tg.start_soon(cancel_once_the_close_frame_is_read)
                        await session.aclose()
                    pytest.fail("not reached: the scope is cancelled")
            assert scope.cancelled_caught
            assert not session.is_open
            await gateway.hung_up.wait()
    assert gateway.close_frame is not None
    assert gateway.close_frame.close_code == 1000


def _pings(fixture: GatewayFixture) -> int:
    return len(fixture.gateway.requests_for("Ping"))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # The timer is left at the first's Ping, far later than the second's.
        pytest.param(Keepalive(interval=10 * LIMIT, timeout=LIMIT), 0.05, id="earlier"),
        # The timer is left at the first's Ping, a little before the second's.
        pytest.param(Keepalive(interval=0.05, timeout=LIMIT), 0.2, id="later"),
    ],
)
async def test_a_session_after_one_that_left_is_pinged_at_its_time(
    alphapoint_gateway: GatewayFixture, first: Keepalive, second: float
) -> None:
    url = alphapoint_gateway.url
    credentials = alphapoint_gateway.accounts.password
    async with no_task_left():
        async with alphapoint.connect(url, credentials=credentials, keepalive=first):
            pass  # leaves before its first Ping
        assert _pings(alphapoint_gateway) == 0
        async with alphapoint.connect(
            url, credentials=credentials, keepalive=Keepalive(interval=second, timeout=LIMIT)
        ) as session:
            await wait_until(lambda: _pings(alphapoint_gateway) >= 2)
            assert session.is_open

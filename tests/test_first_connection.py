"""The first connection: it fails fast by default, and waits for the gateway when asked.

A gateway in maintenance answers the WebSocket upgrade with HTTP 503 (a
retryable :class:`HandshakeRefused`). A bot started then dies at once unless
it passes ``wait_for_gateway=True``; then it retries with its reconnect policy
and logs in once the gateway is back, still failing at once on what a retry
cannot mend.
"""

from __future__ import annotations

import anyio
import pytest

import alphapoint
from alphapoint import Backoff, HandshakeRefused, PasswordCredentials
from alphapoint.testing import demo_gateway, faults
from alphapoint.testing.faults import FaultyGateway

from .helpers import LIMIT, no_task_left

pytestmark = pytest.mark.anyio

#: Quick retries: the tests count attempts, not seconds.
QUICK = Backoff(initial=0.001, maximum=0.01)
CREDENTIALS = PasswordCredentials("alice", "any password")


async def test_by_default_the_first_connection_fails_fast() -> None:
    with anyio.fail_after(LIMIT):
        async with (
            no_task_left(),
            FaultyGateway(faults.refused_handshake(503), connections={1, 2}) as gateway,
        ):
            with pytest.raises(HandshakeRefused) as caught:
                async with alphapoint.connect(
                    gateway.url, credentials=CREDENTIALS, reconnect=QUICK
                ):
                    pytest.fail("entered a session whose gateway refused it")
    assert caught.value.status == 503
    assert gateway.connections == 1


async def test_waiting_for_the_gateway_retries_until_it_is_back() -> None:
    """Two refused upgrades (maintenance), then the gateway serves: the third attempt logs in."""
    with anyio.fail_after(LIMIT):
        async with (
            no_task_left(),
            FaultyGateway(faults.refused_handshake(503), connections={1, 2}) as gateway,
            alphapoint.connect(
                gateway.url, credentials=CREDENTIALS, reconnect=QUICK, wait_for_gateway=True
            ) as session,
        ):
            assert session.authenticated
            assert session.connection_number == 1  # the session's first connection that opened
            assert gateway.connections == 3


async def test_waiting_gives_up_after_max_attempts_with_the_last_error() -> None:
    policy = Backoff(initial=0.001, maximum=0.01, max_attempts=3)
    with anyio.fail_after(LIMIT):
        async with (
            no_task_left(),
            FaultyGateway(faults.refused_handshake(503), connections=range(1, 100)) as gateway,
        ):
            with pytest.raises(HandshakeRefused):
                async with alphapoint.connect(
                    gateway.url, credentials=CREDENTIALS, reconnect=policy, wait_for_gateway=True
                ):
                    pytest.fail("entered a session whose gateway refused it")
    assert gateway.connections == 3


async def test_waiting_does_not_retry_what_a_retry_cannot_mend() -> None:
    """Wrong credentials, and a 403 at the upgrade, fail on the first attempt."""
    gateway, accounts = demo_gateway()
    wrong = PasswordCredentials(accounts.password.username, "not the password")
    with anyio.fail_after(LIMIT):
        async with no_task_left(), gateway.serve() as running:
            with pytest.raises(alphapoint.AuthenticationRejected):
                async with alphapoint.connect(
                    running.url, credentials=wrong, reconnect=QUICK, wait_for_gateway=True
                ):
                    pytest.fail("entered with wrong credentials")
        async with FaultyGateway(faults.refused_handshake(403, "Forbidden")) as forbidding:
            with pytest.raises(HandshakeRefused) as caught:
                async with alphapoint.connect(
                    forbidding.url, credentials=CREDENTIALS, reconnect=QUICK, wait_for_gateway=True
                ):
                    pytest.fail("entered a session whose gateway refused it")
    assert len(gateway.requests) == 1
    assert (caught.value.status, forbidding.connections) == (403, 1)


def test_waiting_needs_a_reconnect_policy() -> None:
    with pytest.raises(alphapoint.UsageError, match="reconnect policy"):
        alphapoint.connect("ws://127.0.0.1:1/", reconnect=False, wait_for_gateway=True)
    with pytest.raises(alphapoint.UsageError, match="reconnect policy"):
        alphapoint.connect("ws://127.0.0.1:1/", wait_for_gateway=True)  # no credentials: no policy


async def test_entering_a_connect_object_twice_is_a_usage_error() -> None:
    gateway, _ = demo_gateway()
    with anyio.fail_after(LIMIT):
        async with no_task_left(), gateway.serve() as running:
            connection = alphapoint.connect(running.url)
            async with connection:
                with pytest.raises(alphapoint.UsageError, match="only once"):
                    async with connection:
                        pytest.fail("entered twice")
            with pytest.raises(alphapoint.UsageError, match="only once"):
                async with connection:
                    pytest.fail("entered again after it closed")

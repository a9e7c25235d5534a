"""The ``alphapoint_gateway`` fixture in every style of test, and the thread it runs in.

The gateway runs in a thread with its own loop (``GatewayThread``), so one
fixture serves synchronous tests, anyio's (here, on the suite's four loops)
and pytest-asyncio's in strict and auto mode (each run by ``pytester`` in a
pytest of its own, as a user's project would run it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import threading

import anyio
import anyio.from_thread
import pytest
import websockets.exceptions
import websockets.sync.client

import alphapoint
from alphapoint.frame import Frame, MessageType, decode_frame, encode_frame
from alphapoint.testing import GatewayFixture, GatewayThread, GatewayUser, demo_gateway
from alphapoint.testing.home import Home

from .helpers import LIMIT, unused_port

pytest_plugins = ["pytester"]


def authenticate(url: str, username: str, password: str) -> subprocess.CompletedProcess[str]:
    """``python -m alphapoint authenticate URL --username U``, the password in its variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHAPOINT_")}
    env["ALPHAPOINT_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "alphapoint", "authenticate", url, "--username", username],
        input="",
        capture_output=True,
        text=True,
        env=env,
        timeout=LIMIT * 2,
        check=False,
    )


def new_threads(before: set[threading.Thread]) -> set[threading.Thread]:
    return set(threading.enumerate()) - before


# -- synchronous tests ------------------------------------------------------------------------


def test_a_synchronous_test_runs_the_cli_against_the_fixture(
    alphapoint_gateway: GatewayFixture,
) -> None:
    run = authenticate(
        alphapoint_gateway.url, "alice", alphapoint_gateway.accounts.password.password
    )
    assert run.returncode == 0, run.stderr
    assert "authenticated" in run.stdout
    assert len(alphapoint_gateway.gateway.requests_for("AuthenticateUser")) == 1


def test_a_synchronous_test_restarts_the_gateway_with_run(
    alphapoint_gateway: GatewayFixture,
) -> None:
    running, password = alphapoint_gateway.running, alphapoint_gateway.accounts.password.password
    port = running.port
    alphapoint_gateway.run(running.stop)
    assert authenticate(alphapoint_gateway.url, "alice", password).returncode == 5  # no gateway
    alphapoint_gateway.run(running.start)
    assert running.port == port
    assert authenticate(alphapoint_gateway.url, "alice", password).returncode == 0


def test_the_configuration_set_from_the_test_holds_for_the_next_request(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    gateway.add_user(GatewayUser("dave", "dave's password", user_id=12))
    gateway.max_failed_attempts = 1
    assert authenticate(alphapoint_gateway.url, "dave", "dave's password").returncode == 0
    assert authenticate(alphapoint_gateway.url, "dave", "a wrong one").returncode == 3  # locked
    assert gateway.users["dave"].locked


# -- anyio tests (the suite's four loops) -----------------------------------------------------


@pytest.mark.anyio
async def test_an_anyio_test_awaits_the_hooks_across_threads(
    alphapoint_gateway: GatewayFixture,
) -> None:
    """``publish`` is awaited on the test's loop and runs on the gateway's."""
    gateway = alphapoint_gateway.gateway
    async with (
        alphapoint.connect(
            alphapoint_gateway.url, credentials=alphapoint_gateway.accounts.password
        ) as session,
        session.subscribe("SubscribeLevel1", {"OMSId": 1, "InstrumentId": 1}) as level1,
    ):
        assert await gateway.publish("Level1UpdateEvent", {"InstrumentId": 1, "BestBid": 2}) == 1
        with anyio.fail_after(LIMIT):
            event = await level1.__anext__()
    assert event.payload == {"InstrumentId": 1, "BestBid": 2}


@pytest.mark.anyio
async def test_cancelling_an_awaited_hook_cancels_it_on_the_gateway_loop() -> None:
    started, cancelled = threading.Event(), threading.Event()

    async def hang() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    with anyio.from_thread.start_blocking_portal() as portal:
        home = Home(portal, portal.call(threading.get_ident))
        assert not home.is_current()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(home.run, hang)
            assert await anyio.to_thread.run_sync(started.wait, LIMIT)
            tasks.cancel_scope.cancel()
        assert await anyio.to_thread.run_sync(cancelled.wait, LIMIT)


@pytest.mark.anyio
async def test_run_refuses_a_gateway_on_the_test_loop() -> None:
    gateway, accounts = demo_gateway()
    async with gateway.serve() as running:
        fixture = GatewayFixture(gateway, accounts, running)
        with pytest.raises(RuntimeError, match="await the hook"):
            fixture.run(running.stop)
        assert gateway.connection_count == 0


# -- GatewayThread ----------------------------------------------------------------------------


def test_leaving_the_block_cuts_every_connection_and_joins_the_thread() -> None:
    gateway, _ = demo_gateway()
    before = set(threading.enumerate())
    with contextlib.ExitStack() as client_block:
        with GatewayThread(gateway) as served:
            # No keepalive pings: their thread is not joined on close (only its reader is).
            client = client_block.enter_context(
                websockets.sync.client.connect(served.url, open_timeout=LIMIT, ping_interval=None)
            )
            client.send(encode_frame(Frame(MessageType.REQUEST, 2, "Ping", {})))
            assert decode_frame(client.recv(timeout=LIMIT)).payload == {"msg": "PONG"}
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            client.recv(timeout=LIMIT)
    assert not new_threads(before)
    with pytest.raises(RuntimeError, match="only inside"):
        served.url  # noqa: B018 - the property is what raises


def test_a_gateway_thread_that_cannot_listen_raises_and_leaves_no_thread() -> None:
    gateway, _ = demo_gateway()
    before = set(threading.enumerate())
    with unused_port() as port:
        served = GatewayThread(gateway, port=port)
        with pytest.raises(OSError) as info, served:  # noqa: PT011 - its errno is checked below
            pass
    assert info.value.errno == errno.EADDRINUSE
    assert not new_threads(before)
    with pytest.raises(RuntimeError, match="only inside"):
        served.running  # noqa: B018 - the property is what raises


def test_a_gateway_thread_runs_once_at_a_time() -> None:
    gateway, _ = demo_gateway()
    served = GatewayThread(gateway)
    with pytest.raises(RuntimeError, match="only inside"):
        served.run(gateway.drop_connections)
    with served, pytest.raises(RuntimeError, match="already running"), served:
        pass
    with served:  # and again, once stopped
        assert served.run(gateway.send_event, "Hello", {}) == 0


# -- pytest-asyncio, strict and auto mode (each in a pytest of its own) -----------------------

INI = """
[pytest]
filterwarnings = error
asyncio_default_fixture_loop_scope = function
"""

STRICT = """
import pytest

import alphapoint
from alphapoint.testing import Refusal


@pytest.mark.asyncio
async def test_strict(alphapoint_gateway):
    @alphapoint_gateway.gateway.route("SendOrder")
    def send_order(payload, context):
        if context.user is None:
            raise Refusal(20, "Not Authorized")
        return {"status": "Accepted", "OrderId": 1}

    async with alphapoint.connect(
        alphapoint_gateway.url, credentials=alphapoint_gateway.accounts.password
    ) as session:
        assert await session.call("SendOrder", {"Quantity": 1}) == {
            "status": "Accepted", "OrderId": 1
        }


def test_plain(alphapoint_gateway):
    assert alphapoint_gateway.url.startswith("ws://127.0.0.1:")
"""

AUTO = """
import anyio

import alphapoint


async def test_auto(alphapoint_gateway):
    gateway = alphapoint_gateway.gateway
    async with alphapoint.connect(
        alphapoint_gateway.url, credentials=alphapoint_gateway.accounts.password
    ) as session, session.events("LogoutEvent") as events:
        assert await gateway.logout_event() == 1
        with anyio.fail_after(10):
            event = await events.__anext__()
    assert event.function == "LogoutEvent"
"""

FAILING_HANDLER = """
import pytest

import alphapoint


@pytest.mark.asyncio
async def test_the_bot_sends_a_sell(alphapoint_gateway):
    @alphapoint_gateway.gateway.route("SendOrder")
    def send_order(payload, context):
        assert payload["Side"] == 1, "the bot sent a buy"
        return {}

    async with alphapoint.connect(alphapoint_gateway.url) as session:
        try:
            await session.call("SendOrder", {"Side": 0})
        except alphapoint.ServerError:
            pass  # a bot that swallows the error: the test must still fail
"""


def run_inner(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makeini(INI)
    pytester.makepyfile(source)
    return pytester.runpytest_subprocess("-p", "asyncio", "-p", "no:randomly", *args, timeout=50)


def test_pytest_asyncio_strict_mode(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, STRICT, "--asyncio-mode=strict")
    result.assert_outcomes(passed=2)


def test_pytest_asyncio_auto_mode(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, AUTO, "--asyncio-mode=auto")
    result.assert_outcomes(passed=1)


def test_a_failing_handler_fails_the_test_at_teardown(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, FAILING_HANDLER, "--asyncio-mode=strict")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_the_bot_sends_a_sell*"])
    result.stdout.fnmatch_lines(["*AssertionError: the bot sent a buy*"])

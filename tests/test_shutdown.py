"""A clean stop: ``stop_on_signals`` ends its block on a signal, then the session logs out.

In this process the tests use SIGWINCH, whose default action is to be
ignored: if the handler were not installed the test would fail on its time
limit instead of killing the test run. The trading bot example is stopped
with the real SIGTERM and SIGINT, in a subprocess.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from anyio.streams.text import TextReceiveStream

import alphapoint
from alphapoint.testing import demo_gateway

from .helpers import LIMIT, no_task_left

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HARMLESS = signal.SIGWINCH


async def test_a_signal_ends_the_block_and_the_session_logs_out() -> None:
    gateway, accounts = demo_gateway()
    with anyio.fail_after(LIMIT):
        async with (
            no_task_left(),
            gateway.serve() as running,
            alphapoint.connect(running.url, credentials=accounts.password) as session,
        ):
            async with alphapoint.stop_on_signals(HARMLESS) as stop:
                os.kill(os.getpid(), HARMLESS)
                await anyio.sleep_forever()
            assert stop.signal is HARMLESS
            assert session.authenticated  # the session is the caller's to close
    assert len(gateway.requests_for("LogOut")) == 1
    assert repr(stop) == "<Stop signal=SIGWINCH>"


async def test_a_block_that_ends_on_its_own_has_no_signal() -> None:
    with anyio.fail_after(LIMIT):
        async with no_task_left(), alphapoint.stop_on_signals(HARMLESS) as stop:
            await anyio.lowlevel.checkpoint()
    assert stop.signal is None


async def test_stop_ends_the_block_as_a_signal_would() -> None:
    with anyio.fail_after(LIMIT):
        async with no_task_left(), alphapoint.stop_on_signals(HARMLESS) as stop:
            stop.stop()
            await anyio.sleep_forever()
    assert stop.signal is None


async def test_the_blocks_own_exception_propagates_unwrapped() -> None:
    with anyio.fail_after(LIMIT):
        async with no_task_left():
            with pytest.raises(KeyError) as caught:
                async with alphapoint.stop_on_signals(HARMLESS):
                    raise KeyError("the bot's own")
    assert type(caught.value) is KeyError


async def test_a_cancellation_from_outside_is_not_swallowed() -> None:
    with anyio.fail_after(LIMIT):
        async with no_task_left():
            with anyio.CancelScope() as outer:
                async with alphapoint.stop_on_signals(HARMLESS) as stop:
                    outer.cancel()
                    await anyio.sleep_forever()
                pytest.fail("the outer cancellation was swallowed")
    assert outer.cancelled_caught
    assert stop.signal is None


async def test_outside_the_main_thread_it_is_a_usage_error(anyio_backend_name: str) -> None:
    async def enter() -> None:
        async with alphapoint.stop_on_signals(HARMLESS):
            pytest.fail("entered outside the main thread")

    def in_a_thread() -> None:
        with pytest.raises(alphapoint.UsageError, match="main thread"):
            anyio.run(enter, backend=anyio_backend_name)

    with anyio.fail_after(LIMIT):
        await anyio.to_thread.run_sync(in_a_thread)


class TestTheTradingBot:
    """The example, run as a subprocess and stopped as docker and a terminal stop it."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"  # a subprocess: the test's own loop does not matter

    @pytest.mark.parametrize("stop_with", [signal.SIGTERM, signal.SIGINT])
    async def test_it_logs_out_on_sigterm_and_sigint(self, stop_with: signal.Signals) -> None:
        gateway, accounts = demo_gateway()
        key = accounts.api_key
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHAPOINT_")}
        env.update(
            ALPHAPOINT_API_KEY=key.api_key,
            ALPHAPOINT_API_SECRET=key.api_secret,
            ALPHAPOINT_USER_ID=key.user_id,
        )
        lines: list[str] = []
        with anyio.fail_after(LIMIT):
            async with gateway.serve() as running:
                command = [sys.executable, str(EXAMPLES / "trading_bot.py"), running.url]
                async with await anyio.open_process(
                    [*command, "--iterations", "100000", "--interval", "0.01"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                ) as process:
                    assert process.stdout is not None
                    assert process.stderr is not None
                    pending = ""
                    async for chunk in TextReceiveStream(process.stdout):
                        pending += chunk
                        *complete, pending = pending.split("\n")
                        lines += complete
                        if any(line.startswith("[2/100000] GetUserInfo") for line in complete):
                            process.send_signal(stop_with)
                    errors = b"".join([chunk async for chunk in process.stderr]).decode()
                    code = await process.wait()
        assert code == 0, errors
        assert "Traceback" not in errors
        assert f"Stopping on {stop_with.name}: logging out." in lines
        assert lines[-2:] == ["session: closed", "Stopped."]
        assert len(gateway.requests_for("LogOut")) == 1

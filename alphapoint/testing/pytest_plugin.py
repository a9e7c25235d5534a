"""A pytest fixture for the embedded gateway (registered automatically on install).

``alphapoint_gateway`` is a running :func:`demo_gateway` for one test: connect
to ``alphapoint_gateway.url`` and log in with ``alphapoint_gateway.accounts``.
The gateway runs in a thread of its own with its own event loop (a
:class:`GatewayThread`), as pytest-httpserver's server does, so one fixture
serves every style of test: synchronous ones (a subprocess, a blocking
client), anyio's (``@pytest.mark.anyio``, asyncio or trio) and
pytest-asyncio's, in strict and in auto mode.

Each test gets a new gateway: users, routes, logs and state start afresh.
When the test ends the gateway stops (every connection cut, the thread
joined), then the first exception a route handler raised, if any, fails the
test (:meth:`Gateway.check_handler_errors`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import attrs
import pytest

from .accounts import DemoAccounts, demo_gateway
from .gateway import Gateway, RunningGateway
from .thread import GatewayThread

__all__ = ["GatewayFixture", "alphapoint_gateway"]

T = TypeVar("T")


@attrs.frozen
class GatewayFixture:
    """A running demo gateway and the credentials of its accounts."""

    #: The gateway: its users, API keys, settings, routes, and logs of what it received.
    gateway: Gateway
    #: Credentials of the demo accounts (``password``, ``api_key``, ``two_factor``, ``locked``).
    accounts: DemoAccounts
    #: The listener: ``port``, ``stop()`` and ``start()`` (a restart on the same port).
    running: RunningGateway

    @property
    def url(self) -> str:
        """The URL clients connect to."""
        return self.running.url

    def run(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await func(*args)`` on the gateway's loop, from a synchronous test.

        ``alphapoint_gateway.run(alphapoint_gateway.gateway.publish, name, payload)``.
        An async test awaits the hook itself instead.
        """
        home = self.gateway._home
        if home is None:
            raise RuntimeError("this gateway runs on the test's own loop: await the hook instead")
        return home.call(func, *args)


@pytest.fixture
def alphapoint_gateway() -> Iterator[GatewayFixture]:
    """A demo gateway listening on a free loopback port, from its own thread, for one test."""
    gateway, accounts = demo_gateway()
    with GatewayThread(gateway) as served:
        yield GatewayFixture(gateway, accounts, served.running)
    gateway.check_handler_errors()

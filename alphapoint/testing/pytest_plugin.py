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

from collections.abc import Iterator

import pytest

from .accounts import demo_gateway
from .fixture import GatewayFixture
from .thread import GatewayThread

__all__ = ["GatewayFixture", "alphapoint_gateway"]


@pytest.fixture
def alphapoint_gateway() -> Iterator[GatewayFixture]:
    """A demo gateway listening on a free loopback port, from its own thread, for one test."""
    gateway, accounts = demo_gateway()
    with GatewayThread(gateway) as served:
        yield GatewayFixture(gateway, accounts, served.running)
    gateway.check_handler_errors()

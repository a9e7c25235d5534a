"""A pytest fixture for the embedded gateway (registered automatically on install).

``alphapoint_gateway`` is a running :func:`demo_gateway` for one test: connect
to ``alphapoint_gateway.url`` and log in with ``alphapoint_gateway.accounts``.
It is an async fixture: the test runs under anyio's pytest plugin
(``@pytest.mark.anyio``), on whichever backend ``anyio_backend`` selects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest

from .accounts import DemoAccounts, demo_gateway
from .gateway import Gateway, RunningGateway

__all__ = ["GatewayFixture", "alphapoint_gateway"]


@attrs.frozen
class GatewayFixture:
    """A running demo gateway and the credentials of its accounts."""

    gateway: Gateway
    accounts: DemoAccounts
    running: RunningGateway

    @property
    def url(self) -> str:
        return self.running.url


@pytest.fixture
async def alphapoint_gateway(anyio_backend: object) -> AsyncIterator[GatewayFixture]:
    """A demo gateway listening on a free loopback port for the duration of one test."""
    gateway, accounts = demo_gateway()
    async with gateway.serve() as running:
        yield GatewayFixture(gateway, accounts, running)

"""What the ``alphapoint_gateway`` pytest fixture gives a test (importable without pytest).

Annotate the fixture argument with it: ``def test_bot(alphapoint_gateway:
GatewayFixture) -> None``. The fixture itself is in
:mod:`alphapoint.testing.pytest_plugin`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs

from .accounts import DemoAccounts
from .gateway import Gateway, RunningGateway

__all__ = ["GatewayFixture"]

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

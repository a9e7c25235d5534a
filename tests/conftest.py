"""Every async test runs under both anyio backends: asyncio and trio."""

from __future__ import annotations

import pytest
import trustme


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A certificate authority for the TLS tests' gateways and clients."""
    return trustme.CA()

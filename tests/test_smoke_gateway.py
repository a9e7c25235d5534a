from __future__ import annotations

import pytest

import alphapoint
from alphapoint.testing import GatewayFixture

pytestmark = pytest.mark.anyio


async def test_fixture_gateway_logs_in(alphapoint_gateway: GatewayFixture) -> None:
    async with alphapoint.connect(alphapoint_gateway.url) as session:
        result = await session.login(alphapoint_gateway.accounts.password)
        assert result.user is not None
        assert result.user.user_name == "alice"

"""An embedded APEX gateway for demos and tests, and a pytest fixture for it.

::

    from alphapoint.testing import Gateway, GatewayUser

    gateway = Gateway([GatewayUser("alice", "s3cret", user_id=7)])
    async with gateway.serve() as running:
        async with alphapoint.connect(running.url) as session:
            await session.login(alphapoint.PasswordCredentials("alice", "s3cret"))
"""

from .accounts import DemoAccounts, demo_gateway
from .config import GatewayConfigError, load_gateway_config
from .gateway import (
    Casing,
    Gateway,
    GatewayApiKey,
    GatewayUser,
    LoggedRequest,
    RunningGateway,
    TwoFactorKeys,
)

__all__ = [
    "Casing",
    "DemoAccounts",
    "Gateway",
    "GatewayApiKey",
    "GatewayConfigError",
    "GatewayUser",
    "LoggedRequest",
    "RunningGateway",
    "TwoFactorKeys",
    "demo_gateway",
    "load_gateway_config",
]

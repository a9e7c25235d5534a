"""An embedded APEX gateway for demos and tests, and a pytest fixture for it.

::

    from alphapoint.testing import Gateway, GatewayUser, Refusal

    gateway = Gateway([GatewayUser("alice", "s3cret", user_id=7)])

    @gateway.route("SendOrder")
    def send_order(payload, context):
        if payload["Quantity"] <= 0:
            raise Refusal(100, "Invalid Request")
        return {"status": "Accepted", "OrderId": 1}

    async with gateway.serve() as running:  # or: with GatewayThread(gateway) as running
        async with alphapoint.connect(running.url) as session:
            await session.login(alphapoint.PasswordCredentials("alice", "s3cret"))
"""

from .accounts import DemoAccounts, demo_gateway
from .config import GatewayConfigError, load_gateway_config
from .fixture import GatewayFixture
from .gateway import (
    Casing,
    Gateway,
    GatewayApiKey,
    GatewayUser,
    LoggedRequest,
    RunningGateway,
    TwoFactorKeys,
)
from .routes import Refusal, RequestContext, RouteHandler
from .thread import GatewayThread

__all__ = [
    "Casing",
    "DemoAccounts",
    "Gateway",
    "GatewayApiKey",
    "GatewayConfigError",
    "GatewayFixture",
    "GatewayThread",
    "GatewayUser",
    "LoggedRequest",
    "Refusal",
    "RequestContext",
    "RouteHandler",
    "RunningGateway",
    "TwoFactorKeys",
    "demo_gateway",
    "load_gateway_config",
]

"""Ready-made accounts: what ``alphapoint demo``, the examples and the fixture log in with.

Every secret here is generated afresh for each gateway, so nothing that looks
like a credential is hard-coded, and nothing printed can be reused.
"""

from __future__ import annotations

import base64
import secrets

import attrs

from ..credentials import ApiKeyCredentials, PasswordCredentials
from .gateway import Gateway, GatewayApiKey, GatewayUser

__all__ = ["DemoAccounts", "demo_gateway"]


@attrs.frozen
class DemoAccounts:
    """Credentials for the accounts of a :func:`demo_gateway`."""

    #: ``alice``: password login, no 2FA.
    password: PasswordCredentials
    #: An API key of ``alice`` (user id 7).
    api_key: ApiKeyCredentials
    #: ``bob``: password login with TOTP 2FA (``two_factor_secret``).
    two_factor: PasswordCredentials
    two_factor_secret: str = attrs.field(repr=False)
    #: ``carol``: locked by an administrator.
    locked: PasswordCredentials


def demo_gateway(**options: object) -> tuple[Gateway, DemoAccounts]:
    """A gateway with four demo accounts, and the credentials to use them."""
    alice_password = secrets.token_urlsafe(12)
    bob_password = secrets.token_urlsafe(12)
    carol_password = secrets.token_urlsafe(12)
    api_key = secrets.token_hex(16)
    api_secret = secrets.token_hex(16)
    totp_secret = base64.b32encode(secrets.token_bytes(20)).decode()
    gateway = Gateway(
        [
            GatewayUser("alice", alice_password, user_id=7),
            GatewayUser("bob", bob_password, user_id=8, totp_secret=totp_secret),
            GatewayUser("carol", carol_password, user_id=9, locked=True),
        ],
        [GatewayApiKey(api_key, api_secret, user_id="7")],
        **options,  # type: ignore[arg-type]
    )
    accounts = DemoAccounts(
        password=PasswordCredentials("alice", alice_password),
        api_key=ApiKeyCredentials(api_key=api_key, api_secret=api_secret, user_id="7"),
        two_factor=PasswordCredentials("bob", bob_password),
        two_factor_secret=totp_secret,
        locked=PasswordCredentials("carol", carol_password),
    )
    return gateway, accounts

"""The embedded gateway's accounts: users and their API keys.

Apart from the gateway so that what a route handler is told
(:class:`RequestContext.user`) needs no import of the gateway itself.
"""

from __future__ import annotations

import attrs

__all__ = ["GatewayApiKey", "GatewayUser"]


@attrs.define
class GatewayUser:
    """A user account on the embedded gateway. Mutable: tests lock and unlock it."""

    username: str
    password: str = attrs.field(repr=False)
    user_id: int
    account_id: int = 0
    email: str = ""
    email_verified: bool = True
    #: Base32 TOTP secret; a user with one must pass Authenticate2FA.
    totp_secret: str | None = attrs.field(default=None, repr=False)
    locked: bool = False
    failed_attempts: int = 0

    def __attrs_post_init__(self) -> None:
        if not self.account_id:
            self.account_id = self.user_id + 1000
        if not self.email:
            self.email = f"{self.username}@example.com"


@attrs.define
class GatewayApiKey:
    """An API key: the user it belongs to (by ``UserId``, as the client signs it) and its secret."""

    api_key: str
    api_secret: str = attrs.field(repr=False)
    user_id: str

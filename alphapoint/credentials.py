"""The two ways to log in, and the AuthenticateUser payload each one makes.

Secrets (password, API secret) are ``repr=False``, and the API key shows only
its first characters, so credentials can be logged or printed safely.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .errors import UsageError
from .signing import default_nonces, sign

__all__ = ["ApiKeyCredentials", "Credentials", "PasswordCredentials"]


def _mask(value: str) -> str:
    """Enough of an identifier to tell keys apart in a log, not enough to use it."""
    return repr(value[:4] + "…") if len(value) > 4 else "'…'"


def _user_id(value: str | int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UsageError("user_id must be a string (or an int)")
    return str(value)


@attrs.frozen
class PasswordCredentials:
    """A user name and password."""

    username: str
    password: str = attrs.field(repr=False)

    def authenticate_payload(self) -> dict[str, str]:
        """The AuthenticateUser request payload."""
        return {"UserName": self.username, "Password": self.password}


@attrs.frozen
class ApiKeyCredentials:
    """An API key, its secret and the user id it belongs to.

    ``user_id`` is sent and signed exactly as given: keep ``"001"`` a string.
    Each :meth:`authenticate_payload` draws a fresh nonce from ``nonces``.
    """

    api_key: str = attrs.field(repr=_mask)
    api_secret: str = attrs.field(repr=False)
    user_id: str = attrs.field(converter=_user_id)
    nonces: Callable[[], str] = attrs.field(default=default_nonces, repr=False, eq=False)

    def authenticate_payload(self) -> dict[str, str]:
        """The AuthenticateUser request payload, signed with a fresh nonce."""
        nonce = self.nonces()
        return {
            "APIKey": self.api_key,
            "Signature": sign(self.api_secret, nonce, self.user_id, self.api_key),
            "UserId": self.user_id,
            "Nonce": nonce,
        }


Credentials = PasswordCredentials | ApiKeyCredentials
"""Either way to log in: what ``Session.login`` and ``connect(credentials=...)`` take."""

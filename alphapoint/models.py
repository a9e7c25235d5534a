"""What the gateway answers, as frozen attrs classes (no I/O, no decoding).

:mod:`alphapoint.decoding` turns reply payloads into these classes; every field
has a default so that a reply with missing keys or ``null`` still decodes.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

__all__ = ["AuthStatus", "AuthenticateResult", "Event", "User"]


class AuthStatus(enum.Enum):
    """The outcome of an authentication reply, as one value to ``match`` on."""

    AUTHENTICATED = "authenticated"
    REJECTED = "rejected"
    LOCKED = "locked"
    TWO_FACTOR_REQUIRED = "two_factor_required"


@attrs.frozen(slots=True)
class User:
    """The ``user`` object of an AuthenticateUser reply."""

    user_id: int = 0
    user_name: str = ""
    email: str = ""
    email_verified: bool = False
    account_id: int = 0
    oms_id: int = 0
    use_2fa: bool = False


_DISPLAY = {
    AuthStatus.AUTHENTICATED: "Logged in.",
    AuthStatus.REJECTED: "Login refused: wrong credentials.",
    AuthStatus.LOCKED: "This account is locked after too many failed attempts; "
    "an administrator must unlock it.",
    AuthStatus.TWO_FACTOR_REQUIRED: "A two-factor code is required to finish logging in.",
}


@attrs.frozen(slots=True)
class AuthenticateResult:
    """The decoded reply of AuthenticateUser, Authenticate2FA or WebAuthenticateUser.

    ``session_token`` and ``two_fa_token`` are secrets and stay out of the repr.
    Empty strings from the gateway read as ``None``.
    """

    authenticated: bool = False
    locked: bool = False
    requires_2fa: bool = False
    two_fa_type: str | None = None
    two_fa_token: str | None = attrs.field(default=None, repr=False)
    session_token: str | None = attrs.field(default=None, repr=False)
    errormsg: str | None = None
    user: User | None = None
    #: The top-level ``UserId`` that Authenticate2FA and WebAuthenticateUser send.
    user_id: int | None = None
    #: What else the gateway says about the pending second factor (NDAX's
    #: ``AddtlInfo``); kept out of the repr, as it may name where a code went.
    addtl_info: str | None = attrs.field(default=None, repr=False)

    @property
    def status(self) -> AuthStatus:
        """One value for the outcome.

        A reply with ``authenticated`` *and* ``requires_2fa`` is not a login
        until the 2FA step succeeds, so it reads as TWO_FACTOR_REQUIRED.
        """
        if self.locked:
            return AuthStatus.LOCKED
        if self.requires_2fa:
            return AuthStatus.TWO_FACTOR_REQUIRED
        if self.authenticated:
            return AuthStatus.AUTHENTICATED
        return AuthStatus.REJECTED

    @property
    def display_message(self) -> str:
        """A message fit to show an end user: the gateway's, or one made from the status."""
        status = self.status
        if self.errormsg and status is not AuthStatus.AUTHENTICATED:
            return self.errormsg
        return _DISPLAY[status]


@attrs.frozen(slots=True)
class Event:
    """An ``m=3`` message pushed by the gateway.

    ``seq`` is the gateway's own counter: it says nothing about any request.
    """

    function: str
    payload: Any = attrs.field(repr=False)
    seq: int = 0

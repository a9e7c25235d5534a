"""Time-based one-time passwords (RFC 6238), the codes behind ``TwoFAType: "Google"``.

:class:`Totp` is a two-factor provider: pass it as ``two_factor=`` and a bot with
2FA enabled logs in unattended. The secret is the base32 string an
authenticator app is given; it never appears in a repr.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import time
from collections.abc import Callable

import attrs

from .errors import UsageError

__all__ = ["Totp", "hotp"]

_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


def hotp(key: bytes, counter: int, *, digits: int = 6, algorithm: str = "sha1") -> str:
    """The RFC 4226 one-time password for ``counter``, zero-padded to ``digits``."""
    digest = hmac.new(key, struct.pack(">Q", counter), _DIGESTS[algorithm]).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


def _decode_secret(secret: str) -> bytes:
    cleaned = secret.replace(" ", "").replace("-", "").upper()
    if not cleaned:
        raise UsageError("TOTP secret is empty")
    cleaned += "=" * (-len(cleaned) % 8)
    try:
        return base64.b32decode(cleaned)
    except (binascii.Error, ValueError):
        raise UsageError("TOTP secret is not valid base32") from None


def _known_algorithm(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in _DIGESTS:
        raise UsageError(f"algorithm must be one of {', '.join(_DIGESTS)}, not {value!r}")


@attrs.frozen
class Totp:
    """A TOTP code generator: ``Totp(secret)()`` is the code for now.

    ``secret`` is base32 (spaces, dashes and lowercase are accepted), as shown
    by the exchange when 2FA is enabled.
    """

    secret: str = attrs.field(repr=False)
    digits: int = 6
    period: int = 30
    algorithm: str = attrs.field(default="sha1", validator=_known_algorithm)
    clock: Callable[[], float] = attrs.field(default=time.time, repr=False)
    _key: bytes = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_key", _decode_secret(self.secret))

    def at(self, timestamp: float) -> str:
        """The code valid at ``timestamp`` (seconds since the epoch)."""
        return hotp(
            self._key, int(timestamp) // self.period, digits=self.digits, algorithm=self.algorithm
        )

    def verify(self, code: str, *, timestamp: float | None = None, window: int = 1) -> bool:
        """Whether ``code`` is valid now, allowing ``window`` periods of clock skew."""
        if not code.isascii():  # compare_digest raises TypeError on non-ASCII str
            return False
        now = self.clock() if timestamp is None else timestamp
        return any(
            hmac.compare_digest(code, self.at(now + step * self.period))
            for step in range(-window, window + 1)
        )

    def __call__(self) -> str:
        return self.at(self.clock())

"""API-key signatures and the nonces they are computed from, without I/O.

An APEX API-key login sends ``Signature = hex(HMAC-SHA256(secret, nonce + user_id
+ api_key))``. A nonce must never be sent twice; :class:`NonceSource` makes
strictly increasing ones from a clock, so they stay unique even when many tasks
(or threads) sign at once and even if the wall clock steps backwards.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable

__all__ = ["NonceSource", "default_nonces", "sign"]


def sign(api_secret: str, nonce: str, user_id: str, api_key: str) -> str:
    """The lowercase hex HMAC-SHA256 signature of ``nonce + user_id + api_key``.

    ``user_id`` is signed exactly as given: ``"001"`` and ``"1"`` differ.
    """
    message = f"{nonce}{user_id}{api_key}".encode()
    # hmac.digest is OpenSSL's one-shot HMAC, without hmac.HMAC's objects of Python.
    return hmac.digest(api_secret.encode(), message, "sha256").hex()


def _microseconds() -> int:
    return time.time_ns() // 1000


class NonceSource:
    """Strictly increasing nonces: ``max(previous + 1, clock())``.

    The clock (microseconds since the epoch by default) keeps nonces growing
    across process restarts; the ``previous + 1`` floor keeps them unique when
    two are drawn in the same microsecond or the clock steps back.
    Thread-safe, so one source can serve a whole process.
    """

    def __init__(self, clock: Callable[[], int] = _microseconds) -> None:
        self._clock = clock
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        """The next nonce, as the decimal string that is signed and sent."""
        with self._lock:
            self._last = max(self._last + 1, self._clock())
            return str(self._last)


#: The process-wide nonce source that sessions use unless given another.
default_nonces = NonceSource()

"""Small, injectable policies with safe defaults: reconnect delays and keepalive.

A policy is plain data plus a pure function, so the schedule it produces can
be checked without sleeping, and replaced by a user's own callable.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

from .errors import AlphaPointError, AuthenticationError

__all__ = ["Backoff", "Keepalive", "full_jitter", "is_retryable"]


def full_jitter(cap: float) -> float:
    """A delay drawn uniformly from ``[0, cap]`` (AWS's "full jitter").

    Spreads the reconnects of many clients after a gateway restart, instead
    of having them all arrive at once.
    """
    return random.uniform(0.0, cap)  # noqa: S311 - jitter, not cryptography


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive")


@attrs.frozen
class Backoff:
    """Exponential backoff with full jitter and a cap.

    The *n*-th consecutive failed attempt (from 0) waits ``jitter(cap_n)``
    where ``cap_n = min(maximum, initial * multiplier ** n)``. A connection that
    stays up for ``reset_after`` seconds resets ``n`` to 0. ``max_attempts``
    (None: forever) bounds consecutive failed reconnects before the session
    gives up and closes with the last error.
    """

    initial: float = attrs.field(default=0.5, validator=_positive)
    maximum: float = attrs.field(default=30.0, validator=_positive)
    multiplier: float = attrs.field(default=2.0, validator=_positive)
    max_attempts: int | None = None
    reset_after: float = 60.0
    jitter: Callable[[float], float] = attrs.field(default=full_jitter, repr=False)

    def cap(self, attempt: int) -> float:
        """The largest delay before attempt number ``attempt`` (from 0)."""
        # Stop multiplying once past the maximum: no float overflow after days.
        cap = self.initial
        for _ in range(attempt):
            cap *= self.multiplier
            if cap >= self.maximum:
                return self.maximum
        return min(cap, self.maximum)

    def delay(self, attempt: int) -> float:
        """The delay before attempt number ``attempt``, jitter applied."""
        return self.jitter(self.cap(attempt))

    def gives_up(self, attempt: int) -> bool:
        """Whether attempt number ``attempt`` (from 0) is beyond ``max_attempts``."""
        return self.max_attempts is not None and attempt >= self.max_attempts


@attrs.frozen
class Keepalive:
    """Ping after ``interval`` seconds without traffic; no PONG within ``timeout``: dead.

    A peer that vanished without a FIN (a half-open connection) is detected
    within ``interval + timeout`` seconds.
    """

    interval: float = attrs.field(default=10.0, validator=_positive)
    timeout: float = attrs.field(default=10.0, validator=_positive)


def is_retryable(error: BaseException) -> bool:
    """The default: reconnect after transport, protocol and timeout failures.

    Authentication failures are not retried: a wrong password stays wrong, and
    retrying it would lock the account.
    """
    if isinstance(error, AuthenticationError):
        return False
    return isinstance(error, AlphaPointError)

"""Small, injectable policies with safe defaults: reconnect delays and keepalive.

A policy is plain data plus a pure function, so the schedule it produces can
be checked without sleeping, and replaced by a user's own callable.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import attrs

from .errors import AlphaPointError, UsageError

__all__ = ["Backoff", "Keepalive", "Relogin", "full_jitter", "is_retryable"]


def full_jitter(cap: float) -> float:
    """A delay drawn uniformly from ``[0, cap]`` (AWS's "full jitter").

    Spreads the reconnects of many clients after a gateway restart, instead
    of having them all arrive at once.
    """
    return random.uniform(0.0, cap)  # noqa: S311 - jitter, not cryptography


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:  # also refuses NaN, which compares false with everything
        raise UsageError(f"{attribute.name} must be positive")


def _at_least_one(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 1:
        raise UsageError(f"{attribute.name} must be at least 1: delays never shrink")


def _count_or_none(
    instance: object, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is not None and value < 0:
        raise UsageError(f"{attribute.name} must be 0 or more (or None: never give up)")


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
    multiplier: float = attrs.field(default=2.0, validator=_at_least_one)
    max_attempts: int | None = attrs.field(default=None, validator=_count_or_none)
    reset_after: float = 60.0
    jitter: Callable[[float], float] = attrs.field(default=full_jitter, repr=False)

    def cap(self, attempt: int) -> float:
        """The largest delay before attempt number ``attempt`` (from 0)."""
        # A closed form, so any attempt number costs the same (no loop over
        # the attempts) and never overflows a float.
        initial, maximum, multiplier = self.initial, self.maximum, self.multiplier
        if attempt <= 0 or initial >= maximum or multiplier == 1:
            return min(initial, maximum)
        # initial * multiplier ** n reaches the maximum from this n on.
        if attempt >= math.log(maximum / initial) / math.log(multiplier):
            return maximum
        try:
            return min(initial * multiplier**attempt, maximum)
        except OverflowError:
            return maximum

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
    within ``interval + timeout`` seconds: 40 by default, the bound of
    websockets' own keepalive (a ping every 20 s, 20 s to answer).

    Why a Ping every 30 s: the gateway sends no pings of its own and its
    login lives an hour after the last activity, so the Ping only has to
    find a dead connection and keep middleboxes from forgetting an idle one
    (load balancers commonly drop connections idle for 60 s); its documented
    clients ping every 10 s to 5 min. Each Ping costs the client some 50 µs
    of CPU: every 30 s, 10,000 idle sessions take under 2 % of a core
    (docs/performance.md, "Idle sessions"). 10 s to answer is ample for a
    gateway that answers a Ping in milliseconds, and a slow one still gets
    the time a call gets (``DEFAULT_TIMEOUT``).
    """

    interval: float = attrs.field(default=30.0, validator=_positive)
    timeout: float = attrs.field(default=10.0, validator=_positive)


def _count(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not value >= 1:
        raise UsageError(f"{attribute.name} must be at least 1")


def _count_or_none_any(
    instance: object, attribute: attrs.Attribute[Any], value: int | None
) -> None:
    _count_or_none(instance, attribute, value)


@attrs.frozen
class Relogin:
    """How a managed session logs in again when the gateway ends its login
    (a LogoutEvent, or code 20 to a call made while logged in), without storming it.

    Gateways lock an account after a few failed logins in a short time, and a
    gateway that ends every login would otherwise get an AuthenticateUser
    for every LogoutEvent. So:

    * a re-login after a login that lasted ``stable_after`` seconds goes at
      once; the *n*-th in a row after logins that did not (from 1) waits
      ``jitter(min(maximum, initial * multiplier ** (n - 1)))``;
    * the session sends at most ``per_minute`` automatic AuthenticateUser in
      any 60 seconds (re-logins and reconnects alike), waiting for the window;
    * after ``max_in_a_row`` re-logins in a row, each ended within
      ``stable_after``, it stops and closes with :class:`ReloginStorm`
      (``None``: never).
    """

    initial: float = attrs.field(default=1.0, validator=_positive)
    maximum: float = attrs.field(default=60.0, validator=_positive)
    multiplier: float = attrs.field(default=2.0, validator=_at_least_one)
    per_minute: int = attrs.field(default=10, validator=_count)
    max_in_a_row: int | None = attrs.field(default=5, validator=_count_or_none_any)
    stable_after: float = attrs.field(default=60.0, validator=_positive)
    jitter: Callable[[float], float] = attrs.field(default=full_jitter, repr=False)

    def delay(self, in_a_row: int) -> float:
        """The wait before the re-login that is number ``in_a_row`` in a row (0: at once)."""
        if in_a_row <= 0:
            return 0.0
        backoff = Backoff(self.initial, self.maximum, self.multiplier, jitter=self.jitter)
        return backoff.delay(in_a_row - 1)

    def gives_up(self, in_a_row: int) -> bool:
        """Whether re-login number ``in_a_row`` in a row is one too many."""
        return self.max_in_a_row is not None and in_a_row > self.max_in_a_row


def is_retryable(error: BaseException) -> bool:
    """The default reconnect policy: the error's own ``retryable``.

    Retried: network failures, dropped connections, timeouts, HTTP 5xx and 429
    on the upgrade, code 102. Not retried: a failed certificate check, other
    HTTP refusals, authentication failures (a wrong password stays wrong, and
    retrying it would lock the account), protocol violations, refused
    requests, and the caller's own mistakes (:class:`UsageError`).
    """
    return isinstance(error, AlphaPointError) and error.retryable

"""The reconnect and keepalive policies, computed without sleeping.

A :class:`Backoff` is plain data and a pure function: the delays it schedules
are read from it directly (with ``jitter=lambda cap: cap`` they are the caps
themselves), so nothing here waits for anything.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest

import alphapoint
from alphapoint import (
    AccountLocked,
    AlphaPointError,
    AuthenticateResult,
    AuthenticationError,
    AuthenticationRejected,
    Backoff,
    ConnectionClosed,
    DecodeError,
    FrameError,
    Keepalive,
    ProtocolError,
    RequestTimeout,
    TransportError,
    TwoFactorRequired,
    full_jitter,
    is_retryable,
)

from .helpers import no_jitter

# -- the schedule -----------------------------------------------------------------------


def test_delays_grow_by_the_multiplier_and_stop_at_the_maximum() -> None:
    policy = Backoff(initial=0.5, maximum=30.0, multiplier=2.0, jitter=no_jitter)
    delays = [policy.delay(attempt) for attempt in range(10)]
    assert delays == pytest.approx([0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0])
    assert [policy.cap(attempt) for attempt in range(10)] == delays


def test_another_multiplier_and_a_maximum_that_is_not_a_step() -> None:
    policy = Backoff(initial=0.1, maximum=1.0, multiplier=3.0, jitter=no_jitter)
    delays = [policy.delay(attempt) for attempt in range(6)]
    assert delays == pytest.approx([0.1, 0.3, 0.9, 1.0, 1.0, 1.0])
    # Each delay is the previous one times the multiplier until the cap.
    for before, after in itertools.pairwise(delays):
        assert after == pytest.approx(min(before * 3.0, 1.0))


def test_the_default_policy_is_capped_at_its_maximum() -> None:
    policy = Backoff(jitter=no_jitter)
    assert policy.delay(0) == policy.initial
    assert policy.delay(1) == pytest.approx(policy.initial * policy.multiplier)
    assert policy.delay(100) == policy.maximum
    assert all(policy.delay(n) <= policy.maximum for n in range(200))


def test_an_initial_delay_above_the_maximum_is_capped() -> None:
    policy = Backoff(initial=5.0, maximum=1.0, jitter=no_jitter)
    assert [policy.delay(n) for n in range(3)] == [1.0, 1.0, 1.0]


def test_the_jitter_function_receives_each_cap() -> None:
    caps: list[float] = []

    def recording(cap: float) -> float:
        caps.append(cap)
        return cap / 4

    policy = Backoff(initial=1.0, maximum=4.0, multiplier=2.0, jitter=recording)
    assert [policy.delay(n) for n in range(4)] == [0.25, 0.5, 1.0, 1.0]
    assert caps == [1.0, 2.0, 4.0, 4.0]


def test_full_jitter_stays_within_zero_and_the_cap() -> None:
    for cap in (0.01, 1.0, 30.0):
        draws = [full_jitter(cap) for _ in range(2000)]
        assert all(0.0 <= draw <= cap for draw in draws)
        # Spread over the whole range, not a constant: with 2000 uniform draws
        # both halves are hit (failing this by chance has probability 2**-1999).
        assert min(draws) < cap / 2 < max(draws)


def test_the_default_jitter_is_full_jitter_below_each_cap() -> None:
    policy = Backoff(initial=0.5, maximum=8.0)
    for attempt in range(8):
        cap = policy.cap(attempt)
        draws = [policy.delay(attempt) for _ in range(300)]
        assert all(0.0 <= draw <= cap for draw in draws)
        assert len(set(draws)) > 1


@pytest.mark.parametrize("multiplier", [1.0, 1.5, 2.0, 10.0])
@pytest.mark.parametrize("attempt", [10**3, 10**9, 10**18, 2**200])
def test_a_huge_attempt_number_neither_overflows_nor_takes_long(
    multiplier: float, attempt: int
) -> None:
    # A session retrying for weeks (or a counter that never resets) must still
    # get a finite delay, at once: no OverflowError, no loop over the attempts.
    policy = Backoff(initial=0.5, maximum=30.0, multiplier=multiplier, jitter=no_jitter)
    delay = policy.delay(attempt)
    assert math.isfinite(delay)
    assert delay == (0.5 if multiplier == 1.0 else 30.0)
    assert 0.0 <= Backoff(multiplier=multiplier).delay(attempt) <= 30.0


# -- giving up ----------------------------------------------------------------------------


def test_gives_up_after_max_attempts() -> None:
    policy = Backoff(max_attempts=3)
    assert [policy.gives_up(attempt) for attempt in range(6)] == [
        False,
        False,
        False,
        True,
        True,
        True,
    ]
    assert policy.gives_up(10**12)


def test_max_attempts_zero_gives_up_at_once() -> None:
    assert Backoff(max_attempts=0).gives_up(0)


def test_without_max_attempts_it_never_gives_up() -> None:
    policy = Backoff()
    assert policy.max_attempts is None
    assert not any(policy.gives_up(attempt) for attempt in (0, 1, 100, 10**9, 10**18))


# -- invalid values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"initial": 0.0},
        {"initial": -1.0},
        {"initial": math.nan},
        {"maximum": 0.0},
        {"maximum": -5.0},
        {"maximum": math.nan},
        {"multiplier": 0.0},
        {"multiplier": -2.0},
        {"multiplier": 0.5},
        {"multiplier": math.nan},
        {"max_attempts": -1},
    ],
    ids=repr,
)
def test_invalid_backoff_values_raise_value_error(options: dict[str, Any]) -> None:
    with pytest.raises(alphapoint.UsageError, match=next(iter(options))):
        Backoff(**options)


@pytest.mark.parametrize(
    "options",
    [
        {"interval": 0.0},
        {"interval": -1.0},
        {"interval": math.nan},
        {"timeout": 0.0},
        {"timeout": -0.5},
        {"timeout": math.nan},
    ],
    ids=repr,
)
def test_invalid_keepalive_values_raise_value_error(options: dict[str, Any]) -> None:
    with pytest.raises(alphapoint.UsageError, match=next(iter(options))):
        Keepalive(**options)


def test_valid_values_are_kept() -> None:
    policy = Backoff(initial=0.01, maximum=0.05, multiplier=1.0, max_attempts=0, reset_after=1.0)
    assert (policy.initial, policy.maximum, policy.multiplier) == (0.01, 0.05, 1.0)
    assert (policy.max_attempts, policy.reset_after) == (0, 1.0)
    keepalive = Keepalive(interval=0.1, timeout=0.2)
    assert (keepalive.interval, keepalive.timeout) == (0.1, 0.2)
    # A Ping every 30 s, 10 s to answer: a dead connection found within 40 s,
    # websockets' own bound (20 + 20), at a third of the Pings of 10 + 10.
    assert Keepalive() == Keepalive(interval=30.0, timeout=10.0)


# -- which errors are worth a reconnect --------------------------------------------------


def _rejected() -> AuthenticateResult:
    return AuthenticateResult(authenticated=False, errormsg="Invalid username or password")


RETRYABLE: list[Callable[[], BaseException]] = [
    lambda: alphapoint.NetworkError("could not connect to 127.0.0.1:1: refused"),
    lambda: alphapoint.HandshakeRefused("HTTP 503 Service Unavailable", status=503),
    lambda: alphapoint.HandshakeRefused("HTTP 502 Bad Gateway", status=502),
    lambda: alphapoint.HandshakeRefused("HTTP 429 Too Many Requests", status=429),
    lambda: ConnectionClosed("the connection closed", code=1006),
    lambda: TransportError("the socket was lost"),
    lambda: RequestTimeout("no reply to Ping within 1 s", function="Ping", timeout=1.0),
    lambda: alphapoint.ServerError("GetUserInfo", "internal error", code=102),
]

NOT_RETRYABLE: list[Callable[[], BaseException]] = [
    lambda: alphapoint.CertificateError("TLS handshake failed: Hostname mismatch"),
    lambda: alphapoint.HandshakeRefused("HTTP 403 Forbidden", status=403),
    lambda: alphapoint.HandshakeRefused("HTTP 404 Not Found", status=404),
    lambda: alphapoint.HandshakeRefused("not HTTP", status=None),
    lambda: alphapoint.SessionClosed("the session was closed"),
    lambda: ProtocolError("the peer broke the WebSocket protocol"),
    lambda: FrameError("not an APEX frame"),
    lambda: DecodeError("not an AuthenticateUser reply", path="user"),
    lambda: alphapoint.RequestError("GetUserInfo", "refused", code=100),
    lambda: alphapoint.EventOverflow("fell behind", dropped=1),
    lambda: alphapoint.UsageError("buffer must be at least 1"),
    lambda: AuthenticationRejected(_rejected()),
    lambda: AccountLocked(AuthenticateResult(locked=True)),
    lambda: TwoFactorRequired(AuthenticateResult(authenticated=True, requires_2fa=True)),
    lambda: AuthenticationError(_rejected()),
    lambda: ValueError("not ours"),
    lambda: alphapoint.InvalidURL("not a ws:// or wss:// URL"),
    lambda: alphapoint.InsecureConnection("refusing plain ws://"),
    lambda: alphapoint.InvalidPayload("payload is not JSON-serialisable"),
    lambda: OSError(111, "Connection refused"),
    lambda: TimeoutError(),
    lambda: RuntimeError("a bug"),
    lambda: KeyError("x"),
    lambda: Exception("anything"),
]


@pytest.mark.parametrize("make", RETRYABLE)
def test_network_timeout_and_5xx_errors_are_retryable(
    make: Callable[[], BaseException],
) -> None:
    error = make()
    assert isinstance(error, AlphaPointError)
    assert error.retryable is True  # the attribute and the policy agree
    assert is_retryable(error) is True


@pytest.mark.parametrize("make", NOT_RETRYABLE)
def test_certificate_4xx_authentication_and_foreign_errors_are_not_retryable(
    make: Callable[[], BaseException],
) -> None:
    error = make()
    assert is_retryable(error) is False
    if isinstance(error, AlphaPointError):
        assert error.retryable is False  # the attribute and the policy agree

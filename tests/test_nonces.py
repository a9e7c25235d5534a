"""Nonces are never reused: 100,000 signatures at once, and a clock that steps back.

tests/test_signing.py checks :class:`NonceSource` on its own (fake clocks,
threads). These go through what a login sends: ``ApiKeyCredentials`` signing
with the process-wide source, from many anyio tasks and worker threads at
once, then with the wall clock stepped back an hour, and finally against the
embedded gateway, which refuses a reused nonce.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from itertools import pairwise

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

import alphapoint
from alphapoint import ApiKeyCredentials, AuthStatus, NonceSource, sign
from alphapoint import signing as signing_module
from alphapoint.testing import Gateway, GatewayApiKey, GatewayUser

pytestmark = pytest.mark.anyio

LIMIT = 60.0
SIGNATURES = 100_000
TASKS, PER_TASK = 40, 1_500
THREADS, PER_THREAD = 8, 5_000
assert TASKS * PER_TASK + THREADS * PER_THREAD == SIGNATURES

HOUR_US = 3_600 * 1_000_000


def make_credentials(nonces: Callable[[], str] | None = None) -> ApiKeyCredentials:
    key, secret = secrets.token_hex(16), secrets.token_hex(16)
    if nonces is None:
        return ApiKeyCredentials(api_key=key, api_secret=secret, user_id="007")
    return ApiKeyCredentials(api_key=key, api_secret=secret, user_id="007", nonces=nonces)


async def sign_concurrently(
    credentials: ApiKeyCredentials, *, scale: int = 1
) -> list[list[dict[str, str]]]:
    """SIGNATURES // scale payloads: TASKS tasks and THREADS threads, all signing at once."""
    batches: list[list[dict[str, str]]] = []

    async def in_task() -> None:
        batch: list[dict[str, str]] = []
        batches.append(batch)
        for number in range(PER_TASK // scale):
            batch.append(credentials.authenticate_payload())
            if number % 5 == 0:
                await anyio.lowlevel.checkpoint()  # let the other tasks sign in between

    def in_thread(batch: list[dict[str, str]]) -> None:
        for _ in range(PER_THREAD // scale):
            batch.append(credentials.authenticate_payload())

    async def thread_batch(limiter: anyio.CapacityLimiter) -> None:
        batch: list[dict[str, str]] = []
        batches.append(batch)
        await anyio.to_thread.run_sync(in_thread, batch, limiter=limiter)

    limiter = anyio.CapacityLimiter(THREADS)
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tasks:
            for _ in range(THREADS):
                tasks.start_soon(thread_batch, limiter)
            for _ in range(TASKS):
                tasks.start_soon(in_task)
    return batches


def check(
    credentials: ApiKeyCredentials, batches: list[list[dict[str, str]]], *, scale: int = 1
) -> list[int]:
    """Every nonce distinct and signed correctly; each worker's nonces increasing."""
    payloads = [payload for batch in batches for payload in batch]
    assert len(payloads) == SIGNATURES // scale
    nonces = [payload["Nonce"] for payload in payloads]
    assert len(set(nonces)) == len(payloads)
    assert len({payload["Signature"] for payload in payloads}) == len(payloads)
    for payload in payloads:
        assert payload["Signature"] == sign(
            credentials.api_secret, payload["Nonce"], "007", credentials.api_key
        )
        assert payload["UserId"] == "007"
    for batch in batches:
        drawn = [int(payload["Nonce"]) for payload in batch]
        assert all(later > earlier for earlier, later in pairwise(drawn))
    return sorted(int(nonce) for nonce in nonces)


async def test_100000_concurrent_signatures_have_distinct_nonces() -> None:
    credentials = make_credentials()  # the process-wide default source
    assert credentials.nonces is signing_module.default_nonces
    nonces = check(credentials, await sign_concurrently(credentials))
    # Microseconds since the epoch: after 2020-01-01.
    assert nonces[0] > 1_577_836_800 * 1_000_000


class SteppingClock:
    """A wall clock (as ``time.time_ns``) that steps back an hour every ``every`` readings."""

    def __init__(self, start_ns: int, every: int) -> None:
        self._now = start_ns
        self._every = every
        self._readings = 0
        self._lock = threading.Lock()
        self.steps_back = 0

    def time_ns(self) -> int:
        with self._lock:
            self._readings += 1
            if self._readings % self._every == 0:
                self._now -= HOUR_US * 1_000
                self.steps_back += 1
            else:
                self._now += 1_000  # one microsecond
            return self._now


async def test_a_clock_stepping_back_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    clock = SteppingClock(time.time_ns(), every=1_000)
    monkeypatch.setattr(signing_module, "time", clock)

    # A fresh source on the default clock, which now steps back all the time.
    source = NonceSource()
    credentials = make_credentials(source)
    nonces = check(credentials, await sign_concurrently(credentials, scale=5), scale=5)
    assert clock.steps_back >= 19
    # Stepping back never lowered a nonce: they form one run with no gaps
    # wider than the clock's jumps forward, and no repeats.
    assert nonces[-1] - nonces[0] < 2 * SIGNATURES // 5

    # The process-wide source too: whatever it gave before, the next nonces are higher.
    before = int(signing_module.default_nonces())
    after = [int(make_credentials().authenticate_payload()["Nonce"]) for _ in range(5_000)]
    assert min(after) > before
    assert len(set(after)) == len(after)


async def test_the_gateway_accepts_every_login_while_the_clock_steps_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    # The embedded gateway refuses a nonce it has seen for the key: 900
    # API-key logins, 30 at a time,, the clock stepping back every 25 readings.
    api_key, api_secret = secrets.token_hex(16), secrets.token_hex(16)
    gateway = Gateway(
        [GatewayUser("alice", secrets.token_urlsafe(12), user_id=7)],
        [GatewayApiKey(api_key, api_secret, user_id="7")],
    )
    clock = SteppingClock(time.time_ns(), every=25)
    monkeypatch.setattr(signing_module, "time", clock)
    credentials = ApiKeyCredentials(
        api_key=api_key, api_secret=api_secret, user_id="7", nonces=NonceSource()
    )
    statuses: list[AuthStatus] = []

    async def log_in_30_times(session: alphapoint.Session) -> None:
        for _ in range(30):
            statuses.append((await session.authenticate(credentials)).status)

    async def one_session(url: str) -> None:
        async with alphapoint.connect(url) as session, anyio.create_task_group() as tasks:
            for _ in range(3):
                tasks.start_soon(log_in_30_times, session)

    async with gateway.serve() as running:
        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tasks:
                for _ in range(10):
                    tasks.start_soon(one_session, running.url)
    assert statuses == [AuthStatus.AUTHENTICATED] * 900
    nonces = [r.payload["Nonce"] for r in gateway.requests_for("AuthenticateUser")]
    assert len(set(nonces)) == 900
    assert clock.steps_back >= 30

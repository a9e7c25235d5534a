"""alphapoint.signing: API-key signatures and nonces."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from itertools import pairwise

import pytest

from alphapoint.signing import NonceSource, default_nonces, sign

# The test vectors of the protocol notes: hex(HMAC-SHA256(secret, nonce || userId || apiKey)).
VECTORS = [
    (
        "test_secret_key",
        "1234567890",
        "001",
        "test_api_key",
        "6da3735d764bb64c26da9c2d202333a9c7c6ae55198bdbc4a9f696b4a58e5975",
    ),
    (
        "testSecret",
        "1234567890",
        "001",
        "testAPIKey",
        "0fef972172bc8b50a4ccbdd8bdc8906b06555522d2df8c5c91ac95f6d4ef3c2d",
    ),
    (
        "secret",
        "1",
        "1",
        "key",
        "d1063f3d0b82996a4cd2d6b102cce5ccd267129291f9f9b431170e3fc5713c2f",
    ),
]


@pytest.mark.parametrize(("secret", "nonce", "user_id", "api_key", "expected"), VECTORS)
def test_sign_vectors(secret: str, nonce: str, user_id: str, api_key: str, expected: str) -> None:
    assert sign(secret, nonce, user_id, api_key) == expected


def test_sign_is_lowercase_hex_of_sha256() -> None:
    signature = sign("s", "n", "u", "k")
    assert len(signature) == 64
    assert set(signature) <= set("0123456789abcdef")


def test_user_id_is_signed_exactly_as_given() -> None:
    padded = sign("test_secret_key", "1234567890", "001", "test_api_key")
    plain = sign("test_secret_key", "1234567890", "1", "test_api_key")
    assert padded == VECTORS[0][4]
    assert plain != padded


def test_every_input_changes_the_signature() -> None:
    base = sign("secret", "1", "1", "key")
    assert base == VECTORS[2][4]
    assert sign("secreT", "1", "1", "key") != base
    assert sign("secret", "2", "1", "key") != base
    assert sign("secret", "1", "2", "key") != base
    assert sign("secret", "1", "1", "kez") != base


# -- NonceSource ---------------------------------------------------------------


def _clock(readings: list[int]) -> Callable[[], int]:
    """A fake clock that returns ``readings`` in turn."""
    it: Iterator[int] = iter(readings)
    return lambda: next(it)


def test_nonces_are_decimal_strings_from_the_clock() -> None:
    nonces = NonceSource(clock=_clock([1_700_000_000_000_000, 1_700_000_000_000_500]))
    assert nonces() == "1700000000000000"
    assert nonces() == "1700000000000500"


def test_nonces_strictly_increase_when_the_clock_stands_still() -> None:
    nonces = NonceSource(clock=lambda: 1000)
    assert [nonces() for _ in range(5)] == ["1000", "1001", "1002", "1003", "1004"]


def test_nonces_strictly_increase_when_the_clock_steps_back() -> None:
    nonces = NonceSource(clock=_clock([100, 50, 50, 99, 200, 10, 202, 202]))
    assert [nonces() for _ in range(8)] == [
        "100",
        "101",
        "102",
        "103",
        "200",
        "201",
        "202",
        "203",
    ]


def test_nonces_never_zero_or_negative() -> None:
    nonces = NonceSource(clock=lambda: -5)
    assert [nonces() for _ in range(3)] == ["1", "2", "3"]


def test_default_clock_nonces_increase_and_are_unique() -> None:
    nonces = NonceSource()
    drawn = [int(nonces()) for _ in range(10_000)]
    assert all(b > a for a, b in pairwise(drawn))
    # Microseconds since the epoch: after 2020-01-01 (1_577_836_800 s).
    assert drawn[0] > 1_577_836_800 * 1_000_000


def test_default_nonces_increase() -> None:
    first, second = int(default_nonces()), int(default_nonces())
    assert second > first


def _draw_in_threads(
    nonces: Callable[[], str], threads: int = 8, draws: int = 10_000
) -> list[list[int]]:
    results: list[list[int]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads)

    def work(index: int) -> None:
        barrier.wait()
        out = results[index]
        for _ in range(draws):
            out.append(int(nonces()))

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


def test_nonces_unique_across_threads() -> None:
    results = _draw_in_threads(NonceSource())
    every = [n for per_thread in results for n in per_thread]
    assert len(every) == 80_000
    assert len(set(every)) == 80_000
    for per_thread in results:
        assert all(b > a for a, b in pairwise(per_thread))


def test_nonces_unique_across_threads_with_a_constant_clock() -> None:
    results = _draw_in_threads(NonceSource(clock=lambda: 5))
    every = {n for per_thread in results for n in per_thread}
    # 80_000 distinct draws from a clock stuck at 5: exactly 5, 6, ..., 80_004.
    assert every == set(range(5, 80_005))
    for per_thread in results:
        assert all(b > a for a, b in pairwise(per_thread))

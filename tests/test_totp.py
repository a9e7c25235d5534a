"""alphapoint.totp: RFC 6238 time-based one-time passwords."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

import alphapoint
from alphapoint.totp import Totp, hotp

SHA1_KEY = b"12345678901234567890"
SHA256_KEY = b"12345678901234567890123456789012"
SHA512_KEY = b"1234567890123456789012345678901234567890123456789012345678901234"

KEYS = {"sha1": SHA1_KEY, "sha256": SHA256_KEY, "sha512": SHA512_KEY}

# RFC 6238, appendix B.
RFC6238_VECTORS = [
    (59, "94287082", "sha1"),
    (59, "46119246", "sha256"),
    (59, "90693936", "sha512"),
    (1111111109, "07081804", "sha1"),
    (1111111109, "68084774", "sha256"),
    (1111111109, "25091201", "sha512"),
    (1111111111, "14050471", "sha1"),
    (1111111111, "67062674", "sha256"),
    (1111111111, "99943326", "sha512"),
    (1234567890, "89005924", "sha1"),
    (1234567890, "91819424", "sha256"),
    (1234567890, "93441116", "sha512"),
    (2000000000, "69279037", "sha1"),
    (2000000000, "90698825", "sha256"),
    (2000000000, "38618901", "sha512"),
    (20000000000, "65353130", "sha1"),
    (20000000000, "77737706", "sha256"),
    (20000000000, "47863826", "sha512"),
]

# RFC 4226, appendix D: HOTP for counters 0..9 with the SHA1 key.
RFC4226_VECTORS = [
    "755224",
    "287082",
    "359152",
    "969429",
    "338314",
    "254676",
    "287922",
    "162583",
    "399871",
    "520489",
]


def _b32(key: bytes) -> str:
    return base64.b32encode(key).decode("ascii")


def _totp(algorithm: str, *, now: float = 0.0) -> Totp:
    return Totp(secret=_b32(KEYS[algorithm]), digits=8, algorithm=algorithm, clock=lambda: now)


@pytest.mark.parametrize(("timestamp", "expected", "algorithm"), RFC6238_VECTORS)
def test_rfc6238_vectors_at(timestamp: int, expected: str, algorithm: str) -> None:
    assert _totp(algorithm).at(timestamp) == expected


@pytest.mark.parametrize(("timestamp", "expected", "algorithm"), RFC6238_VECTORS)
def test_rfc6238_vectors_with_injected_clock(timestamp: int, expected: str, algorithm: str) -> None:
    assert _totp(algorithm, now=timestamp)() == expected


@pytest.mark.parametrize(("counter", "expected"), list(enumerate(RFC4226_VECTORS)))
def test_rfc4226_hotp_vectors(counter: int, expected: str) -> None:
    assert hotp(SHA1_KEY, counter) == expected


def test_default_is_six_digits_sha1_30_seconds() -> None:
    # RFC 6238's SHA1 vector at T=59 is 94287082; its last six digits are the 6-digit code.
    totp = Totp(_b32(SHA1_KEY), clock=lambda: 59.0)
    assert totp() == "287082"
    # 59 s is the second 30 s period (counter 1): RFC 4226's counter-1 value.
    assert totp() == RFC4226_VECTORS[1]
    assert totp.at(0) == RFC4226_VECTORS[0]
    assert totp.at(29.999) == RFC4226_VECTORS[0]
    assert totp.at(30) == RFC4226_VECTORS[1]
    assert totp.at(90) == RFC4226_VECTORS[3]


def test_codes_are_zero_padded() -> None:
    # 07081804 keeps its leading zero.
    assert _totp("sha1").at(1111111109) == "07081804"


def test_custom_period() -> None:
    totp = Totp(_b32(SHA1_KEY), period=60)
    assert totp.at(59) == RFC4226_VECTORS[0]
    assert totp.at(60) == RFC4226_VECTORS[1]
    assert totp.at(300) == RFC4226_VECTORS[5]


def test_injected_clock_is_read_on_each_call() -> None:
    readings = iter([0.0, 30.0, 95.0])
    totp = Totp(_b32(SHA1_KEY), clock=lambda: next(readings))
    assert [totp(), totp(), totp()] == [RFC4226_VECTORS[0], RFC4226_VECTORS[1], RFC4226_VECTORS[3]]


# -- verify ----------------------------------------------------------------------


def test_verify_exact_period() -> None:
    totp = _totp("sha1", now=59)
    assert totp.verify("94287082")
    assert totp.verify("94287082", window=0)
    assert not totp.verify("94287083")


def test_verify_with_window() -> None:
    totp = Totp(_b32(SHA1_KEY), clock=lambda: 65.0)  # period 2 (counter 2)
    assert totp.verify(RFC4226_VECTORS[2], window=0)
    # One period either side is accepted with the default window of 1 ...
    assert totp.verify(RFC4226_VECTORS[1])
    assert totp.verify(RFC4226_VECTORS[3])
    # ... but not with window=0 ...
    assert not totp.verify(RFC4226_VECTORS[1], window=0)
    assert not totp.verify(RFC4226_VECTORS[3], window=0)
    # ... and two periods away only with window=2.
    assert not totp.verify(RFC4226_VECTORS[0])
    assert not totp.verify(RFC4226_VECTORS[4])
    assert totp.verify(RFC4226_VECTORS[0], window=2)
    assert totp.verify(RFC4226_VECTORS[4], window=2)
    assert not totp.verify(RFC4226_VECTORS[5], window=2)


def test_verify_with_explicit_timestamp() -> None:
    totp = _totp("sha256", now=0)
    assert totp.verify("91819424", timestamp=1234567890)
    assert not totp.verify("91819424", timestamp=1234567890 + 3600)


@pytest.mark.parametrize("code", ["", "9428708", "942870820", "abcdefgh", "94287O82", "٩٤٢٨٧٠٨٢"])
def test_verify_rejects_malformed_codes(code: str) -> None:
    assert not _totp("sha1", now=59).verify(code)


def test_verify_non_ascii_code_is_false_not_an_error() -> None:
    assert not _totp("sha1", now=59).verify("9428708é")


# -- secrets ---------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["not base32!", "0189", "A", "ÉÉÉÉÉÉÉÉ", "GEZDGNBV1"], ids=repr)
def test_invalid_base32_is_a_value_error(secret: str) -> None:
    with pytest.raises(alphapoint.UsageError, match="TOTP secret is not valid base32"):
        Totp(secret)


@pytest.mark.parametrize("secret", ["", "   ", "--"], ids=repr)
def test_empty_secret_is_a_value_error(secret: str) -> None:
    with pytest.raises(alphapoint.UsageError, match="TOTP secret is empty"):
        Totp(secret)


def test_invalid_secret_error_does_not_show_the_secret() -> None:
    with pytest.raises(alphapoint.UsageError, match="base32") as info:
        Totp("SECRETVALUE!")
    assert "SECRETVALUE" not in str(info.value)


def test_secret_not_in_repr() -> None:
    secret = _b32(SHA1_KEY)
    totp = Totp(secret, digits=8)
    assert secret not in repr(totp)
    assert secret[:8] not in repr(totp)
    assert secret not in str(totp)
    assert "digits=8" in repr(totp)


@pytest.mark.parametrize(
    "secret",
    [
        "gezdgnbvgy3tqojqgezdgnbvgy3tqojq",
        "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ",
        "gezd gnbv gy3t qojq gezd gnbv gy3t qojq",
        "GEZD-GNBV-GY3T-QOJQ-GEZD-GNBV-GY3T-QOJQ",
    ],
)
def test_lowercase_spaced_and_dashed_secrets(secret: str) -> None:
    # The base32 of "12345678901234567890", written the ways users paste it.
    assert _b32(SHA1_KEY) == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    totp = Totp(secret, digits=8, clock=lambda: 59.0)
    assert totp() == "94287082"


def _reference_hotp(key: bytes, counter: int) -> str:
    """RFC 4226 section 5.3, written out independently of the code under test."""
    digest = hmac.new(key, counter.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = digest[19] & 0xF
    number = int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFFFFFF
    return f"{number % 1_000_000:06d}"


def test_reference_hotp_matches_rfc4226() -> None:
    assert [_reference_hotp(SHA1_KEY, c) for c in range(10)] == RFC4226_VECTORS


@pytest.mark.parametrize("secret", ["NBUQ", "NBUQ====", "nbuq", "nbuq=="])
def test_unpadded_secret_is_accepted(secret: str) -> None:
    # b"hi" is base32 "NBUQ====": the padding may be left out, or be partial.
    assert base64.b32encode(b"hi") == b"NBUQ===="
    assert Totp(secret).at(0) == _reference_hotp(b"hi", 0)
    assert Totp(secret).at(1000) == _reference_hotp(b"hi", 33)


def test_unknown_algorithm_rejected() -> None:
    with pytest.raises(alphapoint.UsageError, match="algorithm"):
        Totp(_b32(SHA1_KEY), algorithm="md5")

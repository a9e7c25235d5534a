"""alphapoint.credentials: the AuthenticateUser payloads, and secrets kept out of reprs."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest

import alphapoint
from alphapoint.credentials import ApiKeyCredentials, PasswordCredentials
from alphapoint.signing import NonceSource, sign


def _fixed(*nonces: str) -> Callable[[], str]:
    """A nonce source that hands out ``nonces`` in turn."""
    it = iter(nonces)
    return lambda: next(it)


def _hmac(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


# -- password --------------------------------------------------------------------------


def test_password_payload() -> None:
    credentials = PasswordCredentials("alice", "correct horse battery staple")
    assert credentials.authenticate_payload() == {
        "UserName": "alice",
        "Password": "correct horse battery staple",
    }


def test_password_not_in_repr_or_str() -> None:
    credentials = PasswordCredentials(username="alice", password="hunter2-S3CR3T")
    assert "hunter2-S3CR3T" not in repr(credentials)
    assert "hunter2-S3CR3T" not in str(credentials)
    assert "alice" in repr(credentials)


# -- API key -----------------------------------------------------------------------------


def test_api_key_payload_matches_protocol_vector() -> None:
    credentials = ApiKeyCredentials(
        api_key="test_api_key",
        api_secret="test_secret_key",
        user_id="001",
        nonces=_fixed("1234567890"),
    )
    assert credentials.authenticate_payload() == {
        "APIKey": "test_api_key",
        "Signature": "6da3735d764bb64c26da9c2d202333a9c7c6ae55198bdbc4a9f696b4a58e5975",
        "UserId": "001",
        "Nonce": "1234567890",
    }


def test_api_key_payload_second_vector() -> None:
    credentials = ApiKeyCredentials("testAPIKey", "testSecret", "001", nonces=_fixed("1234567890"))
    payload = credentials.authenticate_payload()
    assert payload["Signature"] == (
        "0fef972172bc8b50a4ccbdd8bdc8906b06555522d2df8c5c91ac95f6d4ef3c2d"
    )


def test_api_key_payload_all_strings() -> None:
    credentials = ApiKeyCredentials("key", "secret", 1, nonces=_fixed("1"))
    payload = credentials.authenticate_payload()
    assert payload == {
        "APIKey": "key",
        "Signature": "d1063f3d0b82996a4cd2d6b102cce5ccd267129291f9f9b431170e3fc5713c2f",
        "UserId": "1",
        "Nonce": "1",
    }
    assert all(type(value) is str for value in payload.values())


def test_api_key_payload_fresh_nonce_each_call() -> None:
    credentials = ApiKeyCredentials(
        "28c68ac3fcfafc3d4e8d653fe57e5baf",
        "my-api-secret",
        "96",
        nonces=NonceSource(clock=lambda: 2247733562),
    )
    first = credentials.authenticate_payload()
    second = credentials.authenticate_payload()
    assert first["Nonce"] == "2247733562"
    assert second["Nonce"] == "2247733563"
    assert first["Signature"] != second["Signature"]
    for payload in (first, second):
        message = payload["Nonce"] + "96" + "28c68ac3fcfafc3d4e8d653fe57e5baf"
        assert payload["Signature"] == _hmac("my-api-secret", message)
        assert payload["Signature"] == sign(
            "my-api-secret", payload["Nonce"], payload["UserId"], payload["APIKey"]
        )


def test_api_key_payload_default_nonces_are_fresh() -> None:
    credentials = ApiKeyCredentials("an-api-key", "an-api-secret", "7")
    payloads = [credentials.authenticate_payload() for _ in range(100)]
    nonces = [int(p["Nonce"]) for p in payloads]
    assert len(set(nonces)) == 100
    assert nonces == sorted(nonces)
    for payload in payloads:
        expected = _hmac("an-api-secret", payload["Nonce"] + "7" + "an-api-key")
        assert payload["Signature"] == expected


def test_user_id_kept_exactly_as_given() -> None:
    padded = ApiKeyCredentials("k", "s", "001", nonces=_fixed("5")).authenticate_payload()
    plain = ApiKeyCredentials("k", "s", "1", nonces=_fixed("5")).authenticate_payload()
    assert padded["UserId"] == "001"
    assert plain["UserId"] == "1"
    assert padded["Signature"] == _hmac("s", "5001k")
    assert plain["Signature"] == _hmac("s", "51k")
    assert padded["Signature"] != plain["Signature"]


def test_int_user_id_converted_to_str() -> None:
    credentials = ApiKeyCredentials("k", "s", 96, nonces=_fixed("5"))
    assert credentials.user_id == "96"
    payload = credentials.authenticate_payload()
    assert payload["UserId"] == "96"
    assert payload["Signature"] == _hmac("s", "596k")


@pytest.mark.parametrize("user_id", [True, False])
def test_bool_user_id_rejected(user_id: bool) -> None:
    with pytest.raises(alphapoint.UsageError, match="user_id must be a string"):
        ApiKeyCredentials("k", "s", user_id)


def test_other_user_id_types_rejected() -> None:
    with pytest.raises(alphapoint.UsageError, match="user_id must be a string"):
        ApiKeyCredentials("k", "s", 96.0)  # type: ignore[arg-type]
    with pytest.raises(alphapoint.UsageError, match="user_id must be a string"):
        ApiKeyCredentials("k", "s", None)  # type: ignore[arg-type]


def test_api_secrets_not_in_repr_or_str() -> None:
    credentials = ApiKeyCredentials(
        api_key="28c68ac3fcfafc3d4e8d653fe57e5baf",
        api_secret="0123456789abcdef-very-secret",
        user_id="96",
        nonces=_fixed("1"),
    )
    for text in (repr(credentials), str(credentials)):
        assert "0123456789abcdef-very-secret" not in text
        assert "28c68ac3fcfafc3d4e8d653fe57e5baf" not in text
        assert "28c68ac3fcfa" not in text
        # Only the first four characters of the key, to tell keys apart.
        assert "28c6…" in text
        assert "96" in text


def test_short_api_key_fully_masked() -> None:
    credentials = ApiKeyCredentials("abcd", "zz-secret", "1", nonces=_fixed("1"))
    assert "abcd" not in repr(credentials)
    assert "zz-secret" not in repr(credentials)


def test_signature_not_in_repr() -> None:
    credentials = ApiKeyCredentials("test_api_key", "test_secret_key", "001", nonces=_fixed("1"))
    signature = credentials.authenticate_payload()["Signature"]
    assert signature not in repr(credentials)

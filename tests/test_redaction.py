"""alphapoint.redaction: secrets out of anything that is logged."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from alphapoint.redaction import REDACTED, redact

R = "<redacted>"


def test_redacted_marker() -> None:
    assert REDACTED == R


@pytest.mark.parametrize(
    "key",
    [
        "Password",
        "password",
        "PASSWORD",
        "pass_word",
        "Signature",
        "signature",
        "SIGNATURE",
        "SessionToken",
        "sessionToken",
        "session_token",
        "SESSIONTOKEN",
        "TwoFAToken",
        "twoFAToken",
        "two_fa_token",
        "Code",
        "code",
        "CODE",
        "APISecret",
        "api_secret",
    ],
)
def test_secret_keys_redacted_in_any_casing(key: str) -> None:
    assert redact({key: "s3cr3t-value", "Other": "kept"}) == {key: R, "Other": "kept"}


@pytest.mark.parametrize("value", ["", "123456", 123456, 0, True, ["a", "b"], {"x": "y"}, 1.5])
def test_secret_values_of_any_type_redacted(value: Any) -> None:
    assert redact({"Code": value}) == {"Code": R}


def test_authenticate_user_password_payload() -> None:
    payload = {"UserName": "alice", "Password": "hunter2"}
    assert redact(payload) == {"UserName": "alice", "Password": R}


def test_authenticate_user_api_key_payload() -> None:
    payload = {
        "APIKey": "28c68ac3fcfafc3d4e8d653fe57e5baf",
        "Signature": "29c15c42e4fabcc9e229421e148e647903927c503ab4578ada55bb13a63a9636",
        "UserId": "96",
        "Nonce": "2247733562",
    }
    assert redact(payload) == {
        "APIKey": "28c6…",
        "Signature": R,
        "UserId": "96",
        "Nonce": "2247733562",
    }


@pytest.mark.parametrize("key", ["APIKey", "apiKey", "api_key", "APIKEY"])
def test_api_key_partially_shown(key: str) -> None:
    assert redact({key: "abcdefghijklmnop"}) == {key: "abcd…"}


@pytest.mark.parametrize("value", ["", "abc", "abcdefgh"])
def test_short_api_key_fully_redacted(value: str) -> None:
    assert redact({"APIKey": value}) == {"APIKey": R}


def test_nested_in_dicts_and_lists() -> None:
    payload = {
        "Authenticated": True,
        "User": {"UserId": 96, "UserName": "alice", "Session": {"SessionToken": "tok-1"}},
        "Items": [
            {"Code": "123456", "Name": "first"},
            [{"password": "pw"}, "plain", 3],
            {"twoFAToken": "qr", "Deep": [[{"SIGNATURE": "sig"}]]},
        ],
    }
    assert redact(payload) == {
        "Authenticated": True,
        "User": {"UserId": 96, "UserName": "alice", "Session": {"SessionToken": R}},
        "Items": [
            {"Code": R, "Name": "first"},
            [{"password": R}, "plain", 3],
            {"twoFAToken": R, "Deep": [[{"SIGNATURE": R}]]},
        ],
    }


def test_top_level_list() -> None:
    assert redact([{"Password": "pw"}, {"Name": "n"}]) == [{"Password": R}, {"Name": "n"}]


def test_tuples_are_redacted_too() -> None:
    # json.dumps sends a tuple as an array, so a tuple in a request payload must be covered.
    redacted = redact({"Orders": ({"Password": "pw"}, {"Name": "n"})})
    assert list(redacted["Orders"]) == [{"Password": R}, {"Name": "n"}]
    assert "pw" not in repr(redacted)


def test_other_values_untouched() -> None:
    payload: dict[Any, Any] = {
        "UserName": "alice",
        "UserId": 96,
        "Nonce": "2247733562",
        "Authenticated": True,
        "errormsg": None,
        "Price": 1.5,
        "Codes": ["a"],
        "CodeName": "kept",
        "Passwords": "kept too",
        1: "non-string key",
    }
    assert redact(payload) == copy.deepcopy(payload)


@pytest.mark.parametrize(
    "value", [None, "Endpoint Not Found", 42, 1.5, True, [], {}, [1, "two", None]], ids=repr
)
def test_non_dict_values_untouched(value: Any) -> None:
    assert redact(value) == value


def test_null_secret_left_as_null() -> None:
    assert redact({"SessionToken": None, "Password": None}) == {
        "SessionToken": None,
        "Password": None,
    }


def test_input_not_mutated() -> None:
    payload: dict[str, Any] = {
        "Password": "pw",
        "APIKey": "abcdefghijklmnop",
        "User": {"SessionToken": "tok", "Name": "n"},
        "List": [{"Code": "1"}, "x"],
    }
    before = copy.deepcopy(payload)
    redacted = redact(payload)
    assert payload == before
    assert redacted is not payload
    assert redacted["User"] is not payload["User"]
    assert redacted["List"] is not payload["List"]
    assert redacted == {
        "Password": R,
        "APIKey": "abcd…",
        "User": {"SessionToken": R, "Name": "n"},
        "List": [{"Code": R}, "x"],
    }

"""alphapoint.decoding and alphapoint.models: reply payloads into model classes."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphapoint import decoding
from alphapoint.decoding import decode, decode_authenticate_result, decode_rows, fold_key
from alphapoint.errors import DecodeError, FrameError, ProtocolError
from alphapoint.frame import Frame, MessageType, decode_frame, encode_frame
from alphapoint.market_data import Level1, Level2Entry, TickerBar, Trade
from alphapoint.models import AuthenticateResult, AuthStatus, User
from alphapoint.testing.strategies import WIRE_KEYS, results, spelled, to_wire

# The documented "Authenticated response" of AuthenticateUser, verbatim from the
# reference page (camelCase).
DOCUMENTED_REPLY = """
{
  "authenticated": true,
  "user":
  { "userId": 0,
    "userName": "",
    "email": "",
    "emailVerified": false,
    "accountId": 0,
    "omsId": 0,
    "use2FA": false
  },
  "locked": false,
  "requires2FA": false,
  "twoFAType": "",
  "twoFAToken": "",
  "errormsg": ""
}
"""

# The documented "False authenticated response".
DOCUMENTED_FAILURE = """
{
  "authenticated": false,
  "locked": false,
  "errormsg": "Invalid username or password"
}
"""

# The same reply as live gateways send it: PascalCase, keys the docs omit,
# `OMSId`, `EnforceEnable2FA` and a lowercase `errormsg`.
OBSERVED_REPLY: dict[str, Any] = {
    "Authenticated": True,
    "User": {
        "UserId": 0,
        "UserName": "",
        "Email": "",
        "EmailVerified": False,
        "AccountId": 0,
        "OMSId": 0,
        "Use2FA": False,
        "Config": [],
        "PasswordResetStatus": None,
    },
    "Locked": False,
    "Requires2FA": False,
    "EnforceEnable2FA": False,
    "TwoFAType": "",
    "TwoFAToken": "",
    "errormsg": "",
    "SomethingNew": {"Nested": [1, 2, 3]},
}

EXPECTED_DOCUMENTED = AuthenticateResult(
    authenticated=True,
    locked=False,
    requires_2fa=False,
    two_fa_type=None,
    two_fa_token=None,
    session_token=None,
    errormsg=None,
    user=User(
        user_id=0,
        user_name="",
        email="",
        email_verified=False,
        account_id=0,
        oms_id=0,
        use_2fa=False,
    ),
    user_id=None,
)


def test_documented_camel_case_reply() -> None:
    result = decode_authenticate_result(json.loads(DOCUMENTED_REPLY))
    assert result == EXPECTED_DOCUMENTED
    assert result.status is AuthStatus.AUTHENTICATED


def test_observed_pascal_case_reply_decodes_the_same() -> None:
    assert decode_authenticate_result(OBSERVED_REPLY) == EXPECTED_DOCUMENTED


def test_documented_failure_reply() -> None:
    result = decode_authenticate_result(json.loads(DOCUMENTED_FAILURE))
    assert result == AuthenticateResult(
        authenticated=False, locked=False, errormsg="Invalid username or password"
    )
    assert result.status is AuthStatus.REJECTED
    assert result.display_message == "Invalid username or password"


def test_realistic_reply_in_both_casings() -> None:
    pascal = {
        "Authenticated": True,
        "SessionToken": "7d0cbb02-0f0c-4ad7-8f8b-2b6f2c1d9a11",
        "User": {
            "UserId": 96,
            "UserName": "alice",
            "Email": "alice@example.com",
            "EmailVerified": True,
            "AccountId": 112,
            "OMSId": 1,
            "Use2FA": True,
            "LastLoginAt": "2024-01-01T00:00:00Z",
        },
        "Locked": False,
        "Requires2FA": False,
        "EnforceEnable2FA": True,
        "TwoFAType": "Google",
        "TwoFAToken": "qr-token",
        "errormsg": None,
    }
    camel = {
        "authenticated": True,
        "sessionToken": "7d0cbb02-0f0c-4ad7-8f8b-2b6f2c1d9a11",
        "user": {
            "userId": 96,
            "userName": "alice",
            "email": "alice@example.com",
            "emailVerified": True,
            "accountId": 112,
            "omsId": 1,
            "use2FA": True,
        },
        "locked": False,
        "requires2FA": False,
        "twoFAType": "Google",
        "twoFAToken": "qr-token",
    }
    snake = {
        "authenticated": True,
        "session_token": "7d0cbb02-0f0c-4ad7-8f8b-2b6f2c1d9a11",
        "user": {
            "user_id": 96,
            "user_name": "alice",
            "email": "alice@example.com",
            "email_verified": True,
            "account_id": 112,
            "oms_id": 1,
            "use_2fa": True,
        },
        "two_fa_type": "Google",
        "two_fa_token": "qr-token",
    }
    expected = AuthenticateResult(
        authenticated=True,
        session_token="7d0cbb02-0f0c-4ad7-8f8b-2b6f2c1d9a11",
        user=User(
            user_id=96,
            user_name="alice",
            email="alice@example.com",
            email_verified=True,
            account_id=112,
            oms_id=1,
            use_2fa=True,
        ),
        two_fa_type="Google",
        two_fa_token="qr-token",
    )
    assert decode_authenticate_result(pascal) == expected
    assert decode_authenticate_result(camel) == expected
    assert decode_authenticate_result(snake) == expected


def test_authenticate_2fa_reply() -> None:
    result = decode_authenticate_result(
        {"Authenticated": True, "SessionToken": "tok-123", "UserId": 96},
        function="Authenticate2FA",
    )
    assert result == AuthenticateResult(authenticated=True, session_token="tok-123", user_id=96)
    assert result.user is None
    assert result.status is AuthStatus.AUTHENTICATED


def test_wrong_2fa_code_reply() -> None:
    result = decode_authenticate_result({"Authenticated": False}, function="Authenticate2FA")
    assert result == AuthenticateResult()
    assert result.status is AuthStatus.REJECTED


def test_empty_payload_gives_defaults() -> None:
    result = decode_authenticate_result({})
    assert result.authenticated is False
    assert result.locked is False
    assert result.requires_2fa is False
    assert result.two_fa_type is None
    assert result.two_fa_token is None
    assert result.session_token is None
    assert result.errormsg is None
    assert result.user is None
    assert result.user_id is None


def test_nulls_give_defaults() -> None:
    payload = {
        "Authenticated": None,
        "Locked": None,
        "Requires2FA": None,
        "TwoFAType": None,
        "TwoFAToken": None,
        "SessionToken": None,
        "errormsg": None,
        "User": None,
        "UserId": None,
    }
    assert decode_authenticate_result(payload) == AuthenticateResult()


def test_nulls_and_missing_keys_in_user_give_defaults() -> None:
    result = decode_authenticate_result(
        {"Authenticated": True, "User": {"UserId": 5, "Email": None, "UserName": None}}
    )
    assert result.user == User(
        user_id=5,
        user_name="",
        email="",
        email_verified=False,
        account_id=0,
        oms_id=0,
        use_2fa=False,
    )


def test_empty_user_object() -> None:
    assert decode_authenticate_result({"user": {}}).user == User(
        user_id=0,
        user_name="",
        email="",
        email_verified=False,
        account_id=0,
        oms_id=0,
        use_2fa=False,
    )


@pytest.mark.parametrize(
    ("key", "attribute"),
    [
        ("errormsg", "errormsg"),
        ("TwoFAType", "two_fa_type"),
        ("TwoFAToken", "two_fa_token"),
        ("SessionToken", "session_token"),
    ],
)
def test_empty_strings_read_as_none(key: str, attribute: str) -> None:
    assert getattr(decode_authenticate_result({key: ""}), attribute) is None
    assert getattr(decode_authenticate_result({key: "value"}), attribute) == "value"


def test_empty_strings_kept_in_required_string_fields() -> None:
    result = decode_authenticate_result({"User": {"UserName": "", "Email": ""}})
    assert result.user is not None
    assert result.user.user_name == ""
    assert result.user.email == ""


def test_ids_sent_as_decimal_strings() -> None:
    result = decode_authenticate_result({"UserId": "96", "User": {"UserId": "0096", "OMSId": "1"}})
    assert result.user_id == 96
    assert result.user is not None
    assert result.user.user_id == 96
    assert result.user.oms_id == 1


def test_non_string_keys_ignored() -> None:
    assert decode_authenticate_result({1: True, "Authenticated": True}) == AuthenticateResult(
        authenticated=True
    )


def test_fold_key() -> None:
    assert fold_key("Requires2FA") == "requires2fa"
    assert fold_key("requires_2fa") == "requires2fa"
    assert fold_key("OMSId") == "omsid"
    assert fold_key("oms_id") == "omsid"


# -- wrong types ---------------------------------------------------------------------

SECRET_LOOKING = "hunter2-S3CR3T"


@pytest.mark.parametrize(
    ("payload", "path", "reason"),
    [
        ({"authenticated": "yes"}, "authenticated", "expected a boolean, got a string"),
        ({"Authenticated": 1}, "authenticated", "expected a boolean, got a number"),
        ({"Authenticated": SECRET_LOOKING}, "authenticated", "expected a boolean, got a string"),
        ({"Locked": "false"}, "locked", "expected a boolean, got a string"),
        ({"Locked": 0}, "locked", "expected a boolean, got a number"),
        ({"Requires2FA": [True]}, "requires_2fa", "expected a boolean, got an array"),
        ({"TwoFAType": 3}, "two_fa_type", "expected a string, got a number"),
        ({"TwoFAToken": 918273645}, "two_fa_token", "expected a string, got a number"),
        ({"SessionToken": True}, "session_token", "expected a string, got a boolean"),
        (
            {"SessionToken": {"t": SECRET_LOOKING}},
            "session_token",
            "expected a string, got an object",
        ),
        ({"errormsg": [SECRET_LOOKING]}, "errormsg", "expected a string, got an array"),
        ({"UserId": 96.5}, "user_id", "expected an integer, got a number"),
        ({"UserId": True}, "user_id", "expected an integer, got a boolean"),
        ({"UserId": SECRET_LOOKING}, "user_id", "expected an integer, got a string"),
        ({"UserId": "-96"}, "user_id", "expected an integer, got a string"),
        ({"User": 5}, "user", "expected an object, got a number"),
        ({"User": SECRET_LOOKING}, "user", "expected an object, got a string"),
        ({"User": [{"UserId": 1}]}, "user", "expected an object, got an array"),
        ({"User": True}, "user", "expected an object, got a boolean"),
        ({"User": {"UserId": "not-a-number"}}, "user.user_id", "expected an integer, got a string"),
        ({"User": {"UserId": False}}, "user.user_id", "expected an integer, got a boolean"),
        ({"User": {"UserName": 7}}, "user.user_name", "expected a string, got a number"),
        ({"User": {"Email": [SECRET_LOOKING]}}, "user.email", "expected a string, got an array"),
        (
            {"User": {"EmailVerified": "true"}},
            "user.email_verified",
            "expected a boolean, got a string",
        ),
        ({"User": {"AccountId": 1.0}}, "user.account_id", "expected an integer, got a number"),
        ({"user": {"omsId": "one"}}, "user.oms_id", "expected an integer, got a string"),
        ({"user": {"use2FA": 1}}, "user.use_2fa", "expected a boolean, got a number"),
    ],
)
def test_mistyped_field_names_the_field(payload: dict[str, Any], path: str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_authenticate_result(payload)
    error = info.value
    assert error.path == path
    assert str(error) == f"AuthenticateUser reply: field {path!r}: {reason}"
    # The message names types, never the offending value.
    for value in _leaves(payload):
        assert repr(value) not in str(error)
        if isinstance(value, str):
            assert value not in str(error)
        if type(value) in (int, float) and value not in (0, 1):
            assert str(value) not in str(error)
    assert SECRET_LOOKING not in str(error)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def test_first_of_several_wrong_fields_is_named() -> None:
    with pytest.raises(DecodeError) as info:
        decode_authenticate_result({"Authenticated": "yes", "Locked": "no"})
    assert info.value.path in {"authenticated", "locked"}


def test_error_names_the_function() -> None:
    with pytest.raises(DecodeError, match=r"^Authenticate2FA reply: field 'authenticated'"):
        decode_authenticate_result({"Authenticated": "yes"}, function="Authenticate2FA")


def test_huge_decimal_string_id_is_a_decode_error() -> None:
    with pytest.raises(DecodeError) as info:
        decode_authenticate_result({"UserId": "9" * 5000})
    assert info.value.path == "user_id"
    assert "9999" not in str(info.value)


@pytest.mark.parametrize(
    ("payload", "json_type"),
    [
        ([], "an array"),
        ([{"Authenticated": True}], "an array"),
        ("Endpoint Not Found", "a string"),
        (42, "a number"),
        (1.5, "a number"),
        (True, "a boolean"),
        (None, "a null"),
    ],
)
def test_non_object_payload(payload: Any, json_type: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_authenticate_result(payload)
    assert info.value.path == ""
    assert (
        str(info.value) == f"AuthenticateUser reply: payload: expected an object, got {json_type}"
    )


def test_decode_error_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_authenticate_result("nope")


def test_generic_decode_of_user() -> None:
    assert decode(User, {"UserId": 3, "OMSId": 2}) == User(user_id=3, oms_id=2)
    with pytest.raises(DecodeError, match=r"^User reply: field 'email'") as info:
        decode(User, {"Email": 3})
    assert info.value.path == "email"
    with pytest.raises(DecodeError, match=r"^GetUserInfo reply: payload"):
        decode(User, [], what="GetUserInfo")


# -- status and display_message ------------------------------------------------------


@pytest.mark.parametrize(
    ("authenticated", "locked", "requires_2fa", "status"),
    [
        (False, False, False, AuthStatus.REJECTED),
        (True, False, False, AuthStatus.AUTHENTICATED),
        (False, True, False, AuthStatus.LOCKED),
        (True, True, False, AuthStatus.LOCKED),
        (False, True, True, AuthStatus.LOCKED),
        (True, True, True, AuthStatus.LOCKED),
        (False, False, True, AuthStatus.TWO_FACTOR_REQUIRED),
        (True, False, True, AuthStatus.TWO_FACTOR_REQUIRED),
    ],
)
def test_status(authenticated: bool, locked: bool, requires_2fa: bool, status: AuthStatus) -> None:
    result = AuthenticateResult(
        authenticated=authenticated, locked=locked, requires_2fa=requires_2fa
    )
    assert result.status is status
    decoded = decode_authenticate_result(
        {"Authenticated": authenticated, "Locked": locked, "Requires2FA": requires_2fa}
    )
    assert decoded.status is status


def test_display_message_uses_gateway_message_when_not_logged_in() -> None:
    assert (
        AuthenticateResult(errormsg="Invalid username or password").display_message
        == "Invalid username or password"
    )
    assert (
        AuthenticateResult(locked=True, errormsg="User is locked").display_message
        == "User is locked"
    )
    assert (
        AuthenticateResult(
            authenticated=True, requires_2fa=True, errormsg="Enter code"
        ).display_message
        == "Enter code"
    )


def test_display_message_from_status() -> None:
    assert AuthenticateResult(authenticated=True).display_message == "Logged in."
    # A stray errormsg on a successful login is not shown as if it were a failure.
    assert (
        AuthenticateResult(authenticated=True, errormsg="ignored").display_message == "Logged in."
    )
    rejected = AuthenticateResult().display_message
    assert "wrong credentials" in rejected
    locked = AuthenticateResult(locked=True).display_message
    assert "locked" in locked
    assert "administrator" in locked
    two_factor = AuthenticateResult(authenticated=True, requires_2fa=True).display_message
    assert "two-factor" in two_factor
    assert len({rejected, locked, two_factor, "Logged in."}) == 4


def test_display_message_after_decoding_empty_errormsg() -> None:
    # errormsg "" reads as None, so the status message is shown, never "".
    result = decode_authenticate_result({"Authenticated": False, "errormsg": ""})
    assert result.display_message
    assert "wrong credentials" in result.display_message


def test_tokens_not_in_repr() -> None:
    result = decode_authenticate_result(
        {
            "Authenticated": True,
            "SessionToken": "session-tok-8f3a91",
            "TwoFAToken": "twofa-tok-2c77e0",
            "TwoFAType": "Google",
        }
    )
    assert result.session_token == "session-tok-8f3a91"
    assert result.two_fa_token == "twofa-tok-2c77e0"
    assert "session-tok-8f3a91" not in repr(result)
    assert "twofa-tok-2c77e0" not in repr(result)
    assert "session-tok-8f3a91" not in str(result)
    assert "twofa-tok-2c77e0" not in str(result)
    assert "Google" in repr(result)


# -- property tests --------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=20,
)


@PROPERTY_SETTINGS
@given(st.text() | st.binary())
def test_decode_frame_raises_only_frame_error(message: str | bytes) -> None:
    try:
        frame = decode_frame(message)
    except FrameError:
        return
    assert isinstance(frame.type, MessageType)


frame_like = st.fixed_dictionaries(
    {},
    optional={
        "m": st.integers(-1, 7) | json_values,
        "i": st.integers() | json_values,
        "n": st.text() | json_values,
        "o": st.text() | json_values.map(json.dumps) | json_values,
    },
)


@PROPERTY_SETTINGS
@given(frame_like)
def test_decode_frame_on_frame_like_objects_raises_only_frame_error(outer: dict[str, Any]) -> None:
    try:
        frame = decode_frame(json.dumps(outer))
    except FrameError:
        return
    assert frame.type == outer["m"]
    assert frame.seq == outer["i"]
    assert frame.function == outer["n"]


@PROPERTY_SETTINGS
@given(
    st.sampled_from([MessageType.REPLY, MessageType.EVENT]),
    st.integers(-(2**63), 2**63 - 1),  # beyond 64 bits, ``i`` is refused
    st.text(),
    json_values,
)
def test_encode_decode_round_trip(
    message_type: MessageType, seq: int, function: str, payload: Any
) -> None:
    frame = Frame(message_type, seq, function, payload)
    decoded = decode_frame(encode_frame(frame))
    assert decoded == frame
    assert decoded.payload == payload
    # The same through bytes, as a WebSocket binary message would arrive.
    assert decode_frame(encode_frame(frame).encode("utf-8")) == frame


_FIELD_KEYS = [
    # documented camelCase
    "authenticated",
    "user",
    "locked",
    "requires2FA",
    "twoFAType",
    "twoFAToken",
    "errormsg",
    "userId",
    "userName",
    "email",
    "emailVerified",
    "accountId",
    "omsId",
    "use2FA",
    "sessionToken",
    # observed PascalCase
    "Authenticated",
    "User",
    "Locked",
    "Requires2FA",
    "EnforceEnable2FA",
    "TwoFAType",
    "TwoFAToken",
    "SessionToken",
    "UserId",
    "UserName",
    "Email",
    "EmailVerified",
    "AccountId",
    "OMSId",
    "Use2FA",
]

reply_keys = st.sampled_from(_FIELD_KEYS) | st.text(max_size=10)
reply_scalars = json_scalars | st.integers(0, 10**6).map(str) | st.just("")
reply_values = st.recursive(
    reply_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(reply_keys, children, max_size=8)
    ),
    max_leaves=25,
)


@PROPERTY_SETTINGS
@given(reply_values | st.dictionaries(reply_keys, reply_values, max_size=10))
def test_decode_authenticate_result_raises_only_decode_error(payload: Any) -> None:
    failure: DecodeError | None = None
    try:
        result = decode_authenticate_result(payload)
    except DecodeError as error:
        failure = error
    if failure is not None:
        assert isinstance(failure.path, str)
        assert str(failure).startswith("AuthenticateUser reply: ")
        return
    assert isinstance(result, AuthenticateResult)
    assert isinstance(result.status, AuthStatus)
    assert isinstance(result.display_message, str)
    assert result.display_message


# -- the generated plans read what the converter reads -------------------------------

#: User's fields, the JSON type each reads, and the casings a gateway may send.
USER_FIELDS: dict[str, tuple[type, list[str]]] = {
    "user_id": (int, ["UserId", "userId", "user_id"]),
    "user_name": (str, ["UserName", "userName"]),
    "email": (str, ["Email", "email"]),
    "email_verified": (bool, ["EmailVerified", "emailVerified"]),
    "account_id": (int, ["AccountId", "accountId"]),
    "oms_id": (int, ["OMSId", "omsId", "OmsId"]),
    "use_2fa": (bool, ["Use2FA", "use2FA"]),
}
values = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(USER_FIELDS)), st.integers(0, 2), values), max_size=10
    )
)
def test_a_user_reads_the_last_key_given_for_a_field_checked_by_its_type(
    items: list[tuple[str, int, Any]],
) -> None:
    # Each set of keys is read by a function generated for it: whatever keys
    # come (casings mixed, a field twice, nulls), the result is what the
    # rules say, worked out here key by key: the last non-null value for a
    # field, read by its type (an id also from a string of digits), or a
    # DecodeError naming the field.
    payload: dict[str, Any] = {}
    for name, casing, value in items:
        keys = USER_FIELDS[name][1]
        payload[keys[casing % len(keys)]] = value
    expected: dict[str, Any] = {}
    wrong: list[str] = []
    for key, value in payload.items():  # in the order given: the last one wins
        name = next(n for n, (_, keys) in USER_FIELDS.items() if key in keys)
        kind = USER_FIELDS[name][0]
        if value is None:
            continue
        expected.pop(name, None)
        if name in wrong:
            wrong.remove(name)
        if kind is int and type(value) is str and value.isascii() and value.isdigit():
            value = int(value) if len(value) <= 19 and int(value) < 2**63 else value
        in_range = not isinstance(value, int) or -(2**63) <= value < 2**63
        if type(value) is kind and in_range:
            expected[name] = value
        else:
            wrong.append(name)
    if wrong:
        with pytest.raises(DecodeError):
            decode(User, payload)
        return
    assert decode(User, payload) == User(**expected)


# -- the fast converter's plans give what the detailed converter gives ----------------


def _exactly(value: Any) -> Any:
    """``value`` with every field's type beside it: ``True`` is not ``1`` here."""
    if attrs.has(type(value)):
        fields = attrs.fields(type(value))
        return (type(value), tuple(_exactly(getattr(value, f.name)) for f in fields))
    if isinstance(value, list):
        return [_exactly(item) for item in value]
    return (type(value), value)


def _fast_and_detailed(cls: Any, payload: Any) -> None:
    """The generated plan's result is the detailed converter's, or both fail."""
    fast = decoding.fast_converter.get_structure_hook(cls)
    for _ in range(2):  # the first call makes the plan, the second runs it
        try:
            mine = fast(payload, cls)
        except Exception:  # noqa: BLE001 - only the detailed converter's verdict matters
            with pytest.raises(Exception):  # noqa: B017, PT011
                decoding.detailed_converter.structure(payload, cls)
            return
        assert _exactly(mine) == _exactly(decoding.detailed_converter.structure(payload, cls))


@PROPERTY_SETTINGS
@given(st.data(), results)
def test_a_reply_in_any_casing_reads_as_the_detailed_converter_reads_it(
    data: st.DataObject, result: AuthenticateResult
) -> None:
    # The plans build the instance through its slots and read the user object
    # through User's plans: the same fields, of the same types, as cattrs'
    # structure function calling the classes.
    payload = data.draw(to_wire(result, WIRE_KEYS))
    _fast_and_detailed(AuthenticateResult, payload)
    assert _exactly(decode_authenticate_result(payload)) == _exactly(result)


row_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False)
    | st.sampled_from(["", "1", "12.5", "x", "nan", "1551360481517"])
)
MARKET_MODELS = [Level1, Level2Entry, Trade, TickerBar]


@PROPERTY_SETTINGS
@given(
    st.sampled_from(MARKET_MODELS),
    st.lists(row_scalars, max_size=13) | st.lists(st.integers(0, 3), max_size=13),
)
def test_an_array_row_reads_as_the_detailed_converter_reads_it(model: Any, row: list[Any]) -> None:
    _fast_and_detailed(model, row)
    _fast_and_detailed(list[model], [row, row])
    # decode_rows reads many rows with the row's hook, as the list's hook would.
    failure: DecodeError | None = None
    try:
        rows = decode_rows(model, [row, row])
    except DecodeError as error:
        failure = error
    if failure is None:
        reference = decoding.detailed_converter.structure([row, row], list[model])
        assert _exactly(rows) == _exactly(reference)
    else:
        assert failure.path.startswith("[0]")
        with pytest.raises(Exception):  # noqa: B017, PT011
            decoding.detailed_converter.structure([row, row], list[model])


@PROPERTY_SETTINGS
@given(st.sampled_from(MARKET_MODELS), st.data())
def test_a_market_data_object_reads_as_the_detailed_converter_reads_it(
    model: Any, data: st.DataObject
) -> None:
    names = [f.name for f in attrs.fields(model)]
    keys = st.sampled_from(names).flatmap(spelled) | st.just("Rolling24NumTrades")
    payload = data.draw(st.dictionaries(keys, row_scalars, max_size=len(names) + 2))
    _fast_and_detailed(model, payload)


def test_the_models_are_built_through_their_slots() -> None:
    for model in [AuthenticateResult, User, *MARKET_MODELS]:
        assert decoding.slot_setters(model) is not None, model


def _validated(_: Any, __: Any, value: int) -> None:
    if value < 0:
        raise ValueError("negative")


@attrs.frozen
class WithValidator:
    count: int = attrs.field(default=0, validator=_validated)


def _doubled(value: int) -> int:
    return value * 2


@attrs.frozen
class WithConverter:
    count: int = attrs.field(default=0, converter=_doubled)


BUILT: list[Any] = []


@attrs.frozen
class WithPostInit:
    count: int = 0

    def __attrs_post_init__(self) -> None:
        BUILT.append(self)


@attrs.frozen
class WithPreInit:
    count: int = 0

    def __attrs_pre_init__(self) -> None:
        BUILT.append("pre")


@attrs.frozen(init=False)
class WithOwnInit:
    count: int = 0

    def __init__(self, count: int = 0) -> None:
        self.__attrs_init__(count + 1)


@attrs.frozen(cache_hash=True)
class WithCachedHash:
    count: int = 0


@attrs.define
class WithOnSetattr:
    count: int = attrs.field(default=0, on_setattr=lambda _, __, value: value)


@attrs.define(slots=False)
class WithDict:
    count: int = 0


@pytest.mark.parametrize(
    "model",
    [
        WithValidator,
        WithConverter,
        WithPostInit,
        WithPreInit,
        WithOwnInit,
        WithCachedHash,
        WithOnSetattr,
        WithDict,
    ],
)
def test_a_class_whose_init_does_more_is_called(model: Any) -> None:
    # Not built through its slots: its __init__ (validators, converters,
    # hooks, a cached hash) runs on every decode, the plan's as the first's.
    assert decoding.slot_setters(model) is None
    BUILT.clear()
    for _ in range(3):
        assert decode(model, {"Count": 4}) == model(4)
    if model in (WithPostInit, WithPreInit):
        assert len(BUILT) == 6  # the 3 decodes, and the 3 calls to compare with
    if model is WithValidator:
        for _ in range(2):
            with pytest.raises(DecodeError, match="could not be decoded"):
                decode(model, {"Count": -1})
    if model is WithConverter:
        assert decode(model, {"count": 4}).count == 8
    if model is WithOwnInit:
        assert decode(model, {"count": 4}).count == 5
    if model is WithCachedHash:
        assert hash(decode(model, {"Count": 4})) == hash(model(4))


@attrs.frozen
class Outer:
    user: User | None = None
    owner: User = User()  # noqa: RUF009 - frozen: one instance shared is fine


def test_a_nested_object_is_read_by_its_own_keys_each_time() -> None:
    # The outer keys are the same; the inner ones change: each inner set of
    # keys gets its own plan, read through User's plans from the outer plan.
    for inner in ({"UserId": 1}, {"userName": "bob"}, {"UserId": 1}, {}, {"USERID": "7"}):
        for _ in range(2):
            result = decode(Outer, {"User": inner, "Owner": inner})
            assert result.user == result.owner == decode(User, inner)
    assert decode(Outer, {"User": None, "Owner": None}) == Outer()
    with pytest.raises(DecodeError) as caught:
        decode(Outer, {"User": {"UserId": 1}, "Owner": [1]})
    assert caught.value.path == "owner"

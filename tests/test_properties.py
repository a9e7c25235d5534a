"""Property tests of the frame codec and the reply decoders (hypothesis).

tests/test_decoding.py already checks that arbitrary text, bytes and
frame-shaped objects decode or raise FrameError, that REPLY and EVENT frames
round-trip, and that arbitrary payloads decode as an AuthenticateUser reply or
raise DecodeError. These go further:

* every message type round-trips through bytes, with any Unicode (lone
  surrogates included: those must raise InvalidPayload, never a
  UnicodeEncodeError from the socket);
* decoding is idempotent: what decodes re-encodes to text that decodes to the
  same frame (``m=5`` raw-string payloads included), except a float beyond
  the range of floats (``1e400``), which decoding reads as an infinity (as
  Python's json does) and encoding refuses (NaN and Infinity are refused by
  both);
* arbitrary nesting, thousands deep, in the frame or its payload, never
  raises anything but the library's errors, in decoding, in the reply
  decoders, or in the DEBUG log line of the frame;
* an AuthenticateUser reply decodes the same whatever the casing of its keys
  and whatever unknown keys come with it (a model -> wire -> model round trip);
* the standard-response check raises only RequestError;
* redaction hides secret fields in any casing at any depth.

The long run of the same targets is ``scripts/fuzz.py`` (see docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from typing import Any, Literal

import attrs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from alphapoint.connection import describe
from alphapoint.decoding import decode_authenticate_result, fold_key
from alphapoint.errors import DecodeError, FrameError, InvalidPayload, RequestError
from alphapoint.frame import Frame, MessageType, decode_frame, encode_frame
from alphapoint.models import AuthenticateResult, User
from alphapoint.redaction import SECRET_KEYS, redact
from alphapoint.session import _check_reply

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)

#: Text that can be sent as UTF-8: any code point but the surrogates.
utf8_text = st.text(st.characters(exclude_categories=NO_SURROGATES))
#: Any text, often with lone surrogates (st.text() never makes them).
any_text = utf8_text | st.lists(
    st.characters(exclude_categories=NO_SURROGATES) | st.characters(categories=["Cs"]), min_size=1
).map("".join)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | utf8_text
)


def json_of(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    leaves = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | text
    )
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4)
        ),
        max_leaves=20,
    )


json_values = json_of(utf8_text)


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(item) for item in value)
    return False


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(item) for item in value)
    return False


# -- the frame codec -------------------------------------------------------------------


@SETTINGS
@given(
    st.sampled_from(MessageType),
    st.integers(-(2**63), 2**63 - 1),  # beyond 64 bits, ``i`` is refused
    any_text,
    json_of(any_text),
)
def test_every_frame_round_trips_through_bytes_or_is_refused(
    message_type: MessageType, seq: int, function: str, payload: Any
) -> None:
    frame = Frame(message_type, seq, function, payload)
    try:
        text = encode_frame(frame)
    except InvalidPayload:
        assert _has_surrogate(function) or _has_surrogate(payload)
        return
    assert not _has_surrogate(function)
    assert not _has_surrogate(payload)
    data = text.encode("utf-8")  # what the socket sends: never a UnicodeEncodeError
    assert decode_frame(data) == frame
    assert decode_frame(text) == frame


frame_texts = st.builds(
    lambda m, i, n, o, extra: json.dumps({"m": m, "i": i, "n": n, "o": o, **extra}),
    st.integers(-1, 6),
    st.integers(),
    utf8_text,
    utf8_text | json_values.map(json.dumps),
    st.dictionaries(utf8_text.filter(lambda k: k not in "mino"), json_values, max_size=2),
)


@SETTINGS
@given(frame_texts | utf8_text | st.binary())
def test_decoding_is_idempotent(message: str | bytes) -> None:
    try:
        frame = decode_frame(message)
    except FrameError:
        return
    try:
        text = encode_frame(frame)
    except InvalidPayload:
        # Like Python's json, decoding reads 1e400 as an infinity; encoding
        # refuses to send what is not JSON. (NaN and Infinity are refused.)
        assert _has_non_finite(frame.payload)
        return
    again = decode_frame(text)
    assert again == frame
    assert encode_frame(again) == encode_frame(frame)


def nest(depth: int, kinds: list[bool], core: str) -> str:
    """``core`` inside ``depth`` containers: an array or an object, by ``kinds``."""
    opening, closing = [], []
    for level in range(depth):
        if kinds[level % len(kinds)]:
            opening.append("[")
            closing.append("]")
        else:
            opening.append('{"Password": "hunter2", "k": ')
            closing.append("}")
    return "".join(opening) + core + "".join(reversed(closing))


@SLOW_SETTINGS
@given(
    st.integers(0, 4000),
    st.lists(st.booleans(), min_size=1, max_size=8),
    st.sampled_from(["outer", "payload", "user"]),
    st.sampled_from(MessageType),
)
def test_arbitrary_nesting_never_escapes_the_library_errors(
    depth: int, kinds: list[bool], where: str, message_type: MessageType
) -> None:
    core = nest(depth, kinds, '"x"')
    if where == "outer":
        text = nest(depth, kinds, '{"m": 1, "i": 2, "n": "X", "o": "{}"}')
    elif where == "payload":
        text = json.dumps({"m": int(message_type), "i": 2, "n": "X", "o": core})
    else:
        inner = '{"Authenticated": true, "User": {"UserName": "a", "Extra": ' + core + "}}"
        text = json.dumps({"m": int(message_type), "i": 2, "n": "X", "o": inner})
    try:
        frame = decode_frame(text)
    except FrameError:
        return
    line = describe(frame)  # the DEBUG log line of every frame
    if not isinstance(frame.payload, str):  # an m=5 raw text is logged as it came
        assert "hunter2" not in line
    assert len(line) < 10 * len(text) + 200
    for step in (
        lambda: decode_authenticate_result(frame.payload),
        lambda: _check_reply(frame),
        lambda: encode_frame(frame),
    ):
        with contextlib.suppress(DecodeError, RequestError, InvalidPayload):
            step()


# -- the AuthenticateUser reply, in any casing ------------------------------------------

#: Python field -> the key live gateways send.
WIRE_KEYS = {
    "authenticated": "Authenticated",
    "locked": "Locked",
    "requires_2fa": "Requires2FA",
    "two_fa_type": "TwoFAType",
    "two_fa_token": "TwoFAToken",
    "session_token": "SessionToken",
    "errormsg": "errormsg",
    "user": "User",
    "user_id": "UserId",
}
USER_WIRE_KEYS = {
    "user_id": "UserId",
    "user_name": "UserName",
    "email": "Email",
    "email_verified": "EmailVerified",
    "account_id": "AccountId",
    "oms_id": "OMSId",
    "use_2fa": "Use2FA",
}
KNOWN = {fold_key(key) for key in [*WIRE_KEYS, *USER_WIRE_KEYS]}

optional_text = st.none() | utf8_text.filter(bool)
ids = st.integers(-(2**63), 2**63 - 1)  # 64-bit: beyond, a field is refused

users = st.builds(
    User,
    user_id=ids,
    user_name=utf8_text,
    email=utf8_text,
    email_verified=st.booleans(),
    account_id=ids,
    oms_id=ids,
    use_2fa=st.booleans(),
)
results = st.builds(
    AuthenticateResult,
    authenticated=st.booleans(),
    locked=st.booleans(),
    requires_2fa=st.booleans(),
    two_fa_type=optional_text,
    two_fa_token=optional_text,
    session_token=optional_text,
    errormsg=optional_text,
    user=st.none() | users,
    user_id=st.none() | ids,
)


@st.composite
def spelled(draw: st.DrawFn, key: str) -> str:
    """``key`` in any casing, with underscores anywhere: all fold to the same key."""
    rng = random.Random(draw(st.integers(0, 2**32)))  # one draw per key: fast to generate
    out = []
    for char in key:
        if rng.random() < 0.2:
            out.append("_")
        out.append(char.upper() if rng.random() < 0.5 else char.lower())
    return "".join(out)


@st.composite
def wire_value(draw: st.DrawFn, value: Any) -> Any:
    """``value`` as a gateway may send it: ids also as decimal strings, None as absent."""
    if type(value) is int and value >= 0 and draw(st.booleans()):
        return str(value)
    return value


@st.composite
def to_wire(draw: st.DrawFn, obj: Any, keys: dict[str, str]) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        if value is None and draw(st.booleans()):
            continue  # absent, rather than null
        if isinstance(value, User):
            value = draw(to_wire(value, USER_WIRE_KEYS))
        payload[draw(spelled(keys[field.name]))] = draw(wire_value(value))
    unknown = draw(st.dictionaries(utf8_text, json_values, max_size=3))
    for key, value in unknown.items():
        if fold_key(key) not in KNOWN:
            payload[key] = value
    return payload


@SETTINGS
@given(st.data(), results)
def test_authenticate_reply_in_any_casing_decodes_to_the_same_result(
    data: st.DataObject, result: AuthenticateResult
) -> None:
    payload = data.draw(to_wire(result, WIRE_KEYS))
    assert decode_authenticate_result(payload) == result
    # The same through a whole frame, as the gateway sends it.
    frame = decode_frame(encode_frame(Frame(MessageType.REPLY, 2, "AuthenticateUser", payload)))
    assert decode_authenticate_result(frame.payload) == result


#: Values of the wrong JSON type for each kind of field.
WRONG = {
    "bool": ["true", 1, 0, 1.5, [True], {"v": True}],
    "str": [1, 1.5, True, ["text"], {"text": "x"}],
    "int": [1.5, True, "seven", "-1", [1], {"id": 1}],
    "object": [[{"UserId": 1}], 1.5, "user", True],
}
KINDS = {
    "authenticated": "bool",
    "locked": "bool",
    "requires_2fa": "bool",
    "two_fa_type": "str",
    "two_fa_token": "str",
    "session_token": "str",
    "errormsg": "str",
    "user": "object",
    "user_id": "int",
    "user.user_id": "int",
    "user.user_name": "str",
    "user.email": "str",
    "user.email_verified": "bool",
    "user.account_id": "int",
    "user.oms_id": "int",
    "user.use_2fa": "bool",
}


@SETTINGS
@given(st.data(), results, st.sampled_from(sorted(KINDS)))
def test_one_mistyped_field_is_named_whatever_its_casing(
    data: st.DataObject, result: AuthenticateResult, path: str
) -> None:
    names = path.split(".")
    assume(len(names) == 1 or result.user is not None)
    payload = data.draw(to_wire(result, WIRE_KEYS))
    target = payload
    if len(names) == 2:
        target = next(value for key, value in payload.items() if fold_key(key) == "user")
    key = next((k for k in target if fold_key(k) == fold_key(names[-1])), names[-1])
    target[key] = data.draw(st.sampled_from(WRONG[KINDS[path]]))
    with pytest.raises(DecodeError) as info:
        decode_authenticate_result(payload)
    assert info.value.path == path
    assert f"field {path!r}: expected " in str(info.value)


# -- standard responses -------------------------------------------------------------------

standard_keys = st.sampled_from(
    ["result", "Result", "errormsg", "Errormsg", "errorcode", "Errorcode", "detail", "Detail"]
)
standard_payloads = st.dictionaries(standard_keys | utf8_text, json_values, max_size=5)


@SETTINGS
@given(st.sampled_from([MessageType.REPLY, MessageType.ERROR]), standard_payloads | json_values)
def test_standard_response_check_raises_only_request_error(
    message_type: MessageType, payload: Any
) -> None:
    frame = Frame(message_type, 2, "SendOrder", payload)
    refused: RequestError | None = None
    try:
        returned = _check_reply(frame)
    except RequestError as error:
        refused = error
    if refused is None:
        assert message_type is MessageType.REPLY
        assert returned is payload
    else:
        assert refused.function == "SendOrder"
        assert isinstance(refused.message, str)
        assert refused.code is None or type(refused.code) is int


# -- redaction ---------------------------------------------------------------------------------

MARKER = "Zq9-secret-value-Zq9"


@st.composite
def with_secret(draw: st.DrawFn) -> Any:
    """A JSON value with a secret field, in any casing, at any depth up to 40."""
    key = draw(spelled(draw(st.sampled_from(sorted(SECRET_KEYS)))))
    value: Any = {key: draw(st.sampled_from([MARKER, [MARKER], {"v": MARKER}]))}
    names = draw(st.lists(utf8_text.filter(lambda k: fold_key(k) not in SECRET_KEYS), min_size=1))
    rng = random.Random(draw(st.integers(0, 2**32)))
    for level in range(draw(st.integers(0, 40))):
        siblings = [rng.choice([None, True, 1, 1.5, "x"]) for _ in range(rng.randrange(3))]
        wrap = rng.randrange(3)
        if wrap == 0:
            value = [*siblings, value]
        elif wrap == 1:
            value = (value, *siblings)  # json.dumps sends a tuple as an array
        else:
            value = {names[level % len(names)]: value, "n": siblings}
    return value


@SETTINGS
@given(with_secret())
def test_redaction_hides_secret_fields_at_any_depth(value: Any) -> None:
    assert MARKER not in repr(redact(value))

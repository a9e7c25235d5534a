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
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from alphapoint.apex import check_reply
from alphapoint.connection import describe
from alphapoint.decoding import decode_authenticate_result, fold_key
from alphapoint.errors import DecodeError, FrameError, InvalidPayload, RequestError
from alphapoint.frame import Frame, MessageType, decode_frame, encode_frame
from alphapoint.models import AuthenticateResult
from alphapoint.redaction import redact
from alphapoint.testing.strategies import (
    KINDS,
    MARKER,
    WIRE_KEYS,
    WRONG,
    any_text,
    frame_texts,
    json_of,
    json_values,
    results,
    standard_payloads,
    to_wire,
    utf8_text,
    with_secret,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


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
        lambda: check_reply(frame),
        lambda: encode_frame(frame),
    ):
        with contextlib.suppress(DecodeError, RequestError, InvalidPayload):
            step()


# -- the AuthenticateUser reply, in any casing ------------------------------------------


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


@SETTINGS
@given(st.sampled_from([MessageType.REPLY, MessageType.ERROR]), standard_payloads | json_values)
def test_standard_response_check_raises_only_request_error(
    message_type: MessageType, payload: Any
) -> None:
    frame = Frame(message_type, 2, "SendOrder", payload)
    refused: RequestError | None = None
    try:
        returned = check_reply(frame)
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


@SETTINGS
@given(with_secret())
def test_redaction_hides_secret_fields_at_any_depth(value: Any) -> None:
    assert MARKER not in repr(redact(value))

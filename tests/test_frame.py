"""alphapoint.frame: the APEX frame, encoded and decoded without I/O."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

from alphapoint.errors import AlphaPointError, FrameError, InvalidPayload, ProtocolError
from alphapoint.frame import Frame, MessageType, decode_fields, decode_frame, encode_frame

# -- encode_frame ------------------------------------------------------------

#: Every test here runs with each JSON library installed (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("codec")


def test_encode_ping_exact_text() -> None:
    assert encode_frame(Frame(MessageType.REQUEST, 2, "Ping", {})) == (
        '{"m":0,"i":2,"n":"Ping","o":"{}"}'
    )


def test_encode_authenticate_user_exact_text() -> None:
    frame = Frame(MessageType.REQUEST, 4, "AuthenticateUser", {"UserName": "u", "Password": "p"})
    assert encode_frame(frame) == (
        '{"m":0,"i":4,"n":"AuthenticateUser","o":"{\\"UserName\\":\\"u\\",\\"Password\\":\\"p\\"}"}'
    )


def test_encode_subscribe_and_unsubscribe_types() -> None:
    assert encode_frame(
        Frame(MessageType.SUBSCRIBE, 6, "SubscribeLevel1", {"InstrumentId": 1})
    ) == ('{"m":2,"i":6,"n":"SubscribeLevel1","o":"{\\"InstrumentId\\":1}"}')
    assert encode_frame(Frame(MessageType.UNSUBSCRIBE, 8, "UnSubscribeLevel1", {})) == (
        '{"m":4,"i":8,"n":"UnSubscribeLevel1","o":"{}"}'
    )


def test_encode_default_payload_is_empty_object() -> None:
    assert encode_frame(Frame(MessageType.REQUEST, 2, "LogOut")) == (
        '{"m":0,"i":2,"n":"LogOut","o":"{}"}'
    )


def test_encode_non_ascii_is_kept_as_is() -> None:
    text = encode_frame(Frame(MessageType.REQUEST, 2, "Echo", {"Name": "José €"}))
    assert text == '{"m":0,"i":2,"n":"Echo","o":"{\\"Name\\":\\"José €\\"}"}'


def test_encode_payload_is_double_encoded() -> None:
    payload: dict[str, Any] = {"a": [1, 2.5, None, True], "b": {"c": 'quote" and \\ slash'}}
    text = encode_frame(Frame(MessageType.REQUEST, 10, "Thing", payload))
    outer = json.loads(text)
    assert set(outer) == {"m", "i", "n", "o"}
    assert outer["m"] == 0
    assert outer["i"] == 10
    assert outer["n"] == "Thing"
    # `o` is a string holding JSON, not a nested object.
    assert isinstance(outer["o"], str)
    assert json.loads(outer["o"]) == payload


def test_encode_non_object_payloads() -> None:
    assert encode_frame(Frame(MessageType.REQUEST, 2, "X", [1, 2])) == (
        '{"m":0,"i":2,"n":"X","o":"[1,2]"}'
    )
    assert encode_frame(Frame(MessageType.REQUEST, 2, "X", "s")) == (
        '{"m":0,"i":2,"n":"X","o":"\\"s\\""}'
    )
    assert encode_frame(Frame(MessageType.REQUEST, 2, "X", None)) == (
        '{"m":0,"i":2,"n":"X","o":"null"}'
    )


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({1, 2}, id="set"),
        pytest.param({"x": {3}}, id="nested-set"),
        pytest.param({"x": math.nan}, id="nan"),
        pytest.param({"x": math.inf}, id="inf"),
        pytest.param({"x": -math.inf}, id="-inf"),
        pytest.param({"x": object()}, id="object"),
        pytest.param({"x": b"bytes"}, id="bytes"),
        pytest.param({(1, 2): "tuple key"}, id="tuple-key"),
    ],
)
def test_encode_non_serialisable_payload_raises_invalid_payload(payload: Any) -> None:
    frame = Frame(MessageType.REQUEST, 2, "SendOrder", payload)
    with pytest.raises(InvalidPayload, match=r"payload of 'SendOrder' is not JSON-serialisable"):
        encode_frame(frame)


def test_encode_circular_payload_raises_invalid_payload() -> None:
    payload: dict[str, Any] = {}
    payload["self"] = payload
    with pytest.raises(InvalidPayload, match="not JSON-serialisable"):
        encode_frame(Frame(MessageType.REQUEST, 2, "Loop", payload))


def test_encode_deeply_nested_payload_raises_invalid_payload() -> None:
    payload: list[Any] = []
    for _ in range(100_000):
        payload = [payload]
    with pytest.raises(InvalidPayload, match="not JSON-serialisable"):
        encode_frame(Frame(MessageType.REQUEST, 2, "Deep", payload))


def test_invalid_payload_is_a_type_error_and_hides_the_value() -> None:
    with pytest.raises(InvalidPayload) as info:
        encode_frame(Frame(MessageType.REQUEST, 2, "X", {"Password": {"hunter2-secret"}}))
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, AlphaPointError)
    assert "hunter2-secret" not in str(info.value)


# -- decode_frame: valid frames ------------------------------------------------


def test_decode_reply() -> None:
    frame = decode_frame('{"m":1,"i":2,"n":"Ping","o":"{\\"msg\\":\\"PONG\\"}"}')
    assert frame == Frame(MessageType.REPLY, 2, "Ping", {"msg": "PONG"})
    assert frame.type is MessageType.REPLY
    assert frame.seq == 2
    assert frame.function == "Ping"
    assert frame.payload == {"msg": "PONG"}


def test_decode_bytes() -> None:
    frame = decode_frame('{"m":3,"i":7,"n":"LogoutEvent","o":"{\\"n\\":\\"é\\"}"}'.encode())
    assert frame == Frame(MessageType.EVENT, 7, "LogoutEvent", {"n": "é"})


def test_decode_error_frame_with_raw_string_payload() -> None:
    frame = decode_frame('{"m":5,"i":4,"n":"NoSuchThing","o":"Endpoint Not Found"}')
    assert frame.type is MessageType.ERROR
    assert frame.seq == 4
    assert frame.function == "NoSuchThing"
    assert frame.payload == "Endpoint Not Found"


def test_decode_error_frame_with_json_payload() -> None:
    frame = decode_frame(
        '{"m":5,"i":4,"n":"X","o":"{\\"result\\":false,\\"errormsg\\":\\"Bad\\",\\"errorcode\\":100}"}'
    )
    assert frame.payload == {"result": False, "errormsg": "Bad", "errorcode": 100}


def test_decode_error_frame_with_deeply_nested_raw_payload() -> None:
    raw = "[" * 100_000
    frame = decode_frame(json.dumps({"m": 5, "i": 4, "n": "X", "o": raw}))
    assert frame.payload == raw


def test_decode_ignores_extra_keys() -> None:
    frame = decode_frame('{"m":1,"i":2,"n":"Ping","o":"{}","extra":[1]}')
    assert frame == Frame(MessageType.REPLY, 2, "Ping", {})


@pytest.mark.parametrize("m", [0, 1, 2, 3, 4, 5])
def test_decode_every_known_type(m: int) -> None:
    frame = decode_frame(json.dumps({"m": m, "i": 0, "n": "F", "o": "[]"}))
    assert frame.type == m
    assert isinstance(frame.type, MessageType)
    assert frame.payload == []


def test_decode_non_object_payloads() -> None:
    assert decode_frame('{"m":1,"i":2,"n":"F","o":"null"}').payload is None
    assert decode_frame('{"m":1,"i":2,"n":"F","o":"42"}').payload == 42
    assert decode_frame('{"m":1,"i":2,"n":"F","o":"\\"s\\""}').payload == "s"


# -- decode_frame: every FrameError --------------------------------------------


@pytest.mark.parametrize(
    "text", ["", "not json", "{", '{"m":1,', "{'m': 1}", "\x00", "NaNx"], ids=repr
)
def test_decode_non_json_text(text: str) -> None:
    with pytest.raises(FrameError, match="frame is not JSON"):
        decode_frame(text)


@pytest.mark.parametrize(
    ("text", "json_type"),
    [
        ("[]", "array"),
        ('[{"m":1,"i":2,"n":"Ping","o":"{}"}]', "array"),
        ("42", "number"),
        ("-1.5", "number"),
        ('"a string"', "string"),
        ("null", "null"),
        ("true", "boolean"),
    ],
)
def test_decode_json_that_is_not_an_object(text: str, json_type: str) -> None:
    with pytest.raises(FrameError, match=f"frame is a JSON {json_type}, not an object"):
        decode_frame(text)


_VALID: dict[str, Any] = {"m": 1, "i": 2, "n": "Ping", "o": "{}"}


@pytest.mark.parametrize("key", ["m", "i", "n", "o"])
def test_decode_missing_key(key: str) -> None:
    outer = {k: v for k, v in _VALID.items() if k != key}
    with pytest.raises(FrameError, match=f"frame has no '{key}' key"):
        decode_frame(json.dumps(outer))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("m", True, "frame key 'm' is a JSON boolean, not an integer"),
        ("m", False, "frame key 'm' is a JSON boolean, not an integer"),
        ("m", 1.0, "frame key 'm' is a JSON number, not an integer"),
        ("m", "1", "frame key 'm' is a JSON string, not an integer"),
        ("m", None, "frame key 'm' is a JSON null, not an integer"),
        ("m", [1], "frame key 'm' is a JSON array, not an integer"),
        ("m", {}, "frame key 'm' is a JSON object, not an integer"),
        ("i", True, "frame key 'i' is a JSON boolean, not an integer"),
        ("i", False, "frame key 'i' is a JSON boolean, not an integer"),
        ("i", 2.0, "frame key 'i' is a JSON number, not an integer"),
        ("i", "2", "frame key 'i' is a JSON string, not an integer"),
        ("i", None, "frame key 'i' is a JSON null, not an integer"),
        ("n", 3, "frame key 'n' is a JSON number, not a string"),
        ("n", None, "frame key 'n' is a JSON null, not a string"),
        ("n", ["Ping"], "frame key 'n' is a JSON array, not a string"),
        ("n", False, "frame key 'n' is a JSON boolean, not a string"),
        ("o", {}, "frame key 'o' of 'Ping' is a JSON object, not a string"),
        ("o", {"msg": "PONG"}, "frame key 'o' of 'Ping' is a JSON object, not a string"),
        ("o", None, "frame key 'o' of 'Ping' is a JSON null, not a string"),
        ("o", 1, "frame key 'o' of 'Ping' is a JSON number, not a string"),
        ("o", [], "frame key 'o' of 'Ping' is a JSON array, not a string"),
        ("o", True, "frame key 'o' of 'Ping' is a JSON boolean, not a string"),
    ],
)
def test_decode_mistyped_key(key: str, value: Any, message: str) -> None:
    outer = {**_VALID, key: value}
    with pytest.raises(FrameError, match=re.escape(message)):
        decode_frame(json.dumps(outer))


@pytest.mark.parametrize("m", [-1, 6, 7, 100, 2**40])
def test_decode_unknown_message_type(m: int) -> None:
    with pytest.raises(FrameError, match=f"frame has unknown message type m={m}"):
        decode_frame(json.dumps({**_VALID, "m": m}))


@pytest.mark.parametrize("m", [1, 3])
def test_decode_non_json_payload_outside_error_frames(m: int) -> None:
    text = json.dumps({"m": m, "i": 12, "n": "GetThing", "o": "Endpoint Not Found"})
    with pytest.raises(FrameError, match=re.escape(f"payload 'o' of 'GetThing' (m={m}, i=12)")):
        decode_frame(text)


def test_decode_deeply_nested_payload_in_reply() -> None:
    text = json.dumps({"m": 1, "i": 2, "n": "X", "o": "[" * 100_000})
    with pytest.raises(FrameError, match="is not JSON"):
        decode_frame(text)


@pytest.mark.parametrize(
    "data", [b"\xff", b"\xc3", b'{"m":1,"i":2,"n":"\xe9","o":"{}"}', b"\xed\xa0\x80"], ids=repr
)
def test_decode_invalid_utf8(data: bytes) -> None:
    with pytest.raises(FrameError, match="frame is not valid UTF-8"):
        decode_frame(data)


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, "{" * 100_000, '{"a":' * 100_000, '{"m":1,"x":' + "[" * 100_000],
    ids=["arrays", "braces", "objects", "inside-frame"],
)
def test_decode_deeply_nested_json_is_a_frame_error(text: str) -> None:
    with pytest.raises(FrameError, match="frame is not JSON"):
        decode_frame(text)


def test_decode_deeply_nested_bytes_is_a_frame_error() -> None:
    with pytest.raises(FrameError):
        decode_frame(b"[" * 100_000)


def test_frame_error_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_frame("nope")
    assert issubclass(FrameError, AlphaPointError)


def test_frame_repr_hides_payload() -> None:
    frame = Frame(MessageType.REQUEST, 2, "AuthenticateUser", {"Password": "hunter2-secret"})
    assert "hunter2-secret" not in repr(frame)
    assert "AuthenticateUser" in repr(frame)


@pytest.mark.parametrize(
    "text",
    [
        '{"m":1,"i":2,"n":"Ping","o":"{\\"msg\\":\\"PONG\\"}"}',
        '{"m":1,"i":4,"n":"GetX","o":"{\\"Big\\":123456789012345678901234}"}',
        '{"m":1,"i":6,"n":"GetX","o":"[12345678901234567890]"}',
        '{"m":5,"i":8,"n":"Nope","o":"Endpoint Not Found"}',
        '{"m":3,"i":9,"n":"Level1UpdateEvent","o":"{\\"a\\":{\\"b\\":1},\\"c\\":[1,2]}"}',
    ],
)
def test_decode_fields_reads_what_decode_frame_reads(text: str) -> None:
    """The fields of a call's path are the frame's, long numbers in ``o`` read
    exactly (a short ``o`` is read without looking for them)."""
    frame = decode_frame(text)
    assert decode_fields(text) == (frame.type, frame.seq, frame.function, frame.payload)


def test_a_long_integer_in_a_short_or_long_o_is_read_exactly() -> None:
    big = 123456789012345678901234
    for o in [str(big), json.dumps({"x": big}), json.dumps({"padding": "y" * 40, "x": big})]:
        text = json.dumps({"m": 1, "i": 2, "n": "GetX", "o": o})
        assert decode_fields(text)[3] == json.loads(o)

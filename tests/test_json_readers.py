"""Where the JSON libraries read differently, the frame codec reads as json does.

Each library's fast reader refuses what it is not sure of, and the frame
codec reads that text again strictly (:mod:`alphapoint.jsoncodec`). These
are the texts at the edges of the libraries installed (msgspec, orjson,
json): each test runs with each of them (tests/conftest.py, ``codec``), and
the expected values are json's own.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from alphapoint.errors import FrameError, PayloadError
from alphapoint.frame import MessageType, decode_fields, decode_frame

pytestmark = pytest.mark.usefixtures("codec")


def envelope(o: str, *, m: int = 3, n: str = "Level1UpdateEvent") -> str:
    return json.dumps({"m": m, "i": 7, "n": n, "o": o}, separators=(",", ":"))


@pytest.mark.parametrize(
    "o",
    [
        # Beyond the range of floats: json reads an infinity (msgspec refuses it).
        '{"a":1e400,"b":-1e400}',
        '{"a":[1e400]}',
        "1e400",
        # A negative integer of 4,300 digits: int() reads it (msgspec refuses it).
        '{"a":-' + "1" * 4300 + "}",
        # Integers beyond 64 bits beside floats, in a flat object and nested.
        '{"a":18446744073709551616,"b":1.5,"c":-9223372036854775809}',
        '{"a":[{"b":' + "9" * 40 + "}]}",
        # Lone surrogates written as escapes: json reads them (msgspec and orjson refuse).
        '{"a":"\\ud800"}',
        '{"\\udc00":1}',
        # Floats at the edges of their range and precision.
        '{"a":5e-324,"b":1.7976931348623157e308,"c":2.2250738585072014e-308,"d":0.1}',
        '{"a":1.5e-400,"b":-0.0,"c":-0,"d":1E2,"e":123456789012345678e-5}',
        # White space around the payload, and inside it.
        ' \t\n{ "a" : 1 }\r\n ',
    ],
)
def test_a_payload_at_the_edges_reads_as_json_reads_it(o: str) -> None:
    expected = json.loads(o)
    _, _, _, payload = decode_fields(envelope(o))
    assert payload == expected or (math.isnan(expected) if type(expected) is float else False)
    assert repr(payload) == repr(expected)  # the same types: ints stay ints, -0.0 stays


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        # Lone surrogates and other escapes in the envelope's own strings.
        ('{"m":1,"i":2,"n":"\\ud800","o":"{}"}', (MessageType.REPLY, 2, "\ud800", {})),
        ('{"m":1,"i":2,"n":"\\u0050ing","o":"{}"}', (MessageType.REPLY, 2, "Ping", {})),
        # The keys in another order, and white space around them.
        (' {"o" : "{}", "n":"P","i" : -3, "m":0 } ', (MessageType.REQUEST, -3, "P", {})),
        # The boundaries of i.
        (
            '{"m":3,"i":9223372036854775807,"n":"E","o":"{}"}',
            (MessageType.EVENT, 2**63 - 1, "E", {}),
        ),
        (
            '{"m":3,"i":-9223372036854775808,"n":"E","o":"{}"}',
            (MessageType.EVENT, -(2**63), "E", {}),
        ),
        # An extra key, read and let be.
        (
            '{"m":5,"i":2,"n":"E","o":"Endpoint Not Found","x":[1]}',
            (MessageType.ERROR, 2, "E", "Endpoint Not Found"),
        ),
    ],
)
def test_an_envelope_at_the_edges_reads_as_json_reads_it(
    text: str, fields: tuple[Any, ...]
) -> None:
    assert decode_fields(text) == fields


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"m":true,"i":2,"n":"P","o":"{}"}', "frame key 'm' is a JSON boolean, not an integer"),
        ('{"m":1.0,"i":2,"n":"P","o":"{}"}', "frame key 'm' is a JSON number, not an integer"),
        ('{"m":1e400,"i":2,"n":"P","o":"{}"}', "frame key 'm' is a JSON number, not an integer"),
        ('{"m":6,"i":2,"n":"P","o":"{}"}', "frame has unknown message type m=6"),
        ('{"m":-1,"i":2,"n":"P","o":"{}"}', "frame has unknown message type m=-1"),
        ('{"m":1,"i":false,"n":"P","o":"{}"}', "frame key 'i' is a JSON boolean, not an integer"),
        ('{"m":1,"i":2.0,"n":"P","o":"{}"}', "frame key 'i' is a JSON number, not an integer"),
        ('{"m":1,"i":2,"n":null,"o":"{}"}', "frame key 'n' is a JSON null, not a string"),
        ('{"m":1,"i":2,"n":"P","o":{}}', "frame key 'o' of 'P' is a JSON object, not a string"),
        ('{"m":1,"i":2,"n":"P"}', "frame has no 'o' key"),
        ('{"m":1,"i":2,"n":"P","o":"{}","m":1}', "frame key 'm': the key is given more than once"),
        ('{"m":1,"i":2,"n":"P","o":"{}","m":2}', "frame key 'm': the key is given more than once"),
        ('{"m":1,"i":2,"n":"P","o":"{}"} x', r"frame is not JSON \(32 characters\)"),
        ('{"m":1,"i":2,"n":"P","o":"{}","x":Infinity}', "frame key 'x': Infinity is not JSON"),
    ],
)
def test_an_envelope_the_typed_reader_refuses_says_why_as_before(text: str, message: str) -> None:
    with pytest.raises(FrameError, match=f"^{message}$") as info:
        decode_fields(text)
    assert not isinstance(info.value, PayloadError)


#: CPython 3.10 before 3.10.7 has no limit of digits for int() (nor its setter).
DIGIT_LIMIT = hasattr(sys, "set_int_max_str_digits")


@pytest.fixture
def fewer_digits() -> Iterator[None]:
    """The interpreter's limit of digits in an integer, at its least (640)."""
    if not DIGIT_LIMIT:
        yield
        return
    saved = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(saved)


@pytest.mark.usefixtures("fewer_digits")
def test_the_interpreters_limit_of_digits_holds_for_every_reader() -> None:
    number = "7" * 700  # read by int() under the default limit, not under this one
    if not DIGIT_LIMIT:
        # No limit to hold (CPython 3.10 before 3.10.7): read exactly, as int() does.
        assert decode_frame(envelope('{"a":' + number + "}")).payload == {"a": int(number)}
        return
    with pytest.raises(PayloadError, match="an integer of 700 digits, too long to read"):
        decode_frame(envelope('{"a":' + number + "}"))
    with pytest.raises(FrameError, match="frame key 'i': an integer of 700 digits"):
        decode_frame('{"m":1,"i":' + number + ',"n":"P","o":"{}"}')
    assert decode_frame(envelope('{"a":' + "7" * 640 + "}")).payload == {"a": int("7" * 640)}

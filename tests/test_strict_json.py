"""decode_frame reads JSON strictly, and its cheap duplicate-key check is sound.

The hot path counts colons instead of hooking every object (see
:func:`alphapoint.frame.decode_frame`). These properties check both sides of
that shortcut: no valid document is refused or changed (whatever the white
space, escapes and nesting), and a key given twice is always found, at any
depth, written in any way (white space before the colon, ``\\u`` escapes in
the key, colons inside strings), in the envelope or in ``o``.
"""

from __future__ import annotations

import json
import random
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphapoint.errors import DecodeError, FrameError, PayloadError
from alphapoint.frame import MessageType, decode_frame

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
keys = st.text(st.characters(exclude_categories=NO_SURROGATES), max_size=6)
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | keys.map(lambda s: s + ":")  # colons inside strings
    | keys
)
json_values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=16,
)

#: Every test here runs with each JSON library installed (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("codec")


def write(value: Any, rng: random.Random) -> str:
    """``value`` as JSON text, with random white space and escapes."""
    space = rng.choice(["", " ", "\n", "\t "])
    ascii_only = rng.random() < 0.5
    if isinstance(value, dict):
        items = [
            f"{json.dumps(k, ensure_ascii=ascii_only)}{space}:{space}{write(v, rng)}"
            for k, v in value.items()
        ]
        return "{" + space + ("," + space).join(items) + space + "}"
    if isinstance(value, list):
        return "[" + space + ("," + space).join(write(v, rng) for v in value) + space + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def envelope(o: str, *, m: int = 1, rng: random.Random | None = None) -> str:
    text = json.dumps(
        {"m": m, "i": 2, "n": "Call", "o": o}, ensure_ascii=bool(rng and rng.random() < 0.5)
    )
    return text


@SETTINGS
@given(json_values, st.integers(0, 2**32))
def test_every_valid_document_decodes_as_json_loads_reads_it(value: Any, seed: int) -> None:
    rng = random.Random(seed)
    text = write(value, rng)
    frame = decode_frame(envelope(text, rng=rng))
    assert frame.payload == json.loads(text)


def with_a_key_twice(value: Any, rng: random.Random) -> tuple[str, list[str | int]]:
    """``value`` as text with one key given twice somewhere, and the path to that key."""
    if isinstance(value, list) and value and rng.random() < 0.7:
        n = rng.randrange(len(value))
        inner, path = with_a_key_twice(value[n], rng)
        items = [write(v, rng) if k != n else inner for k, v in enumerate(value)]
        return "[" + ",".join(items) + "]", [n, *path]
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(list(value))
        inner, path = with_a_key_twice(value[key], rng)
        items = [
            f"{json.dumps(k)}:{write(v, rng) if k != key else inner}" for k, v in value.items()
        ]
        return "{" + ",".join(items) + "}", [key, *path]
    # Here: an object holding a key twice (the second written another way).
    obj = dict(value) if isinstance(value, dict) and value else {"k": 1}
    key = rng.choice(list(obj))
    escaped = "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in key)
    second = rng.choice([json.dumps(key), f'"{escaped}"', json.dumps(key) + " "])
    items = [f"{json.dumps(k)}:{write(v, rng)}" for k, v in obj.items()]
    items.insert(rng.randrange(len(items) + 1), f"{second}:{write(rng.random(), rng)}")
    return "{" + ",".join(items) + "}", [key]


def shown(path: list[str | int]) -> str | None:
    """The path as PayloadError.path spells it, when that is unambiguous."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and len(part) <= 100 and not set(part) & set(".[]"):
            out += f".{part}" if out else part
        else:
            return None
    return out


@SETTINGS
@given(json_values, st.integers(0, 2**32))
def test_a_key_given_twice_is_always_found_in_the_payload(value: Any, seed: int) -> None:
    rng = random.Random(seed)
    text, path = with_a_key_twice(value, rng)
    with pytest.raises(PayloadError) as info:
        decode_frame(envelope(text, rng=rng))
    assert isinstance(info.value, DecodeError)
    expected = shown(path)
    if expected is not None:
        assert info.value.path == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"m":1,"m":1,"i":2,"n":"Ping","o":"{}"}',
        '{"m":1,"i":2,"n":"Ping","o":"{}","i":4}',
        '{"m" :1,"i":2,"n":"Ping","o":"{}","m": 3}',
        '{"m":1,"i":2,"n":"Ping","o":"{}","\\u006d":1}',
        # The duplicate hidden behind a colon escaped in o: still found.
        '{"m":1,"i":2,"n":"Ping","o":"{\\"a\\"\\u003a1}","n":"X"}',
        '{"m":1,"i":2,"n":"Ping","o":"{\\"a\\":1}","o":"{}"}',
        ' {"m":1,"i":2,"n":"Ping","o":"{}","m":1} ',
    ],
)
def test_a_key_given_twice_in_the_envelope_is_refused(text: str) -> None:
    with pytest.raises(FrameError, match="is given more than once") as info:
        decode_frame(text)
    assert not isinstance(info.value, PayloadError)


@pytest.mark.parametrize(
    ("o", "reason"),
    [
        ("NaN", "NaN is not JSON"),
        ('{"a":[1,-Infinity]}', "-Infinity is not JSON"),
        ('{"a":Infinity}', "Infinity is not JSON"),
        ('{"UserId":1' + "0" * 5000 + "}", "an integer of 5001 digits, too long to read"),
    ],
)
def test_what_json_does_not_allow_is_refused_naming_why(o: str, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        decode_frame(envelope(o))


@pytest.mark.parametrize("o", ["NaN", '{"a":1,"a":2}', '{"x": Infinity}'])
def test_an_error_frame_keeps_loose_json_as_its_raw_text(o: str) -> None:
    frame = decode_frame(envelope(o, m=int(MessageType.ERROR)))
    assert frame.payload == o


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"m":1,"i":9223372036854775808,"n":"Ping","o":"{}"}', "'i' is out of range"),
        ('{"m":1,"i":-9223372036854775809,"n":"Ping","o":"{}"}', "'i' is out of range"),
        ('{"m":' + "9" * 30 + ',"i":2,"n":"Ping","o":"{}"}', "unknown message type m=out of range"),
        ('{"m":1,"i":2,"n":"Ping","o":"{}","x":NaN}', "frame key 'x': NaN is not JSON"),
        ('{"m":1,"i":' + "1" * 5000 + ',"n":"Ping","o":"{}"}', "frame key 'i': an integer of 5000"),
    ],
)
def test_the_envelope_is_read_strictly(text: str, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        decode_frame(text)


def test_the_boundaries_of_i_are_read() -> None:
    for seq in (2**63 - 1, -(2**63)):
        assert decode_frame(json.dumps({"m": 1, "i": seq, "n": "P", "o": "{}"})).seq == seq


def test_a_long_function_name_is_not_quoted() -> None:
    name = "x" * 5000
    with pytest.raises(FrameError) as info:
        decode_frame(json.dumps({"m": 1, "i": 2, "n": name, "o": 5}))
    assert "<5000 characters>" in str(info.value)
    assert name not in str(info.value)


def written_with_escapes(o: str, rng: random.Random) -> str:
    """``o`` as the body of a JSON string (without its quotes), some of its
    characters written as ``\\u`` escapes: colons as ``\\u003a`` or
    ``\\u003A`` (which hide them from a count of the envelope's colons), and
    others."""
    out = []
    for c in o:
        roll = rng.random()
        if c == ":" and roll < 0.5:
            out.append(rng.choice(["\\u003a", "\\u003A"]))
        elif c.isalnum() and ord(c) < 0x10000 and roll < 0.1:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(json.dumps(c, ensure_ascii=False)[1:-1])
    return "".join(out)


@SETTINGS
@given(json_values, st.integers(0, 2**32), st.sampled_from(["", ',"m":1', ',"o":"{}"', ',"n":"Y"']))
def test_a_colon_escaped_in_the_envelope_hides_no_key_given_twice(
    value: Any, seed: int, twice: str
) -> None:
    """The envelope's colons are counted only when no colon of ``o`` is
    escaped in it (``frame.decode_fields``: no "u003" in the text): a key
    given twice in the envelope is refused however ``o`` is written, and a
    valid frame reads as json.loads reads it."""
    rng = random.Random(seed)
    o = write(value, rng)
    text = '{"m":1,"i":2,"n":"Call","o":"' + written_with_escapes(o, rng) + '"' + twice + "}"
    if twice:
        with pytest.raises(FrameError, match="is given more than once") as info:
            decode_frame(text)
        assert not isinstance(info.value, PayloadError)
    else:
        assert decode_frame(text).payload == json.loads(o)


@pytest.mark.parametrize(
    "text",
    [
        # A flat payload whose one colon the envelope writes escaped, beside a
        # key given twice in the envelope: the count alone would match.
        '{"m":3,"i":2,"n":"E","o":"{\\"a\\"\\u003a1}","m":3}',
        '{"m":3,"i":2,"n":"E","o":"{\\"a\\"\\u003A1,\\"b\\":2}","i":2}',
    ],
)
def test_an_escaped_colon_of_an_event_hides_no_key_given_twice(text: str) -> None:
    with pytest.raises(FrameError, match="is given more than once"):
        decode_frame(text)

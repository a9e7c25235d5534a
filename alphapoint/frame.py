"""The APEX message frame, encoded and decoded without any I/O.

Every APEX message is one JSON text frame ``{"m": type, "i": seq, "n": name,
"o": payload}`` whose ``o`` is itself a JSON document *encoded as a string*
(double encoding). This module is the only place that knows that.
"""

from __future__ import annotations

import enum
import json
import json.encoder
from collections.abc import Callable
from typing import Any

import attrs

from .errors import FrameError, InvalidPayload, PayloadError
from .jsoncodec import CODEC, DIGITS, LONG_NUMBER, SEQ_RANGE

__all__ = [
    "Fields",
    "Frame",
    "MessageType",
    "decode_fields",
    "decode_frame",
    "encode",
    "encode_frame",
    "json_type",
]


class MessageType(enum.IntEnum):
    """The ``m`` field: who sends the frame and what it means."""

    REQUEST = 0  #: client -> server: call a function
    REPLY = 1  #: server -> client: the answer to a request with the same ``i``
    SUBSCRIBE = 2  #: client -> server: a request that also starts a stream of events
    EVENT = 3  #: server -> client: pushed data; its ``i`` is the server's own counter
    UNSUBSCRIBE = 4  #: client -> server: stop a stream of events
    ERROR = 5  #: server -> client: the request failed; ``o`` may be a raw string


_TYPES = {t.value: t for t in MessageType}

#: The characters a JSON text (or Python's NaN, Infinity) may start with.
_JSON_STARTS = frozenset('{["-0123456789tfnNI \t\n\r')

#: Names and keys of more characters than this are not quoted in error messages.
_SHOWN = 100

#: The fast reader and writer (orjson's, or the standard library's C parts);
#: see :mod:`alphapoint.jsoncodec`. A float beyond the range of floats
#: (``1e400``) reads as an infinity, as in Python (RFC 8259 lets a reader set
#: the range of its numbers); checking every float for it would cost a Python
#: call per float, a third more for a Level2 snapshot (docs/reliability.md),
#: and :func:`encode_frame` refuses to send it back.
#: They are module attributes, looked up per call, so that the tests can run
#: the codec on each JSON library installed (tests/conftest.py, ``codec``).
read_json = CODEC.read
read_json_loose = CODEC.read_loose
write_json = CODEC.write
scan_json = CODEC.scan
read_envelope = CODEC.envelope
#: The envelope of :func:`encode`: ``%d`` writes an integer (an ``IntEnum``
#: too) as its digits, in one formatting call.
_ENVELOPE = '{"m":%d,"i":%d,"n":%s,"o":%s}'
#: A string as JSON text (``ensure_ascii=False``), for the envelope's fields.
_quote: Callable[[str], str] = json.encoder.encode_basestring


@attrs.frozen(slots=True)
class Frame:
    """One decoded APEX message.

    ``payload`` is the decoded ``o``: usually a dict, but any JSON value, and a
    plain string for an ``m=5`` frame whose ``o`` is not JSON
    (``"Endpoint Not Found"``).
    """

    type: MessageType
    seq: int
    function: str
    payload: Any = attrs.field(factory=dict, repr=False)


def encode_frame(frame: Frame) -> str:
    """The text of a WebSocket message carrying ``frame``.

    Raises :class:`InvalidPayload` if the payload is not JSON-serialisable, or
    if the text could not be sent as UTF-8 (a lone surrogate in a string).
    """
    return encode(frame.type, frame.seq, frame.function, frame.payload)


def encode(message_type: MessageType, seq: int, function: str, payload: Any) -> str:
    """:func:`encode_frame` of the frame of these fields, without making the frame."""
    if type(payload) is dict and not payload:
        inner = '"{}"'  # Ping, LogOut and the like: nothing to write (nor quote)
    else:
        try:
            inner = _quote(write_json(payload))
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidPayload(
                f"payload of {function!r} is not JSON-serialisable ({type(exc).__name__})"
            ) from None
    # The envelope's keys and types are fixed: formatted, not encoded.
    text = _ENVELOPE % (message_type, seq, _quote(function), inner)
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise InvalidPayload(
                f"frame of {function!r} is not valid UTF-8 (a lone surrogate in a string)"
            ) from None
    return text


def decode_frame(message: str | bytes) -> Frame:
    """Parse the text of a WebSocket message into a :class:`Frame`.

    Raises :class:`FrameError`, and nothing else, for anything that is not a
    valid frame: non-JSON text, a JSON value that is not an object, a missing
    or mistyped key, an unknown message type, an ``i`` beyond 64 bits, or an
    ``o`` that is not JSON (legal only for ``m=5``, where it becomes a string
    payload). JSON is read strictly, in the envelope and in ``o`` alike: a
    key given twice, ``NaN``, ``Infinity`` or an integer too long to read
    (more digits than ``int()`` takes) is refused, naming the field; in
    ``o`` that is a :class:`PayloadError` (a :class:`FrameError` and a
    :class:`DecodeError`), except for ``m=5``, whose ``o`` then stays the
    raw string.
    """
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("frame is not valid UTF-8") from None
    return Frame(*decode_fields(message))


#: A frame's fields as :func:`decode_fields` reads them: type, seq, function, payload.
Fields = tuple[MessageType, int, str, Any]


def decode_fields(message: str) -> Fields:
    """:func:`decode_frame` of a text, as its fields ``(m, i, n, o)``, without
    making the frame: an event's fields become an :class:`~alphapoint.Event`
    at once, and a frame object per event cost as much as a third of its
    decoding (docs/performance.md, "Fan-out, fifth session")."""
    # Duplicate keys, which json lets the last win, without a hook per object:
    # every key is followed by one colon, so a document with no more colons
    # than the keys its objects hold has no key twice. Below, for the
    # envelope: its own keys plus the colons inside ``o`` (and none hidden
    # in \u escapes); for ``o``: the keys of its objects, nested ones
    # included, or no colon at all. Anything else (colons inside strings) is
    # checked key by key.
    #
    # A colon of ``o`` hides from the envelope's count only when the envelope
    # writes it as an escape, ``\u003a`` or ``\u003A``: a text without
    # "u003" has none (one look for four characters; "\u" was a look for two
    # whose first, the backslash, is in every escaped quote of ``o``: 3.4 k
    # instructions for a Level1 update against 2.1 k). Other escapes (in a
    # key, in ``n``, in ``o``'s own strings) hide no colon of ``o``'s.
    #
    # The usual event or reply, a flat object: when the whole text holds as
    # many colons as the envelope's keys and the payload's, each of the two
    # holds no key twice (neither count can be less than its keys), and ``o``
    # need not be counted on its own.
    if read_envelope is not None:
        # The envelope by its types, checked in C, and ``o`` read exactly
        # (msgspec): the checks of the general way below, in Python, cost as
        # much as the reading, and its look for long numbers more. Anything
        # the two readers refuse is read the general way, which says why.
        try:
            fields = read_envelope(message)
            o = fields.o
            payload = read_json(o)
        except (ValueError, RecursionError):
            pass
        else:
            message_type = _TYPES.get(fields.m)
            if message_type is not None:
                colons = message.count(":")
                escaped = "u003" in message
                if not escaped and type(payload) is dict and colons == 4 + len(payload):
                    return message_type, fields.i, fields.n, payload
                # Its four keys and no other (some maybe given twice).
                return _counted(
                    message, colons, escaped, 4, message_type, fields.i, fields.n, o, payload
                )
    try:
        if scan_json is None:
            outer, end = read_json_loose(message), len(message)
        else:  # json's scanner, called here: read_json would add a call around it
            outer, end = scan_json(message, 0)
    except (ValueError, StopIteration, RecursionError):
        if message[:1] not in _JSON_STARTS:
            # Not JSON at all (the common case of garbage): said cheaply.
            raise FrameError(f"frame is not JSON ({len(message)} characters)") from None
        end = -1
    if end != len(message):
        # Not JSON, or not JSON to take as read (NaN, Infinity, an integer
        # too long, white space around it...): the strict reader says which.
        outer = _strict_envelope(message)
    if type(outer) is not dict:
        raise FrameError(f"frame is a JSON {json_type(outer)}, not an object")
    try:
        m, i, n, o = outer["m"], outer["i"], outer["n"], outer["o"]
        if type(m) is float or type(i) is float:
            # An integer beyond 64 bits reads as a float in the loose reader
            # (orjson): read again strictly, to say so.
            outer = _strict_envelope(message)
            m, i = outer["m"], outer["i"]
    except KeyError as exc:
        raise FrameError(f"frame has no {_shown(exc.args[0])} key") from None
    if type(m) is not int:
        raise FrameError(f"frame key 'm' is a JSON {json_type(m)}, not an integer")
    message_type = _TYPES.get(m)
    if message_type is None:
        shown = m if -SEQ_RANGE <= m < SEQ_RANGE else "out of range"
        raise FrameError(f"frame has unknown message type m={shown}")
    if type(i) is not int:
        raise FrameError(f"frame key 'i' is a JSON {json_type(i)}, not an integer")
    if not -SEQ_RANGE <= i < SEQ_RANGE:
        raise FrameError("frame key 'i' is out of range (not a 64-bit integer)")
    if not isinstance(n, str):
        raise FrameError(f"frame key 'n' is a JSON {json_type(n)}, not a string")
    if not isinstance(o, str):
        raise FrameError(f"frame key 'o' of {_shown(n)} is a JSON {json_type(o)}, not a string")
    colons = message.count(":")
    escaped = "u003" in message
    try:
        if scan_json is None:
            # orjson's loose reader is exact for ``o`` unless it holds a number
            # of 19 digits or more: too short to hold one (a reply such as
            # Ping's), or one look for such digits, tells.
            # (holds_long_number's look, inline: a call fewer per event.)
            sure = len(o) < 19 or o.encode().translate(DIGITS).find(LONG_NUMBER) == -1
            payload = read_json_loose(o) if sure else read_json(o)
            end = len(o)
        else:
            payload, end = scan_json(o, 0)
    except (ValueError, StopIteration, RecursionError):
        end = -1
    if end == len(o) and not escaped and type(payload) is dict and colons == 4 + len(payload):
        return message_type, i, n, payload
    return _counted(
        message,
        colons,
        escaped,
        len(outer),
        message_type,
        i,
        n,
        o,
        payload if end == len(o) else _UNREAD,
    )


#: What :func:`_counted` is given for a payload that the fast reader did not read.
_UNREAD = object()


def _counted(
    message: str,
    colons: int,
    escaped: bool,
    keys: int,
    message_type: MessageType,
    i: int,
    n: str,
    o: str,
    payload: Any,
) -> Fields:
    """The fields of a frame that is not the usual flat object, once a key
    given twice is looked for as :func:`decode_fields` says (``colons`` in the
    text, ``keys`` in its envelope, ``escaped``: a colon maybe written as an
    escape), and ``o`` read strictly if ``payload`` is ``_UNREAD``."""
    in_payload = o.count(":")
    if colons != keys + in_payload or escaped:
        _strict_envelope(message)
    if payload is _UNREAD:
        # Not JSON (legal only for m=5: "Endpoint Not Found"), or not JSON to
        # take as read: the strict reader says which.
        payload = _strict_payload(o, message_type, i, n)
    elif (
        in_payload
        and not (type(payload) is dict and len(payload) == in_payload)
        and _keys_in(payload) != in_payload
    ):
        payload = _strict_payload(o, message_type, i, n)
    return message_type, i, n, payload


def _keys_in(value: Any) -> int:
    """How many keys the objects in ``value`` hold, nested ones included.

    As many as the colons in the text: no key was given twice (a key given
    twice is kept once). Far cheaper than reading the text again key by key,
    for a nested reply such as AuthenticateUser's.
    """
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        values = item.values() if type(item) is dict else item
        if type(item) is dict:
            count += len(item)
        for child in values:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append(child)
    return count


# -- the cold path: strict JSON that says what it refuses, and where ----------


class _Refused:
    """What the strict reader found in place of a value: why it is refused."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Twice(dict[str, Any]):
    """An object in which ``key`` was given more than once."""

    key: str = ""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    twice = _Twice(value)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            twice.key = key
            break
        seen.add(key)
    return twice


def _constant(name: str) -> _Refused:
    return _Refused(f"{name} is not JSON")


def _int(text: str) -> int | _Refused:
    try:
        return int(text)
    except ValueError:  # more digits than int() reads (sys.get_int_max_str_digits())
        return _Refused(f"an integer of {len(text.lstrip('-'))} digits, too long to read")


_strict_decode = json.JSONDecoder(
    object_pairs_hook=_pairs, parse_constant=_constant, parse_int=_int
).decode


def _refusal(value: Any) -> tuple[str, str] | None:
    """The path and the reason of the first refused value in ``value``, if any.

    Walks without recursion: a document may be nested as deep as the JSON
    reader allows.
    """
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if type(item) is _Refused:
            return path, item.reason
        if isinstance(item, dict):
            if type(item) is _Twice:
                return _join(path, item.key), "the key is given more than once"
            stack.extend((v, _join(path, k)) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{n}]") for n, v in reversed(list(enumerate(item))))
    return None


def _join(path: str, key: str) -> str:
    key = key if len(key) <= _SHOWN else f"<a key of {len(key)} characters>"
    return f"{path}.{key}" if path else key


def _strict_envelope(message: str) -> Any:
    """The envelope read strictly; raises :class:`FrameError` naming what it refuses."""
    try:
        outer = _strict_decode(message)
    except (ValueError, RecursionError):
        raise FrameError(f"frame is not JSON ({len(message)} characters)") from None
    refused = _refusal(outer)
    if refused is not None:
        path, reason = refused
        raise FrameError(f"frame key {_shown(path)}: {reason}")
    return outer


def _strict_payload(o: str, message_type: MessageType, i: int, n: str) -> Any:
    """``o`` read strictly; raises :class:`PayloadError` naming the field it refuses.

    An ``m=5`` frame's ``o`` that is not (strict) JSON is its raw text.
    """
    try:
        payload = _strict_decode(o)
    except (ValueError, RecursionError):
        if message_type is MessageType.ERROR:
            return o
        raise FrameError(
            f"payload 'o' of {_shown(n)} (m={int(message_type)}, i={i}) is not JSON"
        ) from None
    refused = _refusal(payload)
    if refused is None:
        return payload
    if message_type is MessageType.ERROR:
        return o
    path, reason = refused
    where = f"field {_shown(path)}" if path else "the payload"
    raise PayloadError(
        f"payload 'o' of {_shown(n)} (m={int(message_type)}, i={i}): {where}: {reason}",
        path=path,
        function=n,
        seq=i,
        message_type=int(message_type),
    )


def _shown(text: str) -> str:
    """``text`` quoted for an error message, or only its length if it is long.

    Never a part of it: a secret in it is either shown whole (and scrubbed by
    the connection's :class:`~alphapoint.redaction.SecretSet`) or not at all.
    """
    if len(text) <= _SHOWN:
        return repr(text)
    return f"<{len(text)} characters>"


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"

"""The APEX message frame, encoded and decoded without any I/O.

Every APEX message is one JSON text frame ``{"m": type, "i": seq, "n": name,
"o": payload}`` whose ``o`` is itself a JSON document *encoded as a string*
(double encoding). This module is the only place that knows that.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import attrs

from .errors import FrameError, InvalidPayload

__all__ = ["Frame", "MessageType", "decode_frame", "encode_frame", "json_type"]


class MessageType(enum.IntEnum):
    """The ``m`` field: who sends the frame and what it means."""

    REQUEST = 0  #: client -> server: call a function
    REPLY = 1  #: server -> client: the answer to a request with the same ``i``
    SUBSCRIBE = 2  #: client -> server: a request that also starts a stream of events
    EVENT = 3  #: server -> client: pushed data; its ``i`` is the server's own counter
    UNSUBSCRIBE = 4  #: client -> server: stop a stream of events
    ERROR = 5  #: server -> client: the request failed; ``o`` may be a raw string


_TYPES = {t.value: t for t in MessageType}

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_loads = json.JSONDecoder().decode


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
    try:
        inner = _dumps(frame.payload)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidPayload(
            f"payload of {frame.function!r} is not JSON-serialisable ({type(exc).__name__})"
        ) from None
    text = _dumps({"m": int(frame.type), "i": frame.seq, "n": frame.function, "o": inner})
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise InvalidPayload(
                f"frame of {frame.function!r} is not valid UTF-8 (a lone surrogate in a string)"
            ) from None
    return text


def decode_frame(message: str | bytes) -> Frame:
    """Parse the text of a WebSocket message into a :class:`Frame`.

    Raises :class:`FrameError`, and nothing else, for anything that is not a
    valid frame: non-JSON text, a JSON value that is not an object, a missing
    or mistyped key, an unknown message type, or an ``o`` that is not JSON
    (legal only for ``m=5``, where it becomes a string payload).
    """
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("frame is not valid UTF-8") from None
    try:
        outer = _loads(message)
    except (ValueError, RecursionError):
        raise FrameError(f"frame is not JSON ({len(message)} characters)") from None
    if not isinstance(outer, dict):
        raise FrameError(f"frame is a JSON {json_type(outer)}, not an object")
    try:
        m, i, n, o = outer["m"], outer["i"], outer["n"], outer["o"]
    except KeyError as exc:
        raise FrameError(f"frame has no {exc.args[0]!r} key") from None
    if type(m) is not int:
        raise FrameError(f"frame key 'm' is a JSON {json_type(m)}, not an integer")
    message_type = _TYPES.get(m)
    if message_type is None:
        raise FrameError(f"frame has unknown message type m={m}")
    if type(i) is not int:
        raise FrameError(f"frame key 'i' is a JSON {json_type(i)}, not an integer")
    if not isinstance(n, str):
        raise FrameError(f"frame key 'n' is a JSON {json_type(n)}, not a string")
    if not isinstance(o, str):
        raise FrameError(f"frame key 'o' of {n!r} is a JSON {json_type(o)}, not a string")
    try:
        payload = _loads(o)
    except (ValueError, RecursionError):
        if message_type is not MessageType.ERROR:
            raise FrameError(f"payload 'o' of {n!r} (m={m}, i={i}) is not JSON") from None
        payload = o
    return Frame(message_type, i, n, payload)


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

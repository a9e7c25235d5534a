"""The JSON reader and writer under the frame codec, chosen once, at import.

With the fast extra (``pip install 'alphapoint[fast]'``) the reader is
msgspec's and the writer orjson's (with orjson alone, both are orjson's);
otherwise the standard library's C parts, called directly: ``json.dumps`` and
``JSONEncoder.encode`` build a new C encoder on every call, and
``JSONDecoder.decode`` runs two regular-expression matches for white space,
which together cost more than a small frame's own parse (docs/performance.md).

Both are fast paths only. :mod:`alphapoint.frame` keeps the strict rules: a
:class:`Codec`'s ``read`` raises (``ValueError`` and the like) for anything it
is not sure it read as the standard library would, and the frame codec then
reads the text again with its strict reader, which says what it refuses; its
``write`` raises ``TypeError``/``ValueError``/``RecursionError`` for what is
not JSON, as ``json.dumps`` with ``allow_nan=False`` would. Where orjson reads
or writes differently from the standard library, the difference is caught
here:

* integers beyond 64 bits: orjson reads them as floats, and cannot write them.
  A text with a run of 19 digits or more is left to the standard library
  (``read_loose`` does not look: the frame codec checks the envelope's
  numbers itself);
* ``NaN`` and infinities: orjson writes them as ``null``. A written text with a
  ``null`` in it is written again by the standard library, which refuses them;
* subclasses of ``str``, ``int``, ``dict`` and ``list``, dataclasses and
  datetimes: written by the standard library (which writes the first four as
  their base type and refuses the others), not by orjson.

orjson alone writes enum members (as their values) and UUIDs (as strings),
which the standard library refuses.

msgspec reads integers beyond 64 bits exactly (up to the interpreter's limit
of digits, ``sys.get_int_max_str_digits()``, as ``int()``), so its reader needs
no look for long numbers: in a Level1 update that look cost half as much as
orjson's parse of it (docs/performance.md, "Decoding the events, seventh
session"). It refuses, and leaves to the strict reader, what orjson refuses
and a float beyond the range of floats (``1e400``, which the standard library
reads as an infinity). It also reads the envelope by type (``envelope``):
the four keys' types and ``i``'s range checked in C, not in Python.
"""

from __future__ import annotations

import json
import json.decoder
import json.encoder
import json.scanner
from collections.abc import Callable
from typing import Annotated, Any, NamedTuple

__all__ = ["CODEC", "CODECS", "DIGITS", "LONG_NUMBER", "SEQ_RANGE", "Codec", "holds_long_number"]

#: ``i`` is a 64-bit signed integer on every gateway: ``-SEQ_RANGE <= i < SEQ_RANGE``
#: (the frame codec refuses any other, and the typed envelope reads only those).
SEQ_RANGE = 2**63


class Codec(NamedTuple):
    """A JSON library's fast reader and writer (see the module's docstring)."""

    name: str
    #: Text to a value; raises when not sure (the strict reader then decides).
    read: Callable[[str], Any]
    #: The same, except that an integer beyond 64 bits may read as a float
    #: (orjson's): for a text whose numbers the caller checks itself (the
    #: envelope's ``m`` and ``i``), without the look for long numbers.
    read_loose: Callable[[str], Any]
    #: A value to its compact text (``ensure_ascii=False``); raises for non-JSON.
    write: Callable[[Any], str]
    #: json's C scanner, ``(text, index) -> (value, end)``, for a caller to call
    #: without ``read``'s frame of Python around it (None for orjson, whose
    #: ``read_loose`` is its C function already).
    scan: Callable[[str, int], tuple[Any, int]] | None = None
    #: The envelope read by its types (msgspec's; None for the others): an
    #: object whose ``m``, ``i``, ``n`` and ``o`` are its four keys' values,
    #: ``m`` an integer, ``i`` one within 64 bits, ``n`` and ``o`` strings.
    #: Raises ``ValueError`` for any other text (another key, a key missing,
    #: a type or a range not so), which the frame codec then reads as the
    #: others do, to say what is wrong. A key given twice is not its to find.
    envelope: Callable[[str], Any] | None = None


class _Unsure(ValueError):
    """A text the fast reader leaves to the strict one."""


def _refuse_constant(name: str) -> Any:
    raise _Unsure(name)


def _stdlib() -> Codec:
    scan = json.scanner.make_scanner(
        json.JSONDecoder(parse_constant=_refuse_constant)  # type: ignore[arg-type]
    )

    def read(text: str) -> Any:
        # StopIteration for text that is not JSON (or starts with white
        # space), JSONDecodeError, _Unsure for NaN, ValueError for an integer
        # too long, RecursionError; white space after it, here.
        value, end = scan(text, 0)
        if end != len(text):
            raise _Unsure("text after the value")
        return value

    # What JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False,
    # check_circular=False).encode builds on every call, built once. A circular
    # payload fails with RecursionError instead of "Circular reference".
    make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:  # pragma: no cover - CPython always has _json
        encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return Codec("json", read, read, encoder.encode, scan)
    chunks = make_encoder(
        None,  # no markers: no circular check, no shared state between calls
        _not_serialisable,
        json.encoder.encode_basestring,
        None,  # indent
        ":",
        ",",
        False,  # sort_keys
        False,  # skipkeys
        False,  # allow_nan
    )
    join = "".join

    def write(value: Any) -> str:
        return join(chunks(value, 0))

    return Codec("json", read, read, write, scan)


def _not_serialisable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


#: Digits as "d", every other byte as ".": a text's digits, for a look for
#: long runs of them with bytes' own search (a regular expression for them
#: looked at every position, and cost four times orjson's whole parse of an
#: AuthenticateUser reply).
DIGITS = bytes(ord("d") if 48 <= b <= 57 else ord(".") for b in range(256))
#: As many digits as the longest 64-bit integer, or more: where orjson would
#: read an integer as a float.
LONG_NUMBER = b"d" * 19


def holds_long_number(text: str) -> bool:
    """Whether ``text`` holds 19 digits in a row: an integer orjson may read as a
    float, so that its reading is not sure.

    Raises ``UnicodeEncodeError`` (a ``ValueError``: not sure either) for a
    lone surrogate, which orjson refuses too. ``find``, not ``in``: ``bytes in
    bytes`` first tries the needle as an integer and clears the TypeError,
    which cost twice the search.
    """
    return text.encode().translate(DIGITS).find(LONG_NUMBER) != -1


def _orjson(fallback: Codec) -> Codec | None:
    try:
        import orjson
    except ImportError:
        return None
    loads, dumps = orjson.loads, orjson.dumps
    options = (
        orjson.OPT_PASSTHROUGH_DATACLASS
        | orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_SUBCLASS
    )
    write_slowly = fallback.write

    def read(text: str) -> Any:
        if holds_long_number(text):
            raise _Unsure("a number of 19 digits or more")
        return loads(text)

    def write(value: Any) -> str:
        try:
            data = dumps(value, _not_serialisable, options)
        except TypeError:  # orjson's JSONEncodeError: not JSON, or not for orjson
            return write_slowly(value)
        if b"null" in data:
            return write_slowly(value)  # a NaN or an infinity, maybe (or a None)
        return data.decode()

    return Codec("orjson", read, loads, write)


def _msgspec(writer: Codec) -> Codec | None:
    """msgspec's reader, exact for integers of any length, with ``writer``'s writer.

    msgspec writes NaN and infinities as ``null`` and subclasses as their
    base types without a word, as orjson does: its writer would need the same
    care as orjson's, and orjson's is faster, so the writing stays
    ``writer``'s (orjson's when installed).
    """
    try:
        import msgspec
    except ImportError:
        return None

    # The frame's four keys, typed (see Codec.envelope); made with defstruct,
    # not a class statement, whose annotations this module leaves as strings.
    envelope_type = msgspec.defstruct(
        "Envelope",
        [
            ("m", int),
            ("i", Annotated[int, msgspec.Meta(ge=-SEQ_RANGE, le=SEQ_RANGE - 1)]),
            ("n", str),
            ("o", str),
        ],
        forbid_unknown_fields=True,
        gc=False,
    )
    # DecodeError and ValidationError are ValueErrors: "not sure" to the frame
    # codec, which reads the text again strictly.
    read = msgspec.json.Decoder().decode
    envelope = msgspec.json.Decoder(envelope_type).decode
    return Codec("msgspec", read, read, writer.write, envelope=envelope)


_STDLIB = _stdlib()
_ORJSON = _orjson(_STDLIB)
#: The codecs installed, the fastest first (the tests run the frame codec with each).
CODECS: tuple[Codec, ...] = tuple(
    c for c in (_msgspec(_ORJSON or _STDLIB), _ORJSON, _STDLIB) if c is not None
)
#: The one the frame codec uses.
CODEC = CODECS[0]

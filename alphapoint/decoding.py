"""Reply payloads into model classes, through one strict cattrs converter.

Gateways disagree on key casing: the docs say ``requires2FA``/``userId``, live
gateways send ``Requires2FA``/``UserId``/``OMSId``. Both fold to the same key
once lowercased with underscores removed, and so do the Python field names
(``requires_2fa`` -> ``requires2fa``), so one key map, computed once per class,
reads every casing. Unknown keys are ignored; missing keys and ``null`` take
the field's default. A value of the wrong type (``"authenticated": "yes"``)
raises :class:`DecodeError` naming the field, never a bare cattrs error.

The same converter decodes any attrs class or dataclass a user names with
``session.call(..., model=T)``, and the market-data models
(:mod:`alphapoint.market_data`). A class marked with :func:`array_row`
also reads a JSON array by position (the Level2, trade and ticker rows), as
live gateways send them; extra trailing elements are ignored (gateways append
fields), missing ones take their defaults. A field's metadata
``{"aliases": ("OtherKey", ...)}`` names other keys it may arrive under.

Decoding runs first on a converter without detailed validation (fast); only a
payload that fails is decoded again on a detailed one, to name the field.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from .errors import DecodeError
from .frame import json_type
from .models import AuthenticateResult, User

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "AUTHENTICATE_ALIASES",
    "array_row",
    "decode",
    "decode_authenticate_result",
    "decode_rows",
    "fold_key",
]

T = TypeVar("T")


def fold_key(key: str) -> str:
    """The casing-independent form of a key: lowercase, without underscores."""
    return key.replace("_", "").lower()


def _a(value: object) -> str:
    """``"a string"``, ``"an array"``: the JSON type of ``value`` with its article."""
    name = json_type(value)
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


class _WrongType(TypeError):
    """A primitive of the wrong JSON type; the message names only types, never values."""


def _strict_bool(value: Any, _: type) -> bool:
    if type(value) is not bool:
        raise _WrongType(f"expected a boolean, got {_a(value)}")
    return value


#: Integer fields (ids) hold 64-bit signed integers, as on the gateways.
_INT_RANGE = 2**63


def _strict_int(value: Any, cls: type) -> int:
    if cls is not int:  # an IntEnum: singledispatch finds int before Enum in its MRO
        return _strict_enum(value, cls)  # type: ignore[no-any-return]
    if type(value) is int:
        if -_INT_RANGE <= value < _INT_RANGE:
            return value
        raise _WrongType("expected a 64-bit integer, got a number out of range")
    # Ids are sometimes sent as decimal strings ("UserId": "96").
    if type(value) is str and value.isascii() and value.isdigit():
        if len(value) <= 19 and int(value) < _INT_RANGE:
            return int(value)
        raise _WrongType("expected a 64-bit integer, got a string of digits out of range")
    raise _WrongType(f"expected an integer, got {_a(value)}")


def _strict_str(value: Any, cls: type) -> str:
    if cls is not str:  # an enum with str mixed in
        return _strict_enum(value, cls)  # type: ignore[no-any-return]
    if type(value) is not str:
        raise _WrongType(f"expected a string, got {_a(value)}")
    return value


def _strict_float(value: Any, _: type) -> float:
    """Prices and quantities: JSON numbers, or decimal strings as some gateways send."""
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    if type(value) is str and value.isascii():
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
        raise _WrongType("expected a number, got a string that is not a finite number")
    raise _WrongType(f"expected a number, got {_a(value)}")


#: Each enum's members by value, for :func:`_strict_enum`.
_ENUM_VALUES: dict[type[enum.Enum], dict[Any, enum.Enum]] = {}


def _strict_enum(value: Any, cls: type) -> Any:
    """Enums by value, with an error that lists the known values (never the value sent)."""
    by_value = _ENUM_VALUES.get(cls)
    if by_value is None:
        by_value = _ENUM_VALUES[cls] = {member.value: member for member in cls}  # type: ignore[attr-defined]
    # bool is an int: True must not read as 1.
    member = by_value.get(value) if type(value) is not bool else None
    if member is None:
        known = ", ".join(repr(v) for v in by_value)
        raise _WrongType(f"expected one of {known}, got {_a(value)} that is not one of them")
    return member


def _optional_str(value: Any, _: type) -> str | None:
    """``str | None`` fields: empty strings read as absent (``errormsg: ""`` on success)."""
    return _strict_str(value, str) or None


def _make_converter(detailed: bool) -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=detailed, forbid_extra_keys=False)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(str | None, _optional_str)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(enum.Enum, _strict_enum)
    # Any other attrs class or dataclass: a user's ``model=`` or a market-data model.
    converter.register_structure_hook_factory(_is_model, lambda cls: _folding_hook(converter, cls))
    user = _folding_hook(converter, User)
    converter.register_structure_hook(User, user)
    # The optional ``user`` field calls the hook directly rather than through
    # cattrs' generic Optional handling, which looks the hook up on every reply.
    converter.register_structure_hook(
        User | None, lambda value, _: None if value is None else user(value, User)
    )
    converter.register_structure_hook(
        AuthenticateResult,
        _folding_hook(converter, AuthenticateResult, aliases=AUTHENTICATE_ALIASES),
    )
    return converter


#: How many key sets each class remembers: a gateway sends the same keys in
#: every reply; a hostile one could send endless new sets, folded afresh.
_PLANS_KEPT = 64


#: Other gateways' names for AuthenticateResult's fields (folded): NDAX's login
#: names a 2FA user's kind and token ``AuthType`` and ``Pending2FaToken``.
AUTHENTICATE_ALIASES: Mapping[str, str] = {
    "authtype": "twofatype",
    "pending2fatoken": "twofatoken",
}


def _is_model(cls: Any) -> bool:
    return isinstance(cls, type) and (attrs.has(cls) or dataclasses.is_dataclass(cls))


def _model_fields(cls: type) -> Sequence[Any]:
    """The fields of an attrs class or a dataclass, in declaration order."""
    fields: Sequence[Any] = attrs.fields(cls) if attrs.has(cls) else dataclasses.fields(cls)
    return fields


_ARRAY_ROW = "__alphapoint_array_row__"

C = TypeVar("C", bound=type)


def array_row(cls: C) -> C:
    """Mark a model that gateways send as a JSON array: fields in array order.

    ``Level2Entry``, ``Trade`` and ``TickerBar`` are such rows; a class of
    your own for another array-shaped payload can be too.
    """
    if not _is_model(cls):
        raise TypeError("array_row marks attrs classes and dataclasses")
    setattr(cls, _ARRAY_ROW, True)
    return cls


def _folding_hook(
    converter: cattrs.Converter, cls: type[T], *, aliases: Mapping[str, str] | None = None
) -> Callable[[Any, type], T]:
    """A structure hook for ``cls`` that reads keys in any casing and skips nulls.

    Which field each key names is worked out once per set of keys and kept
    (the "plan"): a gateway sends the same keys in every reply, so a reply
    costs one lookup of its key set. Keys that name no field are left out.
    ``aliases`` names fields by other (folded) keys, as do the fields'
    ``aliases`` metadata; a field's own key wins over an alias when a reply
    has both. An :func:`array_row` class also reads an array by position.
    """
    fields = _model_fields(cls)
    aliases = dict(aliases or {})
    for f in fields:
        for alias in (f.metadata or {}).get("aliases", ()):
            aliases[fold_key(alias)] = fold_key(f.name)
    names = {fold_key(f.name) for f in fields}
    renames = {f.name: override(rename=fold_key(f.name)) for f in fields}
    structure = make_dict_structure_fn(cls, converter, **renames)  # type: ignore[arg-type]
    #: By position, for an array row: the folded field names in order.
    positions = [fold_key(f.name) for f in fields] if getattr(cls, _ARRAY_ROW, False) else None
    #: The keys of a reply, in order -> (key, folded field name) for those naming a field.
    plans: dict[tuple[Any, ...], list[tuple[Any, str]]] = {}

    def plan(keys: tuple[Any, ...]) -> list[tuple[Any, str]]:
        folds = [(key, fold_key(key)) for key in keys if isinstance(key, str)]
        # Aliases first, so that a field's own key, later, wins.
        steps = [(key, aliases[name]) for key, name in folds if name in aliases]
        steps += [(key, name) for key, name in folds if name in names]
        if len(plans) < _PLANS_KEPT:
            plans[keys] = steps
        return steps

    def hook(value: Any, _: type) -> T:
        if positions is not None and isinstance(value, list):
            # Gateways append fields: elements past the declared ones are left out.
            pairs = zip(positions, value, strict=False)
            row = {name: item for name, item in pairs if item is not None}
            return structure(row, cls)
        if not isinstance(value, dict):
            raise _WrongType(f"expected an object, got {_a(value)}")
        keys = tuple(value)
        steps = plans.get(keys)
        if steps is None:
            steps = plan(keys)
        folded = {name: value[key] for key, name in steps if value[key] is not None}
        return structure(folded, cls)

    return hook


_fast = _make_converter(detailed=False)
_detailed = _make_converter(detailed=True)


def decode(cls: type[T], payload: Any, *, what: str | None = None) -> T:
    """Decode ``payload`` (a reply's decoded ``o``) into ``cls``.

    ``cls`` is an attrs class, a dataclass, or a type built of them such as
    ``list[Level2Entry]``. Raises :class:`DecodeError` naming the first
    offending field.
    """
    try:
        return _fast.structure(payload, cls)
    except Exception:  # noqa: BLE001, S110 - re-run below on the detailed converter
        pass
    try:
        return _detailed.structure(payload, cls)
    except Exception as exc:  # noqa: BLE001 - every converter failure becomes DecodeError
        path, reason = _first_failure(exc)
    label = what or (cls.__name__ if isinstance(cls, type) else repr(cls))
    where = f"field {path!r}" if path else "payload"
    raise DecodeError(f"{label} reply: {where}: {reason}", path=path) from None


def decode_rows(cls: type[T], payload: Any, *, what: str | None = None) -> list[T]:
    """``payload`` as a list of ``cls``: each element of an array, or one object.

    Market-data payloads carry one row (Level1) or many (a Level2 update, a
    batch of trades); this reads both the same way. ``"[]"`` is no rows.
    """
    one_row = not isinstance(payload, list) or (payload and type(payload[0]) not in (list, dict))
    if one_row:
        return [decode(cls, payload, what=what)]
    return decode(list[cls], payload, what=what)  # type: ignore[valid-type]


def decode_authenticate_result(
    payload: Any, *, function: str = "AuthenticateUser"
) -> AuthenticateResult:
    """Decode an AuthenticateUser, Authenticate2FA or WebAuthenticateUser reply."""
    return decode(AuthenticateResult, payload, what=function)


def _first_failure(exc: BaseException) -> tuple[str, str]:
    """The dotted field path and the type complaint of the first leaf failure."""
    path: list[str] = []
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        inner = exc.exceptions[0]
        for note in getattr(inner, "__notes__", []):
            name, index = getattr(note, "name", None), getattr(note, "index", None)
            if isinstance(name, str):
                path.append(name)
                break
            if isinstance(index, int):
                path.append(f"[{index}]")
                break
        exc = inner
    if isinstance(exc, _WrongType):
        reason = str(exc)
    elif isinstance(exc, KeyError):
        reason = "missing (the field has no default)"
    else:
        # A cattrs or attrs internal error: describe it by type only, since its
        # message may quote the offending value.
        reason = f"could not be decoded ({type(exc).__name__})"
    return ".".join(path).replace(".[", "["), reason

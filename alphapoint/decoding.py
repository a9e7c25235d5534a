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

import contextlib
import dataclasses
import enum
import math
import sys
import types
import typing
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


def _enum_values(cls: Any) -> dict[Any, enum.Enum]:
    """``cls``'s members by value (kept)."""
    by_value = _ENUM_VALUES.get(cls)
    if by_value is None:
        by_value = _ENUM_VALUES[cls] = {member.value: member for member in cls}
    return by_value


def _strict_enum(value: Any, cls: type) -> Any:
    """Enums by value, with an error that lists the known values (never the value sent)."""
    by_value = _enum_values(cls)
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
    generate = not detailed  # the detailed converter runs only to name a failure
    converter.register_structure_hook_factory(
        _is_model, lambda cls: _folding_hook(converter, cls, generate=generate)
    )
    user = _folding_hook(converter, User, generate=generate)
    converter.register_structure_hook(User, user)
    # The optional ``user`` field calls the hook directly rather than through
    # cattrs' generic Optional handling, which looks the hook up on every reply.
    converter.register_structure_hook(
        User | None, lambda value, _: None if value is None else user(value, User)
    )
    converter.register_structure_hook(
        AuthenticateResult,
        _folding_hook(
            converter, AuthenticateResult, aliases=AUTHENTICATE_ALIASES, generate=generate
        ),
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
    converter: cattrs.Converter,
    cls: type[T],
    *,
    aliases: Mapping[str, str] | None = None,
    generate: bool = False,
) -> Callable[[Any, type], T]:
    """A structure hook for ``cls`` that reads keys in any casing and skips nulls.

    Which field each key names is worked out once per set of keys and kept
    (the "plan"): a gateway sends the same keys in every reply, so a reply
    costs one lookup of its key set. Keys that name no field are left out.
    ``aliases`` names fields by other (folded) keys, as do the fields'
    ``aliases`` metadata; a field's own key wins over an alias when a reply
    has both. An :func:`array_row` class also reads an array by position.

    With ``generate`` (the fast converter), each plan is a function of its
    own, generated once (:func:`_generated_plan`): it reads the reply's keys
    straight into ``cls``, with the type checks of the common fields inline.
    Without it (the detailed converter, which runs only to name what failed),
    a plan folds the keys and hands them to cattrs' structure function.
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
    #: The keys of a reply, in order -> a function of the reply that makes ``cls``.
    plans: dict[tuple[Any, ...], Callable[[dict[Any, Any]], T]] = {}

    def steps_for(keys: tuple[Any, ...]) -> list[tuple[Any, str]]:
        """(key, folded field name) for each key naming a field, aliases first."""
        folds = [(key, fold_key(key)) for key in keys if isinstance(key, str)]
        # Aliases first, so that a field's own key, later, wins.
        steps = [(key, aliases[name]) for key, name in folds if name in aliases]
        steps += [(key, name) for key, name in folds if name in names]
        return steps

    def folding(steps: list[tuple[Any, str]]) -> Callable[[dict[Any, Any]], T]:
        def build(value: dict[Any, Any]) -> T:
            folded = {name: value[key] for key, name in steps if value[key] is not None}
            return structure(folded, cls)

        return build

    def plan(keys: tuple[Any, ...]) -> Callable[[dict[Any, Any]], T]:
        steps = steps_for(keys)
        if len(plans) >= _PLANS_KEPT:
            return folding(steps)  # a new set of keys every time: not worth generating
        build = folding(steps)
        if generate:
            # A type hint it cannot resolve (a class local to a function): cattrs can.
            with contextlib.suppress(NameError, TypeError):
                build = _generated_plan(converter, cls, steps)
        plans[keys] = build
        return build

    #: An array row's plans, by how many of its elements are read (at most
    #: one per field: gateways append fields, and the ones past the declared
    #: ones are left out).
    rows: dict[int, Callable[[Any], T]] = {}

    def row_plan(size: int) -> Callable[[Any], T]:
        assert positions is not None
        steps: list[tuple[Any, str]] = [(n, positions[n]) for n in range(size)]
        build: Callable[[Any], T] = folding(steps)
        if generate:
            with contextlib.suppress(NameError, TypeError):
                build = _generated_plan(converter, cls, steps)
        rows[size] = build
        return build

    def read(value: Any) -> T:
        """A value by the rules above (``hook`` does the common case before)."""
        if positions is not None and isinstance(value, list):
            size = min(len(value), len(positions))
            return (rows.get(size) or row_plan(size))(value)
        if not isinstance(value, dict):
            raise _WrongType(f"expected an object, got {_a(value)}")
        keys = tuple(value)
        build = plans.get(keys)
        if build is None:
            build = plan(keys)
        return build(value)

    find = plans.get

    def object_hook(value: Any, _: type) -> T:
        if value.__class__ is dict:  # a JSON object, with keys seen before
            build = find(tuple(value))
            if build is not None:
                return build(value)
        return read(value)

    fields_read, find_row = len(positions or ()), rows.get

    def row_hook(value: Any, _: type) -> T:
        if value.__class__ is list:  # as gateways send rows, of a length seen before
            build = find_row(min(len(value), fields_read))
            if build is not None:
                return build(value)
        elif value.__class__ is dict:
            build = find(tuple(value))
            if build is not None:
                return build(value)
        return read(value)

    hook = object_hook if positions is None else row_hook
    # A generated plan whose field holds this class reads the field's object
    # through ``find`` itself, without the call to ``hook`` (_generated_plan).
    setattr(hook, _PLANS_OF_HOOK, find)
    return hook


#: Where a hook made by :func:`_folding_hook` keeps its plans' ``get``.
_PLANS_OF_HOOK = "_alphapoint_plans"


#: Field types whose hook a generated plan runs inline, for the values that
#: hook (registered in :func:`_make_converter`) returns as they are or
#: converts without a doubt (an integer to a float). Any other value goes to
#: the hook (``{call}``), which converts it ("96" -> 96) or raises, as without
#: generation.
_INLINE: list[tuple[Any, str]] = [
    (bool, "v if v.__class__ is bool else {call}"),
    (int, "v if v.__class__ is int and -R <= v < R else {call}"),
    (int | None, "v if v.__class__ is int and -R <= v < R else {call}"),
    (str, "v if v.__class__ is str else {call}"),
    (str | None, "v if v.__class__ is str and v else {call}"),  # an empty string reads as None
    (float, "v if v.__class__ is float else float(v) if v.__class__ is int else {call}"),
]
#: An enum whose hook is :func:`_strict_enum` (``e{n}``: its members by value).
_INLINE_ENUM = "m if v.__class__ is not bool and (m := e{n}(v)) is not None else {call}"


#: A field without a default (a required one).
_NO_DEFAULT = object()


def _default_of(field: Any) -> Any:
    """A field's default value, or :data:`_NO_DEFAULT` (none, or made by a factory)."""
    if isinstance(field, dataclasses.Field):
        return _NO_DEFAULT if field.default is dataclasses.MISSING else field.default
    default = field.default
    if default is attrs.NOTHING or isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return _NO_DEFAULT
    return default


def slot_setters(cls: type) -> list[Callable[[Any, Any], None]] | None:
    """Each field's slot setter, in order, where they build ``cls`` as its ``__init__`` would.

    That is an attrs class whose ``__init__`` is attrs' own and does nothing
    but store each argument in its slot with ``object.__setattr__`` (frozen)
    or ``self.x = x`` under ``object.__setattr__``: no validator, converter,
    ``__attrs_pre_init__``/``__attrs_post_init__``, cached hash or slot of
    another kind, no ``__new__`` or ``__setattr__`` of its own. Then
    ``object.__new__(cls)`` and one slot descriptor's ``__set__`` per field
    store the same values in the same slots, without the three layers of
    calls around them (``type.__call__``, ``__init__``, the bound
    ``object.__setattr__``): about a third fewer instructions than calling
    the class (docs/performance.md). Otherwise None: such a class is built
    by calling it.
    """
    if not attrs.has(cls) or issubclass(cls, BaseException) or cls.__new__ is not object.__new__:
        return None
    init = cls.__dict__.get("__init__")
    if not getattr(getattr(init, "__code__", None), "co_filename", "").startswith(
        "<attrs generated"
    ):
        return None  # attrs made none (init=False), or the class wrote its own
    if hasattr(cls, "__attrs_pre_init__") or hasattr(cls, "__attrs_post_init__"):
        return None
    if cls.__setattr__ not in (object.__setattr__, _FROZEN_SETATTR):
        return None  # an on_setattr hook or a __setattr__ of the class's own
    fields = attrs.fields(cls)
    if any(not f.init or f.validator or f.converter for f in fields):
        return None
    allowed = {f.name for f in fields} | {"__weakref__", "__dict__"}
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        if not set((slots,) if isinstance(slots, str) else slots) <= allowed:
            return None  # a slot __init__ sets besides the fields' (cache_hash's)
    setters = []
    for f in fields:
        slot = next((k.__dict__[f.name] for k in cls.__mro__ if f.name in k.__dict__), None)
        if type(slot) is not types.MemberDescriptorType:
            return None  # a dict class, or a field shadowed by something else
        setters.append(slot.__set__)
    return setters


#: attrs' ``__setattr__`` of a frozen class (which ``__init__`` goes around).
_FROZEN_SETATTR = attrs.frozen(type("_Frozen", (), {})).__setattr__


def _nested_plans(converter: cattrs.Converter, kind: Any) -> Any:
    """The plans' ``get`` of a model field's class (``X`` or ``X | None``), if it has them."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    inner = args[0] if typing.get_origin(kind) in _UNIONS and len(args) == 1 else kind
    if not _is_model(inner):
        return None
    return getattr(converter.get_structure_hook(inner), _PLANS_OF_HOOK, None)


_UNIONS = (typing.Union, types.UnionType)


def _reads_as_enum(kind: Any, hook: Any) -> bool:
    """Whether ``hook``, the converter's for ``kind``, is :func:`_strict_enum`'s reading.

    An enum's hook is found by its bases: an IntEnum's is the int one, which
    hands it to :func:`_strict_enum`, as the str one does for a str enum; a
    float enum's is the float one, which reads a float (not a member).
    """
    # isinstance of EnumMeta, not issubclass: on 3.10 a list[X] passes for a
    # type, and issubclass() refuses it.
    return isinstance(kind, enum.EnumMeta) and hook in (_strict_enum, _strict_int, _strict_str)


#: cattrs' structure function for ``X | None`` (where no hook is registered for the union).
_OPTIONAL = getattr(cattrs.BaseConverter, "_structure_optional", None)


def _generated_plan(
    converter: cattrs.Converter, cls: type[T], steps: list[tuple[Any, str]]
) -> Callable[[Any], T]:
    """One plan as Python code, compiled once: the reply's keys read into ``cls``.

    Does what the folding plan and cattrs' structure function do together
    (a field's last non-null key wins; a null or missing field takes its
    default; each value through its type's hook), without the folded dict in
    between and with the common checks inline. The keys are never part of
    the code (they come from the gateway): the code reads them from its
    namespace (``k0``, ``k1``...); an array row's keys are its positions.
    Any failure raises, and :func:`decode` then runs the detailed converter,
    which says what failed.

    A field holding a model whose hook keeps plans (:func:`_folding_hook`)
    reads its object through that class's plans directly (the hook itself
    only for keys not seen before, or a value that is not an object). The
    instance is built through its slots where that is what its ``__init__``
    does (:func:`slot_setters`).
    """
    in_order = [f for f in _model_fields(cls) if f.init]
    fields = {fold_key(f.name): f for f in in_order}
    types_of = typing.get_type_hints(cls)
    keys_of: dict[str, list[Any]] = {}
    for key, name in steps:
        if name in fields:
            keys_of.setdefault(name, []).append(key)
    namespace: dict[str, Any] = {"cls": cls, "R": _INT_RANGE, "new": object.__new__}
    # Every argument by position, a default where the reply gives none (no
    # dictionary of keywords to build and unpack), when every field has a
    # plain default; else by keyword, leaving out what the reply does not give.
    positional = all(
        not getattr(f, "kw_only", False) and _default_of(f) is not _NO_DEFAULT for f in in_order
    )
    setters = slot_setters(cls) if positional else None
    lines = ["def build(value):"] if positional else ["def build(value):", "    kw = {}"]
    arguments = []
    for n, field in enumerate(in_order):
        keys = keys_of.get(fold_key(field.name))
        if positional:
            namespace[f"d{n}"] = _default_of(field)
        if keys is None:
            arguments.append(f"d{n}")
            continue
        kind = types_of.get(field.name, Any)
        for m, key in enumerate(keys):
            namespace[f"k{n}_{m}"] = key
        # The last key given (not null) wins: an alias first, the field's own key after.
        lines.append(f"    v = value[k{n}_{len(keys) - 1}]")
        for m in range(len(keys) - 2, -1, -1):
            lines.append(f"    if v is None: v = value[k{n}_{m}]")
        hook = converter.get_structure_hook(kind)
        if getattr(hook, "__func__", None) is _OPTIONAL:
            # ``X | None`` through cattrs' own handling, which for a value that
            # is not None (as here) calls X's hook: that hook, without the
            # union's look-up on every call.
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
            hook = converter.get_structure_hook(kind)
        namespace[f"h{n}"] = hook
        namespace[f"t{n}"] = kind
        call = f"h{n}(v, t{n})"
        value = next((c for t, c in _INLINE if t == kind), "{call}")
        if _reads_as_enum(kind, hook):
            namespace[f"e{n}"] = _enum_values(kind).get
            value = _INLINE_ENUM
        value = value.format(call=call, n=n)
        nested = _nested_plans(converter, kind)
        if nested is not None:
            # The object's plan for its keys, or (keys not seen yet) the hook.
            namespace[f"p{n}"] = nested
            value = f"p(v) if v.__class__ is dict and (p := p{n}(tuple(v))) else {call}"
        if positional:
            lines.append(f"    a{n} = d{n} if v is None else {value}")
            arguments.append(f"a{n}")
        else:
            argument = getattr(field, "alias", None) or field.name  # attrs: "_x" is "x"
            lines += ["    if v is not None:", f"        kw[{argument!r}] = {value}"]
    if setters is not None:
        lines.append("    o = new(cls)")
        for n, (setter, argument) in enumerate(zip(setters, arguments, strict=True)):
            namespace[f"s{n}"] = setter
            lines.append(f"    s{n}(o, {argument})")
        lines.append("    return o")
    elif positional:
        lines.append(f"    return cls({', '.join(arguments)})")
    else:
        lines.append("    return cls(**kw)")
    exec("\n".join(lines), namespace)  # noqa: S102 - code from field names only, see above
    build: Callable[[Any], T] = namespace["build"]
    return build


#: The converter every decode runs first, with the generated plans, and the
#: one that runs again after a failure, to name what failed (public for the
#: tests, which check the first against the second).
fast_converter = _make_converter(detailed=False)
detailed_converter = _make_converter(detailed=True)

#: The fast converter's hook for each class decoded so far: ``structure()``
#: looks it up through cattrs' dispatch on every call, which cost about half
#: of decoding an AuthenticateUser reply. Bounded (``model=`` may name classes
#: made on the fly).
_fast_hooks: dict[Any, Callable[[Any, Any], Any]] = {}
_HOOKS_KEPT = 256


def decode(cls: type[T], payload: Any, *, what: str | None = None) -> T:
    """Decode ``payload`` (a reply's decoded ``o``) into ``cls``.

    ``cls`` is an attrs class, a dataclass, or a type built of them such as
    ``list[Level2Entry]``. Raises :class:`DecodeError` naming the first
    offending field.
    """
    structure = _fast_hooks.get(cls) or _fast_hook(cls)
    try:
        return structure(payload, cls)  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001, S110 - re-run below on the detailed converter
        pass
    return _decode_detailed(cls, payload, what)


def _fast_hook(cls: Any) -> Callable[[Any, Any], Any]:
    """The fast converter's hook for ``cls``, kept in :data:`_fast_hooks` (while there is room)."""
    structure = fast_converter.get_structure_hook(cls)
    if len(_fast_hooks) < _HOOKS_KEPT:
        _fast_hooks[cls] = structure
    return structure


def _decode_detailed(cls: type[T], payload: Any, what: str | None) -> T:
    """``payload`` decoded again, after the fast converter failed: the first failure named."""
    try:
        return detailed_converter.structure(payload, cls)
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
    # What decode(list[cls], ...) does, with the row's hook looked up once
    # (cattrs' list hook calls it for each row, as here).
    structure = _fast_hooks.get(cls) or _fast_hook(cls)
    try:
        return [structure(row, cls) for row in payload]
    except Exception:  # noqa: BLE001, S110 - re-run below on the detailed converter
        pass
    return _decode_detailed(list[cls], payload, what)  # type: ignore[valid-type]


def decode_authenticate_result(
    payload: Any, *, function: str = "AuthenticateUser"
) -> AuthenticateResult:
    """Decode an AuthenticateUser, Authenticate2FA or WebAuthenticateUser reply."""
    # decode()'s steps, with its look-up of the hook done once, here.
    try:
        return _authenticate_result(payload, AuthenticateResult)
    except Exception:  # noqa: BLE001, S110 - re-run below on the detailed converter
        pass
    return _decode_detailed(AuthenticateResult, payload, function)


_authenticate_result: Callable[[Any, type], AuthenticateResult] = fast_converter.get_structure_hook(
    AuthenticateResult
)


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

"""Hypothesis strategies for APEX traffic: frames, JSON, replies in any casing, secrets.

For property tests of code that reads what a gateway sends (this library's
own, ``scripts/fuzz.py``, and yours). Needs ``hypothesis`` (the ``dev`` extra);
nothing else in :mod:`alphapoint.testing` imports this module.
"""

from __future__ import annotations

import json
import random
from typing import Any, Literal

import attrs
from hypothesis import strategies as st

from ..decoding import AUTHENTICATE_ALIASES, fold_key
from ..models import AuthenticateResult, User
from ..redaction import SECRET_KEYS

__all__ = [
    "KINDS",
    "MARKER",
    "USER_WIRE_KEYS",
    "WIRE_KEYS",
    "WRONG",
    "any_text",
    "frame_texts",
    "ids",
    "json_of",
    "json_values",
    "optional_text",
    "results",
    "scalars",
    "spelled",
    "standard_payloads",
    "to_wire",
    "users",
    "utf8_text",
    "wire_value",
    "with_secret",
]

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

frame_texts = st.builds(
    lambda m, i, n, o, extra: json.dumps({"m": m, "i": i, "n": n, "o": o, **extra}),
    st.integers(-1, 6),
    st.integers(),
    utf8_text,
    utf8_text | json_values.map(json.dumps),
    st.dictionaries(utf8_text.filter(lambda k: k not in "mino"), json_values, max_size=2),
)

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
    "addtl_info": "AddtlInfo",
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
KNOWN = {fold_key(key) for key in [*WIRE_KEYS, *USER_WIRE_KEYS, *AUTHENTICATE_ALIASES]}

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
    addtl_info=optional_text,
)


@st.composite
def spelled(draw: st.DrawFn, key: str) -> str:
    """``key`` in any casing, with underscores anywhere: all fold to the same key."""
    rng = random.Random(draw(st.integers(0, 2**32)))  # noqa: S311 - test data  # one draw per key: fast to generate
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


standard_keys = st.sampled_from(
    ["result", "Result", "errormsg", "Errormsg", "errorcode", "Errorcode", "detail", "Detail"]
)
standard_payloads = st.dictionaries(standard_keys | utf8_text, json_values, max_size=5)

MARKER = "Zq9-secret-value-Zq9"


@st.composite
def with_secret(draw: st.DrawFn) -> Any:
    """A JSON value with a secret field, in any casing, at any depth up to 40."""
    key = draw(spelled(draw(st.sampled_from(sorted(SECRET_KEYS)))))
    value: Any = {key: draw(st.sampled_from([MARKER, [MARKER], {"v": MARKER}]))}
    # Sibling keys are ordinary names: neither a secret field's name nor the
    # secret value itself (hypothesis draws string constants of the code it
    # runs, the marker among them; a key name is not what redaction hides).
    names = draw(
        st.lists(
            utf8_text.filter(lambda k: fold_key(k) not in SECRET_KEYS and MARKER not in k),
            min_size=1,
        )
    )
    rng = random.Random(draw(st.integers(0, 2**32)))  # noqa: S311 - test data
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
    "addtl_info": "str",
    "user.user_id": "int",
    "user.user_name": "str",
    "user.email": "str",
    "user.email_verified": "bool",
    "user.account_id": "int",
    "user.oms_id": "int",
    "user.use_2fa": "bool",
}

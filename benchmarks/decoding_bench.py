"""Decoding the AuthenticateUser reply: alphapoint vs ``json.loads`` alone vs msgspec.

The input is the reply's ``o`` text (the inner JSON document), in both casings:
PascalCase as live gateways send it and camelCase as the documentation shows it.

* ``json.loads``: the floor, parsing only, no model.
* ``alphapoint``: ``json.loads`` then ``decode_authenticate_result`` (one
  converter for both casings, strict types, errors that name the field).
* ``msgspec``: ``msgspec.json.decode`` straight into a Struct with the same
  fields, the fastest peer. A Struct reads one casing only, so there is one
  Struct per casing: the work alphapoint does to fold keys is not done here.
* ``orjson.loads``: parsing only, with orjson: what swapping the JSON parser
  alone would save (alphapoint does not use orjson; see docs/performance.md).
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from typing import Any

from alphapoint.decoding import decode_authenticate_result
from alphapoint.testing.faults import login_reply

_dumps = json.JSONEncoder(separators=(",", ":")).encode

PASCAL: dict[str, Any] = login_reply("5f2b9c0e8d7a4b1e9f3c6a2d8e4b7f10")
CAMEL: dict[str, Any] = {
    "authenticated": True,
    "sessionToken": "5f2b9c0e8d7a4b1e9f3c6a2d8e4b7f10",
    "user": {
        "userId": 7,
        "userName": "alice",
        "email": "alice@example.com",
        "emailVerified": True,
        "accountId": 1007,
        "omsId": 1,
        "use2FA": False,
    },
    "locked": False,
    "requires2FA": False,
    "enforceEnable2FA": False,
    "twoFAType": None,
    "twoFAToken": None,
    "errormsg": None,
}
TEXTS = {"PascalCase": _dumps(PASCAL), "camelCase": _dumps(CAMEL)}


def _msgspec_decoders() -> dict[str, Callable[[str], Any]] | None:
    """A msgspec decoder per casing, into Structs equivalent to alphapoint's models."""
    try:
        import msgspec
    except ImportError:
        return None

    def structs(user_names: dict[str, str], names: dict[str, str]) -> Any:
        user = msgspec.defstruct(
            "User",
            [
                ("user_id", int, 0),
                ("user_name", str, ""),
                ("email", str, ""),
                ("email_verified", bool, False),
                ("account_id", int, 0),
                ("oms_id", int, 0),
                ("use_2fa", bool, False),
            ],
            rename=user_names,
        )
        return msgspec.defstruct(
            "AuthenticateResult",
            [
                ("authenticated", bool, False),
                ("locked", bool, False),
                ("requires_2fa", bool, False),
                ("two_fa_type", str | None, None),
                ("two_fa_token", str | None, None),
                ("session_token", str | None, None),
                ("errormsg", str | None, None),
                ("user", user | None, None),
                ("user_id", int | None, None),
            ],
            rename=names,
        )

    pascal = structs(
        {
            "user_id": "UserId",
            "user_name": "UserName",
            "email": "Email",
            "email_verified": "EmailVerified",
            "account_id": "AccountId",
            "oms_id": "OMSId",
            "use_2fa": "Use2FA",
        },
        {
            "authenticated": "Authenticated",
            "locked": "Locked",
            "requires_2fa": "Requires2FA",
            "two_fa_type": "TwoFAType",
            "two_fa_token": "TwoFAToken",
            "session_token": "SessionToken",
            "errormsg": "errormsg",
            "user": "User",
            "user_id": "UserId",
        },
    )
    camel = structs(
        {
            "user_id": "userId",
            "user_name": "userName",
            "email": "email",
            "email_verified": "emailVerified",
            "account_id": "accountId",
            "oms_id": "omsId",
            "use_2fa": "use2FA",
        },
        {
            "authenticated": "authenticated",
            "locked": "locked",
            "requires_2fa": "requires2FA",
            "two_fa_type": "twoFAType",
            "two_fa_token": "twoFAToken",
            "session_token": "sessionToken",
            "errormsg": "errormsg",
            "user": "user",
            "user_id": "userId",
        },
    )
    return {
        "PascalCase": msgspec.json.Decoder(pascal).decode,
        "camelCase": msgspec.json.Decoder(camel).decode,
    }


def decoders() -> dict[str, dict[str, Callable[[str], Any]] | None]:
    """client -> casing -> a function from the ``o`` text to the decoded reply."""
    loads = json.loads

    def alphapoint(text: str) -> Any:
        return decode_authenticate_result(loads(text))

    try:
        import orjson
    except ImportError:
        orjson_loads = None
    else:
        orjson_loads = {casing: orjson.loads for casing in TEXTS}
    return {
        "json.loads": {casing: loads for casing in TEXTS},
        "alphapoint": {casing: alphapoint for casing in TEXTS},
        "msgspec": _msgspec_decoders(),
        "orjson.loads": orjson_loads,
    }


def check() -> None:
    """Every decoder reads both casings to the same values (the comparison is fair)."""
    peer = _msgspec_decoders()
    for casing, text in TEXTS.items():
        result = decode_authenticate_result(json.loads(text))
        user = result.user
        mine = (result.authenticated, user and user.oms_id, result.session_token)
        if mine != (True, 1, PASCAL["SessionToken"]):
            raise RuntimeError(f"alphapoint decoded the {casing} reply wrongly: {result!r}")
        if peer is not None:
            other = peer[casing](text)
            theirs = (other.authenticated, other.user.oms_id, other.session_token)
            if theirs != mine:
                raise RuntimeError(f"msgspec decoded the {casing} reply wrongly: {other!r}")


def measure(fn: Callable[[str], Any], text: str, n: int) -> float:
    """Microseconds per decode over ``n`` decodes."""
    gc.collect()
    start = time.perf_counter()
    for _ in range(n):
        fn(text)
    return (time.perf_counter() - start) / n * 1e6


def alphapoint_loop(n: int) -> None:
    """``n`` decodes of each casing (for the profiler)."""
    for text in TEXTS.values():
        for _ in range(n):
            decode_authenticate_result(json.loads(text))

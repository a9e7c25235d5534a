"""Decoding the AuthenticateUser reply: alphapoint vs ``json.loads`` alone vs msgspec.

The input is the reply's ``o`` text (the inner JSON document), in both casings:
PascalCase as live gateways send it and camelCase as the documentation shows it.

* ``json.loads``: the floor, parsing only, no model.
* ``alphapoint``: the text read as the default install's frame codec reads it
  (json's scanner, :mod:`alphapoint.jsoncodec`), then
  ``decode_authenticate_result`` (one converter for both casings, strict
  types, errors that name the field).
* ``alphapoint-fast``: the same with the ``fast`` extra's reader (msgspec's).
* ``msgspec``: ``msgspec.json.decode`` straight into a Struct with the same
  fields, the fastest peer. A Struct reads one casing only, so there is one
  Struct per casing: the work alphapoint does to fold keys is not done here.
* ``orjson.loads``: parsing only, with orjson, for reference.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from typing import Any

from alphapoint import jsoncodec
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

    def alphapoint_with(codec: jsoncodec.Codec) -> dict[str, Callable[[str], Any]]:
        read = codec.read

        def decode(text: str) -> Any:
            return decode_authenticate_result(read(text))

        return dict.fromkeys(TEXTS, decode)

    by_name = {codec.name: codec for codec in jsoncodec.CODECS}
    fastest = jsoncodec.CODECS[0]  # the fast extra's, when installed
    try:
        import orjson
    except ImportError:
        orjson_loads = None
    else:
        orjson_loads = dict.fromkeys(TEXTS, orjson.loads)
    return {
        "json.loads": dict.fromkeys(TEXTS, loads),
        "alphapoint": alphapoint_with(by_name["json"]),
        "alphapoint-fast": alphapoint_with(fastest) if fastest.name != "json" else None,
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


# -- instructions per decode, counted by valgrind (python benchmarks/decoding_bench.py) ------


def _child(client: str, casing: str, n: int) -> None:
    fns = decoders()[client]
    assert fns is not None
    fn, text = fns[casing], TEXTS[casing]
    for _ in range(n):
        fn(text)


def main() -> int:
    """Instructions per decode of each client, each casing: ``python benchmarks/decoding_bench.py``.

    The times in ``run.py`` move with the machine's load (the decode rows'
    spread was 1.3x-5.4x in a run alongside valgrind); the count does not.
    Each client decodes in a child under callgrind, 2,000 and 12,000 times;
    the difference divided by 10,000 is one decode.
    """
    import argparse
    import os
    import shutil
    import subprocess
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from instructions import collected, human, per_op, under_callgrind

    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(
        description=main.__doc__.splitlines()[0] if main.__doc__ else ""
    )
    parser.add_argument("--valgrind", default="valgrind")
    parser.add_argument("--clients", default=None, help="comma-separated (json.loads first)")
    parser.add_argument("--casings", default=",".join(TEXTS), help="comma-separated")
    args = parser.parse_args()
    valgrind = shutil.which(args.valgrind)
    if valgrind is None:
        print("decoding_bench.py: valgrind not found", file=sys.stderr)
        return 2
    available = {name: fns for name, fns in decoders().items() if fns is not None}
    if args.clients:
        available = {name: available[name] for name in args.clients.split(",")}
    small, large = 2000, 12000
    counts: dict[tuple[str, str], float] = {}
    for casing in args.casings.split(","):
        for client in available:
            runs = []
            for n in (small, large):
                done = subprocess.run(
                    under_callgrind(valgrind, __file__, "--child", client, casing, str(n)),
                    capture_output=True, text=True, check=True,
                    env=dict(os.environ, PYTHONHASHSEED="0"),
                )  # fmt: skip
                runs.append(collected(done.stderr))
            counts[client, casing] = per_op(small, runs[0], large, runs[1])
            print(f"{casing}/{client}: {human(counts[client, casing])}", file=sys.stderr)
    print("Instructions per decode of the AuthenticateUser reply (valgrind callgrind, the")
    command = " ".join(["python benchmarks/decoding_bench.py", *sys.argv[1:]])
    print(f"difference between {small} and {large} decodes): {command}")
    print()
    print("| casing | client | instructions per decode | vs json.loads |")
    print("|---|---|---|---|")
    for (client, casing), count in counts.items():
        floor = counts["json.loads", casing]
        print(f"| {casing} | {client} | {human(count)} | {count / floor:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A long fuzz run of the frame codec and the reply decoders (not part of the test suite).

Two kinds of input, run through the same checks as tests/test_properties.py:

* hypothesis, with many examples per property (the strategies are those of
  alphapoint.testing.strategies, shared with tests/test_properties.py): arbitrary text and bytes,
  frame-shaped JSON, every message type with any Unicode, arbitrary nesting,
  AuthenticateUser replies in any casing, one field mistyped, standard
  responses;
* a mutation fuzzer: valid frames as sent by live gateways (replies in both
  casings, ``m=5`` raw strings, events, deep nesting) mutated byte by byte
  (bit flips, interesting bytes, insertions, deletions, duplications, splices,
  ``\\u`` escapes with lone surrogates), either the whole message or only the
  inner ``o`` document inside a valid envelope, then sent through the whole
  inbound path: ``decode_frame``, the DEBUG log line (``describe``), the
  standard-response check, ``decode_authenticate_result``, and a re-encode
  that must decode to the same frame.

Anything raised other than the library's typed errors (FrameError,
DecodeError, RequestError, InvalidPayload for what cannot be sent) is a
failure, and so is a round trip that changes the frame.

    python scripts/fuzz.py                          # the recorded run
    python scripts/fuzz.py --examples 2000 --mutations 100000   # a quick one
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from alphapoint.apex import check_reply
from alphapoint.connection import describe
from alphapoint.decoding import decode_authenticate_result, fold_key
from alphapoint.errors import DecodeError, FrameError, InvalidPayload, RequestError
from alphapoint.frame import Frame, MessageType, decode_frame, encode_frame
from alphapoint.testing import strategies as properties
from alphapoint.testing.faults import login_reply


class Target:
    """One property and how many inputs it has tried."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tried = 0
        self.failures: list[str] = []
        self.seconds = 0.0


def run_hypothesis(
    target: Target, strategy: st.SearchStrategy[Any], check: Callable[[Any], None], examples: int
) -> None:
    """Run ``check`` on ``examples`` inputs drawn from ``strategy``; record a failure."""

    def counted(value: Any) -> None:
        target.tried += 1
        check(value)

    test = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
    )(given(strategy)(counted))
    began = time.monotonic()
    try:
        test()
    except Exception:  # noqa: BLE001 - a failure, reported with its minimal example
        target.failures.append(traceback.format_exc(limit=-3))
    target.seconds += time.monotonic() - began


def hypothesis_targets(examples: int) -> list[Target]:
    p = properties
    inner = {
        name: getattr(p, name).hypothesis.inner_test
        for name in (
            "test_every_frame_round_trips_through_bytes_or_is_refused",
            "test_decoding_is_idempotent",
            "test_arbitrary_nesting_never_escapes_the_library_errors",
            "test_standard_response_check_raises_only_request_error",
            "test_redaction_hides_secret_fields_at_any_depth",
        )
    }
    runs: list[tuple[str, st.SearchStrategy[Any], Callable[[Any], None], int]] = [
        (
            "decode_frame: arbitrary text and bytes",
            st.binary() | p.any_text,
            _decode_anything,
            examples,
        ),
        (
            "decode_frame: frame-shaped JSON, any key casing",
            frame_shaped,
            _decode_anything,
            examples,
        ),
        (
            "encode/decode round trip: every type, any Unicode",
            st.tuples(
                st.sampled_from(MessageType),
                st.integers(-(2**63), 2**63 - 1),  # beyond 64 bits, ``i`` is refused
                p.any_text,
                p.json_of(p.any_text),
            ),
            lambda args: inner["test_every_frame_round_trips_through_bytes_or_is_refused"](*args),
            examples,
        ),
        (
            "decode idempotent (decode, encode, decode)",
            p.frame_texts | p.utf8_text | st.binary(),
            inner["test_decoding_is_idempotent"],
            examples,
        ),
        (
            "arbitrary nesting (0-4000 deep), all decoders",
            st.tuples(
                st.integers(0, 4000),
                st.lists(st.booleans(), min_size=1, max_size=8),
                st.sampled_from(["outer", "payload", "user"]),
                st.sampled_from(MessageType),
            ),
            lambda args: inner["test_arbitrary_nesting_never_escapes_the_library_errors"](*args),
            max(1, examples // 10),
        ),
        (
            "decode_authenticate_result: arbitrary JSON",
            reply_payloads,
            _authenticate_anything,
            examples,
        ),
        (
            "AuthenticateUser reply in any casing == model",
            st.data(),
            lambda data: _casing_round_trip(data),
            examples,
        ),
        (
            "one mistyped field is named",
            st.data(),
            lambda data: _one_mistyped(data),
            examples,
        ),
        (
            "standard response check",
            st.tuples(
                st.sampled_from([MessageType.REPLY, MessageType.ERROR]),
                p.standard_payloads | p.json_values,
            ),
            lambda args: inner["test_standard_response_check_raises_only_request_error"](*args),
            examples,
        ),
        (
            "redaction at any depth, any casing",
            p.with_secret(),
            inner["test_redaction_hides_secret_fields_at_any_depth"],
            examples,
        ),
    ]
    targets = []
    for name, strategy, check, count in runs:
        target = Target(name)
        print(f"  {name} ...", flush=True)
        run_hypothesis(target, strategy, check, count)
        targets.append(target)
    return targets


frame_shaped = st.dictionaries(
    st.sampled_from(["m", "i", "n", "o", "M", "I", "N", "O"]) | properties.utf8_text,
    st.integers(-2, 7)
    | properties.json_values
    | properties.json_values.map(json.dumps)
    | properties.utf8_text,
    max_size=6,
).map(json.dumps)

reply_payloads = properties.json_values | st.dictionaries(
    st.sampled_from(
        [
            *(key for key in properties.WIRE_KEYS.values()),
            *(key for key in properties.USER_WIRE_KEYS.values()),
            "authenticated",
            "user",
            "requires2FA",
            "omsId",
        ]
    )
    | properties.utf8_text,
    properties.json_values
    | st.dictionaries(
        st.sampled_from(list(properties.USER_WIRE_KEYS.values())) | properties.utf8_text,
        properties.json_values,
    ),
    max_size=10,
)


def _decode_anything(message: str | bytes) -> None:
    try:
        frame = decode_frame(message)
    except FrameError:
        return
    assert isinstance(frame.type, MessageType)
    describe(frame)


def _authenticate_anything(payload: Any) -> None:
    try:
        decode_authenticate_result(payload)
    except DecodeError as error:
        if not isinstance(error.path, str):
            raise TypeError("DecodeError.path is not a string") from error


def _casing_round_trip(data: st.DataObject) -> None:
    result = data.draw(properties.results)
    payload = data.draw(properties.to_wire(result, properties.WIRE_KEYS))
    assert decode_authenticate_result(payload) == result


def _one_mistyped(data: st.DataObject) -> None:
    p = properties
    result = data.draw(p.results)
    path = data.draw(st.sampled_from(sorted(p.KINDS)))
    names = path.split(".")
    if len(names) == 2 and result.user is None:
        return
    payload = data.draw(p.to_wire(result, p.WIRE_KEYS))
    target = payload
    if len(names) == 2:
        target = next(v for k, v in payload.items() if fold_key(k) == "user")
    key = next((k for k in target if fold_key(k) == fold_key(names[-1])), names[-1])
    target[key] = data.draw(st.sampled_from(p.WRONG[p.KINDS[path]]))
    try:
        decode_authenticate_result(payload)
    except DecodeError as error:
        if error.path != path:
            raise AssertionError(f"{error.path!r} named instead of {path!r}") from error
        return
    raise AssertionError(f"a mistyped {path} was accepted")


# -- the mutation fuzzer ----------------------------------------------------------------------


def seeds() -> list[bytes]:
    login = login_reply("0123456789abcdef0123456789abcdef")
    camel = {k[:1].lower() + k[1:]: v for k, v in login.items()}
    frames = [
        Frame(MessageType.REPLY, 2, "AuthenticateUser", login),
        Frame(MessageType.REPLY, 4, "AuthenticateUser", camel),
        Frame(MessageType.REPLY, 6, "Authenticate2FA", {"Authenticated": True, "UserId": 8}),
        Frame(MessageType.REPLY, 8, "Ping", {"msg": "PONG"}),
        Frame(
            MessageType.REPLY,
            10,
            "GetUserInfo",
            {"result": False, "errormsg": "Not Authorized", "errorcode": 20, "detail": None},
        ),
        Frame(MessageType.EVENT, 3, "Level1UpdateEvent", {"InstrumentId": 1, "BestBid": 1.5}),
        Frame(MessageType.EVENT, 5, "Level2UpdateEvent", [[1, 2, 3.5, 0, 1.25, 1]]),
        Frame(MessageType.REPLY, 12, "Deep", [[[[[[[[{"Password": "x"}]]]]]]]]),
    ]
    out = [encode_frame(frame).encode() for frame in frames]
    out.append(b'{"m":5,"i":14,"n":"NoSuchCall","o":"Endpoint Not Found"}')
    out.append(b'{"m":1,"i":16,"n":"X","o":"[' + b"[" * 600 + b"]" * 600 + b']"}')
    return out


INTERESTING = [
    b'"',
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"0",
    b"-",
    b"e",
    b"1e999",
    b"NaN",
    b"null",
    b"true",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\\ud800",
    b"\\udfff",
    b'\\"',
    b"9" * 40,
]


def mutate(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            index = rng.randrange(len(buf))
            buf[index] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            index = rng.randrange(len(buf))
            buf[index : index + 1] = rng.choice(INTERESTING)
        elif op == 2:
            buf[pos:pos] = rng.choice(INTERESTING)
        elif op == 3 and buf:
            end = min(len(buf), pos + rng.randint(1, 16))
            del buf[pos:end]
        elif op == 4 and buf:
            end = min(len(buf), pos + rng.randint(1, 32))
            buf[pos:pos] = buf[pos:end]
        elif op == 5:
            other = rng.choice(pool)
            start = rng.randrange(len(other))
            buf[pos:pos] = other[start : start + rng.randint(1, 64)]
        else:
            buf[pos:pos] = bytes([rng.randrange(256)])
    return bytes(buf)


def mutate_inner(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """Mutate only the ``o`` document and wrap it in a valid envelope again."""
    outer = json.loads(data)
    inner = outer["o"].encode("utf-8", "surrogatepass")
    mutated = mutate(inner, rng, pool).decode("utf-8", "replace")
    outer["o"] = mutated
    outer["m"] = rng.choice([1, 1, 1, 3, 5])
    return json.dumps(outer).encode()


def pipeline(data: bytes) -> None:
    """The whole inbound path of one message; raises only on a bug."""
    try:
        frame = decode_frame(data)
    except FrameError:
        return
    describe(frame)
    if frame.type in (MessageType.REPLY, MessageType.ERROR):
        with contextlib.suppress(RequestError):
            check_reply(frame)
    with contextlib.suppress(DecodeError):
        decode_authenticate_result(frame.payload)
    try:
        text = encode_frame(frame)
    except InvalidPayload:
        return  # NaN or Infinity (read, never sent), or a lone surrogate
    again = decode_frame(text.encode())
    if again != frame:
        raise AssertionError("re-encoding changed the frame")


def run_mutations(count: int, seed: int) -> Target:
    target = Target("inbound path: mutated gateway frames")
    rng = random.Random(seed)  # noqa: S311 - reproducible fuzzing, not cryptography
    pool = seeds()
    began = time.monotonic()
    for _ in range(count):
        base = rng.choice(pool)
        data = mutate_inner(base, rng, pool) if rng.random() < 0.5 else mutate(base, rng, pool)
        target.tried += 1
        try:
            pipeline(data)
        except Exception as exc:  # noqa: BLE001 - a failure, reported
            if len(target.failures) < 5:
                target.failures.append(f"{type(exc).__name__}: {exc} on {data[:200]!r}")
    target.seconds = time.monotonic() - began
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000, help="per hypothesis target")
    parser.add_argument("--mutations", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args()
    print(f"hypothesis: {args.examples} examples per property", flush=True)
    targets = hypothesis_targets(args.examples)
    print(f"mutation fuzzer: {args.mutations} inputs, seed {args.seed}", flush=True)
    targets.append(run_mutations(args.mutations, args.seed))
    print("\n| target | inputs tried | failures | seconds |\n|---|---|---|---|")
    for target in targets:
        print(
            f"| {target.name} | {target.tried:,} | {len(target.failures)} | {target.seconds:.0f} |"
        )
    total = sum(target.tried for target in targets)
    failures = sum(len(target.failures) for target in targets)
    print(f"| **total** | **{total:,}** | **{failures}** | |")
    for target in targets:
        for failure in target.failures:
            print(f"\nFAILURE in {target.name}:\n{failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

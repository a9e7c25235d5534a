"""A gateway that misbehaves cannot exhaust memory, hang a close, flood the logs or show a secret.

Each test runs a hostile gateway from :mod:`alphapoint.testing.hostile` (RFC
6455 by hand: raw frames built with ``struct``, a socket that is really never
read) on loopback, under asyncio and trio, and checks what the bounds promise
(docs/reliability.md, "Hostile gateways"): the typed error, within an absolute
bound (``fail_after``); memory within a generous bound (tracemalloc's peak,
far below what the unbounded code reached); and no task left behind. None of
them depends on how fast the machine is or how large its socket buffers are:
the hostile servers write until the client gives up, bounded by a count.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import tracemalloc
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import alphapoint
from alphapoint import (
    ConnectionClosed,
    DecodeError,
    FrameError,
    PasswordCredentials,
    RequestTimeout,
)
from alphapoint.connection import UNREADABLE_LOG_INTERVAL
from alphapoint.drivers import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_SEND_BUFFER, Driver
from alphapoint.errors import PayloadError
from alphapoint.frame import Frame, MessageType, decode_frame, encode_frame
from alphapoint.testing.faults import login_reply
from alphapoint.testing.hostile import ClientFrame, Opcode, RawPeer, frame, serve_raw

from .helpers import no_task_left

pytestmark = pytest.mark.anyio

#: Upper bound, in seconds, on every wait: a bug fails, never hangs.
LIMIT = 20.0

#: close_timeout and call timeouts of the tests that use them.
SHORT = 0.5

MiB = 2**20

PONG = {"msg": "PONG"}

#: The drivers to run the transport-level tests with. Under trio both are
#: the anyio stream driver; under asyncio "auto" is the protocol driver.
DRIVERS: list[Driver] = ["auto", "anyio"]


# -- helpers ------------------------------------------------------------------------------


class Peak:
    """The most memory allocated above the start, while the block ran (tracemalloc)."""

    bytes = 0


@contextlib.contextmanager
def peak_memory() -> Iterator[Peak]:
    peak = Peak()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield peak
    finally:
        peak.bytes = tracemalloc.get_traced_memory()[1] - base
        if started:
            tracemalloc.stop()


def reply_text(request: Frame, payload: Any) -> bytes:
    return encode_frame(Frame(MessageType.REPLY, request.seq, request.function, payload)).encode()


async def next_request(peer: RawPeer) -> Frame:
    return decode_frame(await peer.read_text())


# -- 1. a message that never ends --------------------------------------------------------


async def test_a_message_of_empty_fragments_that_never_ends_fails_the_connection() -> None:
    """Empty continuation frames without FIN, for ever: the byte limit never trips
    (they weigh nothing), the fragment limit does, and nothing piles up meanwhile."""
    endless = 64 * DEFAULT_MAX_FRAGMENTS  # far past the limit; the server stops by itself

    async def script(peer: RawPeer) -> None:
        await peer.handshake()
        await next_request(peer)
        await peer.send(frame(Opcode.TEXT, b'{"m":1,', fin=False))
        batch = frame(Opcode.CONT, b"", fin=False) * 1024
        for _ in range(endless // 1024):
            await peer.send(batch)  # raises once the client has gone: the handler ends
        await peer.read_until_close()

    with anyio.fail_after(LIMIT), peak_memory() as peak:
        async with (
            no_task_left(),
            serve_raw(script) as server,
            alphapoint.connect(server.url) as session,
        ):
            with pytest.raises(ConnectionClosed) as info:
                await session.call("Ping", timeout=None)
    assert f"more than {DEFAULT_MAX_FRAGMENTS} fragments" in str(info.value)
    assert peak.bytes < 16 * MiB, peak.bytes


async def test_too_many_fragments_are_refused_with_close_code_1008() -> None:
    """Exactly one fragment past the limit: the client answers 1008 and goes."""
    closes: list[ClientFrame | None] = []

    async def script(peer: RawPeer) -> None:
        await peer.handshake()
        await next_request(peer)
        fragments = [frame(Opcode.TEXT, b"[", fin=False)]
        fragments += [frame(Opcode.CONT, b"", fin=False)] * DEFAULT_MAX_FRAGMENTS
        await peer.send(b"".join(fragments))  # one more than the limit, and then no more
        closes.append(await peer.read_until_close())

    with anyio.fail_after(LIMIT):
        async with (
            no_task_left(),
            serve_raw(script) as server,
            alphapoint.connect(server.url) as session,
        ):
            with pytest.raises(ConnectionClosed) as info:
                await session.call("Ping", timeout=None)
    assert "fragments" in str(info.value)
    assert [c.close_code if c is not None else None for c in closes] == [1008]


async def test_a_message_at_the_fragment_limit_is_assembled() -> None:
    async def script(peer: RawPeer) -> None:
        await peer.handshake()
        request = await next_request(peer)
        data = reply_text(request, PONG)
        pieces = [data[:1]] + [b""] * (DEFAULT_MAX_FRAGMENTS - 2) + [data[1:]]
        frames = [frame(Opcode.TEXT, pieces[0], fin=False)]
        frames += [frame(Opcode.CONT, piece, fin=False) for piece in pieces[1:-1]]
        frames.append(frame(Opcode.CONT, pieces[-1], fin=True))
        await peer.send(b"".join(frames))
        await peer.read_until_close()

    with anyio.fail_after(LIMIT):
        async with serve_raw(script) as server, alphapoint.connect(server.url) as session:
            assert await session.call("Ping") == PONG


# -- 2. pings as fast as the socket takes them, and nothing read ---------------------------


def ping_flood(started: anyio.Event | None = None) -> Any:
    """A gateway that answers the handshake, then sends pings and never reads again.

    Each ping carries the largest payload a control frame may (125 bytes), so
    its pong weighs as much. The flood stops when the client has gone (the
    write fails) or after 1 GiB.
    """
    batch = frame(Opcode.PING, b"p" * 125) * 512  # 65 KiB a write

    async def script(peer: RawPeer) -> None:
        await peer.handshake()
        for _ in range(2**30 // len(batch)):
            await peer.send(batch)
            if started is not None and peer.sent >= MiB:
                started.set()

    return script


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_gateway_that_floods_pings_and_never_reads_is_dropped(driver: Driver) -> None:
    """The pongs cannot be written: the connection is dropped with a message that
    says so, and memory stays bounded (asyncio: at most max_send_buffer of
    pongs wait; anyio: the reader waits for room, at most close_timeout)."""
    with anyio.fail_after(LIMIT), peak_memory() as peak:
        async with (
            no_task_left(),
            serve_raw(ping_flood()) as server,
            alphapoint.connect(
                server.url, close_timeout=SHORT, keepalive=None, driver=driver
            ) as session,
        ):
            with pytest.raises(ConnectionClosed) as info:
                await session.call("Ping", timeout=None)
            assert not session.is_open
    assert "the gateway stopped reading" in str(info.value)
    assert peak.bytes < DEFAULT_MAX_SEND_BUFFER + 32 * MiB, peak.bytes


@pytest.mark.parametrize("driver", DRIVERS)
async def test_leaving_the_block_while_the_gateway_floods_pings_is_bounded(driver: Driver) -> None:
    """Before: under trio, the close waited for the send lock, which the reader
    held while blocked writing a pong, for ever. Now every exit is bounded by
    close_timeout, whatever the gateway does."""
    started = anyio.Event()
    with anyio.fail_after(LIMIT):
        async with no_task_left(), serve_raw(ping_flood(started)) as server:
            async with alphapoint.connect(
                server.url, close_timeout=SHORT, keepalive=None, driver=driver
            ) as session:
                await started.wait()
            assert not session.is_open


# -- 6. a flood of text that is not APEX --------------------------------------------------


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "alphapoint.connection" and r.levelno == logging.WARNING
    ]


def counted(record: logging.LogRecord) -> int:
    """How many unreadable messages one WARNING record stands for."""
    message = record.getMessage()
    if message.startswith("ignored "):
        return int(message.split()[1])
    if "earlier one(s) not logged" in message:
        return 1 + int(message.rsplit("(and ", 1)[1].split()[0])
    assert message.startswith("ignoring a message from"), message
    return 1


#: A flood's bound: a hang, not a slow machine (pytest-timeout's 60 s is above it).
FLOOD_LIMIT = 5 * LIMIT


async def test_a_flood_of_unreadable_text_is_counted_not_kept_and_logged_sparingly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flood = 50_000

    async def script(peer: RawPeer) -> None:
        await peer.handshake()
        request = await next_request(peer)
        # 50,000 one-byte text messages, then the reply.
        await peer.send(
            frame(Opcode.TEXT, b"x") * flood + frame(Opcode.TEXT, reply_text(request, PONG))
        )
        await peer.read_until_close()

    caplog.set_level(logging.WARNING, logger="alphapoint")
    # Reading 50,000 messages under tracemalloc takes seconds, many more on a
    # loaded machine: the bounds here are for a hang, not for this CPU's speed.
    with anyio.fail_after(FLOOD_LIMIT), peak_memory() as peak:
        async with no_task_left(), serve_raw(script) as server:
            began = anyio.current_time()
            async with alphapoint.connect(server.url) as session:
                # comes after the flood
                assert await session.call("Ping", timeout=FLOOD_LIMIT) == PONG
                assert session.protocol_errors == flood
            elapsed = anyio.current_time() - began
    records = warnings_of(caplog)
    # At most one record per interval, plus the first and the last (at the close).
    assert len(records) <= 2 + math.ceil(elapsed / UNREADABLE_LOG_INTERVAL), len(records)
    # Nothing is lost: the records count every message, those not logged included.
    assert sum(counted(r) for r in records) == flood
    assert peak.bytes < 32 * MiB, peak.bytes


async def test_calls_keep_their_deadlines_under_a_flood_of_unreadable_text() -> None:
    """The gateway floods text that is not APEX and never answers: a call still
    ends with RequestTimeout, which names what came instead."""
    batch = frame(Opcode.TEXT, b"not apex") * 4096

    async def script(peer: RawPeer) -> None:
        await peer.handshake()
        for _ in range(2**30 // len(batch)):
            await peer.send(batch)

    with anyio.fail_after(LIMIT):
        async with (
            no_task_left(),
            serve_raw(script) as server,
            alphapoint.connect(server.url, close_timeout=SHORT) as session,
        ):
            with pytest.raises(RequestTimeout) as info:
                await session.call("Ping", timeout=SHORT)
    assert "unreadable message(s), the last: frame is not JSON" in str(info.value)


# -- 8. JSON that Python's reader takes and a gateway must not send ------------------------


def answering(payload_text: str, function: str = "") -> Any:
    """A gateway that answers every request with ``payload_text`` as its ``o``, raw."""

    async def script(peer: RawPeer) -> None:
        await peer.handshake()
        while True:
            request = await next_request(peer)
            if function and request.function != function:
                await peer.send(frame(Opcode.TEXT, reply_text(request, PONG)))
                continue
            envelope = {"m": 1, "i": request.seq, "n": request.function, "o": payload_text}
            await peer.send(frame(Opcode.TEXT, json.dumps(envelope).encode()))

    return script


LOGIN = json.dumps(login_reply("token-of-the-hostile-gateway"))


@pytest.mark.parametrize(
    ("payload_text", "path"),
    [
        pytest.param(
            LOGIN.replace('"Authenticated": true', '"Authenticated": false, "Authenticated": true'),
            "Authenticated",
            id="duplicate-authenticated",
        ),
        pytest.param(
            LOGIN.replace('"UserId": 7', '"UserId": 7, "UserId": 8'), "User.UserId", id="dup-nested"
        ),
        pytest.param(LOGIN.replace('"UserId": 7', '"UserId": NaN'), "User.UserId", id="nan"),
        pytest.param(
            LOGIN.replace('"AccountId": 1007', '"AccountId": -Infinity'),
            "User.AccountId",
            id="infinity",
        ),
        pytest.param(
            LOGIN.replace('"UserId": 7', '"UserId": 1' + "0" * 5000), "User.UserId", id="10^5000"
        ),
    ],
)
async def test_a_login_reply_in_loose_json_is_refused_naming_the_field(
    payload_text: str, path: str
) -> None:
    credentials = PasswordCredentials("alice", "loose-json-password")
    with anyio.fail_after(LIMIT):
        async with no_task_left(), serve_raw(answering(payload_text, "AuthenticateUser")) as server:
            with pytest.raises(PayloadError) as info:
                async with alphapoint.connect(server.url, credentials=credentials, reconnect=False):
                    pass
    assert isinstance(info.value, DecodeError)
    assert isinstance(info.value, FrameError)
    assert info.value.path == path
    assert f"field {path!r}" in str(info.value)
    assert info.value.function == "AuthenticateUser"


async def test_an_id_beyond_64_bits_is_refused_by_the_model_naming_the_field() -> None:
    credentials = PasswordCredentials("alice", "loose-json-password")
    text = LOGIN.replace('"UserId": 7', f'"UserId": {2**64}')
    with anyio.fail_after(LIMIT):
        async with no_task_left(), serve_raw(answering(text, "AuthenticateUser")) as server:
            with pytest.raises(DecodeError) as info:
                async with alphapoint.connect(server.url, credentials=credentials, reconnect=False):
                    pass
    assert info.value.path == "user.user_id"
    assert "out of range" in str(info.value)


@pytest.mark.parametrize(
    ("payload_text", "path"),
    [
        ('{"Price": NaN}', "Price"),
        ('[1, 2, {"a": [Infinity]}]', "[2].a[0]"),
        ('{"a": 1, "b": {"c": 2, "c": 3}}', "b.c"),
    ],
)
async def test_a_reply_in_loose_json_fails_its_call_at_once(payload_text: str, path: str) -> None:
    """Not a timeout: the envelope says which call it answers, so that call fails."""
    with anyio.fail_after(LIMIT):
        async with (
            no_task_left(),
            serve_raw(answering(payload_text)) as server,
            alphapoint.connect(server.url) as session,
        ):
            with pytest.raises(PayloadError) as info:
                await session.call("GetSomething", timeout=None)
            assert session.protocol_errors == 1
            assert session.is_open
    assert info.value.path == path


async def test_a_frame_with_a_key_twice_is_unreadable() -> None:
    """A duplicate in the envelope: which ``i`` it answers is unknown, so it is
    unreadable, and the call times out saying so."""

    async def script(peer: RawPeer) -> None:
        await peer.handshake()
        request = await next_request(peer)
        text = f'{{"m":1,"i":{request.seq},"i":{request.seq + 2},"n":"Ping","o":"{{}}"}}'
        await peer.send(frame(Opcode.TEXT, text.encode()))
        await peer.read_until_close()

    with anyio.fail_after(LIMIT):
        async with (
            no_task_left(),
            serve_raw(script) as server,
            alphapoint.connect(server.url) as session,
        ):
            with pytest.raises(RequestTimeout) as info:
                await session.call("Ping", timeout=SHORT)
    assert "frame key 'i': the key is given more than once" in str(info.value)

"""The keepalive's Ping on the wire and its reply, on every loop of the matrix.

A Ping is written from a text made once (``connection._PING``) and is its own
book among the connection's pending calls (the ``_Pinger``): what must hold
is what held before (docs/performance.md, "Idle and the keepalive Ping,
eighth session"): each Ping is the APEX request ``{"m":0,"i":...,"n":"Ping",
"o":"{}"}`` with an ``i`` no other request had, its reply is matched by its
``i`` among the calls in flight and read as strictly as a call's, and a reply
that cannot be read is no answer. Real servers over loopback (websockets'
ServerProtocol, byte by byte), no mocks, no timing assertions.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import pytest
from websockets.frames import Opcode

import alphapoint
from alphapoint import ConnectionClosed, Keepalive
from alphapoint.frame import Frame as ApexFrame
from alphapoint.frame import decode_frame
from alphapoint.testing.scripted import serve_tcp

from .helpers import LIMIT, no_task_left, wait_until
from .test_parked_reader import accepted
from .test_transport import RawPeer

pytestmark = pytest.mark.anyio

#: Quick Pings, never given up on within a test.
PINGING = Keepalive(interval=0.05, timeout=LIMIT)


#: Answers one request: (the server's peer, the request, its text as it came).
Respond = Callable[[RawPeer, ApexFrame, str], Awaitable[None]]


def serving(respond: Respond) -> Callable[[anyio.abc.ByteStream], Awaitable[None]]:
    """A server's handler: the handshake, then ``respond`` to each request until
    the client goes away."""

    async def handler(stream: anyio.abc.ByteStream) -> None:
        peer = await accepted(stream)
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            while True:
                frame = await peer.next_frame()
                if frame.opcode is Opcode.TEXT:
                    text = bytes(frame.data).decode()
                    await respond(peer, decode_frame(text), text)

    return handler


def reply_text(seq: int, function: str, o: str, m: int = 1) -> str:
    """A reply as the gateway writes it, with ``o`` as given (a string of JSON, or not)."""
    return json.dumps({"m": m, "i": seq, "n": function, "o": o}, separators=(",", ":"))


async def send_text(peer: RawPeer, text: str) -> None:
    peer.protocol.send_text(text.encode())
    await peer.flush()


async def test_each_ping_is_the_apex_request_with_an_i_of_its_own() -> None:
    """Pings between calls: every one the same envelope, every ``i`` new, and each
    call answered by its own reply."""
    texts: list[str] = []
    seqs: list[int] = []

    async def respond(peer: RawPeer, request: ApexFrame, text: str) -> None:
        seqs.append(request.seq)
        if request.function == "Ping":
            texts.append(text)
            await send_text(peer, reply_text(request.seq, "Ping", '{"msg":"PONG"}'))
        else:
            o = json.dumps(request.payload)
            await send_text(peer, reply_text(request.seq, request.function, o))

    async with (
        no_task_left(),
        serve_tcp(serving(respond)) as server,
        alphapoint.connect(server.url, keepalive=PINGING) as session,
    ):
        for n in range(3):
            await wait_until(lambda: len(texts) >= 2 * (n + 1))  # noqa: B023 - awaited here
            assert await session.call("Echo", {"n": n}) == {"n": n}
        assert session.is_open
        assert session.connection_number == 1
    assert len(seqs) == len(set(seqs))
    for text in texts:
        seq = decode_frame(text).seq
        assert text == '{"m":0,"i":' + str(seq) + ',"n":"Ping","o":"{}"}'


async def test_a_call_and_a_ping_in_flight_together_each_get_their_reply() -> None:
    """The gateway holds a Ping's reply until a call comes, answers the call first,
    then the Ping: the call gets its own reply, the Ping counts as answered, and
    the keepalive goes on pinging on the same connection."""
    held: list[ApexFrame] = []
    pings_after = 0

    async def respond(peer: RawPeer, request: ApexFrame, text: str) -> None:
        nonlocal pings_after
        if request.function == "Ping" and not held:
            held.append(request)  # not answered until a call comes
        elif request.function == "Ping":
            pings_after += 1
            await send_text(peer, reply_text(request.seq, "Ping", '{"msg":"PONG"}'))
        else:
            await send_text(peer, reply_text(request.seq, request.function, '{"x":1}'))
            await send_text(peer, reply_text(held[0].seq, "Ping", '{"msg":"PONG"}'))

    async with (
        no_task_left(),
        serve_tcp(serving(respond)) as server,
        alphapoint.connect(server.url, keepalive=PINGING) as session,
    ):
        await wait_until(lambda: bool(held))
        assert await session.call("GetThing", {}) == {"x": 1}
        await wait_until(lambda: pings_after >= 3)  # answered: it pings on
        assert session.is_open
        assert session.connection_number == 1


@pytest.mark.parametrize(
    "o",
    [
        pytest.param('{"msg":"PONG","msg":"PONG"}', id="a key twice"),
        pytest.param('{"msg":NaN}', id="NaN"),
    ],
)
async def test_a_ping_reply_that_cannot_be_read_is_no_answer(o: str) -> None:
    """A reply with the Ping's ``i`` whose ``o`` is refused, as a call's would be:
    the Ping stays unanswered, and the keepalive drops the connection."""
    keepalive = Keepalive(interval=0.05, timeout=0.5)

    async def respond(peer: RawPeer, request: ApexFrame, text: str) -> None:
        await send_text(peer, reply_text(request.seq, request.function, o))

    async with (
        serve_tcp(serving(respond)) as server,
        alphapoint.connect(server.url, keepalive=keepalive) as session,
        session.state_changes() as changes,
    ):
        with anyio.fail_after(LIMIT):
            assert [state async for state in changes] == [alphapoint.SessionState.CLOSED]
        with pytest.raises(ConnectionClosed) as info:
            await session.call("Ping")
    assert str(info.value).startswith("the gateway did not answer a keepalive Ping within 0.5 s")


async def test_an_error_reply_to_a_ping_is_an_answer() -> None:
    """An ``m=5`` reply with the Ping's ``i`` says the gateway is there: the
    connection stays, and the keepalive goes on pinging."""
    error = '{"result":false,"errormsg":"Operation Failed","errorcode":101}'
    pings = 0

    async def respond(peer: RawPeer, request: ApexFrame, text: str) -> None:
        nonlocal pings
        pings += request.function == "Ping"
        await send_text(peer, reply_text(request.seq, request.function, error, m=5))

    async with (
        no_task_left(),
        serve_tcp(serving(respond)) as server,
        alphapoint.connect(server.url, keepalive=PINGING) as session,
    ):
        await wait_until(lambda: pings >= 4)
        assert session.is_open
        assert session.connection_number == 1

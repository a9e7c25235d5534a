"""Events at each edge of the frame codec's usual case, read by a live session.

``decode_fields`` takes the usual message (a flat payload, every colon of the
text counted, none escaped) in one step and reads anything else again,
strictly, to say why it is refused. Here a raw gateway, on loopback, sends
events at each edge of that step, on each JSON library installed (the
``codec`` fixture), and the client takes every good one, in order, before the
reply after them, and counts every bad one.
"""

from __future__ import annotations

import anyio
import pytest

import alphapoint
from alphapoint import jsoncodec
from alphapoint.frame import Frame, MessageType, decode_frame, encode_frame
from alphapoint.testing.hostile import Opcode, RawPeer, frame, serve_raw

from .helpers import LIMIT, no_task_left

pytestmark = pytest.mark.anyio

#: Each text as the gateway sends it, and the payload the client must hand
#: over for it (None: unreadable, counted in ``protocol_errors``).
EVENTS: list[tuple[str, object]] = [
    # The usual one.
    (r'{"m":3,"i":0,"n":"TickEvent","o":"{\"n\":1}"}', {"n": 1}),
    # A key twice in the payload: one colon more than its keys.
    (r'{"m":3,"i":0,"n":"TickEvent","o":"{\"n\":2,\"n\":3}"}', None),
    # A colon escaped in the envelope, inside a key of the payload: read.
    (r'{"m":3,"i":0,"n":"TickEvent","o":"{\"n\":4,\"a\u003ab\":5}"}', {"n": 4, "a:b": 5}),
    # A key twice in the payload, its colon escaped in the envelope: the
    # text's colons are as many as the keys the payload keeps.
    (r'{"m":3,"i":0,"n":"TickEvent","o":"{\"n\":6,\"n\"\u003a7}"}', None),
    # A nested payload.
    (r'{"m":3,"i":0,"n":"TickEvent","o":"{\"n\":8,\"x\":{\"y\":1}}"}', {"n": 8, "x": {"y": 1}}),
    # An unknown message type.
    (r'{"m":99,"i":0,"n":"TickEvent","o":"{\"n\":9}"}', None),
    # A key of the envelope twice.
    (r'{"m":3,"i":0,"n":"Other","n":"TickEvent","o":"{\"n\":10}"}', None),
    # An envelope with a key more: the typed reader refuses it, the general
    # way takes it (a gateway may add keys).
    (r'{"m":3,"i":0,"n":"TickEvent","o":"{\"n\":11}","x":1}', {"n": 11}),
    # A payload that is not an object (an array, read as such).
    (r'{"m":3,"i":0,"n":"TickEvent","o":"[12]"}', [12]),
    # The usual one again, last.
    (r'{"m":3,"i":0,"n":"TickEvent","o":"{\"n\":13}"}', {"n": 13}),
]


async def test_every_event_is_read_or_refused_as_decode_fields_says(
    codec: jsoncodec.Codec,
) -> None:
    async def script(peer: RawPeer) -> None:
        await peer.handshake()
        request = decode_frame(await peer.read_text())
        reply = encode_frame(Frame(MessageType.REPLY, request.seq, "Ping", {"msg": "PONG"}))
        # The events and the reply in one write: the reply after the events.
        await peer.send(
            b"".join(frame(Opcode.TEXT, text.encode()) for text, _ in EVENTS)
            + frame(Opcode.TEXT, reply.encode())
        )
        await peer.read_until_close()

    wanted = [payload for _, payload in EVENTS if payload is not None]
    with anyio.fail_after(LIMIT):
        async with (
            no_task_left(),
            serve_raw(script) as server,
            alphapoint.connect(server.url, logout_on_close=False) as session,
            session.events("TickEvent") as ticks,
        ):
            assert await session.call("Ping") == {"msg": "PONG"}
            # Counted before the reply woke the call: they came before it.
            assert session.protocol_errors == len(EVENTS) - len(wanted)
            got = []
            async for event in ticks:
                assert event.function == "TickEvent"
                assert event.seq == 0
                got.append(event.payload)
                if len(got) == len(wanted):
                    break
            assert got == wanted

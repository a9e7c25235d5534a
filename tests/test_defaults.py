"""Transport defaults: a frame size limit, a handshake timeout, TLS that verifies.

tests/test_transport.py already shows, over loopback with a trustme CA, that
``wss://`` verifies the certificate and the host name by default (a wrong
host or an unknown CA fails, naming the check), that a custom SSLContext
trusting the CA passes, that a handshake that never finishes fails within
``open_timeout``, and that plain ``ws://`` to a host that is not loopback is
refused unless ``allow_insecure``. Here: the defaults themselves, the size
limit at its exact boundary, and a custom context that turns verification
off being honoured (as an explicit choice only).
"""

from __future__ import annotations

import inspect
import json
import math
import ssl

import anyio
import pytest
import trustme

import alphapoint
from alphapoint import ConnectError, ConnectionClosed, Keepalive
from alphapoint.drivers import DEFAULT_MAX_MESSAGE_SIZE, open_websocket
from alphapoint.frame import Frame, MessageType, encode_frame
from alphapoint.testing.scripted import ScriptedConnection, serve_script

from .helpers import LIMIT, client_context, open_and_ping, server_context, tls_gateway

pytestmark = pytest.mark.anyio

PONG = {"msg": "PONG"}


def defaults(function: object) -> dict[str, object]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()  # type: ignore[arg-type]
        if parameter.default is not inspect.Parameter.empty
    }


def test_connect_has_safe_defaults() -> None:
    options = defaults(alphapoint.connect)
    assert DEFAULT_MAX_MESSAGE_SIZE == 4 * 2**20
    assert options["max_message_size"] == DEFAULT_MAX_MESSAGE_SIZE
    assert options["open_timeout"] == 10.0  # TCP, TLS and WebSocket handshakes
    assert options["close_timeout"] == 5.0
    assert options["timeout"] == alphapoint.DEFAULT_TIMEOUT == 10.0  # every call
    assert options["ssl"] is None  # the system's CAs, verifying host names
    assert options["allow_insecure"] is False
    assert options["keepalive"] == Keepalive(interval=30.0, timeout=10.0)
    assert options["event_buffer"] == 1024
    for name in ("open_timeout", "close_timeout", "timeout"):
        value = options[name]
        assert isinstance(value, float)
        assert 0 < value < math.inf


def test_open_websocket_has_the_same_defaults() -> None:
    options = defaults(open_websocket)
    assert options["max_message_size"] == DEFAULT_MAX_MESSAGE_SIZE
    assert options["open_timeout"] == 10.0
    assert options["close_timeout"] == 5.0
    assert options["ssl"] is None
    assert options["allow_insecure"] is False


def reply_of_length(request: Frame, length: int) -> str:
    """A reply to ``request`` whose text is exactly ``length`` bytes of UTF-8."""
    empty = encode_frame(Frame(MessageType.REPLY, request.seq, request.function, {"pad": ""}))
    text = encode_frame(
        Frame(
            MessageType.REPLY,
            request.seq,
            request.function,
            {"pad": "x" * (length - len(empty.encode()))},
        )
    )
    assert len(text.encode()) == length
    return text


async def test_default_size_limit_at_its_boundary() -> None:
    async def script(connection: ScriptedConnection) -> None:
        at_limit = await connection.receive_frame()
        await connection.send_text(reply_of_length(at_limit, DEFAULT_MAX_MESSAGE_SIZE))
        over = await connection.receive_frame()
        await connection.send_text(reply_of_length(over, DEFAULT_MAX_MESSAGE_SIZE + 1))
        await connection.wait_closed()

    async with serve_script(script) as server, alphapoint.connect(server.url) as session:
        with anyio.fail_after(LIMIT):
            reply = await session.call("AtTheLimit")
        assert len(json.dumps(reply)) > DEFAULT_MAX_MESSAGE_SIZE - 100
        with anyio.fail_after(LIMIT), pytest.raises(ConnectionClosed) as info:
            await session.call("OverTheLimit")
    assert "size limit" in str(info.value)
    assert f"limit of {DEFAULT_MAX_MESSAGE_SIZE} bytes" in str(info.value)


async def test_a_custom_context_is_used_as_given(ca: trustme.CA) -> None:
    # The certificate names another host: the default verification refuses it,
    # a context that trusts the CA refuses it too (wrong host name), and only a
    # context that explicitly turns verification off connects.
    async with tls_gateway(server_context(ca, "gateway.example.com")) as fixture:
        with pytest.raises(ConnectError, match="TLS"):
            await open_and_ping(fixture.url)
        with pytest.raises(ConnectError, match=r"(?i)mismatch"):
            await open_and_ping(fixture.url, ssl=client_context(ca))
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        assert await open_and_ping(fixture.url, ssl=unverified) == PONG

"""Secrets the client sent never show in what the gateway says back.

A gateway may echo a password in a close reason, a function name or any field
of a frame. :class:`alphapoint.redaction.SecretSet` holds the secret values
sent; a :class:`~alphapoint.connection.Connection` given one scrubs them from
every exception message and log record made of the gateway's words: close
reasons (``ConnectionClosed`` message and ``.reason``), malformed frames
(``FrameError``), the timeout errors that name them, and DEBUG frame logs.

The connection-level tests run a real connection (``open_websocket`` +
``Connection``) against a hostile gateway on loopback. The session will give
its connection the SecretSet of its credentials; until it does, the
end-to-end check through :func:`alphapoint.connect` is
:func:`secret_echoed_by_the_gateway_never_shows`, a plain function to enable
then (see its docstring).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import struct
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

import alphapoint
from alphapoint import ConnectionClosed, FrameError, MessageType, RequestTimeout
from alphapoint.connection import Connection
from alphapoint.drivers import open_websocket
from alphapoint.frame import Frame, decode_frame, encode_frame
from alphapoint.models import Event
from alphapoint.redaction import REDACTED, SecretSet
from alphapoint.testing.faults import login_reply
from alphapoint.testing.hostile import Opcode, RawPeer, frame, serve_raw
from alphapoint.testing.scripted import ScriptedConnection, serve_script

pytestmark = pytest.mark.anyio

LIMIT = 10.0
SHORT = 0.3

PASSWORD = "correct horse battery staple"
SIGNATURE = "6da3735d764bb64c26da9c2d202333a9c7c6ae55198bdbc4a9f696b4a58e5975"
CODE = "492039"
TOKEN = "9f1c2e7a5b3d4c6e8f0a1b2c3d4e5f60"
SECRETS = [PASSWORD, SIGNATURE, CODE, TOKEN]


# -- SecretSet ------------------------------------------------------------------------------


def test_every_secret_is_scrubbed_wherever_it_appears() -> None:
    secrets = SecretSet([PASSWORD, SIGNATURE])
    secrets.add(CODE, recent=True)
    secrets.add(TOKEN, recent=True)
    text = f"close: {PASSWORD}; sig={SIGNATURE}!{CODE}{CODE} token {TOKEN}."
    scrubbed = secrets.scrub(text)
    assert scrubbed == (f"close: {REDACTED}; sig={REDACTED}!{REDACTED}{REDACTED} token {REDACTED}.")
    assert len(secrets) == 4
    assert CODE in secrets


def test_an_empty_set_returns_the_text_itself() -> None:
    secrets = SecretSet()
    text = "nothing secret here"
    assert secrets.scrub(text) is text
    assert not secrets


@pytest.mark.parametrize("value", [None, "", "abc"])
def test_empty_and_short_values_are_ignored(value: str | None) -> None:
    secrets = SecretSet()
    secrets.add(value)
    secrets.add(value, recent=True)
    assert len(secrets) == 0
    assert secrets.scrub("abc abc") == "abc abc"


def test_a_secret_is_scrubbed_as_escaped_in_repr_and_json() -> None:
    secret = 'pa"ss\\wörd\n'
    secrets = SecretSet([secret])
    for shown in (
        repr({"k": secret}),
        json.dumps({"k": secret}),
        json.dumps(secret, ensure_ascii=False),
    ):
        assert secrets.scrub(shown).count(REDACTED) == 1, shown
    assert "ss" not in secrets.scrub(repr(secret))


def test_a_longer_secret_containing_another_is_replaced_whole() -> None:
    secrets = SecretSet(["abcd", "xxabcdxx"])
    assert secrets.scrub("xxabcdxx") == REDACTED


def test_only_the_most_recent_rotating_values_are_kept() -> None:
    secrets = SecretSet([PASSWORD], recent=2)
    for n in range(5):
        secrets.add(f"signature-{n}", recent=True)
    assert len(secrets) == 3
    assert secrets.scrub("signature-0 signature-4") == f"signature-0 {REDACTED}"
    assert PASSWORD not in secrets.scrub(PASSWORD)  # kept values never go


def test_its_repr_never_shows_a_value() -> None:
    secrets = SecretSet(SECRETS)
    assert repr(secrets) == "<SecretSet of 4 value(s)>"
    assert all(s not in repr(secrets) and s not in str(secrets) for s in SECRETS)


# -- a connection that scrubs what the gateway says --------------------------------------


def everything_shown(error: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    """Every text the user or a log could see: str, repr, the whole traceback, every record."""
    parts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    for attribute in ("reason",):
        parts.append(str(getattr(error, attribute, "")))
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_info is not None:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
    parts.append(caplog.text)
    return "\n".join(parts)


def assert_no_secret(text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"leaked: {leaked}"


def no_events(conn: Connection, event: Event) -> None:
    pass


@asynccontextmanager
async def connection(url: str, secrets: SecretSet) -> AsyncIterator[Connection]:
    """A Connection over a real WebSocket, its reader running, closed at the end."""
    websocket = await open_websocket(url, close_timeout=SHORT)
    conn = Connection(websocket, url=url, on_event=no_events, close_timeout=SHORT, secrets=secrets)
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(conn.run)
        try:
            yield conn
        finally:
            await conn.aclose(ConnectionClosed("closed by the test"))


def closing_with(code: int, reason: str) -> Callable[[RawPeer], Any]:
    async def script(peer: RawPeer) -> None:
        await peer.handshake()
        await peer.read_text()
        await peer.send(frame(Opcode.CLOSE, struct.pack("!H", code) + reason.encode()))
        await peer.read_until_close()

    return script


@pytest.mark.parametrize("code", [1008, 4000, 1011])
async def test_a_secret_echoed_in_a_close_reason_never_shows(
    code: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reason = f"bad password {PASSWORD[:20]}"  # close reasons are at most 123 bytes
    secrets = SecretSet([PASSWORD[:20], SIGNATURE])
    with anyio.fail_after(LIMIT):
        async with (
            serve_raw(closing_with(code, reason)) as server,
            connection(server.url, secrets) as conn,
        ):
            with pytest.raises(ConnectionClosed) as info:
                await conn.request(MessageType.REQUEST, "AuthenticateUser", {"x": 1})
    error = info.value
    assert error.code == code
    assert error.reason == f"bad password {REDACTED}"
    assert f"code {code}: bad password {REDACTED}" in str(error)
    shown = everything_shown(error, caplog)
    assert PASSWORD[:20] not in shown


async def test_a_secret_in_a_malformed_frame_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    """The gateway names a function with the password (and sends an ``o`` that is
    not a string): the FrameError, the timeout that names it, and the warning
    show it scrubbed."""
    caplog.set_level(logging.DEBUG)

    async def script(peer: RawPeer) -> None:
        await peer.handshake()
        request = decode_frame(await peer.read_text())
        bad = json.dumps({"m": 1, "i": request.seq, "n": PASSWORD, "o": 5})
        echoed = encode_frame(Frame(MessageType.EVENT, 1, "Echo", {"Said": SIGNATURE}))
        await peer.send(frame(Opcode.TEXT, bad.encode()) + frame(Opcode.TEXT, echoed.encode()))
        await peer.read_until_close()

    with anyio.fail_after(LIMIT):
        async with (
            serve_raw(script) as server,
            connection(server.url, SecretSet(SECRETS)) as conn,
        ):
            deadline = conn.clock() + SHORT
            with pytest.raises(RequestTimeout) as info:
                await conn.request(
                    MessageType.REQUEST, "Ping", {}, deadline=deadline, timeout=SHORT
                )
            last = conn.last_protocol_error
    assert isinstance(last, FrameError)
    assert str(last) == f"frame key 'o' of '{REDACTED}' is a JSON number, not a string"
    assert REDACTED in str(info.value)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(REDACTED in w for w in warnings)
    # The event that echoed the signature under a key no redaction knows: its
    # DEBUG line is scrubbed too.
    assert any("Echo" in r.getMessage() and REDACTED in r.getMessage() for r in caplog.records)
    assert_no_secret(everything_shown(info.value, caplog) + everything_shown(last, caplog))


async def test_without_a_secret_set_nothing_is_scrubbed() -> None:
    """The control: the same gateway's words show as they are without one."""
    with anyio.fail_after(LIMIT):
        async with (
            serve_raw(closing_with(4000, "plain words")) as server,
            connection(server.url, SecretSet()) as conn,
        ):
            with pytest.raises(ConnectionClosed) as info:
                await conn.request(MessageType.REQUEST, "Ping", {}, deadline=math.inf)
    assert info.value.reason == "plain words"


async def test_secret_echoed_by_the_gateway_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    """End to end through :func:`alphapoint.connect`: the gateway closes a login
    with the password in its close reason."""
    caplog.set_level(logging.DEBUG)
    password = PASSWORD[:20]
    credentials = alphapoint.PasswordCredentials("alice", password)
    with anyio.fail_after(LIMIT):
        async with serve_raw(closing_with(1008, f"wrong {password}")) as server:
            with pytest.raises(ConnectionClosed) as info:
                async with alphapoint.connect(
                    server.url, credentials=credentials, reconnect=False, close_timeout=SHORT
                ):
                    pass
    assert info.value.reason == f"wrong {REDACTED}"
    assert password not in everything_shown(info.value, caplog)


def test_one_pass_never_scrubs_inside_the_marker_it_put_in() -> None:
    """A value that is part of the marker itself ("dact" in "<redacted>"): one pass
    replaces what the text held, not what the pass put in."""
    secrets = SecretSet([PASSWORD, "dact"])
    assert secrets.scrub(f"{PASSWORD} and dact") == f"{REDACTED} and {REDACTED}"


# -- the session's own secrets, echoed back in what it reads ----------------------------------


def echoing(how: str) -> Callable[[ScriptedConnection], Any]:
    """A gateway that repeats a secret it was sent (or gave) in a refusal or close."""

    async def script(connection: ScriptedConnection) -> None:
        token = "tok-" + "7f3a9c2e5b1d4f60"
        async for request in connection.requests():
            payload = request.payload if isinstance(request.payload, dict) else {}
            sent = payload.get("Password") or payload.get("Signature") or payload.get("Code")
            if request.function == "AuthenticateUser" and how == "login errormsg":
                await connection.reply(
                    request, {"Authenticated": False, "errormsg": f"bad credentials {sent}"}
                )
            elif request.function == "AuthenticateUser" and how == "2fa errormsg":
                await connection.reply(
                    request, {"Authenticated": True, "Requires2FA": True, "TwoFAType": "Google"}
                )
            elif request.function == "Authenticate2FA":
                await connection.reply(
                    request, {"Authenticated": False, "errormsg": f"code {sent} is wrong"}
                )
            elif request.function == "AuthenticateUser":
                await connection.reply(request, login_reply(token))
            elif how == "call detail":
                refusal = {"result": False, "errormsg": "no", "errorcode": 100}
                await connection.reply(request, {**refusal, "detail": f"session {token}"})
            elif how == "m=5 text":
                await connection.reply(request, f"unknown session {token}", type=MessageType.ERROR)
            elif how == "close reason":
                await connection.close(4000, f"session {token} expired")
            else:
                await connection.reply(request, {"result": True, "errorcode": 0})

    return script


API_KEY = alphapoint.ApiKeyCredentials(
    api_key="k3y-echo", api_secret="s3cr3t-key-9", user_id="7", nonces=lambda: "1234567890"
)
#: hex(HMAC-SHA256(secret, nonce + user_id + api_key)), worked out here, not by the library.
API_SIGNATURE = hmac.new(b"s3cr3t-key-9", b"12345678907k3y-echo", hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("how", "credentials"),
    [
        ("login errormsg", alphapoint.PasswordCredentials("alice", PASSWORD)),
        ("login errormsg", API_KEY),
        ("2fa errormsg", alphapoint.PasswordCredentials("alice", PASSWORD)),
        ("call detail", alphapoint.PasswordCredentials("alice", PASSWORD)),
        ("m=5 text", alphapoint.PasswordCredentials("alice", PASSWORD)),
        ("close reason", alphapoint.PasswordCredentials("alice", PASSWORD)),
    ],
)
async def test_no_secret_the_session_sent_or_got_shows_when_the_gateway_echoes_it(
    how: str, credentials: alphapoint.Credentials, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = ["tok-7f3a9c2e5b1d4f60", "246810"]
    if isinstance(credentials, alphapoint.PasswordCredentials):
        secrets.append(credentials.password)
    else:
        secrets += [credentials.api_secret, API_SIGNATURE]
    raised: list[BaseException] = []
    async with serve_script(echoing(how)) as server:
        with anyio.fail_after(LIMIT):
            try:
                async with alphapoint.connect(
                    server.url,
                    credentials=credentials,
                    two_factor="246810",
                    reconnect=alphapoint.Backoff(initial=0.01, max_attempts=0),
                    close_timeout=SHORT,
                ) as session:
                    await session.call("GetUserInfo")
            except alphapoint.AlphaPointError as exc:
                raised.append(exc)
    assert raised, "the gateway's refusal raised nothing"
    shown = everything_shown(raised[0], caplog)
    for secret in secrets:
        assert secret not in shown, (how, secret)
    assert REDACTED in shown

"""Traffic transcribed from live gateways and public clients, replayed through the public API.

Each file in tests/captures/ names its source (repository, path, commit; see
docs/protocol-captures.md). A scripted gateway answers each request the
client sends with the gateway frames that follow it in the capture (replies
take the request's ``i``); the test makes the same request through
``alphapoint``'s public API and checks what the capture says should happen:
the reply (or the refusal, as its typed error), and for a subscription, which
of the pushed events reach it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

import alphapoint
from alphapoint.frame import Frame, MessageType
from alphapoint.testing.scripted import ScriptedConnection, serve_script

from .helpers import LIMIT

pytestmark = pytest.mark.anyio

CAPTURES = sorted((Path(__file__).parent / "captures").glob("*.json"))

#: Where array-shaped entries name their instrument (the captures' own field order).
POSITIONS = {"Level2UpdateEvent": 7, "TradeDataUpdateEvent": 1, "TickerDataUpdateEvent": 8}
#: The event names each subscription starts (AlphaPoint's documentation).
STARTS = {
    "SubscribeLevel1": {"Level1UpdateEvent"},
    "SubscribeLevel2": {"Level2UpdateEvent"},
    "SubscribeTrades": {"TradeDataUpdateEvent"},
    "SubscribeTicker": {"TickerDataUpdateEvent"},
}
#: HTTP names of calls that the captures' sources made over HTTP.
OVER_WEBSOCKET = {"Authenticate": "AuthenticateUser"}


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_every_capture_names_its_source() -> None:
    assert len(CAPTURES) >= 10
    for path in CAPTURES:
        source = load(path)["source"]
        assert source["repository"].count("/") == 1, path
        assert len(source["commit"]) == 40, path
        int(source["commit"], 16)
        assert source["path"], path
        assert source["note"], path


def steps(capture: dict[str, Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each client frame with the gateway frames that answer it, in order."""
    out: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for frame in capture["frames"]:
        if frame["direction"] == "client":
            out.append((frame, []))
        elif out:
            out[-1][1].append(frame)
    return out


def replayer(capture: dict[str, Any]) -> Any:
    """A gateway that answers each captured request with the frames that followed it.

    A request the capture does not have next (an unsubscribe as a block ends,
    a LogOut) gets a plain standard answer. A captured reply to a different
    function than the request's goes out with an ``i`` no request has.
    """
    pending = steps(capture)

    async def script(connection: ScriptedConnection) -> None:
        async for request in connection.requests():
            expected = (
                OVER_WEBSOCKET.get(pending[0][0]["n"], pending[0][0]["n"]) if pending else None
            )
            if request.function != expected:
                await connection.reply(request, {"result": True, "errorcode": 0})
                continue
            for frame in pending.pop(0)[1]:
                function = OVER_WEBSOCKET.get(frame["n"], frame["n"])
                if frame["m"] == 3:
                    seq = frame["i"]
                else:
                    seq = request.seq if function == request.function else 10**6 + frame["i"]
                kind = MessageType(frame["m"])
                await connection.send_frame(Frame(kind, seq, function, frame["o"]))

    return script


def refusal(frame: dict[str, Any]) -> tuple[type[alphapoint.RequestError], int | None] | None:
    """The typed error a gateway frame stands for, by the documented codes; None if none."""
    payload = frame["o"]
    if frame["m"] == 5:
        return alphapoint.RequestError, None
    if isinstance(payload, dict) and payload.get("result") is False:
        code = payload.get("errorcode")
        if code == 107:
            return None
        classes = {
            20: alphapoint.NotAuthorized,
            100: alphapoint.InvalidRequest,
            101: alphapoint.OperationFailed,
            102: alphapoint.ServerError,
            104: alphapoint.ResourceNotFound,
            106: alphapoint.OperationNotSupported,
            909: alphapoint.AlreadySubscribed,
        }
        known = code if type(code) is int else -1
        return classes.get(known, alphapoint.RequestError), code
    return None


def names_instrument(event: dict[str, Any], instrument: Any) -> bool | None:
    """Whether ``event`` is about ``instrument`` (None: it names no instrument)."""
    payload = event["o"]
    if isinstance(payload, dict):
        named = payload.get("InstrumentId")
        return None if named is None else str(named) == str(instrument)
    position = POSITIONS.get(event["n"])
    if position is None or not payload:
        return None
    return all(str(entry[position]) == str(instrument) for entry in payload)


async def subscribe_step(
    session: alphapoint.Session, client: dict[str, Any], gateway: list[dict[str, Any]]
) -> None:
    reply = next(f for f in gateway if f["m"] in (1, 5) and f["n"] == client["n"])
    refused = refusal(reply)
    events = [f for f in gateway if f["m"] == 3]
    everything = session.events()
    async with everything:
        if refused is not None:
            with pytest.raises(refused[0]) as info:
                async with session.subscribe(client["n"], client["o"]):
                    pass
            assert info.value.code == refused[1]
            return
        async with session.subscribe(client["n"], client["o"]) as subscription:
            assert subscription.snapshot == reply["o"]
            instrument = client["o"].get("InstrumentId")
            if instrument is None:  # by Symbol: the snapshot names the id, if it can
                named = {
                    str(entry[POSITIONS[next(iter(STARTS[client["n"]]))]])
                    for entry in reply["o"]
                    if isinstance(reply["o"], list) and client["n"] in ("SubscribeLevel2",)
                }
                instrument = named.pop() if len(named) == 1 else None
            # Every pushed event reaches the catch-all stream; by then routing is done.
            for _ in events:
                await everything.__anext__()
            expected = [
                event["o"]
                for event in events
                if event["n"] in STARTS.get(client["n"], set())
                and (instrument is None or names_instrument(event, instrument) is not False)
            ]
            got = [(await subscription.__anext__()).payload for _ in expected]
            assert got == expected
            with anyio.move_on_after(0) as nothing_more:
                extra = await subscription.__anext__()
                pytest.fail(f"an event reached the wrong subscription: {extra}")
            assert nothing_more.cancelled_caught


@pytest.mark.parametrize("path", CAPTURES, ids=[path.stem for path in CAPTURES])
async def test_replayed_capture(path: Path) -> None:
    capture = load(path)
    async with (
        serve_script(replayer(capture)) as server,
        alphapoint.connect(server.url, logout_on_close=False, keepalive=None) as session,
    ):
        with anyio.fail_after(LIMIT):
            for client, gateway in steps(capture):
                function = OVER_WEBSOCKET.get(client["n"], client["n"])
                if function.startswith("Subscribe"):
                    await subscribe_step(session, client, gateway)
                elif function == "AuthenticateUser":
                    result = await session.authenticate(
                        alphapoint.PasswordCredentials("captured", "captured-password")
                    )
                    reply = gateway[0]["o"]
                    assert result.authenticated is reply.get("Authenticated", False)
                    requires = reply.get("Requires2FA", False)
                    assert result.requires_2fa is requires
                    if requires:
                        kind = reply.get("TwoFAType") or reply.get("AuthType")
                        assert result.two_fa_type == kind
                        token = reply.get("TwoFAToken") or reply.get("Pending2FaToken")
                        assert result.two_fa_token == (token or None)
                elif function == "Authenticate2FA":
                    result = await session.authenticate_2fa(client["o"]["Code"])
                    reply = gateway[0]["o"]
                    assert result.authenticated is reply["Authenticated"]
                    assert result.user_id == reply.get("UserId")
                else:
                    refused = refusal(gateway[0])
                    if refused is None:
                        assert await session.call(function, client["o"]) == gateway[0]["o"]
                    else:
                        with pytest.raises(refused[0]) as info:
                            await session.call(function, client["o"])
                        assert info.value.code == refused[1]

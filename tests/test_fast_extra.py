"""The ``fast`` extra (picows, orjson, msgspec): optional, chosen where it can be, refused
where not.

The transport, fault and hostile-gateway suites run against the picows driver
through the loop matrix (tests/conftest.py), and the frame codec's tests run on
each JSON library; these are what is left: the install without the extra, and
the choice of driver.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap

import anyio
import anyio.abc
import pytest

import alphapoint
from alphapoint import NetworkError, UsageError
from alphapoint.drivers import Driver, choose, open_websocket
from alphapoint.frame import Frame, MessageType, decode_frame, encode_frame
from alphapoint.testing import GatewayFixture
from alphapoint.testing.scripted import serve_tcp

from .helpers import LIMIT, SHORT


def run_without(code: str, *modules: str) -> str:
    """``code`` run in a fresh interpreter in which ``modules`` cannot be imported."""
    blocked = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    done = subprocess.run(
        [sys.executable, "-c", blocked + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=LIMIT * 4,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_without_the_extra(code: str) -> str:
    """``code`` run in a fresh interpreter without the fast extra's packages."""
    return run_without(code, "picows", "orjson", "msgspec")


def test_the_default_install_needs_neither_picows_nor_orjson() -> None:
    out = run_without_the_extra(
        """
        import asyncio
        import alphapoint
        from alphapoint import jsoncodec
        from alphapoint.drivers import choose
        from alphapoint.frame import Frame, MessageType, decode_frame, encode_frame

        print(choose.auto_on_asyncio, [c.name for c in jsoncodec.CODECS])
        text = encode_frame(Frame(MessageType.REQUEST, 2, "Ping", {"a": [1, 2.5, None]}))
        print(text)
        print(decode_frame(text).payload)

        async def picows() -> None:
            try:
                await alphapoint.drivers.open_websocket("ws://127.0.0.1:9/", driver="picows")
            except alphapoint.UsageError as exc:
                print(exc)

        asyncio.run(picows())
        """
    )
    assert out.splitlines() == [
        "asyncio ['json']",
        '{"m":0,"i":2,"n":"Ping","o":"{\\"a\\":[1,2.5,null]}"}',
        "{'a': [1, 2.5, None]}",
        "driver='picows' needs picows: pip install 'alphapoint[fast]'",
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_proxy_is_never_given_to_the_picows_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # picows would connect without the proxy: refused, and "auto" takes the
    # anyio driver, which knows proxies (tests/test_proxy.py runs through it).
    monkeypatch.setattr(choose, "auto_on_asyncio", "picows")
    proxy = "http://127.0.0.1:9"
    with pytest.raises(UsageError, match="a proxy needs driver='anyio'"):
        await open_websocket("ws://127.0.0.1:9/", proxy=proxy, driver="picows")
    with pytest.raises(alphapoint.ConnectError, match=r"proxy 127\.0\.0\.1:9"):
        await open_websocket("ws://127.0.0.1:9/", proxy=proxy, open_timeout=LIMIT)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_picows_is_refused_under_trio() -> None:
    with pytest.raises(UsageError, match="needs an asyncio event loop"):
        await open_websocket("ws://127.0.0.1:9/", driver="picows")


if choose.picows_installed():  # without picows, there is no such choice (and no test)

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_picows_can_be_chosen_or_declined_by_name(
        alphapoint_gateway: GatewayFixture,
    ) -> None:
        choices: list[tuple[Driver, str]] = [
            ("picows", "PicowsWebSocket"),
            ("asyncio", "AsyncioWebSocket"),
        ]
        for driver, expected in choices:
            websocket = await open_websocket(alphapoint_gateway.url, driver=driver)
            try:
                assert type(websocket).__name__ == expected
            finally:
                await websocket.abort()

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_the_openers_bound_alone_ends_a_stalled_picows_handshake() -> None:
        """picows is given no bound of its own (a second timer per connection):
        the opener's deadline ends a stalled handshake, with the ``NetworkError``
        that names it, and the connection is shut down, not left to picows."""
        hung_up = anyio.Event()

        async def stall(stream: anyio.abc.ByteStream) -> None:
            # Read the request, never answer; return once the client hangs up.
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                while True:
                    await stream.receive()
            hung_up.set()

        async with serve_tcp(stall) as server:
            with anyio.fail_after(LIMIT):
                with pytest.raises(NetworkError) as info:
                    await open_websocket(server.url, driver="picows", open_timeout=SHORT)
                assert f"within {SHORT} s" in str(info.value)
                await hung_up.wait()  # a connection left open would never end


@pytest.mark.usefixtures("codec")
@pytest.mark.parametrize(
    "number", [2**63, -(2**63) - 1, 2**64, 2**70, -(10**30), 12345678901234567890123]
)
def test_integers_beyond_64_bits_are_read_and_written_exactly(number: int) -> None:
    # orjson reads them as floats and cannot write them: the codec leaves them
    # to the standard library (tests/conftest.py runs this with each).
    text = encode_frame(Frame(MessageType.REQUEST, 2, "Big", {"n": number, "l": [number]}))
    assert text == f'{{"m":0,"i":2,"n":"Big","o":"{{\\"n\\":{number},\\"l\\":[{number}]}}"}}'
    payload = decode_frame(text).payload
    assert payload == {"n": number, "l": [number]}
    assert type(payload["n"]) is int


@pytest.mark.usefixtures("codec")
def test_none_in_a_payload_is_written_as_null() -> None:
    # orjson writes NaN as null too: a text with a null is written again by
    # the standard library, which tells them apart.
    frame = Frame(MessageType.REQUEST, 2, "X", {"a": None, "b": [None, 1.5]})
    assert encode_frame(frame) == '{"m":0,"i":2,"n":"X","o":"{\\"a\\":null,\\"b\\":[null,1.5]}"}'

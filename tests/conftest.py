"""Every async test runs on four event loops and drivers (six with picows; ids in brackets):

* ``asyncio``: asyncio's loop, direct connections on the asyncio protocol driver
  (what ``driver="auto"`` takes under asyncio without picows);
* ``asyncio-picows``, ``uvloop-picows``: asyncio's and uvloop's loops, direct
  connections on the picows driver (what ``driver="auto"`` takes with the
  ``fast`` extra). Only where picows is installed: the ``dev`` extra has it, so
  CI runs them; without it these ids do not exist (nothing is skipped);
* ``asyncio-anyio``: asyncio's loop, every connection on the anyio stream driver
  (``alphapoint.drivers.choose.auto_on_asyncio`` set to ``"anyio"``);
* ``uvloop``: uvloop's loop, on the asyncio protocol driver (not on Windows,
  where uvloop does not install: the ``dev`` extra leaves it out there too);
* ``trio``: trio, on the anyio stream driver (the only one trio has).

A test that depends on the driver asks the ``driver`` fixture which one a
direct connection takes, never the backend's name.

``codec`` (in :mod:`tests.test_frame` and :mod:`tests.test_strict_json`)
runs the frame codec's tests once per JSON library installed.

``deaf_gateway_url`` is a WebSocket server that stops reading at the socket.

``python -m pytest --shuffle SEED`` runs the tests in an order drawn from SEED
(the flake hunt, ``scripts/flake_hunt.py``, passes a new one each run); the
same SEED gives the same order again.
"""

from __future__ import annotations

import random
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from websockets.http11 import Request
from websockets.server import ServerProtocol

from alphapoint import frame, jsoncodec
from alphapoint.drivers import Driver, choose


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--shuffle",
        type=int,
        metavar="SEED",
        help="run the tests in a random order drawn from SEED (the same SEED, the same order)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    seed = config.getoption("shuffle")
    if seed is not None:
        random.Random(seed).shuffle(items)


def pytest_report_header(config: pytest.Config) -> str | None:
    seed = config.getoption("shuffle")
    return None if seed is None else f"test order: shuffled with --shuffle {seed}"


#: (anyio backend, what ``driver="auto"`` takes under asyncio), by test id.
LOOPS: dict[str, tuple[str | tuple[str, dict[str, Any]], Driver]] = {
    "asyncio": ("asyncio", "asyncio"),
    "asyncio-anyio": ("asyncio", "anyio"),
    "uvloop": (("asyncio", {"use_uvloop": True}), "asyncio"),
    "trio": ("trio", "anyio"),
}
if choose.picows_installed():
    LOOPS["asyncio-picows"] = ("asyncio", "picows")
    LOOPS["uvloop-picows"] = (("asyncio", {"use_uvloop": True}), "picows")
if sys.platform == "win32":  # uvloop does not run there
    del LOOPS["uvloop"]
    LOOPS.pop("uvloop-picows", None)


@pytest.fixture(params=list(LOOPS))
def anyio_backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> str | tuple[str, dict[str, Any]]:
    backend, auto = LOOPS[request.param]
    if auto != choose.auto_on_asyncio:
        monkeypatch.setattr(choose, "auto_on_asyncio", auto)
    return backend


@pytest.fixture
def driver(anyio_backend: object, anyio_backend_name: str) -> Driver:
    """The driver a direct connection takes in this test: ``"picows"``, ``"asyncio"``
    or ``"anyio"``.

    It follows the ``anyio_backend`` fixture, including a module's own.
    """
    return choose.auto_on_asyncio if anyio_backend_name == "asyncio" else "anyio"


@pytest.fixture(scope="module", params=jsoncodec.CODECS, ids=[c.name for c in jsoncodec.CODECS])
def codec(request: pytest.FixtureRequest) -> Iterator[jsoncodec.Codec]:
    """The frame codec on each JSON library installed (msgspec, orjson, json), in turn."""
    chosen: jsoncodec.Codec = request.param
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frame, "read_json", chosen.read)
        patch.setattr(frame, "read_json_loose", chosen.read_loose)
        patch.setattr(frame, "scan_json", chosen.scan)
        patch.setattr(frame, "write_json", chosen.write)
        patch.setattr(frame, "read_envelope", chosen.envelope)
        yield chosen


class DeafGateway:
    """A WebSocket server that completes the handshake, then never reads again.

    Plain blocking sockets in a thread of its own, so that nothing reads for
    it: an anyio stream under asyncio goes on reading into its queue between
    two ``receive()`` calls, and would take whatever the client writes. Its
    receive buffer is made small and is never emptied, so once the client's
    send buffer is full too, the client's writes wait for good. How much the
    kernel buffers on the way depends on the machine: tests assert nothing
    about it. It accepts one connection, and keeps it until the test ends.
    """

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Set before listen(): an accepted socket takes its buffer size (and
        # so its advertised window) from the listener.
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self._listener.settimeout(0.05)  # to look at _stop while no one connects
        port = self._listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/WSGateway/"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="deaf gateway", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with self._listener:
            while not self._stop.is_set():
                try:
                    connection, _ = self._listener.accept()
                except TimeoutError:
                    continue
                with connection:
                    connection.settimeout(10.0)  # for the handshake: a bug fails, never hangs
                    if self._handshake(connection):
                        self._stop.wait()  # never reads again
                return

    @staticmethod
    def _handshake(connection: socket.socket) -> bool:
        protocol = ServerProtocol()
        events: list[object] = []
        while not events:
            data = connection.recv(4096)
            if not data:
                return False
            protocol.receive_data(data)
            events = list(protocol.events_received())
        request = events[0]
        assert isinstance(request, Request)
        protocol.send_response(protocol.accept(request))
        connection.sendall(b"".join(protocol.data_to_send()))
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10.0)
        assert not self._thread.is_alive()


@pytest.fixture
def deaf_gateway_url() -> Iterator[str]:
    """The URL of a WebSocket server that stops reading after the handshake
    (:class:`DeafGateway`)."""
    gateway = DeafGateway()
    try:
        yield gateway.url
    finally:
        gateway.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A certificate authority for the TLS tests' gateways and clients."""
    return trustme.CA()

"""Every async test runs on four event loops and drivers (ids in brackets):

* ``asyncio``: asyncio's loop, direct connections on the asyncio protocol driver
  (what ``driver="auto"`` takes under asyncio);
* ``asyncio-anyio``: asyncio's loop, every connection on the anyio stream driver
  (``alphapoint.drivers.choose.auto_on_asyncio`` set to ``"anyio"``);
* ``uvloop``: uvloop's loop, on the asyncio protocol driver (not on Windows,
  where uvloop does not install: the ``dev`` extra leaves it out there too);
* ``trio``: trio, on the anyio stream driver (the only one trio has).

A test that depends on the driver asks the ``driver`` fixture which one a
direct connection takes, never the backend's name.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from alphapoint.drivers import Driver, choose

#: (anyio backend, what ``driver="auto"`` takes under asyncio), by test id.
LOOPS: dict[str, tuple[str | tuple[str, dict[str, Any]], Driver]] = {
    "asyncio": ("asyncio", "asyncio"),
    "asyncio-anyio": ("asyncio", "anyio"),
    "uvloop": (("asyncio", {"use_uvloop": True}), "asyncio"),
    "trio": ("trio", "anyio"),
}
if sys.platform == "win32":  # uvloop does not run there
    del LOOPS["uvloop"]


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
    """The driver a direct connection takes in this test: ``"asyncio"`` or ``"anyio"``.

    It follows the ``anyio_backend`` fixture, including a module's own.
    """
    return choose.auto_on_asyncio if anyio_backend_name == "asyncio" else "anyio"

"""Serving a gateway from a thread of its own, with an event loop of its own.

The test's event loop (asyncio's, trio's, pytest-asyncio's, or none at all in a
synchronous test) then never has to run the gateway: the gateway answers
whatever the test's loop is doing, and a subprocess or a blocking client can
reach it. The gateway's async test hooks (``publish``, ``send_event``,
``running.stop()``...) awaited from another thread's loop run on the
gateway's loop by themselves (``home.on_home_loop``); :meth:`GatewayThread.run`
calls one from synchronous code.

The rule for everything else: plain attributes and tables (``route()``,
``add_user()``, ``casing``, ``answer_pings``...) may be set from the test's
thread at any time and hold from the next request the gateway reads; the
logs (``requests``, ``issued_tokens``, ``handler_errors``) are appended to
by the gateway's thread, and a request is logged before it is answered, so
once a client has its reply the log shows the request.
"""

from __future__ import annotations

import contextlib
import functools
import ssl as ssl_module
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import anyio.from_thread

from .gateway import Gateway, RunningGateway
from .home import Home

__all__ = ["GatewayThread"]

T = TypeVar("T")


class GatewayThread:
    """A :class:`Gateway` listening on a free port, served from a thread with its own loop.

    ::

        with GatewayThread(gateway) as served:
            subprocess.run(["my-bot", served.url], check=True)
            served.run(gateway.publish, "Level1UpdateEvent", {"InstrumentId": 1})

    Leaving the block stops the gateway (every connection is cut, every
    handler still running is cancelled) and joins the thread. The loop is
    asyncio's; route handlers run on it, so they must not block: an ``async``
    handler awaits instead (``anyio.to_thread.run_sync`` for a blocking wait).
    """

    def __init__(
        self,
        gateway: Gateway,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl: ssl_module.SSLContext | None = None,
        path: str = "/WSGateway/",
    ) -> None:
        self.gateway = gateway
        self._serve = functools.partial(gateway.serve, host=host, port=port, ssl=ssl, path=path)
        self._running: RunningGateway | None = None
        self._home: Home | None = None
        self._stack: contextlib.ExitStack | None = None

    @property
    def running(self) -> RunningGateway:
        """The listening gateway (its ``port``, ``stop()``, ``start()``)."""
        if self._running is None:
            raise RuntimeError("the gateway runs only inside `with GatewayThread(...)`")
        return self._running

    @property
    def url(self) -> str:
        """The URL clients connect to."""
        return self.running.url

    def __enter__(self) -> GatewayThread:
        if self._stack is not None:
            raise RuntimeError("this GatewayThread is already running")
        with contextlib.ExitStack() as stack:
            portal = stack.enter_context(anyio.from_thread.start_blocking_portal("asyncio"))
            home = Home(portal, portal.call(threading.get_ident))
            self.gateway._home = home
            stack.callback(setattr, self.gateway, "_home", None)
            running = stack.enter_context(portal.wrap_async_context_manager(self._serve()))
            self._home, self._running, self._stack = home, running, stack.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._running = self._home = None
        if stack is not None:
            stack.__exit__(exc_type, exc, tb)

    def run(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await func(*args)`` on the gateway's loop and return its result.

        For synchronous code: ``served.run(gateway.publish, name, payload)``,
        ``served.run(served.running.stop)``. Not from the gateway's own loop.
        """
        if self._home is None:
            raise RuntimeError("the gateway runs only inside `with GatewayThread(...)`")
        return self._home.call(func, *args)

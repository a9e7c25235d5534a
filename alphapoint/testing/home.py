"""The event loop a gateway is served on, and how its hooks get there from another.

Connections belong to the loop that accepted them. When the gateway runs in a
thread of its own (:class:`GatewayThread`), its async hooks awaited from the
test's loop must run on the gateway's: :func:`on_home_loop` takes them there.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread

__all__ = ["Home", "on_home_loop"]

T = TypeVar("T")
P = ParamSpec("P")


class Home:
    """The event loop a gateway is served on, when it runs in a thread of its own."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, thread_id: int) -> None:
        self._portal = portal
        self._thread_id = thread_id

    def is_current(self) -> bool:
        """Whether the caller runs on the home loop's thread."""
        return threading.get_ident() == self._thread_id

    async def run(self, func: Callable[[], Awaitable[T]]) -> T:
        """Await ``func()`` run on the home loop, from another thread's loop (any backend).

        Cancelling the caller cancels ``func`` on the home loop.
        """
        future = self._portal.start_task_soon(func)
        try:
            return await anyio.to_thread.run_sync(future.result, abandon_on_cancel=True)
        finally:
            future.cancel()  # a no-op once it is done

    def call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``func(*args)`` on the home loop, blocking this thread until it is done."""
        return self._portal.call(func, *args)


class _Homed(Protocol):
    @property
    def _home(self) -> Home | None: ...


S = TypeVar("S", bound=_Homed)


def on_home_loop(
    method: Callable[Concatenate[S, P], Awaitable[T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Make an async method of the gateway run on the gateway's own loop whoever awaits it.

    Connections belong to the loop that accepted them: writing to one from
    another loop (or thread) would corrupt it. Awaited on the home loop (or
    when the gateway runs on the caller's loop) the method runs as written.
    """

    @functools.wraps(method)
    async def run_at_home(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        home = self._home
        if home is None or home.is_current():
            return await method(self, *args, **kwargs)
        return await home.run(functools.partial(method, self, *args, **kwargs))

    return run_at_home

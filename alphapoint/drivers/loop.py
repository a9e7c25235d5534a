"""Which event loop is running, and its own clock and event for a waiting call.

The one place that answers "is this asyncio?": the driver chooser, the
drivers and the connection all ask :func:`current_loop`. anyio answers the
same question on every call of its own API; asking once per connection and
keeping the loop's own clock and event costs nothing per call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

__all__ = ["EventLike", "Loop", "current_loop", "native_clock_and_event"]

#: The event loops the library runs on (uvloop is an asyncio loop).
Loop = Literal["asyncio", "trio"]


def current_loop() -> Loop:
    """The event loop running the current task: ``"asyncio"`` (or uvloop) or ``"trio"``.

    Raises :class:`RuntimeError` outside of any async context.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        if asyncio.current_task() is not None:
            return "asyncio"
    try:
        import trio
    except ImportError:  # pragma: no cover - trio is optional
        pass
    else:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            return "trio"
    raise RuntimeError("no asyncio or trio event loop is running in this thread")


class EventLike(Protocol):
    """What a caller waits on: ``trio.Event``, or a one-shot future under asyncio."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self) -> Awaitable[object]: ...


class _Signal(asyncio.Future[None]):
    """What a call waits on under asyncio: an ``asyncio.Event`` for one waiter, as a bare future.

    A call's event is set once and waited on by its caller alone; a future
    does that without the event's waiter list and the extra future per wait.
    """

    __slots__ = ()

    def set(self) -> None:
        if not self.done():
            self.set_result(None)

    def is_set(self) -> bool:
        return self.done()

    def wait(self) -> _Signal:
        return self


def native_clock_and_event() -> tuple[Callable[[], float], Callable[[], EventLike]]:
    """anyio's clock and a call's event, as the running event loop's own.

    Through anyio each costs a lookup of the running library on every call;
    the loop's own (``loop.time`` and a future, or trio's) do not.
    """
    if current_loop() == "asyncio":
        loop = asyncio.get_running_loop()
        if type(loop).time is asyncio.BaseEventLoop.time:
            # asyncio's own loop reads time.monotonic() in a method of Python;
            # the function itself is the same clock without the frame (uvloop
            # keeps a clock of its own, in C).
            return time.monotonic, _Signal
        return loop.time, _Signal
    import trio

    return trio.current_time, trio.Event

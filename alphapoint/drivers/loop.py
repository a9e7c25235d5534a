"""Which event loop is running, and its own clock and event for a waiting call.

The one place that answers "is this asyncio?": the driver chooser, the
drivers and the connection all ask :func:`current_loop`. anyio answers the
same question on every call of its own API; asking once per connection and
keeping the loop's own clock and event costs nothing per call.
"""

from __future__ import annotations

import asyncio
import sys
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Literal, Protocol, TypeVar

__all__ = [
    "EventLike",
    "Loop",
    "LoopLocal",
    "Wakeup",
    "asyncio_clock",
    "asyncio_clock_and_event",
    "current_loop",
    "lone_cancellation",
    "native_clock_and_event",
    "new_wakeup",
]

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio depends on there
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

T = TypeVar("T")

#: The event loops the library runs on (uvloop is an asyncio loop).
Loop = Literal["asyncio", "trio"]


def current_loop() -> Loop:
    """The event loop running the current task: ``"asyncio"`` (or uvloop) or ``"trio"``.

    Raises :class:`RuntimeError` outside of any async context.
    """
    if _asyncio_loop() is not None:
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


def _asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop running the current task (``None``: not asyncio's task),
    as :func:`current_loop` and :meth:`LoopLocal.get` ask it."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    # The loop given: current_task does not ask for the running loop again.
    return loop if asyncio.current_task(loop) is not None else None


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
        return asyncio_clock(asyncio.get_running_loop()), _Signal
    import trio

    return trio.current_time, trio.Event


def asyncio_clock_and_event(
    loop: asyncio.AbstractEventLoop,
) -> tuple[Callable[[], float], Callable[[], EventLike]]:
    """:func:`native_clock_and_event` for a caller that knows the asyncio loop
    it runs on (a driver on its callbacks): without asking which loop runs."""
    return asyncio_clock(loop), _Signal


def asyncio_clock(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """``loop.time``, read the cheapest way.

    asyncio's own loop reads time.monotonic() in a method of Python; the
    function itself is the same clock without the frame (uvloop keeps a
    clock of its own, in C).
    """
    if type(loop).time is asyncio.BaseEventLoop.time:
        return time.monotonic
    return loop.time


class LoopLocal(Generic[T]):
    """One value per running event loop, made by ``factory`` on first use there.

    For what all the sessions of a loop share (the alarm clock, the limit on
    connections being opened at once) and must not outlive it: under asyncio
    it is kept by the loop object (weakly), under trio in a ``RunVar``.
    """

    def __init__(self, name: str, factory: Callable[[], T]) -> None:
        self._name = name
        self._factory = factory
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )
        self._run_var: Any = None

    def get(self) -> T:
        """The running loop's value. Raises :class:`RuntimeError` outside of one."""
        loop = _asyncio_loop()  # current_loop()'s question, keeping the loop it found
        if loop is not None:
            return self.get_for(loop)
        current_loop()  # trio, or RuntimeError outside of any loop
        import trio

        if self._run_var is None:
            self._run_var = trio.lowlevel.RunVar(self._name)
        try:
            found: T = self._run_var.get()
        except LookupError:
            found = self._factory()
            self._run_var.set(found)
        return found

    def get_for(self, loop: asyncio.AbstractEventLoop) -> T:
        """The value of ``loop``, an asyncio loop the caller runs on (and holds):
        :meth:`get` without asking which loop runs."""
        value = self._by_loop.get(loop)
        if value is None:
            value = self._by_loop[loop] = self._factory()
        return value


class Wakeup(Protocol):
    """A task's own alarm bell, rung any number of times: ``wait()`` returns once
    ``set()`` was called since the last ``wait()`` returned (at once if it was).

    An event can be set once only: a task that waits again and again (a
    connection's alarm task, once per keepalive interval) would make a new one,
    three objects under trio, for every wait, each living until the next ring
    and so into the garbage collector's oldest generation. A wakeup is made once.
    """

    def set(self) -> None: ...
    def wait(self) -> Awaitable[None]: ...


class _AsyncioWakeup:
    """A wakeup under asyncio: a future per wait (asyncio has no cheaper park)."""

    __slots__ = ("_rung", "_waiter")

    def __init__(self) -> None:
        self._rung = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        else:
            self._rung = True

    async def wait(self) -> None:
        if self._rung:
            self._rung = False
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class _TrioWakeup:
    """A wakeup under trio: the task parks itself; nothing is made per wait."""

    __slots__ = ("_abort_fn", "_rung", "_task")

    def __init__(self) -> None:
        self._rung = False
        self._task: Any = None
        self._abort_fn = self._abort  # bound once, not at every wait

    def set(self) -> None:
        import trio

        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task)
        else:
            self._rung = True

    async def wait(self) -> None:
        import trio

        if self._rung:
            self._rung = False
            await trio.lowlevel.checkpoint()
            return
        self._task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort_fn)

    def _abort(self, raise_cancel: Any) -> Any:
        import trio

        self._task = None  # cancelled while parked: nobody to reschedule
        return trio.lowlevel.Abort.SUCCEEDED


def new_wakeup() -> Wakeup:
    """A :class:`Wakeup` for the running event loop."""
    return _AsyncioWakeup() if current_loop() == "asyncio" else _TrioWakeup()


def lone_cancellation(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The first ``trio.Cancelled`` of a trio nursery's ``group`` if the group
    holds nothing else (a cancellation from outside, to raise as one, as
    anyio's task groups do), else ``None`` (the group is to be raised)."""
    import trio

    cancelled, rest = group.split(trio.Cancelled)
    if rest is not None or cancelled is None:
        return None
    found: BaseException = cancelled
    while isinstance(found, BaseExceptionGroup) and found.exceptions:
        found = found.exceptions[0]
    return found

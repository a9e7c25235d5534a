"""Who owns a session's tasks: starts them, cancels them, waits for every one.

Every task of a session (its connection's reader, a reconnect, a re-login)
has an owner, and ``async with connect(...)`` does not exit before each has
ended. Under trio the owner is a nursery of trio's; under asyncio (and
uvloop) it is the loop's own tasks in a set. anyio's task group, which both
replace, costs a session a cancel scope and, for every task, a handle, its
coroutine, two events and a cancel scope of their own (about a sixth of an
idle session's objects, and some 270 function calls of a login under cProfile;
docs/performance.md, "The session's tasks and the login, sixth session"),
and ``asyncio.TaskGroup`` exists from Python 3.11 only.

Neither owner lets an exception out of its tasks: what the session starts
catches its own failures (:meth:`Session._guarded`), so no task's error can
cancel the user's block or come out of ``connect`` in an ExceptionGroup. One
that slips through anyway (a bug) is logged by the asyncio owner; trio's
nursery would raise it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Any, Protocol

import anyio

from .drivers.loop import Loop, current_loop, lone_cancellation

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio depends on there
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["TaskOwner", "new_task_owner"]

logger = logging.getLogger("alphapoint.session")


class TaskOwner(Protocol):
    """Starts tasks, cancels them all, and waits until every one has ended."""

    def start(self, coro: Coroutine[Any, Any, None], *, name: str) -> None:
        """Run ``coro`` in a new task named ``name``."""

    def cancel_all(self) -> None:
        """Cancel every task still running (nothing, if none is)."""

    async def wait_all(self) -> None:
        """Wait until every task has ended, even when cancelled (then re-raised);
        start nothing more after it."""


def new_task_owner(loop: Loop | None = None) -> AsyncioTaskOwner | TrioTaskOwner:
    """The running loop's owner: the loop's own tasks under asyncio, a nursery
    under trio (which must be opened: ``await owner.open()``). ``loop`` is
    :func:`current_loop`'s answer, if the caller has it."""
    if (loop or current_loop()) == "asyncio":
        return AsyncioTaskOwner()
    return TrioTaskOwner()


class AsyncioTaskOwner:
    """The loop's own tasks, in a set; each removes itself when it ends.

    The owner is each task's done callback itself (no bound method per task).
    """

    __slots__ = ("_closed", "_loop", "_tasks", "_waiter")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        #: What wait_all() waits on while tasks are left.
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def start(self, coro: Coroutine[Any, Any, None], *, name: str) -> None:
        if self._closed:
            coro.close()
            raise RuntimeError("the session's tasks have all ended; it starts no more")
        task = self._loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self)

    def __call__(self, task: asyncio.Task[None]) -> None:
        """A task ended: forget it (and wake wait_all() after the last one)."""
        self._tasks.discard(task)
        if not task.cancelled():
            error = task.exception()
            if error is not None:  # a bug: the session's tasks catch their own errors
                logger.error("alphapoint task %s failed", task.get_name(), exc_info=error)
        waiter = self._waiter
        if not self._tasks and waiter is not None and not waiter.done():
            waiter.set_result(None)

    def cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def wait_all(self) -> None:
        self._closed = True
        cancelled: BaseException | None = None
        while self._tasks:
            for task in self._tasks:
                if not task.done():
                    break
            else:  # every one has ended; only their done callbacks have to run
                self._tasks.clear()
                break
            self._waiter = self._loop.create_future()
            try:
                if cancelled is None:
                    await self._waiter
                else:
                    # Shielded once cancelled: a cancel scope's cancellation
                    # is not delivered again at every turn while it waits.
                    with anyio.CancelScope(shield=True):
                        await self._waiter
            except asyncio.CancelledError as exc:
                # Our own task is cancelled: end the tasks sooner, and still
                # wait for them (anyio's task groups do the same).
                cancelled = exc
                self.cancel_all()
            finally:
                self._waiter = None
        if cancelled is not None:
            raise cancelled


class TrioTaskOwner:
    """A nursery of trio's own, entered for the session's life.

    Not anyio's task group around it: that keeps a task handle (with its own
    coroutine and events) per task and a cancel scope more, for the life of
    the session.
    """

    __slots__ = ("_manager", "_nursery", "_running")

    def __init__(self) -> None:
        import trio

        self._manager = trio.open_nursery(strict_exception_groups=True)
        self._nursery: trio.Nursery | None = None
        #: Tasks started and not yet ended (cancelling none is skipped).
        self._running = 0

    async def open(self) -> None:
        self._nursery = await self._manager.__aenter__()

    def start(self, coro: Coroutine[Any, Any, None], *, name: str) -> None:
        assert self._nursery is not None
        try:
            self._nursery.start_soon(self._counted, coro, name=name)
        except BaseException:
            coro.close()
            raise
        self._running += 1

    async def _counted(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        finally:
            self._running -= 1

    def cancel_all(self) -> None:
        if self._running:
            assert self._nursery is not None
            self._nursery.cancel_scope.cancel()

    async def wait_all(self) -> None:
        try:
            # Never handed the block's exception: it propagates as it is.
            await self._manager.__aexit__(None, None, None)
        except BaseExceptionGroup as group:
            # The tasks catch every Exception: only a cancellation from
            # outside gets here, raised as one Cancelled (as anyio does).
            cancelled = lone_cancellation(group)
            if cancelled is None:
                raise
            raise cancelled from None

"""A clean stop on SIGTERM and SIGINT: the bot's work ends, then the session logs out.

docker, systemd and Kubernetes stop a process with SIGTERM; a terminal with
SIGINT (Ctrl-C). Left alone, SIGTERM kills a Python process on the spot and
SIGINT raises KeyboardInterrupt wherever the code happens to be: either way
the session never logs out, and the gateway keeps the login until it times
out. :func:`stop_on_signals` turns the signal into a cancellation of its own
block, so the block ends like any cancelled code, and the ``connect(...)``
block around it then logs out and closes as it always does::

    async with alphapoint.connect(url, credentials=...) as session:
        async with alphapoint.stop_on_signals() as stop:
            await run_bot(session)
        if stop.signal is not None:
            print(f"stopping on {stop.signal.name}")
    # logged out and closed here

It works the same under asyncio and trio (through anyio's signal receiver),
and only in the main thread, where signals are delivered. While the block
runs, the signals are the block's; once it has ended they are back to what
they were, so a second Ctrl-C during the logout interrupts it (the logout is
bounded by ``close_timeout`` anyway).
"""

from __future__ import annotations

import signal as signal_module
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from types import TracebackType

import anyio
import anyio.abc

from .errors import UsageError

__all__ = ["Stop", "stop_on_signals"]

#: What containers and service managers send to stop a process, and Ctrl-C.
DEFAULT_SIGNALS = (signal_module.SIGTERM, signal_module.SIGINT)


class Stop:
    """What ended a :func:`stop_on_signals` block: ``signal`` is ``None`` if it ended on its own."""

    def __init__(self, scope: anyio.CancelScope) -> None:
        self._scope = scope
        #: The signal that stopped the block, or ``None``.
        self.signal: signal_module.Signals | None = None

    def __repr__(self) -> str:
        name = self.signal.name if self.signal is not None else None
        return f"<Stop signal={name}>"

    def stop(self) -> None:
        """End the block now, as a signal would (for a bot's own reasons to stop)."""
        self._scope.cancel()


class stop_on_signals:
    """Run the block until it ends or one of ``signals`` arrives (SIGTERM and SIGINT by default).

    ``async with stop_on_signals() as stop: ...``. A signal cancels the block
    (every task it waits on is cancelled with it), and the block then exits
    normally: no exception escapes for the signal, and ``stop.signal`` says
    which it was. An exception of the block's own propagates unchanged. The
    handlers are installed before the block starts, so a signal that comes at
    once is not lost. Raises :class:`UsageError` outside the main thread.
    """

    def __init__(self, *signals: signal_module.Signals) -> None:
        self._signals = signals or DEFAULT_SIGNALS
        self._scope = anyio.CancelScope()
        self._stop = Stop(self._scope)
        self._receiver: AbstractContextManager[AsyncIterator[int]] | None = None
        self._watcher: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Stop:
        if self._receiver is not None:
            raise UsageError("a stop_on_signals(...) object can be entered only once")
        receiver = anyio.open_signal_receiver(*self._signals)
        try:
            received = receiver.__enter__()
        except (RuntimeError, ValueError) as exc:  # not the main thread
            raise UsageError(f"stop_on_signals works only in the main thread ({exc})") from None
        self._receiver = receiver
        # The watcher's task group is entered first and left last, so that the
        # block's own exception never passes through it (no ExceptionGroup).
        self._watcher = anyio.create_task_group()
        await self._watcher.__aenter__()
        self._watcher.start_soon(self._watch, received, name="alphapoint stop_on_signals")
        self._scope.__enter__()
        return self._stop

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._receiver is not None
        assert self._watcher is not None
        try:
            return bool(self._scope.__exit__(exc_type, exc, tb))
        finally:
            self._watcher.cancel_scope.cancel()
            await self._watcher.__aexit__(None, None, None)
            self._receiver.__exit__(None, None, None)

    async def _watch(self, received: AsyncIterator[int]) -> None:
        async for number in received:
            self._stop.signal = signal_module.Signals(number)
            self._stop.stop()
            return

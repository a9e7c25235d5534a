"""Where a session's calls wait: open while it accepts calls, shut while it
(re)connects or logs in again, and ended for good once it is closed.

The session opens and shuts the gate as its state changes (:mod:`.state`);
a call that finds it open goes straight through, with no wait and no cancel
scope, and one that finds it shut waits, within its own deadline.
"""

from __future__ import annotations

import anyio

from .connection import Connection
from .errors import ConnectionClosed, RequestTimeout, SessionClosed

__all__ = ["Gate"]


class Gate:
    """The connection calls go through now, if any, and a way to wait for one."""

    __slots__ = ("_event", "connection", "ended")

    def __init__(self) -> None:
        #: What waiting calls wait on: made by the first call to wait while the
        #: gate is shut (an idle session holds none), set when it opens or ends.
        self._event: anyio.Event | None = None
        #: The connection calls go through now (None while shut or ended).
        self.connection: Connection | None = None
        #: Why the session ended, once it has.
        self.ended: BaseException | None = None

    def open(self, connection: Connection) -> None:
        self.connection = connection
        event = self._event  # the waiters go on (no call of a method: at every login)
        if event is not None:
            self._event = None
            event.set()

    def shut(self) -> None:
        self.connection = None

    def end(self, error: BaseException) -> None:
        """For good: every waiter wakes, and raises :meth:`ended_error`."""
        self.connection = None
        self.ended = error
        event = self._event  # the waiters go on, and raise
        if event is not None:
            self._event = None
            event.set()

    async def wait(self, function: str, timeout: float | None, deadline: float) -> Connection:
        """The connection, once the gate opens, by ``deadline``.

        Raises :class:`RequestTimeout` when it does not open in time, and
        :meth:`ended_error` once the session has ended.
        """
        with anyio.CancelScope(deadline=deadline):
            while self.ended is None and self.connection is None:
                if self._event is None:
                    self._event = anyio.Event()
                await self._event.wait()
        if self.ended is not None:
            raise self.ended_error()
        if self.connection is None:
            raise RequestTimeout(
                f"the session was not ready for {function} within {timeout} s",
                function=function,
                timeout=timeout,
            )
        return self.connection

    def ended_error(self) -> ConnectionClosed:
        """What a call to an ended session raises: a fresh error, caused by why it ended."""
        ended = self.ended
        if ended is None:
            return SessionClosed("the session is closed")
        if isinstance(ended, ConnectionClosed):
            return ended.copy()
        error = SessionClosed(f"the session has ended: {ended}")
        error.__cause__ = ended
        return error

"""One timer for the alarms of every connection on an event loop.

A connection's alarm (:meth:`Alarmed.set_alarm`) rings at its calls'
deadlines and at its keepalive's next look. Kept one timer per connection, an
idle connection paid for a timer of its own at every ring: under asyncio a
timer handle and a copied context, under trio a cancel scope whose deadline
raises ``Cancelled`` into a sleeping task (32 µs a ring on this machine, ten
times an event's wake-up). At 10,000 idle sessions that was most of what they
cost (docs/performance.md, "Idle cost").

Here every connection of a loop files its next ring in one structure: buckets
of :data:`TICK` seconds, a heap of the buckets' numbers. A ring never comes
before its time and at most :data:`TICK` after it, so the connections due in
the same tick are rung by one wake-up. A ring calls the connection's
``_ring(now)`` at once; the connection does what it can there (most rings:
nothing is due, or a keepalive Ping it can write without waiting) and wakes its
own task only for what must wait.

Who keeps the timer, without a task that outlives the connections:

* under asyncio (and uvloop), one ``loop.call_at`` handle: no task at all;
* under trio, which has no timer callbacks, the alarm task of one of the
  connections (the *leader*) sleeps until the earliest bucket and rings them
  all; the others wait on an event. A leader that has work of its own to wait
  for (sending a Ping) first hands the lead to another connection, and the
  last connection to leave takes the timer with it.

Under trio (on Linux) the leader also reads for the connections whose reader
tasks park while idle (:meth:`AlarmClock.read_for`): it waits on an epoll of
the clock's own, where their sockets are registered once, edge-triggered, and
hands each readable socket to its connection, which reads it there and wakes
its own task only for what must be done in it. One wake-up of the leader reads
the replies of every session whose Ping went out in the same ring.

A connection joins when its ``run()`` starts keeping the alarm and leaves when
it ends; a ring filed before that waits in the connection's ``_alarm_at``.

Under asyncio's own loop, whose timers are of Python, the clock also keeps
an opener's deadline (:class:`AsyncioDeadline`), a member for the opening's
life: an opening then makes no timer of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import select
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

from .loop import LoopLocal, Wakeup, asyncio_clock

__all__ = [
    "TICK",
    "AlarmClock",
    "Alarmed",
    "AsyncioDeadline",
    "current_alarm_clock",
    "loop_alarm_clock",
]

logger = logging.getLogger("alphapoint.drivers")

#: The timer's resolution in seconds: a ring comes at most this late. Rings
#: due within one tick share a wake-up (10,000 sessions pinging every 30 s
#: are 333 rings a second, and at most 100 wake-ups).
TICK = 0.01


class Alarmed(Protocol):
    """What the clock needs of a connection (:class:`~.base.BaseWebSocket`)."""

    #: When it wants to be rung (``inf``: never); the clock rings it only if due.
    _alarm_at: float
    #: The clock that rings it now, if any.
    _alarm_clock: AlarmClock | None
    clock: Callable[[], float]

    def _ring(self, now: float) -> None:
        """Its alarm is due: handle it (see Alarmed._ring)."""

    def _wake_alarm_task(self) -> None:
        """Wake the task that keeps its alarm, if it waits."""


class Reader(Protocol):
    """What the clock needs of a connection whose socket the leader reads (trio)."""

    #: The socket's file descriptor, registered with the clock's epoll.
    _poll_fd: int

    def _poll_ready(self) -> None:
        """Its socket is readable (or was, while its task read it itself)."""


class AlarmClock:
    """The alarms of one event loop's connections; see the module's docstring."""

    def __init__(self) -> None:
        #: Tick number -> the connections to ring then (a connection may be
        #: filed more than once; a ring checks it is still due).
        self._buckets: dict[int, list[Alarmed]] = {}
        #: The tick numbers of the buckets, earliest first.
        self._ticks: list[int] = []
        #: The connections whose alarm is kept here now (insertion-ordered).
        self._members: dict[Alarmed, None] = {}

    # -- filing ------------------------------------------------------------------

    def join(self, target: Alarmed) -> None:
        """``target``'s run() keeps its alarm from now on: file the ring it asked for."""
        self._members[target] = None
        target._alarm_clock = self
        if target._alarm_at != math.inf:
            self.file(target, target._alarm_at)

    def leave(self, target: Alarmed) -> None:
        """``target`` has ended: it is rung no more. The last to leave stops the timer."""
        target._alarm_clock = None
        self._members.pop(target, None)
        if not self._members:
            self._buckets.clear()
            self._ticks.clear()
            self._stop()

    def file(self, target: Alarmed, when: float) -> None:
        """Ring ``target`` at ``when`` (at most one tick later)."""
        tick = math.ceil(when / TICK)
        if tick * TICK < when:  # the division rounded down: never ring before the time
            tick += 1
        bucket = self._buckets.get(tick)
        if bucket is not None:
            bucket.append(target)
            return
        self._buckets[tick] = [target]
        earliest = self._ticks[0] if self._ticks else None
        heapq.heappush(self._ticks, tick)
        if earliest is None or tick < earliest:
            self._arm(tick * TICK)

    def next_ring(self) -> float:
        """When the timer must ring next (``inf``: nothing filed)."""
        return self._ticks[0] * TICK if self._ticks else math.inf

    def ring_due(self, now: float) -> None:
        """Ring every connection whose alarm is due by ``now``."""
        ticks, buckets = self._ticks, self._buckets
        due: list[Alarmed] = []
        while ticks and ticks[0] * TICK <= now:
            due += buckets.pop(heapq.heappop(ticks))
        # What these rings file goes in the heap for the next ring, even if it
        # is due already: one pass never rings a connection twice.
        for target in due:
            # Filed more than once, moved, or gone: ring only what is due.
            if target._alarm_at <= now and target._alarm_clock is self:
                try:
                    target._ring(now)
                except Exception:  # a bug in one connection must not stop the others
                    logger.exception("alphapoint: ringing a connection's alarm failed")

    # -- the timer ------------------------------------------------------------------

    def _arm(self, when: float) -> None:
        """The earliest ring is now ``when``: make the timer ring then."""
        raise NotImplementedError

    def _stop(self) -> None:
        """Nothing is filed and nobody is left: stop the timer."""

    async def wait(self, target: Alarmed, wake: Wakeup) -> None:
        """Wait in ``target``'s alarm task until ``wake`` is rung (or, for the
        leader under trio, until the timer rings the connections due)."""
        await wake.wait()

    def keeps_a_task(self, target: Alarmed) -> bool:
        """Whether ``target``'s alarm task should wait while it has no work
        (else it ends, and ``_wake_alarm_task`` starts it again)."""
        return True

    def step_down(self, target: Alarmed) -> None:
        """``target``'s task is about to wait for work of its own: keep the timer elsewhere."""

    def poke(self, target: Alarmed) -> None:
        """``target``'s alarm task was woken: if it leads the timer, stop its wait."""

    def read_for(self, target: Reader) -> bool:
        """Have the leader read ``target``'s socket while its task parks (under trio,
        with epoll): false if this clock cannot."""
        return False

    def stop_reading_for(self, target: Reader) -> None:
        """``target``'s socket is read by its own task again (it closes, or has ended)."""

    def reads(self) -> bool:
        """Whether a leader reads for the parked connections now (see :meth:`read_for`)."""
        return False


class _CallbackClock(AlarmClock):
    """asyncio and uvloop: the timer is one ``loop.call_at`` handle; no task."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            if self._armed_at <= when:
                # It rings first: _rang rings what is due then (nothing before
                # its time) and sets the timer again for the earliest left.
                return
            self._handle.cancel()
        self._armed_at = when
        self._handle = self._loop.call_at(when, self._rang)

    def _stop(self) -> None:
        """Leave the timer armed, not cancelled: it rings once for nothing
        (ring_due finds nobody), and sets itself again for a connection that
        joined meanwhile. A short session (a login: joins, leaves within the
        second) thus costs no timer handle of asyncio's, made, pushed and
        cancelled in Python: about 20 k instructions (docs/performance.md,
        "The login's remaining gap")."""

    def _rang(self) -> None:
        self._handle = None
        self._armed_at = math.inf
        # uvloop counts in whole milliseconds and may ring a little early:
        # ring_due rings nothing before its time, and the timer is set again.
        self.ring_due(self._loop.time())
        when = self.next_ring()
        if when != math.inf and when < self._armed_at:
            self._arm(when)


class _LeaderClock(AlarmClock):
    """trio: one member's alarm task (the leader) sleeps until the timer's time,
    and reads the sockets of the connections whose tasks park (:meth:`read_for`)."""

    def __init__(self) -> None:
        super().__init__()
        self._leader: Alarmed | None = None
        #: The leader's sleep, while it sleeps: its deadline is the timer's time.
        self._scope: Any = None
        #: An epoll of the clock's own (made on first use; ``None`` where there
        #: is none, or once closed): the sockets of the connections whose tasks
        #: park, registered once and edge-triggered, by file descriptor.
        self._epoll: Any = None
        self._readers: dict[int, Reader] = {}
        #: Whether the leader waits on the epoll now (a poke must cancel that wait),
        #: and whether the leader, the only member, is busy with work of its own
        #: (then no reader may park: nobody would read for it).
        self._polling = False
        self._leader_busy = False

    def _arm(self, when: float) -> None:
        scope = self._scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when

    def join(self, target: Alarmed) -> None:
        super().join(target)
        self._open_epoll()

    def leave(self, target: Alarmed) -> None:
        super().leave(target)
        if self._leader is target:
            if self._polling and self._scope is not None:
                self._scope.cancel()  # its wait on the epoll ends now, for the next leader's
            self._leader = None
            self._hand_over(target)
        if not self._members and self._epoll is not None:
            epoll, self._epoll = self._epoll, None
            self._readers.clear()
            import trio

            trio.lowlevel.notify_closing(epoll)  # a wait on it still under way ends
            epoll.close()

    def keeps_a_task(self, target: Alarmed) -> bool:
        # Only the leader's task waits (for the timer's time): the others'
        # rings are handled where they ring, or start their task with work.
        return self._leader is None or self._leader is target

    def step_down(self, target: Alarmed) -> None:
        if self._leader is target:
            if len(self._members) > 1:
                self._leader = None
                self._hand_over(target)
            else:
                self._leader_busy = True  # until it waits again

    def poke(self, target: Alarmed) -> None:
        if self._leader is target and self._polling and self._scope is not None:
            self._scope.cancel()

    def _hand_over(self, previous: Alarmed) -> None:
        """Wake another member, which takes the lead in its next wait."""
        for member in self._members:
            if member is not previous:
                self._leader = member
                member._wake_alarm_task()
                return

    # -- reading for the parked connections -------------------------------------

    def read_for(self, target: Reader) -> bool:
        epoll = self._epoll
        if epoll is None:
            return False
        fd = target._poll_fd
        try:
            try:
                epoll.register(fd, _READABLE)
            except FileExistsError:  # a closed socket's number, still registered
                epoll.modify(fd, _READABLE)
        except OSError:
            return False
        self._readers[fd] = target
        return True

    def stop_reading_for(self, target: Reader) -> None:
        fd = target._poll_fd
        # The descriptor's number may belong to another connection's socket
        # by now (this one was closed): only this connection's is unregistered.
        if self._readers.get(fd) is target:
            del self._readers[fd]
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)

    def reads(self) -> bool:
        # A reader may park before the leader's task first waits (it reads
        # once it does), and while the lead is handed on; not while the only
        # member's task, which leads, does work of its own.
        return self._epoll is not None and not self._leader_busy

    def _open_epoll(self) -> Any:
        """The clock's epoll, made on first use (``None`` where there is none)."""
        if self._epoll is None:
            with contextlib.suppress(AttributeError, OSError):  # no epoll here (not Linux)
                self._epoll = select.epoll()
        return self._epoll

    def _read_ready(self) -> None:
        """Hand every socket the epoll says is readable to its connection."""
        epoll = self._epoll
        if epoll is None:
            return
        readers = self._readers
        for fd, _ in epoll.poll(0):
            reader = readers.get(fd)
            if reader is not None:
                try:
                    reader._poll_ready()
                except Exception:  # a bug in one connection must not stop the others
                    logger.exception("alphapoint: reading a connection's socket failed")

    async def wait(self, target: Alarmed, wake: Wakeup) -> None:
        if target._alarm_clock is not self:
            return  # it has left: it must not take the lead
        if self._leader is None:
            self._leader = target
        if self._leader is not target:
            await wake.wait()
            return
        self._leader_busy = False
        epoll = self._open_epoll()
        if self._polling:
            # The previous leader's wait on the epoll is still ending (its task
            # is being cancelled): one task at a time may wait on it. That
            # wait wakes this task as it ends.
            await wake.wait()
            return
        readable = False
        import trio

        # trio's own scope (anyio's wraps one): this wait is every read's under trio.
        with trio.CancelScope(deadline=self.next_ring()) as scope:
            self._scope = scope
            try:
                if epoll is None:
                    await wake.wait()
                else:
                    # Woken by its own work through poke(): the scope is cancelled.
                    self._polling = True
                    try:
                        await trio.lowlevel.wait_readable(epoll)
                        readable = True
                    except trio.ClosedResourceError:
                        pass  # the last connection left: the caller ends
            finally:
                if self._scope is scope:
                    self._scope = None
                if epoll is not None:
                    self._polling = False
                    leader = self._leader
                    if leader is not None and leader is not target:
                        leader._wake_alarm_task()  # the lead went on meanwhile: take it
        if readable:
            self._read_ready()
        if scope.cancelled_caught or self.next_ring() <= target.clock():
            self.ring_due(target.clock())


#: What the clock's epoll waits for on a parked connection's socket: readable
#: (an end, an error, are always reported), edge-triggered, so that a socket
#: is registered once and never again, and a connection whose task reads its
#: socket itself at the moment is not reported again and again.
_READABLE = getattr(select, "EPOLLIN", 0) | getattr(select, "EPOLLET", 0)


def _new_clock() -> AlarmClock:
    try:
        return _CallbackClock(asyncio.get_running_loop())
    except RuntimeError:  # trio
        return _LeaderClock()


_clocks: LoopLocal[AlarmClock] = LoopLocal("alphapoint_alarm_clock", _new_clock)


def current_alarm_clock() -> AlarmClock:
    """The alarm clock of the running event loop (made on first use)."""
    return _clocks.get()


def loop_alarm_clock(loop: asyncio.AbstractEventLoop) -> AlarmClock:
    """The alarm clock of ``loop``, an asyncio loop the caller runs on (a
    callback driver, an opener's deadline): without asking which loop runs."""
    return _clocks.get_for(loop)


class AsyncioDeadline:
    """``anyio.fail_after`` for a block whose every await is asyncio's own.

    anyio's asks which library runs (twice), makes a cancel scope and a
    generator context: some 75 function calls, about 70 k instructions of a
    login (docs/performance.md, "Opening, logging in and closing, sixth
    session"). For the asyncio and picows drivers' openers, which run no
    anyio scope inside, the deadline cancels the task: the block ends with
    ``TimeoutError`` when the deadline ended it, and a cancellation from
    anywhere else (an enclosing scope, the user) goes through unchanged, as
    from ``asyncio.timeout``.

    Under asyncio's own loop the deadline is kept by the loop's alarm clock,
    as a member of its own for the block's life, not by a timer of its own:
    the clock's one timer is usually armed for then or earlier already (a
    close's deadline), where an asyncio timer made and cancelled per opening
    costs some 20 k instructions, in Python (docs/performance.md, "The login,
    seventh session"). It then expires at most a tick (10 ms) after its time,
    never before. A loop whose timers are its own (uvloop's, in C) keeps it
    on a timer: cheaper there than filing it with the clock.
    """

    __slots__ = ("_alarm_at", "_alarm_clock", "_clock", "_handle", "_task", "clock", "expired")

    def __init__(self, timeout: float) -> None:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - an opener always runs in a task
            raise RuntimeError("AsyncioDeadline needs an asyncio task")
        loop = task.get_loop()
        self._task: asyncio.Task[Any] | None = task
        #: Whether the deadline went off (and so cancelled the task).
        self.expired = False
        #: The clock that keeps it, or else the loop's timer (see the docstring).
        self._clock: AlarmClock | None = None
        self._handle: asyncio.TimerHandle | None = None
        if type(loop).call_at is not asyncio.BaseEventLoop.call_at:  # uvloop's timers
            self._handle = loop.call_later(timeout, self._ring, 0.0)
            return
        clock = self._clock = loop_alarm_clock(loop)
        #: What the alarm clock reads and sets (see Alarmed).
        self.clock = asyncio_clock(loop)
        self._alarm_at = self.clock() + timeout
        self._alarm_clock: AlarmClock | None = None
        clock.join(self)

    def _ring(self, now: float) -> None:
        """The alarm clock (or the timer) rang: the time is up."""
        task = self._task
        if task is not None and not self.expired:
            self.expired = True
            task.cancel()

    def _wake_alarm_task(self) -> None:
        """(No task of its own waits for the alarm.)"""

    def __enter__(self) -> AsyncioDeadline:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if self._clock is not None:
            self._clock.leave(self)  # rung no more
        elif self._handle is not None:
            self._handle.cancel()
        if not self.expired or task is None:
            return
        # This deadline's cancellation, taken back (Python 3.11+): one from
        # elsewhere that came at the same time still counts, and goes on.
        others = 0
        if sys.version_info >= (3, 11):
            others = task.uncancel()
        if others == 0 and isinstance(exc, asyncio.CancelledError):
            raise TimeoutError from None

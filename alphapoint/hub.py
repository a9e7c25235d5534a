"""The session's event hub: owns its event and state streams, and routes to them.

An event reaches only the streams that take it, found in constant time: by
the event's name, then by the instrument it names. A collector with 1,000
subscriptions on one session pays for one lookup per event, not for asking
1,000 streams (docs/performance.md, "dispatch").

Routing rules, as the streams were made:

* a stream with no event names takes every event (its ``match`` decides);
* a stream keyed by an instrument takes that instrument's events (by
  ``InstrumentId``, or by position in array-shaped updates:
  :mod:`.instruments`), its part of an array event that carries several, and
  the events that name no instrument;
* any other stream takes every event of its names that its ``match`` accepts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from .errors import AlphaPointError
from .events import EventStream, StateChanges, Subscription
from .instruments import MIXED, event_instrument, split_by_instrument
from .models import Event
from .state import SessionState

__all__ = ["EventHub"]


class _Route:
    """The streams that take one event name."""

    __slots__ = ("by_instrument", "unkeyed")

    def __init__(self) -> None:
        #: Instrument -> the streams keyed by it.
        self.by_instrument: dict[Any, list[EventStream]] = {}
        #: Streams that take every instrument (``match`` may still filter).
        self.unkeyed: list[EventStream] = []

    def __bool__(self) -> bool:
        return bool(self.by_instrument or self.unkeyed)


class EventHub:
    """Every stream of one session; the session's reader hands it each event."""

    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}
        #: Every attached event stream, in the order attached (streams hash by identity).
        self.attached: dict[EventStream, None] = {}
        #: Streams that take events of every name.
        #: Streams that take events of every name, and the state streams: made
        #: when the first is attached (an idle session without any holds neither).
        self._everything: list[EventStream] | None = None
        self._states: list[StateChanges] | None = None
        #: Whether any state stream is attached (read at every move of the
        #: session's state, which then calls publish_state only if so).
        self.watched = False
        #: Once the session has ended: what attaching a new stream raises.
        self._ended: Callable[[], BaseException] | None = None
        #: Event name -> instrument id -> the stream that alone takes that
        #: instrument's events of that name, where deliver_all may queue them
        #: without asking anything else: a name without streams of every
        #: instrument, an ``int`` id with one stream, of the library's own
        #: classes (a subclass may have its own ``offer``). Kept by
        #: _route_changed; streams of every name are looked at per batch.
        self._direct: dict[str, dict[int, EventStream]] = {}

    # -- event streams ---------------------------------------------------------

    def attach(self, stream: EventStream) -> None:
        """Route events to ``stream``; raises the session's error once it has ended."""
        if self._ended is not None:
            raise self._ended()
        self.attached[stream] = None
        if not stream.functions:
            if self._everything is None:
                self._everything = []
            self._everything.append(stream)
            return
        for function in stream.functions:
            route = self._routes.get(function)
            if route is None:
                route = self._routes[function] = _Route()
            if stream.instrument is None:
                route.unkeyed.append(stream)
            else:
                route.by_instrument.setdefault(stream.instrument, []).append(stream)
            self._route_changed(function, stream.instrument)

    def detach(self, stream: EventStream) -> None:
        """Stop routing events to ``stream`` (idempotent)."""
        if self.attached.pop(stream, False) is False:
            return
        if not stream.functions:
            if self._everything is not None:
                _remove(self._everything, stream)
            return
        for function in stream.functions:
            route = self._routes.get(function)
            if route is None:
                continue
            if stream.instrument is None:
                _remove(route.unkeyed, stream)
            else:
                keyed = route.by_instrument.get(stream.instrument)
                if keyed is not None:
                    _remove(keyed, stream)
                    if not keyed:
                        del route.by_instrument[stream.instrument]
            if not route:
                del self._routes[function]
            self._route_changed(function, stream.instrument)

    def _route_changed(self, function: str, instrument: Any) -> None:
        """Keep ``_direct`` true to the route of ``function`` after a stream of
        ``instrument`` came or went (``None``: a stream of every instrument)."""
        route = self._routes.get(function)
        if route is None or route.unkeyed:
            self._direct.pop(function, None)
            return
        direct = self._direct.get(function)
        if direct is None:  # the first stream, or the last of every instrument left
            direct = self._direct[function] = {}
            keys = list(route.by_instrument)
        else:
            keys = [instrument]
        for key in keys:
            matching = route.by_instrument.get(key)
            if (
                type(key) is int
                and matching is not None
                and len(matching) == 1
                and type(matching[0]) in _PLAIN
            ):
                direct[key] = matching[0]
            else:
                direct.pop(key, None)

    def streams(self) -> list[EventStream]:
        """Every attached stream, in the order attached (to resubscribe after a reconnect)."""
        return list(self.attached)

    def rekey(self, stream: EventStream, instrument: Any) -> None:
        """Route ``stream`` by ``instrument`` from now on (``None``: every instrument)."""
        if stream in self.attached:
            self.detach(stream)
            stream.instrument = instrument
            self.attach(stream)
        else:
            stream.instrument = instrument

    def deliver(self, event: Event) -> None:
        """Hand ``event`` to every stream that takes it (never blocks)."""
        route = self._routes.get(event.function)
        if route is not None:
            by_instrument = route.by_instrument
            if by_instrument:
                payload = event.payload
                # Level1 and account events: an object naming its InstrumentId
                # (event_instrument's first case, without the call).
                key = payload.get("InstrumentId") if type(payload) is dict else None
                if type(key) is not int:
                    key = event_instrument(event.function, payload)
                if key is None:
                    # Names no instrument: every keyed stream of this name takes it.
                    for keyed in tuple(by_instrument.values()):
                        _offer(keyed, event)
                elif key is MIXED:
                    self._deliver_parts(by_instrument, event)
                else:
                    matching = by_instrument.get(key)
                    if matching is not None:
                        if len(matching) == 1 and matching[0].match is None:
                            # The usual case, a subscription per instrument:
                            # _offer's first case without its call.
                            matching[0].offer(event)
                        else:
                            _offer(matching, event)
            if route.unkeyed:
                _offer(route.unkeyed, event)
        if self._everything:
            _offer(self._everything, event)

    def deliver_all(self, events: deque[Event], *, until: str) -> bool:
        """Hand each of ``events`` to the streams that take it, taking them from
        the left, in order; stop right after one named ``until`` (true), or
        once none is left (false). Never blocks.

        What :meth:`deliver` does for each, in one call for a read's worth:
        the usual event (an object naming its ``InstrumentId``, for one
        stream of that instrument without a ``match``, and no stream of
        every instrument or name) goes to its stream's queue here, without a
        call of :meth:`deliver` or :meth:`EventStream.offer` (three calls of
        Python per event fewer: docs/performance.md, "The events' hand-over,
        seventh session"); any other through :meth:`deliver`.
        """
        popleft = events.popleft
        if self._everything:  # streams of every name: each event as deliver hands it
            while events:
                event = popleft()
                self.deliver(event)
                if event.function == until:
                    return True
            return False
        direct = self._direct
        while events:
            event = popleft()
            function = event.function
            streams = direct.get(function)
            payload = event.payload
            if (
                streams is not None
                and type(payload) is dict
                and type(key := payload.get("InstrumentId")) is int
                and (stream := streams.get(key)) is not None
                and stream.match is None
            ):
                # EventStream.offer's usual case, inline: room, and open.
                inbox = stream._inbox
                queue = inbox._queue
                if len(queue) < inbox.limit and not inbox.closed:
                    queue.append(event)
                    if inbox._waiter is not None:
                        inbox._wake()
                else:
                    stream.offer(event)  # full (an overflow), or ended
            else:
                self.deliver(event)
            if function == until:
                return True
        return False

    @staticmethod
    def _deliver_parts(by_instrument: dict[Any, list[EventStream]], event: Event) -> None:
        """An array event for several instruments: each keyed stream gets its part."""
        parts = split_by_instrument(event.function, event.payload)
        unnamed = parts.pop(None, None)
        for key, entries in parts.items():
            matching = by_instrument.get(key)
            if matching is not None:
                _offer(matching, Event(event.function, entries, event.seq))
        if unnamed is not None:
            part = Event(event.function, unnamed, event.seq)
            for keyed in tuple(by_instrument.values()):
                _offer(keyed, part)

    # -- state streams ---------------------------------------------------------

    def watch(self, changes: StateChanges) -> None:
        if self._states is None:
            self._states = []
        self._states.append(changes)
        self.watched = True
        if self._ended is not None:
            changes.end()

    def unwatch(self, changes: StateChanges) -> None:
        if self._states is not None:
            _remove(self._states, changes)
            self.watched = bool(self._states)

    def publish_state(self, state: SessionState) -> None:
        for changes in tuple(self._states or ()):
            changes.offer(state)

    # -- the end ---------------------------------------------------------------

    def end(
        self, error: AlphaPointError | None, *, attach_error: Callable[[], BaseException]
    ) -> None:
        """The session has ended: every stream ends (with ``error``, if given) after
        what it holds, and attaching a stream from now on raises ``attach_error()``."""
        self._ended = attach_error
        for stream in list(self.attached):  # (streams(), without its call)
            stream.end(error)
        for changes in tuple(self._states or ()):
            changes.end()


#: The stream classes whose ``offer`` deliver_all may do inline (a subclass
#: may have its own).
_PLAIN = (Subscription, EventStream)


def _offer(streams: list[EventStream], event: Event) -> None:
    if len(streams) == 1:  # the usual case: one consumer per instrument
        stream = streams[0]
        if stream.match is None or stream.match(event):
            stream.offer(event)
        return
    # A copy: a stream that overflows detaches itself while we iterate.
    for stream in tuple(streams):
        match = stream.match
        if match is None or match(event):
            stream.offer(event)


def _remove(streams: list[Any], stream: object) -> None:
    # By identity: streams define no equality, and removal must not call one.
    for index, candidate in enumerate(streams):
        if candidate is stream:
            del streams[index]
            return

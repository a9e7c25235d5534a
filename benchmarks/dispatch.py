"""Event dispatch: the cost per event of routing it to its stream, against the number
of subscriptions on one session.

``python benchmarks/dispatch.py`` prints a table. Each row subscribes N
streams to ``Level1UpdateEvent``, one per instrument (as a collector holding
N instruments on one session does), then delivers events for every
instrument in turn, and reports the median over repetitions of the time per
event. Two ways of routing are measured side by side:

* ``hub``: alphapoint's :class:`~alphapoint.hub.EventHub` (by event name, then
  instrument: one lookup per event);
* ``scan``: offering each event to every stream, each checking the event's
  name and instrument (how the session routed before the hub; kept here as
  the reference the hub replaced).

Only the routing is measured, in-process: no socket, no JSON. What an event
costs end to end is in ``benchmarks/run.py``.

``--instructions`` counts instructions per event instead, under valgrind's
callgrind (as ``instructions.py`` does: two runs with a small and a large
number of events, the difference divided by the difference), which this
shared machine's noise does not move.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from alphapoint.events import EventStream
from alphapoint.hub import EventHub
from alphapoint.models import Event

FUNCTIONS = frozenset({"Level1UpdateEvent"})


class Sink(EventStream):
    """A stream whose consumer keeps up: each event is taken as soon as it is queued."""

    def offer(self, event: Event) -> None:
        self.last = event


def hub_router(count: int) -> Callable[[Event], None]:
    hub = EventHub()
    for n in range(count):
        hub.attach(Sink(hub, FUNCTIONS, 1, instrument=n))
    return hub.deliver


def scan_router(count: int) -> Callable[[Event], None]:
    hub = EventHub()  # only to own the streams
    streams = [Sink(hub, FUNCTIONS, 1, instrument=n) for n in range(count)]

    def deliver(event: Event) -> None:
        for stream in tuple(streams):
            if stream.functions and event.function not in stream.functions:
                continue
            payload = event.payload
            if isinstance(payload, dict) and payload.get("InstrumentId") != stream.instrument:
                continue
            stream.offer(event)

    return deliver


def per_event(deliver: Callable[[Event], None], events: list[Event], rounds: int) -> float:
    """Nanoseconds per event, over ``rounds`` passes of ``events``."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(rounds):
            for event in events:
                deliver(event)
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed / (rounds * len(events))


ROUTERS = {"hub": hub_router, "scan": scan_router}


def make_events(count: int, distinct: int) -> list[Event]:
    """``distinct`` events, for the ``count`` instruments in turn."""
    return [
        Event("Level1UpdateEvent", {"OMSId": 1, "InstrumentId": n % count, "BestBid": 1.0}, n)
        for n in range(distinct)
    ]


def child(router: str, count: int, n: int) -> None:
    """Deliver ``n`` events through ``router`` with ``count`` subscriptions (under valgrind)."""
    deliver = ROUTERS[router](count)
    events = make_events(count, 1000)
    for k in range(n):
        deliver(events[k % 1000])


def instructions(counts: list[int], valgrind: str) -> list[dict[str, Any]]:
    # The same counting as instructions.py.
    from instructions import collected, per_op, under_callgrind

    small, large = 20_000, 120_000
    rows = []
    for count in counts:
        row: dict[str, Any] = {"subscriptions": count}
        for router in ROUTERS:
            totals = []
            for n in (small, large):
                done = subprocess.run(
                    under_callgrind(valgrind, __file__, "--child", router, str(count), str(n)),
                    env=dict(os.environ, PYTHONHASHSEED="0"),
                    capture_output=True,
                    text=True,
                    check=True,
                )
                totals.append(collected(done.stderr))
            row[router] = per_op(small, totals[0], large, totals[1])
            print(f"  {router} with {count}: {row[router]:.0f} instructions", file=sys.stderr)
        rows.append(row)
    return rows


def run(counts: list[int], events_per_row: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for count in counts:
        # The same number of distinct events in every row: only the routing differs.
        events = make_events(count, max(counts))
        rounds = max(1, events_per_row // len(events))
        row: dict[str, Any] = {"subscriptions": count}
        for name, make in ROUTERS.items():
            deliver = make(count)
            per_event(deliver, events, 1)  # warm up
            row[name] = statistics.median(
                per_event(deliver, events, rounds) for _ in range(repeats)
            )
        rows.append(row)
    return rows


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1,10,100,1000", help="subscriptions per row")
    parser.add_argument("--events", type=int, default=200_000, help="events per measurement")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under valgrind"
    )
    parser.add_argument("--valgrind", default="valgrind")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    if args.instructions:
        valgrind = shutil.which(args.valgrind)
        if valgrind is None:
            print("dispatch.py: valgrind not found (apt-get install valgrind)", file=sys.stderr)
            return 2
        rows, unit = instructions(counts, valgrind), "instr"
    else:
        rows, unit = run(counts, args.events, args.repeats), "ns"
    base = rows[0]["hub"]
    head = f"hub {unit}/event"
    print(f"{'subscriptions':>13}  {head:>15}  {'vs 1st row':>10}  {'scan ' + unit + '/event':>16}")
    for row in rows:
        print(
            f"{row['subscriptions']:>13}  {row['hub']:>15.0f}  {row['hub'] / base:>9.2f}x"
            f"  {row['scan']:>16.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

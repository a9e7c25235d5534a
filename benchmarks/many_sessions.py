"""Many sessions: hold N authenticated sessions in one process; memory and login time.

Run by ``run.py`` in a fresh process per measurement, so that the resident set
it measures holds nothing else::

    python benchmarks/many_sessions.py --client alphapoint --backend asyncio -n 1000 URL

(the API key comes from ``BENCH_API_KEY``, ``BENCH_API_SECRET``, ``BENCH_USER_ID``).
It warms up (a few sessions opened and closed, so lazy imports and caches are
not counted), takes the resident set size, logs N sessions in concurrently,
waits until every one is authenticated (the login time), collects garbage,
takes the resident set size again, and prints one JSON line:
``{"rss_per_session": bytes, "login_wall": s, "login_cpu": s, ...}``.

It also counts the objects the garbage collector tracks (``gc.get_objects()``)
before and after the logins, per session, and times one full collection.
With ``--idle SECONDS`` it then leaves the sessions idle for that long and
reports the process's CPU time over the window per session per second
(``idle_cpu_us``): what keepalive and timers cost a session that does nothing.
``--open-limit N`` hands alphapoint ``open_limiter=anyio.CapacityLimiter(N)``
(``0``: ``None``, no limiter), and bounds the raw clients' set-ups (connect
and log in) with such a limiter of the harness's own; without it alphapoint
runs with the library's default and the raw clients unbounded. ``--driver``
hands alphapoint ``driver=...``: without it, ``"auto"`` takes picows under
asyncio and uvloop when the fast extra is installed, else websockets' parser
on asyncio's callbacks (the default install); under trio, the anyio driver.

The soft limit on open files is raised to the hard one (10,000 sessions need
10,000 sockets here and as many in the server's process).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from clients import Credentials, check_authenticated

_loads = json.loads
WARMUP = 10


def rss() -> int:
    """This process's resident set size in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Holder:
    """Counts sessions in and holds them until released; backend-neutral through anyio."""

    def __init__(self, n: int) -> None:
        import anyio

        self.n, self.count = n, 0
        self.all_in = anyio.Event()
        self.release = anyio.Event()

    async def logged_in(self) -> None:
        self.count += 1
        if self.count == self.n:
            self.all_in.set()
        await self.release.wait()


#: Whether to profile the idle window (cProfile, to standard error; --profile).
PROFILE = False

#: Extra keyword arguments for alphapoint.connect (set from --open-limit).
CONNECT_OPTIONS: dict[str, Any] = {}


async def _alphapoint(url: str, creds: Credentials, holder: Holder) -> None:
    import alphapoint

    async with alphapoint.connect(
        url, credentials=creds.alphapoint(), logout_on_close=False, **CONNECT_OPTIONS
    ) as session:
        assert session.authenticated
        await holder.logged_in()


#: The harness's own bound on the raw clients' set-ups (--open-limit), which
#: have no such tool: connect and log in while holding a token, then let go.
HARNESS_LIMITER: Any = None


async def _take_turn() -> object | None:
    """A token of the harness's limiter, held by the object returned (None: no limiter)."""
    if HARNESS_LIMITER is None:
        return None
    borrower = object()
    await HARNESS_LIMITER.acquire_on_behalf_of(borrower)
    return borrower


def _give_back(borrower: object | None) -> None:
    if borrower is not None:
        HARNESS_LIMITER.release_on_behalf_of(borrower)


async def _floor(url: str, creds: Credentials, holder: Holder) -> None:
    from alphapoint.drivers import current_loop

    if current_loop() == "trio":
        from websockets.trio.client import connect
    else:
        from websockets.asyncio.client import connect  # type: ignore[assignment]

    turn = await _take_turn()
    try:
        async with connect(url, compression=None) as ws:
            await ws.send(creds.auth_frame("s"))
            check_authenticated(_loads(_loads(await ws.recv())["o"]))
            _give_back(turn)
            turn = None  # held no longer: not counted in the session's objects
            await holder.logged_in()
    finally:
        _give_back(turn)


async def _picows(url: str, creds: Credentials, holder: Holder) -> None:
    from clients import _picows_listener
    from picows import ws_connect

    turn = await _take_turn()
    try:
        _, client = await ws_connect(_picows_listener(), url)
        check_authenticated(await client.call(2, creds.auth_frame("s")))
    finally:
        _give_back(turn)
    turn = None
    await holder.logged_in()
    await client.close()


class _CollectionTimer:
    """A ``gc.callbacks`` entry: the time spent in collections, and how many of each generation."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.counts = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.counts[info["generation"]] += 1


def _object_types() -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        counts[name] = counts.get(name, 0) + 1
    return counts


def _print_object_types(before: dict[str, int] | None, n: int) -> None:
    """The GC-tracked objects per session by type (--profile), to standard error."""
    after = _object_types()
    rows = sorted(((after[k] - (before or {}).get(k, 0)) / n, k) for k in after)
    for per_session, name in reversed(rows):
        if per_session >= 0.5:
            print(f"{per_session:8.2f}  {name}", file=sys.stderr)


SessionFn = Callable[[str, Credentials, Holder], Awaitable[None]]


def _session_fn(client: str, backend: str) -> SessionFn:
    if client == "alphapoint":
        return _alphapoint
    if client == "floor":
        return _floor
    if client == "picows":
        return _picows
    raise ValueError(client)


async def _hold(
    url: str, n: int, fn: SessionFn, creds: Credentials, idle: float, open_limit: int | None
) -> dict[str, Any]:
    import anyio

    if open_limit is not None:
        limiter = anyio.CapacityLimiter(open_limit) if open_limit else None
        CONNECT_OPTIONS["open_limiter"] = limiter
        global HARNESS_LIMITER
        HARNESS_LIMITER = limiter

    warm = Holder(WARMUP)
    async with anyio.create_task_group() as tg:
        for _ in range(WARMUP):
            tg.start_soon(fn, url, creds, warm)
        await warm.all_in.wait()
        warm.release.set()
    gc.collect()
    await anyio.sleep(0.05)
    before = rss()
    objects_before = len(gc.get_objects())
    before_types = _object_types() if PROFILE else None
    holder = Holder(n)
    idle_result: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            tg.start_soon(fn, url, creds, holder)
        await holder.all_in.wait()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        gc.collect()
        await anyio.sleep(0.05)
        after = rss()
        gc.collect()
        objects_after = len(gc.get_objects())
        if PROFILE:
            _print_object_types(before_types, n)
        collect = time.perf_counter()
        gc.collect()
        idle_result["gc_full_collect_s"] = time.perf_counter() - collect
        if idle > 0:
            # The logins are over: let the last replies settle, then a quiet window.
            await anyio.sleep(1.0)
            profiler = None
            if PROFILE:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            collecting = _CollectionTimer()
            gc.callbacks.append(collecting)
            idle_cpu, idle_wall = time.process_time(), time.perf_counter()
            await anyio.sleep(idle)
            idle_cpu = time.process_time() - idle_cpu
            idle_wall = time.perf_counter() - idle_wall
            gc.callbacks.remove(collecting)
            idle_result["idle_gc_us"] = collecting.seconds / n / idle_wall * 1e6
            idle_result["idle_gc_collections"] = collecting.counts
            if profiler is not None:
                import pstats

                profiler.disable()
                pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
            idle_result["idle_window_s"] = idle_wall
            idle_result["idle_cpu_us"] = idle_cpu / n / idle_wall * 1e6
        holder.release.set()
    return {
        **idle_result,
        "objects_per_session": (objects_after - objects_before) / n,
        "sessions": n,
        "rss_before": before,
        "rss_after": after,
        "rss_per_session": (after - before) / n,
        "login_wall": wall,
        "login_cpu": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Hold many authenticated sessions.")
    parser.add_argument("url")
    parser.add_argument("--client", choices=["alphapoint", "floor", "picows"], required=True)
    parser.add_argument("--backend", choices=["asyncio", "uvloop", "trio"], default="asyncio")
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=0.0, help="seconds of idle window")
    parser.add_argument("--open-limit", type=int, default=None)
    parser.add_argument(
        "--keepalive",
        type=float,
        default=None,
        help="alphapoint's Keepalive(interval=S, timeout=S) instead of the default",
    )
    parser.add_argument(
        "--driver",
        default=None,
        help="alphapoint's driver (auto, asyncio, picows, anyio; default: the library's, "
        "auto, which takes picows under asyncio when the fast extra is installed)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the idle window (to standard error)"
    )
    args = parser.parse_args()
    if args.driver is not None:
        CONNECT_OPTIONS["driver"] = args.driver
    global PROFILE
    PROFILE = args.profile
    if args.keepalive is not None:
        import alphapoint

        CONNECT_OPTIONS["keepalive"] = alphapoint.Keepalive(args.keepalive, args.keepalive)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    creds = Credentials(
        os.environ["BENCH_API_KEY"], os.environ["BENCH_API_SECRET"], os.environ["BENCH_USER_ID"]
    )
    # Nonces must not repeat across processes: start this one's from the clock.
    creds.start_nonces(time.time_ns())
    fn = _session_fn(args.client, args.backend)
    if args.backend == "trio":
        import trio

        result = trio.run(_hold, args.url, args.n, fn, creds, args.idle, args.open_limit)
    elif args.backend == "uvloop":
        import uvloop

        result = uvloop.run(_hold(args.url, args.n, fn, creds, args.idle, args.open_limit))
    else:
        result = asyncio.run(_hold(args.url, args.n, fn, creds, args.idle, args.open_limit))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

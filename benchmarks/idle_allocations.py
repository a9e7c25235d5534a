"""What idle sessions leave for the garbage collector: tracked allocations not yet freed.

    python benchmarks/idle_allocations.py [-n 200] [--seconds 5] [--keepalive 1]
                                          [--backends asyncio,uvloop]

How many collections an idle window of ``idle.py`` runs depends on where
the collector's count of allocations happened to start; this asks the
question under it. N sessions (asyncio or uvloop, ``driver="auto"``) log in
to the echo server of ``servers.py`` (a process of its own) and ping every
``--keepalive`` seconds; after a full collection the collector is disabled
for ``--seconds``, and its count of tracked allocations not yet freed
(``gc.get_count()[0]``) is read before and after. What grew, per session per
second, is what idle sessions hand to the collector (0 if every object a
Ping makes is freed as it ends). Run it with ``PYTHONPATH`` at another
checkout to compare two versions.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import clients
from servers import ServerProcess, available_impls

import alphapoint


async def drift(
    url: str, creds: clients.Credentials, n: int, seconds: float, every: float
) -> float:
    """Tracked allocations not yet freed, per session per second, while ``n`` sessions idle."""
    stop = asyncio.Event()
    ready: list[alphapoint.Session] = []
    keepalive = alphapoint.Keepalive(interval=every, timeout=every)

    async def hold() -> None:
        async with alphapoint.connect(
            url, credentials=creds.alphapoint(), keepalive=keepalive
        ) as s:
            ready.append(s)
            await stop.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(n)]
    while len(ready) < n:
        if any(task.done() for task in tasks):
            await asyncio.gather(*tasks)  # a failed login: raise it
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5 * every)  # every session pinging
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        await asyncio.sleep(seconds)
        grown = gc.get_count()[0] - before
    finally:
        gc.enable()
        stop.set()
        await asyncio.gather(*tasks)
    return grown / n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--keepalive", type=float, default=1.0)
    parser.add_argument("--backends", default="asyncio,uvloop")
    args = parser.parse_args()
    creds = clients.Credentials(secrets.token_hex(8), secrets.token_hex(16), "7")
    rows: list[tuple[str, Any]] = []
    with ServerProcess(
        available_impls()[0], creds.api_key, creds.api_secret, creds.user_id
    ) as server:
        for backend in args.backends.split(","):
            coro = drift(server.url, creds, args.n, args.seconds, args.keepalive)
            if backend == "uvloop":
                import uvloop

                value = uvloop.run(coro)
            else:
                value = asyncio.run(coro)
            rows.append((backend, value))
    print(f"idle allocations: n={args.n}, Ping every {args.keepalive} s, {args.seconds} s window")
    print("\n| backend | tracked allocations not yet freed, per session per s |")
    print("|---|---|")
    for backend, value in rows:
        print(f"| {backend} | {value:.3f} |")


if __name__ == "__main__":
    main()

"""Instructions per keepalive Ping of idle sessions, counted by valgrind.

    python benchmarks/keepalive_instructions.py [--backend trio|asyncio|uvloop] [-n 50]
                                                [--interval 1] [--windows 4,12]
                                                [--driver auto]

One process holds ``n`` sessions (alphapoint, the library's defaults but a
keepalive Ping every ``--interval`` seconds) against the echo server of
``servers.py`` (its own process, not under valgrind), waits until they ping
steadily, then stays idle for a window and counts the Pings sent. It runs
twice under ``valgrind --tool=callgrind``, with a short and a long window:
the difference in instructions over the difference in Pings is the
instructions per Ping (the timer's ring that writes it, the reply's read,
its parse and match, the re-arm, the collector's share), with the start-up,
the logins and the settling cancelled out. Like ``instructions.py`` it does
not see system calls' cost in the kernel or cache misses.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import secrets
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from instructions import collected, under_callgrind  # noqa: E402
from servers import ServerProcess, available_impls  # noqa: E402


def child(url: str, backend: str, n: int, interval: float, window: float, driver: str) -> None:
    import anyio
    import many_sessions
    from clients import Credentials

    import alphapoint

    keepalive = alphapoint.Keepalive(interval, 10)
    creds = Credentials(
        os.environ["BENCH_API_KEY"], os.environ["BENCH_API_SECRET"], os.environ["BENCH_USER_ID"]
    )
    creds.start_nonces(time.time_ns())

    async def session(holder: many_sessions.Holder) -> None:
        async with alphapoint.connect(
            url,
            credentials=creds.alphapoint(),
            logout_on_close=False,
            keepalive=keepalive,
            driver=driver,
        ) as opened:
            assert opened.authenticated
            await holder.logged_in()

    async def main() -> None:
        holder = many_sessions.Holder(n)
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(session, holder)
            await holder.all_in.wait()
            await anyio.sleep(2 * interval)  # every session pings steadily
            conns = [o for o in gc.get_objects() if type(o).__name__ == "Connection"]
            sent = sum(c._next_seq for c in conns)
            await anyio.sleep(window)
            print("PINGS", (sum(c._next_seq for c in conns) - sent) // 2, flush=True)
            holder.release.set()

    if backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="trio", choices=["asyncio", "uvloop", "trio"])
    parser.add_argument("-n", type=int, default=50)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--windows", default="4,12", help="the two idle windows, in seconds")
    parser.add_argument("--valgrind", default="valgrind")
    parser.add_argument(
        "--driver", default="auto", help="connect()'s driver: auto, asyncio, picows, anyio"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # URL WINDOW
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.backend, args.n, args.interval, float(args.child[1]), args.driver)
        return
    api_key, api_secret, user_id = secrets.token_hex(16), secrets.token_hex(32), "7"
    env = dict(
        os.environ,
        BENCH_API_KEY=api_key,
        BENCH_API_SECRET=api_secret,
        BENCH_USER_ID=user_id,
        PYTHONHASHSEED="0",
    )
    counts = []
    with ServerProcess(available_impls()[0], api_key, api_secret, user_id) as server:
        for window in args.windows.split(","):
            command = under_callgrind(
                args.valgrind,
                __file__,
                *["--backend", args.backend, "-n", str(args.n), "--interval", str(args.interval)],
                *["--driver", args.driver],
                *["--child", server.url, window],
            )
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            found = re.search(r"PINGS (\d+)", done.stdout)
            assert found is not None, done.stdout + done.stderr
            counts.append((collected(done.stderr), int(found.group(1))))
            print(f"window {window} s: {counts[-1][1]} Pings, {counts[-1][0]:,} instructions")
    (small, small_pings), (large, large_pings) = counts
    per_ping = (large - small) / (large_pings - small_pings)
    print(
        f"{args.backend} (driver {args.driver}), {args.n} sessions, "
        f"a Ping every {args.interval:g} s: "
        f"{per_ping / 1000:.1f} k instructions per Ping"
    )


if __name__ == "__main__":
    main()

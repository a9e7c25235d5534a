"""Profile alphapoint's side of one benchmark against the out-of-process echo server.

    python benchmarks/profile_hot_path.py calls            # cProfile, top entries by own time
    python benchmarks/profile_hot_path.py pipelined --profiler pyinstrument
    python benchmarks/profile_hot_path.py logins --backend trio
    python benchmarks/profile_hot_path.py decode
    python benchmarks/profile_hot_path.py calls --client alphapoint-fast   # or picows, floor

Only the client process is profiled (the server runs in its own process), so
what it shows is the library's own cost plus the event loop under it.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import clients
import decoding_bench
from servers import ServerProcess, available_impls


def _workload(
    bench: str, backend: str, n: int, client: str = "alphapoint"
) -> tuple[Callable[[], Any], ServerProcess | None]:
    creds = clients.Credentials(secrets.token_hex(8), secrets.token_hex(16), "7")
    if bench == "decode":
        return lambda: decoding_bench.alphapoint_loop(n), None
    server = ServerProcess(available_impls()[0], creds.api_key, creds.api_secret, creds.user_id)
    family = clients.loop_family(backend)
    if bench == "calls":
        fn: Callable[[], Any] = lambda: clients.run_on(  # noqa: E731
            backend, clients.CALLS[client, family], server.url, n, 100
        )
    elif bench == "pipelined":
        fn = lambda: clients.run_on(  # noqa: E731
            backend, clients.PIPELINED[client, family], server.url, n, 100, 1000
        )
    else:
        fn = lambda: clients.run_on(  # noqa: E731
            backend, clients.LOGINS[client, family], server.url, n, 10, creds
        )
    return fn, server


def main() -> None:
    parser = argparse.ArgumentParser(description="Profile alphapoint's hot path.")
    parser.add_argument("bench", choices=["calls", "pipelined", "logins", "decode"])
    parser.add_argument("--backend", choices=["asyncio", "uvloop", "trio"], default="asyncio")
    parser.add_argument("--profiler", choices=["cprofile", "pyinstrument"], default="cprofile")
    parser.add_argument("-n", type=int, default=None, help="calls, logins or decodes")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--client", default="alphapoint", help="alphapoint, alphapoint-fast, picows or floor"
    )
    args = parser.parse_args()
    default_n = {"calls": 5000, "pipelined": 20000, "logins": 300, "decode": 50000}
    n = args.n or default_n[args.bench]
    fn, server = _workload(args.bench, args.backend, n, args.client)
    try:
        if args.profiler == "pyinstrument":
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0001, async_mode="disabled")
            profiler.start()
            fn()
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False))
        else:
            # CPU time, not wall time: on a shared machine other processes'
            # time slices would otherwise be charged to whatever was running.
            profile = cProfile.Profile(time.process_time)
            profile.runcall(fn)
            out = io.StringIO()
            stats = pstats.Stats(profile, stream=out)
            stats.sort_stats("tottime").print_stats(args.top)
            print(out.getvalue())
            # Calls do not drift with the machine's load as times do.
            total = sum(entry[1] for entry in stats.stats.values())  # type: ignore[attr-defined]
            print(f"function calls (Python and built-in) per operation: {total / n:.1f}")
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()

"""Idle sessions and many logins at once: ``python benchmarks/idle.py``.

For each backend and client, a fresh process (``many_sessions.py``) logs N
sessions in at once against the echo server (``servers.py``, a process of its
own), then leaves them idle for a window and reports, per session:

* the process's CPU time over the window, per second (``time.process_time``:
  what keepalive and timers cost a session that does nothing; the server's
  work is in the other process);
* the objects the garbage collector tracks (``len(gc.get_objects())`` before
  and after the logins);
* the time until all N were logged in, and how many runs failed (a session
  that fails ends its run).

alphapoint runs with the library's defaults (its open limiter included)
unless ``--open-limit`` says otherwise, once with the default install's
driver under asyncio and uvloop (``alphapoint:asyncio``) and once with the
fast extra's (``alphapoint:picows``; see ``CLIENTS``); the raw clients have no such tool, so
the harness bounds their set-ups (``--floor-open-limit``, 100 by default;
``0`` shows them unbounded).

Each measurement is repeated ``--repeats`` times, the clients in a rotating
order; the table shows medians and the min-max spread. The machine is shared
and noisy: CPU time, not wall time, and medians. ``--python-path DIR`` runs
alphapoint from another checkout (the "before" column of docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from servers import ServerProcess, available_impls  # noqa: E402

#: The clients measured: the raw websockets floor, and alphapoint with a driver
#: ("alphapoint:asyncio", what the default install runs under asyncio and
#: uvloop; "alphapoint:picows", the fast extra's; plain "alphapoint" is
#: driver="auto", which is picows when it is installed). trio has one driver
#: (anyio's): there every "alphapoint:..." is one row, "alphapoint".
CLIENTS = ["floor", "alphapoint:asyncio", "alphapoint:picows"]
BACKENDS = ["asyncio", "uvloop", "trio"]


def run_one(
    url: str,
    client: str,
    backend: str,
    n: int,
    idle: float,
    env: dict[str, str],
    extra: list[str],
    floor_extra: list[str],
) -> dict[str, Any]:
    client, _, driver = client.partition(":")
    command = [
        sys.executable,
        os.path.join(HERE, "many_sessions.py"),
        url,
        "--client",
        client,
        *(["--driver", driver] if driver else []),
        "--backend",
        backend,
        "-n",
        str(n),
        "--idle",
        str(idle),
        *(extra if client == "alphapoint" else floor_extra),
    ]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        # The exception group's members: the most frequent error line says why.
        errors = Counter(
            line.strip(" |+")
            for line in done.stderr.splitlines()
            if re.match(r"^[\s|+]*[\w.]+(Error|Timeout|Closed|Exception)\b: ", line)
        )
        why = errors.most_common(1)[0][0] if errors else f"exit {done.returncode}"
        return {"error": why[:120], "failures": sum(errors.values())}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def clients_for(backend: str, clients: list[str]) -> list[str]:
    """The clients to run under ``backend``: under trio, one "alphapoint" for all its drivers."""
    if backend != "trio":
        return clients
    chosen = [c if c == "floor" or c == "picows" else "alphapoint" for c in clients]
    return list(dict.fromkeys(chosen))


def summary(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return f"{fmt.format(statistics.median(values))} [{low}-{high}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle window")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument(
        "--open-limit", type=int, default=None, help="alphapoint's open_limiter (default: its own)"
    )
    parser.add_argument(
        "--keepalive", type=float, default=None, help="alphapoint's keepalive interval and timeout"
    )
    parser.add_argument(
        "--floor-open-limit",
        type=int,
        default=100,
        help="the harness's bound on the raw clients' set-ups (0: none; they have no tool)",
    )
    parser.add_argument("--python-path", default=None, help="run alphapoint from this checkout")
    parser.add_argument("--from-log", default=None, help="print the table of an earlier run's log")
    args = parser.parse_args()
    backends, clients = args.backends.split(","), args.clients.split(",")
    if "picows" not in available_impls():  # no fast extra: no picows driver to measure
        clients = [c for c in clients if c != "alphapoint:picows"]
    if args.from_log:
        print_table(f"from {args.from_log}", read_log(args.from_log), backends, clients)
        return
    api_key, api_secret, user_id = secrets.token_hex(16), secrets.token_hex(32), "7"
    env = dict(
        os.environ, BENCH_API_KEY=api_key, BENCH_API_SECRET=api_secret, BENCH_USER_ID=user_id
    )
    if args.python_path:
        env["PYTHONPATH"] = os.path.abspath(args.python_path)
    extra = [] if args.open_limit is None else ["--open-limit", str(args.open_limit)]
    if args.keepalive is not None:
        extra += ["--keepalive", str(args.keepalive)]
    floor_extra = ["--open-limit", str(args.floor_open_limit)]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    started = time.perf_counter()
    impl = available_impls()[0]
    with ServerProcess(impl, api_key, api_secret, user_id) as server:
        for k in range(args.repeats):
            for backend in backends:
                these = clients_for(backend, clients)
                order = these[k % len(these) :] + these[: k % len(these)]
                for client in order:
                    result = run_one(
                        server.url, client, backend, args.n, args.idle, env, extra, floor_extra
                    )
                    print(
                        f"# {backend} {client}: {json.dumps(result)}", file=sys.stderr, flush=True
                    )
                    results.setdefault((backend, client), []).append(result)
    header = (
        f"idle sessions: n={args.n}, idle window {args.idle:g} s, {args.repeats} repeats, "
        f"echo server {impl}, {time.perf_counter() - started:.0f} s: "
        f"python benchmarks/idle.py {' '.join(sys.argv[1:])}"
    )
    print_table(header, results, backends, clients)


def read_log(path: str) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The results of a run from what it wrote to standard error (``# backend client: {...}``)."""
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with open(path) as log:
        for line in log:
            if line.startswith("# "):
                names, _, data = line[2:].partition(": ")
                backend, client = names.split()
                results.setdefault((backend, client), []).append(json.loads(data))
    return results


def print_table(
    header: str,
    results: dict[tuple[str, str], list[dict[str, Any]]],
    backends: list[str],
    clients: list[str],
) -> None:
    print(header)
    print()
    print(
        "| backend | client | idle CPU µs per session per s | of which GC "
        "| GC objects per session "
        "| full collection (s) | all logged in after (s) | login CPU µs each | failed runs |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for backend in backends:
        for client in clients_for(backend, clients):
            runs = results.get((backend, client), [])
            if not runs:
                continue
            ok = [r for r in runs if "error" not in r]
            failed = [r["error"] for r in runs if "error" in r]
            print(
                f"| {backend} | {client} "
                f"| {summary([r['idle_cpu_us'] for r in ok if 'idle_cpu_us' in r], '{:.2f}')} "
                f"| {summary([r['idle_gc_us'] for r in ok if 'idle_gc_us' in r], '{:.2f}')} "
                f"| {summary([r['objects_per_session'] for r in ok], '{:.1f}')} "
                f"| {summary([r['gc_full_collect_s'] for r in ok], '{:.2f}')} "
                f"| {summary([r['login_wall'] for r in ok], '{:.1f}')} "
                f"| {summary([r['login_cpu'] / r['sessions'] * 1e6 for r in ok], '{:.0f}')} "
                f"| {len(failed)}/{len(runs)}{': ' + failed[0] if failed else ''} |"
            )


if __name__ == "__main__":
    main()

"""How many CPU instructions the client executes per operation, counted by valgrind.

    python benchmarks/instructions.py [--only calls,pipelined,logins]
                                      [--backends asyncio,uvloop,trio]
                                      [--clients floor,alphapoint,picows,alphapoint-fast]
                                      (also: picows-strict)
                                      [--valgrind PATH]

The times in ``run.py`` move by a third between runs on a shared machine; the
number of instructions a client executes does not, so this shows changes too
small for the times to. It is a complement, not a substitute: it does not see
cache misses, system calls' cost in the kernel, or waiting.

The same benchmarks as ``run.py`` (``clients.py``'s functions, against the echo
server of ``servers.py`` in its own process, not under valgrind). Each client
runs in a child process (this file with the hidden ``--child`` argument) under
``valgrind --tool=callgrind``, which reports how many instructions that process
executed. Each runs twice, with a small and a large ``n`` and the same warm-up:
the difference divided by the difference in ``n`` is the instructions per
operation, with the interpreter's start-up, the imports, connecting and the
warm-up cancelled out. Under valgrind Python runs some 50 times slower and a
child's start-up alone takes about 20 s: the full default run takes about 16
minutes, with a progress line on standard error after each child.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import clients  # noqa: E402
from servers import ServerProcess, available_impls  # noqa: E402

BENCHES = ["calls", "pipelined", "logins"]
#: alphapoint as the default install, and with the fast extra (picows, orjson).
CLIENTS = ["floor", "alphapoint", "picows", "alphapoint-fast"]
#: Clients run only when named with ``--clients`` (clients.py says what each is).
EXTRA_CLIENTS = ["picows-strict"]
CONCURRENCY = 100  # pipelined calls in flight, as run.py
USER_ID = "7"
TIMEOUT = 600.0  # seconds for one child under valgrind


@dataclass(frozen=True)
class Size:
    """The two runs of a benchmark: ``small`` and ``large`` operations after ``warmup``."""

    small: int
    large: int
    warmup: int


#: Under valgrind a child's start-up and imports alone take some 20 s; the large
#: run's extra operations add 3-15 s (a login ~1 ms natively, a Ping ~0.1 ms, a
#: pipelined call ~30 µs, and trio about twice asyncio's instructions).
SIZES = {
    "calls": Size(200, 1200, 50),
    "pipelined": Size(500, 2500, 500),
    "logins": Size(20, 120, 5),
}

_COLLECTED = re.compile(r"^==\d+== Collected : (\d+)\s*$", re.MULTILINE)


def under_callgrind(valgrind: str, script: str, *args: str) -> list[str]:
    """The command that runs ``script`` with ``args`` in this Python under callgrind,
    counting instructions only (its report on standard error: :func:`collected`)."""
    callgrind = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    return [*callgrind, sys.executable, os.path.abspath(script), *args]


def collected(stderr: str) -> int:
    """The instruction count from callgrind's report on standard error (``Collected :``)."""
    match = _COLLECTED.search(stderr)
    if match is None:
        raise ValueError("no 'Collected :' line in valgrind's output")
    return int(match.group(1))


def per_op(small: int, small_count: int, large: int, large_count: int) -> float:
    """Instructions per operation from two runs of ``small`` and ``large`` operations."""
    if large <= small:
        raise ValueError(f"the large run ({large}) must do more than the small one ({small})")
    return (large_count - small_count) / (large - small)


def human(count: float) -> str:
    """``2.015 M``, ``51.2 k``, ``950``."""
    if abs(count) >= 1e6:
        return f"{count / 1e6:.3f} M"
    if abs(count) >= 1e3:
        return f"{count / 1e3:.1f} k"
    return f"{count:.0f}"


# -- the child: one benchmark run, under valgrind ----------------------------------


def child(argv: list[str]) -> None:
    bench, backend, client, url, n, nonces, key, secret = argv
    family, warmup = clients.loop_family(backend), SIZES[bench].warmup
    if bench == "calls":
        clients.run_on(backend, clients.CALLS[client, family], url, int(n), warmup)
    elif bench == "pipelined":
        fn = clients.PIPELINED[client, family]
        clients.run_on(backend, fn, url, int(n), CONCURRENCY, warmup)
    else:
        creds = clients.Credentials(key, secret, USER_ID)
        creds.start_nonces(int(nonces))  # the server refuses a nonce it has seen
        clients.run_on(backend, clients.LOGINS[client, family], url, int(n), warmup, creds)


# -- the parent: the server, the children, the table -------------------------------


class ChildFailed(Exception):
    def __init__(self, message: str, stderr: str) -> None:
        super().__init__(message)
        self.stderr = stderr


class Counter:
    """Runs children under callgrind against one server and reads their counts."""

    def __init__(self, valgrind: str, server: ServerProcess, creds: clients.Credentials) -> None:
        self.valgrind, self.server, self.creds = valgrind, server, creds
        self.runs = 0

    def count(self, bench: str, backend: str, client: str, n: int) -> int:
        self.runs += 1
        nonces = self.runs * 1_000_000  # each child's own range: no nonce is used twice
        command = under_callgrind(
            self.valgrind,
            __file__,
            "--child",
            bench,
            backend,
            client,
            self.server.url,
            str(n),
            str(nonces),
            self.creds.api_key,
            self.creds.api_secret,
        )
        # A fixed hash seed: the same dict and set layouts in every run.
        env = dict(os.environ, PYTHONHASHSEED="0")
        which = f"{bench}/{backend}/{client} n={n}"
        try:
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
            raise ChildFailed(f"{which} timed out after {TIMEOUT:.0f} s", stderr) from None
        if done.returncode != 0:
            raise ChildFailed(f"{which} exited with status {done.returncode}", done.stderr)
        try:
            return collected(done.stderr)
        except ValueError as exc:
            raise ChildFailed(f"{which}: {exc}", done.stderr) from None


@dataclass
class Row:
    bench: str
    backend: str
    client: str
    status: str = "ok"  # ok or not installed
    per_op: float | None = None


def plan(
    benches: list[str],
    backends: list[str],
    names: list[str],
    availability: Callable[[str, str], str],
) -> list[Row]:
    """The rows to measure, in table order; ``availability`` is ``run.availability``."""
    rows = [
        Row(bench, backend, client, availability(client, backend))
        for bench in benches
        for backend in backends
        for client in names
        if (client, clients.loop_family(backend)) in clients.BY_BENCH[bench]  # has a run
    ]
    # And runs on this backend, not only on its loop family (uvloop is asyncio's
    # family: a client of asyncio alone, as ccxt, is n/a there).
    return [row for row in rows if row.status != "n/a"]


def measure(counter: Counter, rows: list[Row], log: Callable[[str], None]) -> None:
    """Fill in each runnable row's instructions per operation."""
    for row in rows:
        if row.status != "ok":
            continue
        size, counts = SIZES[row.bench], []
        for n in (size.small, size.large):
            counts.append(counter.count(row.bench, row.backend, row.client, n))
            log(f"{row.bench}/{row.backend}/{row.client} n={n}: {counts[-1]:,} instructions")
        row.per_op = per_op(size.small, counts[0], size.large, counts[1])


def table(rows: list[Row]) -> str:
    header = ["benchmark", "backend", "client", "instructions per op", "vs floor"]
    floors = {(r.bench, r.backend): r.per_op for r in rows if r.client == "floor"}
    lines = []
    for row in rows:
        floor = floors.get((row.bench, row.backend))
        if row.per_op is None:
            cells = [row.status, ""]
        elif row.client == "floor":
            cells = [human(row.per_op), "1 (floor)"]
        else:
            cells = [human(row.per_op), f"{row.per_op / floor:.2f}x" if floor else ""]
        lines.append([row.bench, row.backend, row.client, *cells])
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [render(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(render(line) for line in lines)
    return "\n".join(out)


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return 0
    import run  # not at the top: a child does not need it, and under valgrind it costs 4 s

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHES), help="benchmarks, comma-separated")
    parser.add_argument("--backends", default=",".join(run.BACKENDS), help="comma-separated")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated")
    parser.add_argument("--valgrind", default="valgrind", help="the valgrind to run")
    args = parser.parse_args()
    benches, backends, names = (
        [x for x in value.split(",") if x] for value in (args.only, args.backends, args.clients)
    )
    unknown = (
        sorted(set(benches) - set(BENCHES))
        + sorted(set(backends) - set(run.BACKENDS))
        + sorted(set(names) - set(CLIENTS) - set(EXTRA_CLIENTS))
    )
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    valgrind = shutil.which(args.valgrind)
    if valgrind is None:
        print(
            f"instructions.py: valgrind not found ({args.valgrind!r}): install it "
            "(apt-get install valgrind) or pass --valgrind PATH",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    creds = clients.Credentials(secrets.token_hex(16), secrets.token_hex(32), USER_ID)
    impl = available_impls()[0]
    log(f"starting the {impl} echo server; each client runs under {valgrind}")
    rows = plan(benches, backends, names, run.availability)
    with ServerProcess(impl, creds.api_key, creds.api_secret, creds.user_id) as server:
        try:
            measure(Counter(valgrind, server, creds), rows, log)
        except ChildFailed as exc:
            tail = exc.stderr.strip().splitlines()[-25:]
            print(f"instructions.py: a child failed, {exc}", *tail, sep="\n", file=sys.stderr)
            return 1
    sizes = ", ".join(f"{b} n={SIZES[b].small} and {SIZES[b].large}" for b in benches)
    command = " ".join(["python benchmarks/instructions.py", *sys.argv[1:]])
    print(
        f"Instructions executed by the client process per operation (valgrind callgrind, "
        f"the difference between two runs: {sizes}; echo server: {impl}, not under valgrind; "
        f"{time.perf_counter() - started:.0f} s): {command}"
    )
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

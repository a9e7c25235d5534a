"""Hunt flaky tests: run the suite (or chosen tests) many times, each in a new order.

Each run is ``python -m pytest --shuffle SEED`` (the order option of
``tests/conftest.py``) with a new seed; with ``--busy``, some runs have the
machine's other cores kept busy by busy-loop processes, as on a loaded CI
machine. At the end it prints every test that failed at least once, how many
times and under which seeds (``python -m pytest --shuffle SEED`` replays a
run's order), and exits 1 if any run failed::

    python scripts/flake_hunt.py --runs 10 --busy half
    python scripts/flake_hunt.py --runs 30 --busy all -- tests/test_session.py -k timeout

Each run's output is kept in a log directory (``--logs``; printed at the end).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: "FAILED tests/test_x.py::test_y[trio] - AssertionError: ..." in pytest's short summary.
SUMMARY_LINE = re.compile(r"^(FAILED|ERROR) (\S+)")
#: pytest's last line: "=== 3 failed, 1325 passed in 98.58s (0:01:38) ===".
COUNT = re.compile(r"(\d+) (passed|failed|errors?)\b")


@dataclass
class Run:
    number: int
    seed: int
    busy: int
    code: int = 0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    log: Path = Path()


def busy_plan(runs: int, mode: str) -> list[bool]:
    """Which runs have the other cores kept busy: none, every second one (half), or all."""
    if mode == "all":
        return [True] * runs
    if mode == "half":
        return [number % 2 == 1 for number in range(runs)]
    return [False] * runs


@contextmanager
def busy_cores(count: int) -> Iterator[None]:
    """``count`` processes spinning in a loop for the duration of the block."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()


def run_once(run: Run, pytest_args: list[str], logs: Path) -> None:
    command = [sys.executable, "-m", "pytest", "--shuffle", str(run.seed), *pytest_args]
    run.log = logs / f"run-{run.number:03d}-seed-{run.seed}{'-busy' if run.busy else ''}.log"
    started = time.monotonic()
    with run.log.open("w") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        with busy_cores(run.busy):
            done = subprocess.run(  # noqa: S603 - this Python, running pytest
                command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False
            )
    run.seconds = time.monotonic() - started
    run.code = done.returncode
    lines = run.log.read_text(errors="replace").splitlines()
    run.failed = [m.group(2) for line in lines if (m := SUMMARY_LINE.match(line))]
    last = next((line for line in reversed(lines) if COUNT.search(line)), "")
    run.counts = {kind.rstrip("s"): int(n) for n, kind in COUNT.findall(last)}


def describe(run: Run) -> str:
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(run.counts.items())) or "no counts"
    busy = f", {run.busy} busy" if run.busy else ""
    outcome = "ok" if run.code == 0 else f"exit {run.code}"
    return (
        f"run {run.number + 1}: seed {run.seed}{busy}: {counts} in {run.seconds:.0f} s: {outcome}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the tests many times in random orders, optionally on a busy "
        "machine, and report every test that failed at least once.",
        epilog="Arguments after -- go to pytest (tests to run, -k, -x...).",
    )
    parser.add_argument("--runs", type=int, default=10, help="how many runs (default: 10)")
    parser.add_argument(
        "--busy",
        choices=["none", "half", "all"],
        default="none",
        help="which runs keep the other cores busy: none (default), every second one, all",
    )
    parser.add_argument(
        "--busy-processes",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        metavar="N",
        help="busy-loop processes in a busy run (default: the other cores, at least 1)",
    )
    parser.add_argument(
        "--seed", type=int, help="the first run's seed (default: random); run i uses SEED + i"
    )
    parser.add_argument("--logs", type=Path, help="where to keep each run's output")
    args, pytest_args = parser.parse_known_args(argv)
    if pytest_args[:1] == ["--"]:
        pytest_args = pytest_args[1:]
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    first = args.seed if args.seed is not None else random.randrange(10**6)  # noqa: S311 - an order, not a secret
    logs = args.logs or Path(tempfile.mkdtemp(prefix="flake-hunt-"))
    logs.mkdir(parents=True, exist_ok=True)

    runs: list[Run] = []
    for number, busy in enumerate(busy_plan(args.runs, args.busy)):
        run = Run(number, first + number, args.busy_processes if busy else 0)
        run_once(run, pytest_args, logs)
        runs.append(run)
        print(describe(run), flush=True)

    failures: Counter[str] = Counter()
    seeds: defaultdict[str, list[str]] = defaultdict(list)
    for run in runs:
        for test in run.failed:
            failures[test] += 1
            seeds[test].append(f"{run.seed}{' (busy)' if run.busy else ''}")
    bad_runs = [run for run in runs if run.code != 0]
    busy_runs = sum(1 for run in runs if run.busy)
    print()
    print(
        f"runs: {len(runs)} ({busy_runs} with {args.busy_processes} busy process(es)), "
        f"failed runs: {len(bad_runs)}"
    )
    print(f"seeds: {', '.join(str(run.seed) for run in runs)}")
    print(f"logs: {logs}")
    if failures:
        print("tests that failed at least once (count, test, seeds):")
        for test, count in failures.most_common():
            print(f"  {count}  {test}  seeds {', '.join(seeds[test])}")
    for run in bad_runs:
        if not run.failed:  # no test to blame: pytest itself failed, or ran no test (5)
            print(f"run {run.number + 1} (seed {run.seed}) exited {run.code}: see {run.log}")
    if not bad_runs:
        print("no test failed")
    return 1 if bad_runs else 0


if __name__ == "__main__":
    sys.exit(main())

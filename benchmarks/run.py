"""Run every benchmark and print one table: ``python benchmarks/run.py``.

Each benchmark races alphapoint against a floor measured in the same run (a
hand-written loop over the raw ``websockets`` client doing the same work on the
wire; ``json.loads`` alone for decoding), with ``picows`` (and, for the Ping
round trip, ccxt's ndax client) as a reference. Every measurement is repeated;
within one repetition the clients run back to back in a rotating order, and
each client's result is divided by the floor's from that same repetition. The
table shows the median and the min-max spread of those ratios, and of the raw
numbers. The server runs in its own process, so the client CPU time per call
(``time.process_time`` in this process) is the client's own cost.

Outputs: the table (Markdown) on standard output, a JSON of every sample and
the plot of the ratios (``docs/performance.json`` and ``docs/performance.png``
unless ``--out`` says where). ``--smoke`` runs everything tiny, in seconds,
writes into a temporary directory unless ``--out`` is given, and marks the
rows whose packages (the ``bench`` extra) are not installed instead of failing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import clients  # noqa: E402
import decoding_bench  # noqa: E402
from servers import ServerProcess, available_impls  # noqa: E402

BACKENDS = ["asyncio", "uvloop", "trio"]
BENCHES = ["decode", "calls", "pipelined", "logins", "sessions"]
#: Benchmarks with a table of their own, run as scripts after the main table:
#: name -> (script, arguments for a full run, for a smoke run). "idle" (10,000
#: sessions on every backend, some 20 minutes) runs only when asked for by --only.
TABLES = {
    "fanout": ("fan_out.py", [], ["--events", "500", "--counts", "1,10", "--repeats", "1"]),
    "idle": ("idle.py", [], ["-n", "20", "--idle", "1", "--repeats", "1"]),
}
DEFAULT_TABLES = ["fanout"]
#: The clients in each benchmark, in table order; "floor" is the baseline.
CLIENTS = {
    "calls": ["floor", "alphapoint", "picows", "picows-strict", "alphapoint-fast", "ccxt"],
    "pipelined": ["floor", "alphapoint", "picows", "alphapoint-fast"],
    "logins": ["floor", "alphapoint", "picows", "picows-strict", "alphapoint-fast"],
    "sessions": ["floor", "alphapoint", "picows"],
    "decode": ["json.loads", "alphapoint", "alphapoint-fast", "msgspec", "orjson.loads"],
}
#: The package each client or backend needs beyond the dev extra.
NEEDS = {
    "picows": "picows",
    "picows-strict": "picows",
    "alphapoint-fast": "picows",
    "ccxt": "ccxt",
    "uvloop": "uvloop",
    "msgspec": "msgspec",
}
#: Which backends each client runs under, where not all of them.
BACKENDS_OF = {
    "picows": {"asyncio", "uvloop"},
    "picows-strict": {"asyncio", "uvloop"},
    "alphapoint-fast": {"asyncio", "uvloop"},
    "ccxt": {"asyncio"},
}
#: The module a client needs under one backend: the floor under trio is
#: websockets' trio client, which the websockets for Python 3.10 does not have.
NEEDS_UNDER = {("floor", "trio"): "websockets.trio"}
TARGETS = {
    "calls": "wall and CPU <= 1.10x",
    "pipelined": ">= 0.90x",
    "logins": ">= 0.90x",
    "sessions": "< 64 KiB/session",
}
VERSIONED = [
    "alphapoint",
    "websockets",
    "anyio",
    "attrs",
    "cattrs",
    "trio",
    "picows",
    "uvloop",
    "msgspec",
    "orjson",
    "ccxt",
    "aiohttp",
    "matplotlib",
]


@dataclass
class Config:
    repeats: dict[str, int]
    calls: int = 3000
    calls_warmup: int = 300
    pipelined: int = 10_000
    concurrency: int = 100
    pipelined_warmup: int = 2000
    logins: int = 300
    logins_warmup: int = 20
    sessions: int = 1000
    decodes: int = 20_000
    timeout: float = 120.0


FULL = Config(repeats={"calls": 9, "pipelined": 7, "logins": 7, "sessions": 3, "decode": 9})
SMOKE = Config(
    repeats={"calls": 1, "pipelined": 1, "logins": 1, "sessions": 1, "decode": 1},
    calls=30,
    calls_warmup=5,
    pipelined=200,
    concurrency=20,
    pipelined_warmup=20,
    logins=5,
    logins_warmup=1,
    sessions=10,
    decodes=200,
    timeout=30.0,
)


@dataclass
class Row:
    """One line of the table: a client in a benchmark under a backend (or casing)."""

    bench: str
    backend: str
    client: str
    #: Per repetition: {"value", "cpu"} or None where the run failed.
    samples: list[dict[str, float] | None] = field(default_factory=list)
    status: str = "ok"  # ok, not installed, n/a, error: ...
    summary: dict[str, Any] = field(default_factory=dict)


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def machine() -> dict[str, Any]:
    """What this ran on: cores, CPU, Python, package versions."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "versions": versions,
    }


# -- running -----------------------------------------------------------------------


def rotated(items: list[str], k: int) -> list[str]:
    if not items:
        return items
    k %= len(items)
    return items[k:] + items[:k]


def availability(client: str, backend: str) -> str:
    """``ok``, ``not installed`` (a bench-only package is missing) or ``n/a``."""
    if client in BACKENDS_OF and backend not in BACKENDS_OF[client]:
        return "n/a"
    for name in (client, backend):
        if name in NEEDS and not installed(NEEDS[name]):
            return "not installed"
    module = NEEDS_UNDER.get((client, backend))
    if module is not None and not installed(module):
        return "not installed"
    return "ok"


def bounded(backend: str, timeout: float, fn: Callable[..., Any], *args: Any) -> Any:
    """``clients.run_on`` with an overall time limit, so a stuck run fails instead of hanging."""

    async def run() -> Any:
        if backend == "trio":
            import trio

            with trio.fail_after(timeout):
                return await fn(*args)
        import asyncio

        return await asyncio.wait_for(fn(*args), timeout)

    return clients.run_on(backend, run)


class Runner:
    def __init__(self, config: Config, benches: list[str], backends: list[str], log: Any) -> None:
        self.config, self.benches, self.backends, self.log = config, benches, backends, log
        self.rows: list[Row] = []
        self.creds = clients.Credentials(secrets.token_hex(16), secrets.token_hex(32), "7")
        self.server: ServerProcess | None = None

    def row(self, bench: str, backend: str, client: str) -> Row:
        for row in self.rows:
            if (row.bench, row.backend, row.client) == (bench, backend, client):
                return row
        row = Row(bench, backend, client)
        self.rows.append(row)
        return row

    def sample(self, row: Row, measure: Callable[[], dict[str, float]]) -> None:
        try:
            row.samples.append(measure())
        except Exception as exc:  # noqa: BLE001 - a failed run is reported in the table
            row.samples.append(None)
            row.status = f"error: {type(exc).__name__}: {exc}"[:120]
            self.log(f"  {row.bench}/{row.backend}/{row.client} failed: {row.status}")

    # -- the benchmarks ---------------------------------------------------------------

    def run_decode(self) -> None:
        decoding_bench.check()
        decoders = decoding_bench.decoders()
        n = self.config.decodes
        for k in range(self.config.repeats["decode"]):
            for casing, text in decoding_bench.TEXTS.items():
                for client in rotated(CLIENTS["decode"], k):
                    row = self.row("decode", casing, client)
                    fns = decoders[client]
                    if fns is None:
                        row.status = "not installed"
                        continue
                    fn = fns[casing]
                    self.sample(
                        row,
                        lambda fn=fn, text=text: {
                            "value": decoding_bench.measure(fn, text, n),
                            "cpu": 0.0,
                        },
                    )

    def run_network(self, bench: str) -> None:
        assert self.server is not None
        url, config = self.server.url, self.config
        table = clients.BY_BENCH
        for backend in self.backends:
            names = CLIENTS[bench]
            for client in names:
                self.row(bench, backend, client).status = availability(client, backend)
            runnable = [c for c in names if self.row(bench, backend, c).status == "ok"]
            for k in range(config.repeats[bench]):
                self.log(f"{bench} under {backend}: repetition {k + 1}/{config.repeats[bench]}")
                for client in rotated(runnable, k):
                    fn = table[bench][client, clients.loop_family(backend)]
                    row = self.row(bench, backend, client)
                    self.sample(
                        row, lambda fn=fn, backend=backend: self.measure(bench, backend, fn, url)
                    )

    def measure(self, bench: str, backend: str, fn: Any, url: str) -> dict[str, float]:
        c, t = self.config, self.config.timeout
        if bench == "calls":
            wall, cpu = bounded(backend, t, fn, url, c.calls, c.calls_warmup)
            return {"value": wall / c.calls * 1e6, "cpu": cpu / c.calls * 1e6}
        if bench == "pipelined":
            n = c.pipelined
            wall, cpu = bounded(backend, t, fn, url, n, c.concurrency, c.pipelined_warmup)
            return {"value": n / wall, "cpu": cpu / n * 1e6}
        wall, cpu = bounded(backend, t, fn, url, c.logins, c.logins_warmup, self.creds)
        return {"value": c.logins / wall, "cpu": cpu / c.logins * 1e6}

    def run_sessions(self) -> None:
        assert self.server is not None
        env = dict(
            os.environ,
            BENCH_API_KEY=self.creds.api_key,
            BENCH_API_SECRET=self.creds.api_secret,
            BENCH_USER_ID=self.creds.user_id,
        )
        backends = [b for b in self.backends if b != "uvloop"] or self.backends
        for backend in backends:
            for client in CLIENTS["sessions"]:
                self.row("sessions", backend, client).status = availability(client, backend)
            runnable = [
                c for c in CLIENTS["sessions"] if self.row("sessions", backend, c).status == "ok"
            ]
            for k in range(self.config.repeats["sessions"]):
                self.log(f"sessions under {backend}: repetition {k + 1}")
                for client in rotated(runnable, k):
                    command = [
                        sys.executable,
                        os.path.join(HERE, "many_sessions.py"),
                        self.server.url,
                        "--client",
                        client,
                        "--backend",
                        backend,
                        "-n",
                        str(self.config.sessions),
                    ]

                    def measure(command: list[str] = command) -> dict[str, float]:
                        done = subprocess.run(
                            command,
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=self.config.timeout,
                            check=False,
                        )
                        if done.returncode != 0:
                            raise RuntimeError(done.stderr.strip().splitlines()[-1:])
                        result = json.loads(done.stdout)
                        return {
                            "value": result["rss_per_session"] / 1024,
                            "cpu": result["login_cpu"] / result["sessions"] * 1e6,
                            "login_wall": result["login_wall"],
                        }

                    self.sample(self.row("sessions", backend, client), measure)

    def run(self) -> None:
        if "decode" in self.benches:
            self.log("decode")
            self.run_decode()
        network = [b for b in self.benches if b != "decode"]
        if not network:
            return
        impl = available_impls()[0]
        self.log(f"starting the {impl} echo server")
        with ServerProcess(
            impl, self.creds.api_key, self.creds.api_secret, self.creds.user_id
        ) as server:
            self.server = server
            for bench in network:
                if bench == "sessions":
                    self.run_sessions()
                else:
                    self.run_network(bench)
        self.server_impl = impl


# -- summarising ---------------------------------------------------------------------


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(rows: list[Row]) -> None:
    """Medians and spreads of each row's values and of its per-repetition ratios to the floor."""
    for row in rows:
        floor_name = "json.loads" if row.bench == "decode" else "floor"
        floor = next(
            (
                r
                for r in rows
                if (r.bench, r.backend, r.client) == (row.bench, row.backend, floor_name)
            ),
            None,
        )
        values = [s["value"] for s in row.samples if s is not None]
        if not values:
            continue
        row.summary["value"] = spread(values)
        cpus = [s["cpu"] for s in row.samples if s is not None]
        row.summary["cpu"] = spread(cpus)
        if row.bench == "sessions":
            row.summary["login_wall"] = spread(
                [s["login_wall"] for s in row.samples if s is not None]
            )
        if floor is None or floor is row:
            continue
        # A floor of 0 (a smoke run's RSS growth can read 0 KiB at page
        # granularity) gives no ratio.
        pairs = [
            (s, f)
            for s, f in zip(row.samples, floor.samples, strict=False)
            # (decode rows have no CPU time of their own: their time is CPU)
            if s is not None
            and f is not None
            and f["value"]
            and (f["cpu"] or row.bench == "decode")
        ]
        if pairs:
            row.summary["ratio"] = spread([s["value"] / f["value"] for s, f in pairs])
            if row.bench not in ("decode",):
                row.summary["cpu_ratio"] = spread([s["cpu"] / f["cpu"] for s, f in pairs])
    for row in rows:
        if row.bench == "decode" and row.client == "alphapoint":
            peer = next(
                (
                    r
                    for r in rows
                    if (r.bench, r.backend, r.client) == ("decode", row.backend, "msgspec")
                ),
                None,
            )
            if peer is not None and "value" in peer.summary and "value" in row.summary:
                row.summary["vs_msgspec"] = (
                    row.summary["value"]["median"] / peer.summary["value"]["median"]
                )


def verdict(row: Row) -> str:
    """Whether an alphapoint row meets its target (on the medians)."""
    s = row.summary
    if row.bench == "decode" and row.client in DECODE_TARGETS and "ratio" in s:
        target = DECODE_TARGETS[row.client]
        met = s["ratio"]["median"] <= target
        return f"<= {target}x json.loads: {'met' if met else 'NOT met'}"
    if row.client != "alphapoint" or not s:
        return ""
    if row.bench == "sessions":
        met = s["value"]["median"] < 64
    elif "ratio" not in s:
        return ""
    elif row.bench == "calls":
        met = s["ratio"]["median"] <= 1.10 and s["cpu_ratio"]["median"] <= 1.10
    else:
        met = s["ratio"]["median"] >= 0.90
    return f"{TARGETS[row.bench]}: {'met' if met else 'NOT met'}"


#: Decoding the AuthenticateUser reply, at most so many times json.loads (issue 16).
DECODE_TARGETS = {"alphapoint": 2.5, "alphapoint-fast": 1.6}

UNITS = {
    "calls": ("µs/call", "{:.1f}"),
    "pipelined": ("calls/s", "{:,.0f}"),
    "logins": ("logins/s", "{:,.0f}"),
    "sessions": ("KiB/session", "{:.1f}"),
    "decode": ("µs/decode", "{:.2f}"),
}
HEADER = [
    "benchmark",
    "backend",
    "client",
    "result: median [min-max]",
    "vs floor: median [min-max]",
    "client CPU µs/op",
    "CPU vs floor",
    "target",
]


def fmt_spread(s: dict[str, float], pattern: str) -> str:
    return f"{pattern.format(s['median'])} [{pattern.format(s['min'])}-{pattern.format(s['max'])}]"


def table(rows: list[Row]) -> str:
    lines = []
    for row in rows:
        if row.status == "n/a":
            continue  # a client that does not run under this backend (picows under trio)
        unit, pattern = UNITS[row.bench]
        s = row.summary
        if row.status != "ok" or not s:
            cells = [row.status if row.status != "ok" else "no result", "", "", "", ""]
        else:
            result = f"{fmt_spread(s['value'], pattern)} {unit}"
            if row.bench == "sessions":
                result += f", all in {s['login_wall']['median']:.2f} s"
            ratio = fmt_spread(s["ratio"], "{:.2f}") + "x" if "ratio" in s else "1 (floor)"
            cpu = "" if row.bench == "decode" else f"{s['cpu']['median']:.1f}"
            cpu_ratio = fmt_spread(s["cpu_ratio"], "{:.2f}") + "x" if "cpu_ratio" in s else ""
            cells = [result, ratio, cpu, cpu_ratio, verdict(row)]
        lines.append([row.bench, row.backend, row.client, *cells])
    widths = [max(len(str(line[i])) for line in [HEADER, *lines]) for i in range(len(HEADER))]

    def render(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [render(HEADER), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(render(line) for line in lines)
    return "\n".join(out)


# -- the plot ------------------------------------------------------------------------


def plot(rows: list[Row], path: str, title: str) -> bool:
    """Bar charts of the ratios to the floor (median, with min-max error bars)."""
    if not installed("matplotlib"):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("calls", "ratio", "1. Ping round trip: wall time vs floor (lower is better)", 1.10),
        ("calls", "cpu_ratio", "1. Ping round trip: client CPU vs floor (lower is better)", 1.10),
        ("pipelined", "ratio", "2. Pipelined throughput vs floor (higher is better)", 0.90),
        ("logins", "ratio", "3. Logins per second vs floor (higher is better)", 0.90),
        ("sessions", "value", "4. KiB per idle authenticated session (lower is better)", 64),
        ("decode", "ratio", "5. Decode time vs json.loads alone (lower is better)", None),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.0 * len(panels)))
    colors = {
        "alphapoint": "tab:blue",
        "alphapoint-fast": "tab:cyan",
        "picows": "tab:orange",
        "picows-strict": "tab:brown",
        "ccxt": "tab:green",
        "msgspec": "tab:orange",
        "floor": "tab:gray",
    }
    for ax, (bench, key, label, target) in zip(axes, panels, strict=True):
        selected = [
            r
            for r in rows
            if r.bench == bench and key in r.summary and (key == "value" or r.client != "floor")
        ]
        labels = [f"{r.backend}\n{r.client}" for r in selected]
        medians = [r.summary[key]["median"] for r in selected]
        low = [m - r.summary[key]["min"] for m, r in zip(medians, selected, strict=True)]
        high = [r.summary[key]["max"] - m for m, r in zip(medians, selected, strict=True)]
        ax.bar(
            range(len(selected)),
            medians,
            yerr=[low, high],
            capsize=3,
            color=[colors.get(r.client, "tab:gray") for r in selected],
        )
        for x, m in enumerate(medians):
            ax.annotate(
                f"{m:.2f}",
                (x, m),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 2),
                textcoords="offset points",
            )
        ax.set_xticks(range(len(selected)), labels, fontsize=7)
        ax.set_title(label, fontsize=9)
        if key != "value":
            ax.axhline(1.0, color="black", linewidth=0.8)
        if target is not None:
            ax.axhline(target, color="red", linestyle="--", linewidth=0.8, label=f"target {target}")
            ax.legend(fontsize=7, loc="upper right")
        if bench == "decode":
            ax.set_yscale("log")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# -- main ---------------------------------------------------------------------------


def run_tables(names: list[str], smoke: bool, backends: list[str], log: Any) -> bool:
    """Run the benchmarks that print a table of their own; print each. True if one failed."""
    failed = False
    for name in names:
        script, full, small = TABLES[name]
        command = [sys.executable, os.path.join(HERE, script), *(small if smoke else full)]
        command += ["--backends", ",".join(backends)]
        log(f"{name}: {' '.join(command[1:])}")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        print()
        if done.returncode != 0:
            failed = True
            lines = done.stderr.strip().splitlines()
            print(f"{name}: error: {lines[-1] if lines else done.returncode}")
        else:
            print(done.stdout.rstrip())
    return failed


@contextlib.contextmanager
def output_dir(args: argparse.Namespace) -> Iterator[str]:
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        yield args.out
    elif args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            yield tmp
    else:
        yield os.path.join(os.path.dirname(HERE), "docs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="everything tiny, in seconds")
    parser.add_argument(
        "--only",
        default=",".join(BENCHES + DEFAULT_TABLES),
        help=f"benchmarks, comma-separated, of {', '.join(BENCHES + list(TABLES))}",
    )
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions of each")
    parser.add_argument("--out", default=None, help="where the JSON and PNG go")
    args = parser.parse_args()
    config = SMOKE if args.smoke else FULL
    if args.repeats is not None:
        config.repeats = dict.fromkeys(config.repeats, args.repeats)
    benches = [b for b in args.only.split(",") if b]
    backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(benches) - set(BENCHES) - set(TABLES)) + sorted(
        set(backends) - set(BACKENDS)
    )
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    runner = Runner(config, [b for b in BENCHES if b in benches], backends, log)
    load_before = os.getloadavg()[0]
    runner.run()
    rows = runner.rows
    summarise(rows)
    info = machine()
    info["server"] = getattr(runner, "server_impl", None)
    # Other work on the machine shows here: the ratios hold better than the times.
    info["load_average"] = {"start": load_before, "end": os.getloadavg()[0]}
    command = "python benchmarks/run.py" + (" --smoke" if args.smoke else "")
    print(
        f"alphapoint benchmarks ({'smoke' if args.smoke else 'full'} run, "
        f"{time.perf_counter() - started:.0f} s): {info['cores']} cores, {info['cpu']}, "
        f"{info['python']}; echo server: {info['server']}; 1-minute load average "
        f"{load_before:.2f} at the start, {info['load_average']['end']:.2f} at the end"
    )
    print()
    print(table(rows))
    tables_failed = run_tables([b for b in TABLES if b in benches], args.smoke, backends, log)
    with output_dir(args) as out:
        results = {
            "command": command,
            "machine": info,
            "config": asdict(config),
            "rows": [asdict(row) for row in rows],
        }
        json_path = os.path.join(out, "performance.json")
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1)
        png = os.path.join(out, "performance.png")
        title = f"alphapoint / floor, {info['cores']} cores, {info['cpu']}, {info['python']}"
        drew = plot(rows, png, title)
        print()
        print(f"results: {json_path}")
        print(f"plot: {png}" if drew else "plot: matplotlib not installed, no plot")
    failed = [r for r in rows if r.status.startswith("error")]
    return 1 if failed or tables_failed else 0


if __name__ == "__main__":
    sys.exit(main())

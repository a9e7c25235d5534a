"""Soak: hundreds of managed sessions through dozens of forced reconnects and re-logins.

Runs the embedded gateway (:mod:`alphapoint.testing`) in a child process on
loopback, so that everything measured here is the client's alone, and drives
it from this process with commands on its standard input:

* ``drop``: cut every connection at the TCP level (each session reconnects
  and resumes with its session token);
* ``expire``: forget every session token, then ``drop`` (each session
  reconnects and logs in again with its credentials, 2FA included);
* ``logout``: log every connection out and push a LogoutEvent (each session
  logs in again on the same connection);
* ``publish``: push a Level1 event to every subscriber.

Sessions run in waves of ``--concurrency``; each one logs in (password, API
key, or password + TOTP, in turn), subscribes to Level1, and then, for every
round, waits until it has recovered from the round's fault, makes calls, and
reads one event from its subscription (re-sent after every reconnect).

Before and after the waves (after a warm-up wave and a garbage collection) it
measures open file descriptors, running tasks, RSS, Python's allocated memory
blocks and gc-tracked objects, and prints them with the counts.

    python scripts/soak.py                      # 300 sessions x 36 rounds, asyncio
    python scripts/soak.py --backend trio
    python scripts/soak.py --sessions 20 --rounds 6 --warmup-rounds 3   # a quick look

Not part of the test suite; see docs/reliability.md for recorded figures.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import gc
import json
import logging
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import anyio.to_thread
import attrs
from anyio.streams.buffered import BufferedByteReceiveStream

import alphapoint
from alphapoint import (
    ApiKeyCredentials,
    Backoff,
    Credentials,
    NonceSource,
    PasswordCredentials,
    SessionState,
    Totp,
)

SCRIPT = os.path.abspath(__file__)

#: Every wait is bounded: a stuck session fails the soak instead of hanging it.
ROUND_LIMIT = 120.0

# -- the gateway, in its own process -------------------------------------------------------


async def serve(config_path: str) -> None:
    """The child: serve the gateway, obey one command per line on stdin."""
    from alphapoint.testing.config import load_gateway_config

    gateway = load_gateway_config(config_path)
    #: What the gateway received, by function (and, for logins, by outcome).
    received: Counter[str] = Counter()
    async with gateway.serve() as running:
        print(running.url, flush=True)
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            command = line.strip()
            if not command:
                return  # stdin closed: the parent is done
            # The log of every request would grow without end: count, then forget.
            received.update(request.function for request in gateway.requests)
            gateway.requests.clear()
            count = 0
            if command == "drop":
                count = gateway.connection_count
                await gateway.drop_connections()
            elif command == "expire":
                count = gateway.connection_count
                gateway.expire_session_tokens()
                await gateway.drop_connections()
            elif command == "logout":
                count = await gateway.logout_event()
            elif command == "publish":
                count = await gateway.publish(
                    "Level1UpdateEvent", {"OMSId": 1, "InstrumentId": 1, "BestBid": 1.0}
                )
            elif command == "stats":
                print(f"ok {json.dumps(dict(received))}", flush=True)
                continue
            print(f"ok {count}", flush=True)


class GatewayProcess:
    """The parent's handle on the child: its URL, and commands with their acknowledgement."""

    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdout is not None
        assert process.stdin is not None
        self._process = process
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self.url = ""

    async def start(self) -> None:
        self.url = (await self._stdout.receive_until(b"\n", 4096)).decode()

    async def command(self, command: str) -> str:
        await self._stdin.send(f"{command}\n".encode())
        answer = (await self._stdout.receive_until(b"\n", 65536)).decode()
        assert answer.startswith("ok "), answer
        return answer[3:]


# -- measurements ------------------------------------------------------------------------------


@attrs.frozen
class Snapshot:
    fds: int
    tasks: int
    rss_kib: int
    blocks: int
    objects: int


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS (glibc), so RSS shows what is in use."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def snapshot() -> Snapshot:
    for _ in range(3):
        gc.collect()
    _malloc_trim()
    with open("/proc/self/status", encoding="ascii") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return Snapshot(
        fds=len(os.listdir("/proc/self/fd")),
        tasks=len(anyio.get_running_tasks()),
        rss_kib=rss,
        blocks=sys.getallocatedblocks(),
        objects=len(gc.get_objects()),
    )


@attrs.define
class Tally:
    sessions: int = 0
    rounds: int = 0
    reconnects: int = 0
    relogins: int = 0
    calls: int = 0
    events: int = 0
    errors: Counter[str] = attrs.Factory(Counter)

    def add(self, other: Tally) -> None:
        for name in ("sessions", "rounds", "reconnects", "relogins", "calls", "events"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.update(other.errors)


# -- the sessions ------------------------------------------------------------------------------


@attrs.frozen
class Accounts:
    password: PasswordCredentials
    two_factor: PasswordCredentials
    totp_secret: str
    api_key: str
    api_secret: str

    def for_session(self, number: int) -> tuple[Credentials, Callable[[], str] | None]:
        kind = number % 3
        if kind == 0:
            return self.password, None
        if kind == 1:
            key = ApiKeyCredentials(
                api_key=self.api_key, api_secret=self.api_secret, user_id="7", nonces=NONCES
            )
            return key, None
        return self.two_factor, Totp(self.totp_secret)


NONCES = NonceSource()


def plan(rounds: int) -> list[str]:
    """What each round does: a LogoutEvent every third round, else a drop, every
    fourth of which with the session tokens expired first."""
    kinds = []
    for number in range(rounds):
        if number % 3 == 2:
            kinds.append("logout")
        elif number % 4 == 3:
            kinds.append("expire")
        else:
            kinds.append("drop")
    return kinds


class Wave:
    """Barriers shared by the sessions of one wave and the controller."""

    def __init__(self, size: int, rounds: int) -> None:
        self.size = size
        self.entered = Countdown(size)
        self.started = [anyio.Event() for _ in range(rounds)]
        self.recovered = [Countdown(size) for _ in range(rounds)]
        self.published = [anyio.Event() for _ in range(rounds)]
        self.finished = [Countdown(size) for _ in range(rounds)]


class Countdown:
    def __init__(self, count: int) -> None:
        self.count = count
        self.event = anyio.Event()
        if count == 0:
            self.event.set()

    def done(self) -> None:
        self.count -= 1
        if self.count == 0:
            self.event.set()

    async def wait(self) -> None:
        await self.event.wait()


async def until(changes: alphapoint.StateChanges, via: SessionState) -> None:
    """Wait for ``via``, then AUTHENTICATED."""
    seen_via = False
    async for state in changes:
        if state is via:
            seen_via = True
        if seen_via and state is SessionState.AUTHENTICATED:
            return
        if state is SessionState.CLOSED:
            raise RuntimeError("the session closed")
    raise RuntimeError("the state stream ended")


async def one_session(
    url: str, number: int, accounts: Accounts, wave: Wave, kinds: list[str], tally: Tally
) -> None:
    credentials, two_factor = accounts.for_session(number)
    # Which barriers this session still owes the wave (all of them, if it dies).
    owed = [
        wave.entered,
        *(c for i in range(len(kinds)) for c in (wave.recovered[i], wave.finished[i])),
    ]

    def arrive(countdown: Countdown) -> None:
        owed.remove(countdown)
        countdown.done()

    try:
        async with (
            alphapoint.connect(
                url,
                credentials=credentials,
                two_factor=two_factor,
                reconnect=Backoff(initial=0.02, maximum=0.5),
                # The soak logs each session out a dozen times a minute on
                # purpose: re-log in quickly and without a cap, which the
                # default policy would (rightly) refuse as a storm.
                relogin=alphapoint.Relogin(
                    initial=0.02, maximum=0.5, per_minute=1000, max_in_a_row=None
                ),
                timeout=30.0,
            ) as session,
            session.state_changes(buffer=256) as changes,
            session.subscribe("SubscribeLevel1", {"OMSId": 1, "InstrumentId": 1}) as level1,
        ):
            tally.sessions += 1
            arrive(wave.entered)
            for index, kind in enumerate(kinds):
                await wave.started[index].wait()
                via = SessionState.AUTHENTICATING if kind == "logout" else SessionState.RECONNECTING
                try:
                    with anyio.fail_after(ROUND_LIMIT):
                        await until(changes, via)
                        if kind != "drop":
                            tally.relogins += 1
                        for function in ("Ping", "GetUserInfo"):
                            await session.call(function)
                            tally.calls += 1
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    tally.errors[type(exc).__name__] += 1
                arrive(wave.recovered[index])
                await wave.published[index].wait()
                try:
                    with anyio.fail_after(ROUND_LIMIT):
                        await level1.__anext__()
                        tally.events += 1
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    tally.errors[f"event: {type(exc).__name__}"] += 1
                tally.rounds += 1
                arrive(wave.finished[index])
            tally.reconnects += session.connection_number - 1
    except Exception as exc:  # noqa: BLE001 - counted and reported
        tally.errors[f"session: {type(exc).__name__}: {exc}"] += 1
    finally:
        for countdown in list(owed):
            arrive(countdown)


async def run_wave(
    gateway: GatewayProcess, size: int, rounds: int, accounts: Accounts, first: int
) -> Tally:
    tally = Tally()
    kinds = plan(rounds)
    wave = Wave(size, rounds)
    async with anyio.create_task_group() as tasks:
        for offset in range(size):
            tasks.start_soon(one_session, gateway.url, first + offset, accounts, wave, kinds, tally)
        with anyio.fail_after(ROUND_LIMIT):
            await wave.entered.wait()
        for index, kind in enumerate(kinds):
            with anyio.fail_after(ROUND_LIMIT):
                await gateway.command(kind)
                wave.started[index].set()
                await wave.recovered[index].wait()
                await gateway.command("publish")
                wave.published[index].set()
                await wave.finished[index].wait()
    return tally


class CountingHandler(logging.Handler):
    """Counts the library's log records by level (a soak must log no ERROR)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] += 1


# -- main ------------------------------------------------------------------------------------------


def write_config(directory: str) -> tuple[str, Accounts]:
    accounts = Accounts(
        password=PasswordCredentials("alice", secrets.token_urlsafe(12)),
        two_factor=PasswordCredentials("bob", secrets.token_urlsafe(12)),
        totp_secret=base64.b32encode(secrets.token_bytes(20)).decode(),
        api_key=secrets.token_hex(16),
        api_secret=secrets.token_hex(16),
    )
    config = {
        "users": [
            {"username": "alice", "password": accounts.password.password, "user_id": 7},
            {
                "username": "bob",
                "password": accounts.two_factor.password,
                "user_id": 8,
                "totp_secret": accounts.totp_secret,
            },
        ],
        "api_keys": [
            {"api_key": accounts.api_key, "api_secret": accounts.api_secret, "user_id": "7"}
        ],
        "max_failed_attempts": 1000,
    }
    path = os.path.join(directory, "gateway.json")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        json.dump(config, file)
    return path, accounts


async def soak(args: argparse.Namespace) -> int:
    logged = CountingHandler()
    library = logging.getLogger("alphapoint")
    library.addHandler(logged)
    library.setLevel(logging.INFO)
    library.propagate = False
    with tempfile.TemporaryDirectory() as directory:
        config, accounts = write_config(directory)
        process = await anyio.open_process(
            [sys.executable, SCRIPT, "--serve", config],
            stderr=None,
        )
        async with process:
            gateway = GatewayProcess(process)
            await gateway.start()
            start = snapshot()
            # The warm-up is one full wave, so that "before" already includes
            # the allocator's high-water mark and every first-use cache.
            warm = await run_wave(
                gateway, min(args.concurrency, args.sessions), args.warmup_rounds, accounts, 0
            )
            received_before: dict[str, int] = json.loads(await gateway.command("stats"))
            before = snapshot()
            began = time.monotonic()
            tally = Tally()
            remaining, number = args.sessions, 0
            while remaining > 0:
                size = min(args.concurrency, remaining)
                tally.add(await run_wave(gateway, size, args.rounds, accounts, number))
                now = snapshot()
                print(
                    f"  wave done: {tally.sessions} sessions, {tally.reconnects} reconnects, "
                    f"{tally.calls} calls, {sum(tally.errors.values())} errors; "
                    f"fds {now.fds}, tasks {now.tasks}, RSS {now.rss_kib} KiB, "
                    f"blocks {now.blocks}",
                    flush=True,
                )
                remaining -= size
                number += size
            elapsed = time.monotonic() - began
            received_after: dict[str, int] = json.loads(await gateway.command("stats"))
            after = snapshot()
            await process.stdin.aclose()  # type: ignore[union-attr]
    report(args, warm, tally, elapsed, start, before, after)
    received = {
        function: count - received_before.get(function, 0)
        for function, count in sorted(received_after.items())
        if count - received_before.get(function, 0)
    }
    print(f"requests the gateway received during the waves: {received}")
    print(f"log records of the library, by level: {dict(sorted(logged.counts.items()))}")
    leaked = (
        after.fds != before.fds
        or after.tasks != before.tasks
        or bool(tally.errors)
        or tally.rounds != args.sessions * args.rounds
        or logged.counts["ERROR"] + logged.counts["CRITICAL"] > 0
    )
    return 1 if leaked else 0


def report(
    args: argparse.Namespace,
    warm: Tally,
    tally: Tally,
    elapsed: float,
    start: Snapshot,
    before: Snapshot,
    after: Snapshot,
) -> None:
    kinds = Counter(plan(args.rounds))
    print()
    print(f"backend {args.backend}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(
        f"rounds per session: {args.rounds} ({kinds['drop']} drops, "
        f"{kinds['expire']} token expiries + drops, {kinds['logout']} LogoutEvents)"
    )
    print("| figure | value |\n|---|---|")
    rows: list[tuple[str, object]] = [
        ("sessions", tally.sessions),
        ("concurrent sessions (per wave)", args.concurrency),
        ("rounds completed", tally.rounds),
        ("reconnects", tally.reconnects),
        ("re-logins (credentials, 2FA included)", tally.relogins),
        ("calls", tally.calls),
        ("subscription events received", tally.events),
        ("errors", sum(tally.errors.values())),
        ("duration (s)", f"{elapsed:.1f}"),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")
    for error, count in sorted(tally.errors.items()):
        print(f"  error {error}: {count}")
    print(
        "\n| measure | at start | before (after warm-up) | after | change |\n|---|---|---|---|---|"
    )
    for field in ("fds", "tasks", "rss_kib", "blocks", "objects"):
        b, a = getattr(before, field), getattr(after, field)
        print(f"| {field} | {getattr(start, field)} | {b} | {a} | {a - b:+d} |")
    print(
        f"(warm-up: {warm.sessions} sessions x {args.warmup_rounds} rounds, "
        f"{sum(warm.errors.values())} errors; "
        "RSS after malloc_trim(0); blocks: sys.getallocatedblocks(); objects: gc-tracked)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=36)
    parser.add_argument("--warmup-rounds", type=int, default=36, help="of the warm-up wave")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--time-limit", type=float, default=1800.0, help="seconds, in all")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        anyio.run(serve, args.serve)
        return 0
    runner: Callable[[], Awaitable[int]] = lambda: _bounded(args)  # noqa: E731
    return anyio.run(runner, backend=args.backend)


async def _bounded(args: argparse.Namespace) -> int:
    with anyio.fail_after(args.time_limit):
        return await soak(args)


if __name__ == "__main__":
    sys.exit(main())

"""Market data: Level1 for several instruments on one session, each to its own consumer;
and several sessions at once, each logging in and pinging.

A collector subscribes to many instruments on one session: each subscription
gets only its own instrument's updates (the session routes them), so each
consumer can be a task of its own. A feeder often also holds one session per
market or per account; they run side by side in one anyio task group, each
failing on its own without taking the others down::

    export ALPHAPOINT_API_KEY=... ALPHAPOINT_API_SECRET=... ALPHAPOINT_USER_ID=96
    python examples/market_data.py wss://api.example.com/WSGateway/ \
        --instruments 1,2 --updates 3 --sessions 4 --pings 5

Every session logs in with the same API key (each login is signed with its own
nonce). The URL may also come from ``ALPHAPOINT_URL``; with none, the embedded
demo gateway is started in this process, so the example runs out of the box.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import time

import anyio
import attrs

import alphapoint
from alphapoint.testing import Gateway, demo_gateway


@attrs.define
class Summary:
    """What one session did."""

    number: int
    user: str = "?"
    pongs: int = 0
    pings: int = 0
    round_trips: list[float] = attrs.Factory(list)
    error: str | None = None

    def line(self) -> str:
        if self.error is not None:
            return f"session {self.number}: FAILED after {self.pongs} PONG(s): {self.error}"
        fastest = min(self.round_trips, default=0.0) * 1000
        slowest = max(self.round_trips, default=0.0) * 1000
        return (
            f"session {self.number}: {self.user}: {self.pongs}/{self.pings} Ping(s) answered PONG "
            f"(round trip {fastest:.1f} to {slowest:.1f} ms)"
        )


async def main(
    url: str | None,
    *,
    sessions: int = 3,
    pings: int = 3,
    instruments: tuple[int, ...] = (1, 2),
    updates: int = 3,
) -> int:
    """Watch ``instruments``, then run ``sessions`` sessions of ``pings`` Pings each;
    returns the exit code."""
    if url is None:
        return await demo(sessions=sessions, pings=pings, instruments=instruments, updates=updates)
    missing = [
        name
        for name in ("ALPHAPOINT_API_KEY", "ALPHAPOINT_API_SECRET", "ALPHAPOINT_USER_ID")
        if not os.environ.get(name)
    ]
    if missing:
        print(f"market_data: set {', '.join(missing)}", file=sys.stderr)
        return 2
    credentials = alphapoint.ApiKeyCredentials(
        api_key=os.environ["ALPHAPOINT_API_KEY"],
        api_secret=os.environ["ALPHAPOINT_API_SECRET"],
        user_id=os.environ["ALPHAPOINT_USER_ID"],
    )
    code = await watch(url, credentials, instruments, updates)
    return max(code, await run_sessions(url, credentials, sessions, pings))


async def demo(*, sessions: int, pings: int, instruments: tuple[int, ...], updates: int) -> int:
    """The same against an embedded demo gateway, with a market of its own."""
    gateway, accounts = demo_gateway()
    async with gateway.serve() as running, anyio.create_task_group() as market:
        print(f"No gateway URL given: using an embedded demo gateway at {running.url}")
        market.start_soon(demo_market, gateway, instruments)
        code = await watch(running.url, accounts.api_key, instruments, updates)
        code = max(code, await run_sessions(running.url, accounts.api_key, sessions, pings))
        market.cancel_scope.cancel()
    return code


async def demo_market(gateway: Gateway, instruments: tuple[int, ...]) -> None:
    """The embedded gateway's market: a Level1 update for each instrument, every 10 ms."""
    for tick in itertools.count():
        for instrument in instruments:
            update = {"OMSId": 1, "InstrumentId": instrument, "LastTradedPx": 100.0 + tick}
            await gateway.publish("Level1UpdateEvent", update)
        await anyio.sleep(0.01)


async def watch(
    url: str, credentials: alphapoint.Credentials, instruments: tuple[int, ...], updates: int
) -> int:
    """One session, one Level1 subscription per instrument, each read by its own task
    until ``updates`` updates came; 0 if every update was for its own instrument."""
    wrong = 0

    async def consume(subscription: alphapoint.Subscription, instrument: int) -> None:
        nonlocal wrong
        prices = []
        async for event in subscription:
            wrong += event.payload.get("InstrumentId") != instrument
            prices.append(event.payload.get("LastTradedPx"))
            if len(prices) == updates:
                break
        print(f"instrument {instrument}: {len(prices)} Level1 update(s), last price {prices[-1]}")

    try:
        async with (
            alphapoint.connect(url, credentials=credentials) as session,
            contextlib.AsyncExitStack() as stack,
            anyio.create_task_group() as tg,
        ):
            for instrument in instruments:
                payload = {"OMSId": 1, "InstrumentId": instrument}
                subscription = await stack.enter_async_context(
                    session.subscribe("SubscribeLevel1", payload)
                )
                tg.start_soon(consume, subscription, instrument)
    except alphapoint.AlphaPointError as exc:
        print(f"market data: FAILED: {exc}")
        return 1
    if wrong:
        print(f"market data: {wrong} update(s) reached the wrong instrument's consumer")
        return 1
    print("market data: every update reached its own instrument's consumer")
    return 0


async def run_sessions(
    url: str, credentials: alphapoint.Credentials, sessions: int, pings: int
) -> int:
    """Run the sessions concurrently, then print one summary line each; 0 if all succeeded."""
    summaries = [Summary(number, pings=pings) for number in range(1, sessions + 1)]
    async with anyio.create_task_group() as tg:
        for summary in summaries:
            tg.start_soon(run_session, url, credentials, summary)
    for summary in summaries:
        print(summary.line())
    failed = sum(summary.error is not None for summary in summaries)
    print(f"{sessions - failed} of {sessions} session(s) succeeded")
    return 0 if failed == 0 else 1


async def run_session(url: str, credentials: alphapoint.Credentials, summary: Summary) -> None:
    """One session: log in, Ping ``summary.pings`` times; errors end up in the summary."""
    try:
        async with alphapoint.connect(url) as session:
            result = await session.login(credentials)
            if result.user is not None:
                summary.user = f"{result.user.user_name} (user id {result.user.user_id})"
            for _ in range(summary.pings):
                started = time.perf_counter()
                reply = await session.call("Ping")
                summary.round_trips.append(time.perf_counter() - started)
                if isinstance(reply, dict) and reply.get("msg") == "PONG":
                    summary.pongs += 1
    except alphapoint.AlphaPointError as exc:
        summary.error = str(exc)
    else:
        if summary.pongs != summary.pings:
            summary.error = "a Ping was not answered PONG"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "url", nargs="?", default=os.environ.get("ALPHAPOINT_URL") or None, help="gateway URL"
    )
    parser.add_argument("--sessions", type=_positive_int, default=3, help="sessions (default 3)")
    parser.add_argument("--pings", type=_positive_int, default=3, help="Pings each (default 3)")
    parser.add_argument(
        "--instruments",
        type=lambda text: tuple(int(part) for part in text.split(",")),
        default=(1, 2),
        help="instrument ids to watch, comma-separated (default 1,2)",
    )
    parser.add_argument(
        "--updates", type=_positive_int, default=3, help="Level1 updates to read for each"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    sys.exit(
        anyio.run(
            lambda: main(
                args.url,
                sessions=args.sessions,
                pings=args.pings,
                instruments=args.instruments,
                updates=args.updates,
            )
        )
    )

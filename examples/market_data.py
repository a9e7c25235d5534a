"""Several sessions at once: N connections log in concurrently and each pings a few times.

A market-data feeder often holds one session per market or per account; this
shows how they run side by side in one anyio task group, each failing on its
own without taking the others down::

    export ALPHAPOINT_API_KEY=... ALPHAPOINT_API_SECRET=... ALPHAPOINT_USER_ID=96
    python examples/market_data.py wss://api.example.com/WSGateway/ --sessions 4 --pings 5

Every session logs in with the same API key (each login is signed with its own
nonce). The URL may also come from ``ALPHAPOINT_URL``; with none, the embedded
demo gateway is started in this process, so the example runs out of the box.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import anyio
import attrs

import alphapoint
from alphapoint.testing import demo_gateway


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


async def main(url: str | None, *, sessions: int = 3, pings: int = 3) -> int:
    """Run ``sessions`` sessions of ``pings`` Pings each; returns the exit code."""
    if url is None:
        gateway, accounts = demo_gateway()
        async with gateway.serve() as running:
            print(f"No gateway URL given: using an embedded demo gateway at {running.url}")
            return await run_sessions(running.url, accounts.api_key, sessions, pings)
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
    return await run_sessions(url, credentials, sessions, pings)


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
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    sys.exit(anyio.run(lambda: main(args.url, sessions=args.sessions, pings=args.pings)))

"""A bot's skeleton: log in with an API key, then keep calling (Ping and GetUserInfo).

Run it against a gateway, with the credentials in the environment (never on
the command line, where other users and shell history can see them)::

    export ALPHAPOINT_API_KEY=... ALPHAPOINT_API_SECRET=... ALPHAPOINT_USER_ID=96
    python examples/trading_bot.py wss://api.example.com/WSGateway/ --iterations 10

The URL may also come from ``ALPHAPOINT_URL``, the count from
``ALPHAPOINT_ITERATIONS``. With no URL at all, the bot starts the embedded demo
gateway in this process and logs in with its API key, so it runs out of the box.
"""

from __future__ import annotations

import argparse
import os
import sys

import anyio
import attrs

import alphapoint
from alphapoint.testing import demo_gateway

DEFAULT_ITERATIONS = 3


@attrs.frozen
class UserInfo:
    """The part of the GetUserInfo reply the bot reads (any key casing decodes)."""

    user_id: int
    user_name: str
    account_id: int = 0


async def main(
    url: str | None, *, iterations: int = DEFAULT_ITERATIONS, interval: float = 0.5
) -> int:
    """Run the bot; returns the exit code (0 when every call succeeded)."""
    if url is None:
        gateway, accounts = demo_gateway()
        async with gateway.serve() as running:
            print(f"No gateway URL given: using an embedded demo gateway at {running.url}")
            return await run_bot(running.url, accounts.api_key, iterations, interval)
    try:
        credentials = alphapoint.ApiKeyCredentials(
            api_key=_env("ALPHAPOINT_API_KEY"),
            api_secret=_env("ALPHAPOINT_API_SECRET"),
            user_id=_env("ALPHAPOINT_USER_ID"),
        )
    except KeyError as exc:
        print(f"trading_bot: set the environment variable {exc.args[0]}", file=sys.stderr)
        return 2
    return await run_bot(url, credentials, iterations, interval)


async def run_bot(
    url: str, credentials: alphapoint.ApiKeyCredentials, iterations: int, interval: float
) -> int:
    """Log in and call Ping and GetUserInfo ``iterations`` times, ``interval`` seconds apart.

    SIGTERM or SIGINT ends the rounds early, and the bot logs out cleanly.
    The session is managed: if the connection drops, it reconnects, resumes
    the login (or logs in again) and calls wait for it. A call that was in
    flight during the drop fails with ConnectionClosed and is not re-sent: a
    real bot decides whether to repeat it (an order is not idempotent).
    """
    started = False

    def report(state: alphapoint.SessionState) -> None:
        if started:  # the initial connecting/authenticating steps are not news
            print(f"session: {state.value}")

    try:
        async with alphapoint.connect(
            url, credentials=credentials, on_state_change=report
        ) as session:
            started = True
            name = session.user.user_name if session.user else "?"
            print(f"Logged in as {name} (user id {credentials.user_id}) with an API key")
            # SIGTERM (docker, systemd) or Ctrl-C ends the rounds; leaving the
            # connect block then logs out and closes, as at the normal end.
            async with alphapoint.stop_on_signals() as stop:
                await rounds(session, iterations, interval)
            if stop.signal is not None:
                print(f"Stopping on {stop.signal.name}: logging out.", flush=True)
    except alphapoint.AuthenticationError as exc:
        print(f"trading_bot: login failed: {exc}", file=sys.stderr)
        return 1
    except alphapoint.AlphaPointError as exc:
        print(f"trading_bot: {exc}", file=sys.stderr)
        return 1
    print("Stopped." if stop.signal is not None else f"Done: {iterations} iteration(s).")
    return 0


async def rounds(session: alphapoint.Session, iterations: int, interval: float) -> None:
    """Call Ping and GetUserInfo ``iterations`` times, ``interval`` seconds apart."""
    for n in range(1, iterations + 1):
        try:
            pong = await session.call("Ping")
            print(f"[{n}/{iterations}] Ping: {_get(pong, 'msg')}", flush=True)
            info = await session.call("GetUserInfo", model=UserInfo)
        except alphapoint.ConnectionClosed as exc:
            print(f"[{n}/{iterations}] interrupted, not re-sent: {exc}")
        else:
            print(
                f"[{n}/{iterations}] GetUserInfo: {info.user_name}, "
                f"user id {info.user_id}, account id {info.account_id}",
                flush=True,
            )
        if n < iterations:
            await anyio.sleep(interval)


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise KeyError(name)
    return value


def _get(payload: object, key: str) -> object:
    """A field of an untyped reply, in whichever casing the gateway sends (``msg`` or ``Msg``)."""
    if not isinstance(payload, dict):
        return None
    folded = {str(k).lower(): v for k, v in payload.items()}
    return folded.get(key.lower())


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
    parser.add_argument(
        "--iterations",
        type=_positive_int,
        default=os.environ.get("ALPHAPOINT_ITERATIONS", DEFAULT_ITERATIONS),
        help=f"how many rounds of calls (default: $ALPHAPOINT_ITERATIONS or {DEFAULT_ITERATIONS})",
    )
    parser.add_argument(
        "--interval", type=float, default=0.5, help="seconds between rounds (default: 0.5)"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    sys.exit(anyio.run(lambda: main(args.url, iterations=args.iterations, interval=args.interval)))

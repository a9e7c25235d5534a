"""How many connections the sessions of one event loop set up at once.

Setting a connection up (TCP, TLS, the WebSocket handshake, the login, the
subscriptions) costs a few milliseconds of CPU. A collector that opens 10,000
sessions at once, or a gateway restart that drops them all, asks for all of it
at the same moment, and each session's ``open_timeout`` (10 s) runs while it
waits for the CPU the others use: under trio, 10,000 logins at once failed on
their own timeout (docs/performance.md, "Many logins at once").

So set-ups wait for a turn: at most :data:`DEFAULT_OPEN_LIMIT` at once per
event loop, by default, shared by every session of the loop. The wait is not
part of ``open_timeout`` nor of the login's call timeouts, which start when
the set-up does. ``connect(..., open_limiter=anyio.CapacityLimiter(n))``
gives a session a limiter of your own (share it between sessions to bound
them together), ``open_limiter=None`` no bound at all;
:func:`default_open_limiter` is the loop's shared one (its ``total_tokens``
may be changed).
"""

from __future__ import annotations

from typing import Final, Literal

import anyio

from .drivers.loop import LoopLocal

__all__ = ["DEFAULT_OPEN_LIMIT", "OpenLimiter", "default_open_limiter", "take_turn"]

DEFAULT_OPEN_LIMIT: Final = 100
"""Connection set-ups at once per event loop, by default. Enough to keep a
gateway across a WAN busy (a set-up is a few round trips, each waiting on the
network, not the CPU), few enough that those in progress get the CPU they need
within their timeouts."""

OpenLimiter = anyio.CapacityLimiter | Literal["shared"] | None
"""What ``connect(open_limiter=...)`` takes: ``"shared"`` (the loop's
:func:`default_open_limiter`), a limiter of your own, or ``None`` (no bound)."""

_shared: LoopLocal[anyio.CapacityLimiter] = LoopLocal(
    "alphapoint_open_limiter", lambda: anyio.CapacityLimiter(DEFAULT_OPEN_LIMIT)
)


def default_open_limiter() -> anyio.CapacityLimiter:
    """The running event loop's limiter on connection set-ups, shared by every
    session that does not name its own (made on first use, with
    :data:`DEFAULT_OPEN_LIMIT` tokens)."""
    return _shared.get()


async def take_turn(limiter: anyio.CapacityLimiter, borrower: object) -> None:
    """Take one of ``limiter``'s tokens for ``borrower``: at once when one is free
    and nobody waits, else in turn (``release_on_behalf_of`` gives it back).

    anyio's ``acquire_on_behalf_of`` always yields to the event loop, under a
    cancel scope of its own, even with a token free: a turn of the loop and
    some 40 function calls of every login (docs/performance.md, "Opening,
    logging in and closing, sixth session"). The set-up that follows has
    checkpoints of its own, where a cancellation is seen. Taking a free token
    is fair: it is free only when no set-up waits for one.
    """
    try:
        limiter.acquire_on_behalf_of_nowait(borrower)
    except anyio.WouldBlock:
        await limiter.acquire_on_behalf_of(borrower)

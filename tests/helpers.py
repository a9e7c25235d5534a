"""What many test modules share: time bounds, polling, ports, and looking for secrets."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.from_thread
import attrs
import pytest
import trustme

import alphapoint
from alphapoint import AuthenticationError
from alphapoint.testing import DemoAccounts, Gateway, GatewayFixture, RunningGateway, demo_gateway

#: Upper bound, in seconds, on any wait in a test: a bug fails, never hangs.
LIMIT = 10.0

#: A timeout meant to expire (or a short open/close bound) in a test.
SHORT = 0.2

#: The drivers whose bytes arrive in the event loop's callbacks (asyncio, uvloop):
#: a connection is one task, and a write is taken whole or not at all.
CALLBACK_DRIVERS = ("asyncio", "picows")


def no_jitter(cap: float) -> float:
    """A reconnect jitter that takes the whole cap: delays without randomness."""
    return cap


async def wait_until(predicate: Callable[[], bool], *, timeout: float = LIMIT) -> None:
    """Poll ``predicate``: only for state that has no event to await."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polled state has no event
            await anyio.sleep(0.005)


def wait_until_blocking(predicate: Callable[[], bool], *, timeout: float = LIMIT) -> None:
    """:func:`wait_until` for a thread without an event loop (a sync test)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.005)


@contextlib.contextmanager
def unused_port() -> Iterator[int]:
    """A loopback port that is bound, so nobody else takes it, but not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def running_tasks() -> set[tuple[int, str]]:
    """Every task of the event loop, under asyncio or trio."""
    return {(task.id, str(task.name)) for task in anyio.get_running_tasks()}


@contextlib.asynccontextmanager
async def no_task_left() -> AsyncIterator[None]:
    """Fail unless every task started inside the block has ended when it does."""
    before = running_tasks()
    yield
    left = running_tasks() - before
    assert not left, f"tasks left running: {sorted(name for _, name in left)}"


@contextlib.contextmanager
def no_reader_failure(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Log at DEBUG; fail if anything was logged at ERROR (a failed reader, say)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="alphapoint")
    yield
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors


async def open_and_ping(url: str, **options: Any) -> Any:
    """Connect, call Ping, return its reply (so ``pytest.raises`` wraps one statement)."""
    with anyio.fail_after(LIMIT):
        async with alphapoint.connect(url, **options) as session:
            return await session.call("Ping")


# -- a gateway for sync tests -------------------------------------------------------------------


@attrs.frozen
class ThreadedGateway:
    """A demo gateway on an event loop in a thread of its own, for tests without a loop.

    ``run(fn, *args)`` runs a function (sync or async) of the gateway on that
    loop, and blocks until it is done: ``served.run(served.gateway.drop_connections)``.
    """

    gateway: Gateway
    accounts: DemoAccounts
    running: RunningGateway
    portal: anyio.from_thread.BlockingPortal

    @property
    def url(self) -> str:
        return self.running.url

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.portal.call(fn, *args)


@contextlib.contextmanager
def gateway_in_thread(**options: Any) -> Iterator[ThreadedGateway]:
    """Serve a :func:`demo_gateway` from a thread of its own while the block runs."""
    gateway, accounts = demo_gateway(**options)
    with (
        anyio.from_thread.start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(gateway.serve()) as running,
    ):
        yield ThreadedGateway(gateway, accounts, running, portal)


# -- TLS ----------------------------------------------------------------------------------------


def server_context(ca: trustme.CA, *hosts: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hosts).configure_cert(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@contextlib.asynccontextmanager
async def tls_gateway(context: ssl.SSLContext) -> AsyncIterator[GatewayFixture]:
    gateway, accounts = demo_gateway()
    async with gateway.serve(ssl=context) as running:
        yield GatewayFixture(gateway, accounts, running)


# -- secrets ------------------------------------------------------------------------------------


def everything_said(error: BaseException) -> str:
    """The error as a traceback would print it: message, chain, notes."""
    return "".join(traceback.format_exception(error)) + repr(error)


def texts_of(value: object) -> list[str]:
    """Every way an object is commonly shown: repr and str, and its result's for errors."""
    texts = [repr(value), str(value)]
    if isinstance(value, BaseException):
        texts += [repr(value.args)]
    if isinstance(value, AuthenticationError):
        texts += texts_of(value.result)
    return texts


def wrong_code(secret: str) -> str:
    """A six-digit code that no clock skew the gateway allows can make valid."""
    totp = alphapoint.Totp(secret)
    now = time.time()
    valid = {totp.at(now + step * 30) for step in range(-3, 4)}
    return next(code for code in (f"{n:06d}" for n in range(1_000_000)) if code not in valid)


async def hold_session(
    url: str, opened: list[alphapoint.Session], leave: anyio.Event, **options: Any
) -> None:
    """A session in a task of its own: open (appended to ``opened``) until ``leave`` is set."""
    async with alphapoint.connect(url, **options) as session:
        opened.append(session)
        await leave.wait()

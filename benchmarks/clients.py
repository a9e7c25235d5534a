"""The clients that the benchmarks race, each doing the same work on the wire.

* ``alphapoint``: this library, used the way its README says, as the default
  install runs it (websockets' parser on asyncio's callbacks, json).
* ``alphapoint-fast``: the same code with the ``fast`` extra (the picows
  driver, orjson); asyncio and uvloop.
* ``floor``: a hand-written loop over the raw ``websockets`` client (its asyncio
  client, or its trio client under trio), building the same frames and parsing
  the same replies twice (the ``o`` double encoding), matching replies by ``i``
  with a dict of its own when pipelining. No timeouts, no checks beyond ``i``:
  what the work costs with nothing around it.
* ``picows``: the same hand-written loop over ``picows`` (asyncio and uvloop only).
* ``picows-strict``: that picows loop with alphapoint's rules and nothing else
  of it: requests written by its frame codec (``frame.encode``), the login's
  payload by ``ApiKeyCredentials.authenticate_payload`` (signed), replies read
  by ``frame.decode_fields`` (the typed envelope, the duplicate-key count) and
  the login's reply decoded to an ``AuthenticateResult``, with the ``fast``
  extra's JSON library as ``alphapoint-fast`` has it; no session, connection,
  task, timeout or state. Between it and ``alphapoint-fast`` is what the
  library's session costs.
* ``ccxt``: ccxt's ``ndax`` websocket client (``ccxt.pro.ndax``), for the Ping
  round trip only; see ``docs/performance.md`` for why nothing more.

Every benchmark function connects, warms up, and then times only the measured
part: wall time (``time.perf_counter``) and this process's CPU time
(``time.process_time``); the server runs in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import alphapoint

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.loads

#: (wall seconds, CPU seconds) of one measured run.
Measured = tuple[float, float]


class Timer:
    """Wall and process CPU time of a block; collects garbage first so runs start alike."""

    def __enter__(self) -> Timer:
        gc.collect()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    @property
    def result(self) -> Measured:
        return self.wall, self.cpu


async def timed(op: Callable[[], Awaitable[Any]], n: int, warmup: int) -> Measured:
    """Await ``op()`` ``warmup`` times, then ``n`` times under a :class:`Timer`."""
    for _ in range(warmup):
        await op()
    with Timer() as timer:
        for _ in range(n):
            await op()
    return timer.result


class Credentials:
    """The API key the benchmark server knows, and a signer for the hand-written clients."""

    def __init__(self, api_key: str, api_secret: str, user_id: str) -> None:
        self.api_key, self.api_secret, self.user_id = api_key, api_secret, user_id
        # Nonces must never repeat across the whole run (the server refuses a
        # reused one); alphapoint's are decimal microsecond clocks, these are not.
        self._nonces = itertools.count(1)

    def start_nonces(self, start: int) -> None:
        """Count nonces from ``start`` (a process of its own starts from its clock)."""
        self._nonces = itertools.count(start)

    def alphapoint(self) -> alphapoint.ApiKeyCredentials:
        return alphapoint.ApiKeyCredentials(
            api_key=self.api_key, api_secret=self.api_secret, user_id=self.user_id
        )

    def nonce(self, prefix: str) -> str:
        """A nonce never used before in this run."""
        return f"{prefix}{next(self._nonces)}"

    def auth_frame(self, prefix: str) -> str:
        """An AuthenticateUser request frame, signed with a fresh nonce."""
        nonce = self.nonce(prefix)
        signature = hmac.new(
            self.api_secret.encode(),
            f"{nonce}{self.user_id}{self.api_key}".encode(),
            hashlib.sha256,
        ).hexdigest()
        payload = {
            "APIKey": self.api_key,
            "Signature": signature,
            "UserId": self.user_id,
            "Nonce": nonce,
        }
        return _dumps({"m": 0, "i": 2, "n": "AuthenticateUser", "o": _dumps(payload)})


def ping_frame(i: int) -> str:
    return _dumps({"m": 0, "i": i, "n": "Ping", "o": _dumps({})})


def check_authenticated(payload: Any) -> None:
    if not (isinstance(payload, dict) and payload.get("Authenticated") is True):
        raise RuntimeError(f"login refused: {payload!r}")


# -- alphapoint ----------------------------------------------------------------


@contextlib.contextmanager
def installed_as(fast: bool) -> Iterator[None]:
    """alphapoint as the default install runs it, or with the ``fast`` extra.

    Both run in one process here, so the extra's two parts are set for the
    duration: what ``driver="auto"`` takes under asyncio (picows, or
    websockets' parser on asyncio's callbacks) and the frame codec's JSON
    library (msgspec's reader and orjson's writer, or json), as :mod:`alphapoint.jsoncodec` and
    ``alphapoint.drivers.choose`` would choose them at import.
    """
    from alphapoint import frame, jsoncodec
    from alphapoint.drivers import choose

    codec = jsoncodec.CODECS[0] if fast else jsoncodec.CODECS[-1]
    if fast and (codec.name == "json" or not choose.picows_installed()):
        raise RuntimeError("the fast extra is not installed: pip install 'alphapoint[fast]'")
    names = ("read_json", "read_json_loose", "write_json", "scan_json", "read_envelope")
    saved = choose.auto_on_asyncio, [getattr(frame, name) for name in names]
    choose.auto_on_asyncio = "picows" if fast else "asyncio"
    for name, value in zip(
        names, [codec.read, codec.read_loose, codec.write, codec.scan, codec.envelope], strict=True
    ):
        setattr(frame, name, value)
    try:
        yield
    finally:
        choose.auto_on_asyncio = saved[0]
        for name, value in zip(names, saved[1], strict=True):
            setattr(frame, name, value)


def as_installed(fast: bool, fn: Callable[..., Awaitable[Measured]]) -> Callable[..., Any]:
    """``fn`` run under :func:`installed_as`."""

    @functools.wraps(fn)
    async def run(*args: Any) -> Measured:
        with installed_as(fast):
            return await fn(*args)

    return run


async def alphapoint_calls(url: str, n: int, warmup: int) -> Measured:
    async with alphapoint.connect(url) as session:
        return await timed(lambda: session.call("Ping"), n, warmup)


async def alphapoint_pipelined(url: str, n: int, concurrency: int, warmup: int) -> Measured:
    import anyio

    async with alphapoint.connect(url) as session:

        async def worker(count: int) -> None:
            for _ in range(count):
                await session.call("Ping")

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker, warmup // concurrency)
        with Timer() as timer:
            async with anyio.create_task_group() as tg:
                for _ in range(concurrency):
                    tg.start_soon(worker, n // concurrency)
    return timer.result


async def alphapoint_logins(url: str, n: int, warmup: int, creds: Credentials) -> Measured:
    credentials = creds.alphapoint()

    async def login() -> None:
        # connect() logs in on entry; the floor does not log out, so neither do we.
        async with alphapoint.connect(
            url, credentials=credentials, logout_on_close=False
        ) as session:
            assert session.authenticated

    return await timed(login, n, warmup)


# -- floor: the raw websockets client ---------------------------------------------


def _raw_connect() -> Any:
    """websockets' own client for the running event loop, asyncio's or trio's: the floor."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio
        from websockets.trio.client import connect as trio_connect

        return trio_connect
    from websockets.asyncio.client import connect

    return connect


async def floor_calls(url: str, n: int, warmup: int) -> Measured:
    async with _raw_connect()(url, compression=None) as ws:
        seq = 2

        async def call() -> Any:
            nonlocal seq
            i, seq = seq, seq + 2
            await ws.send(ping_frame(i))
            reply = _loads(await ws.recv())
            if reply["i"] != i or reply["m"] != 1:
                raise RuntimeError("unexpected reply")
            return _loads(reply["o"])

        return await timed(call, n, warmup)


async def floor_logins(url: str, n: int, warmup: int, creds: Credentials) -> Measured:
    connect = _raw_connect()

    async def login() -> None:
        async with connect(url, compression=None) as ws:
            await ws.send(creds.auth_frame("f"))
            reply = _loads(await ws.recv())
            check_authenticated(_loads(reply["o"]))

    return await timed(login, n, warmup)


async def floor_pipelined_asyncio(url: str, n: int, concurrency: int, warmup: int) -> Measured:
    from websockets.asyncio.client import connect

    loop = asyncio.get_running_loop()
    pending: dict[int, asyncio.Future[Any]] = {}
    seq = 2
    async with connect(url, compression=None) as ws:

        async def reader() -> None:
            async for message in ws:
                reply = _loads(message)
                future = pending.pop(reply["i"], None)
                if future is not None and reply["m"] in (1, 5):
                    future.set_result(_loads(reply["o"]))

        async def call() -> Any:
            nonlocal seq
            i, seq = seq, seq + 2
            future = pending[i] = loop.create_future()
            await ws.send(ping_frame(i))
            return await future

        async def worker(count: int) -> None:
            for _ in range(count):
                await call()

        reading = asyncio.ensure_future(reader())
        await asyncio.gather(*(worker(warmup // concurrency) for _ in range(concurrency)))
        with Timer() as timer:
            await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
        reading.cancel()
    return timer.result


# -- floor: the raw websockets client, trio ----------------------------------------


async def floor_pipelined_trio(url: str, n: int, concurrency: int, warmup: int) -> Measured:
    import trio
    from websockets.trio.client import connect

    class Slot:
        __slots__ = ("event", "value")

        def __init__(self) -> None:
            self.event = trio.Event()
            self.value: Any = None

    pending: dict[int, Slot] = {}
    seq = 2
    async with connect(url, compression=None) as ws:

        async def reader() -> None:
            async for message in ws:
                reply = _loads(message)
                slot = pending.pop(reply["i"], None)
                if slot is not None and reply["m"] in (1, 5):
                    slot.value = _loads(reply["o"])
                    slot.event.set()

        async def call() -> Any:
            nonlocal seq
            i, seq = seq, seq + 2
            slot = pending[i] = Slot()
            await ws.send(ping_frame(i))
            await slot.event.wait()
            return slot.value

        async def worker(count: int) -> None:
            for _ in range(count):
                await call()

        async def workers(count: int) -> None:
            async with trio.open_nursery() as nursery:
                for _ in range(concurrency):
                    nursery.start_soon(worker, count)

        async with trio.open_nursery() as outer:
            outer.start_soon(reader)
            await workers(warmup // concurrency)
            with Timer() as timer:
                await workers(n // concurrency)
            outer.cancel_scope.cancel()
    return timer.result


# -- picows ---------------------------------------------------------------------


def _picows_listener(strict: bool = False) -> Any:
    """A picows listener that resolves futures by ``i``, as the floor's reader does
    (``strict``: reading each reply with alphapoint's frame codec instead of json)."""
    from picows import WSFrame, WSListener, WSMsgType, WSTransport

    from alphapoint.frame import MessageType, decode_fields

    text = WSMsgType.TEXT
    replies = (MessageType.REPLY, MessageType.ERROR)

    class Listener(WSListener):
        def __init__(self) -> None:
            self.pending: dict[int, asyncio.Future[Any]] = {}
            self.loop = asyncio.get_running_loop()
            self.transport: WSTransport | None = None

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.transport = transport

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is not text:
                return
            reply = _loads(frame.get_payload_as_bytes())
            future = self.pending.pop(reply["i"], None)
            if future is not None and reply["m"] in (1, 5):
                future.set_result(_loads(reply["o"]))

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            for future in self.pending.values():
                future.set_exception(ConnectionError("disconnected"))
            self.pending.clear()

        async def call(self, i: int, frame: str) -> Any:
            future = self.pending[i] = self.loop.create_future()
            assert self.transport is not None
            self.transport.send(text, frame.encode())
            return await future

        async def close(self) -> None:
            assert self.transport is not None
            self.transport.send_close()
            await self.transport.wait_disconnected()

    class StrictListener(Listener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is not text:
                return
            kind, i, _, payload = decode_fields(frame.get_payload_as_utf8_text())
            future = self.pending.pop(i, None)
            if future is not None and kind in replies:
                future.set_result(payload)

    return StrictListener if strict else Listener


async def picows_calls(url: str, n: int, warmup: int) -> Measured:
    from picows import ws_connect

    _, client = await ws_connect(_picows_listener(), url)
    seq = 2

    async def call() -> Any:
        nonlocal seq
        i, seq = seq, seq + 2
        return await client.call(i, ping_frame(i))

    result = await timed(call, n, warmup)
    await client.close()
    return result


async def picows_pipelined(url: str, n: int, concurrency: int, warmup: int) -> Measured:
    from picows import ws_connect

    _, client = await ws_connect(_picows_listener(), url)
    seq = 2

    async def worker(count: int) -> None:
        nonlocal seq
        for _ in range(count):
            i, seq = seq, seq + 2
            await client.call(i, ping_frame(i))

    await asyncio.gather(*(worker(warmup // concurrency) for _ in range(concurrency)))
    with Timer() as timer:
        await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
    await client.close()
    return timer.result


async def picows_logins(url: str, n: int, warmup: int, creds: Credentials) -> Measured:
    from picows import ws_connect

    listener = _picows_listener()

    async def login() -> None:
        _, client = await ws_connect(listener, url)
        check_authenticated(await client.call(2, creds.auth_frame("p")))
        await client.close()

    return await timed(login, n, warmup)


async def picows_strict_calls(url: str, n: int, warmup: int) -> Measured:
    from picows import ws_connect

    from alphapoint.frame import MessageType, encode

    _, client = await ws_connect(_picows_listener(strict=True), url)
    seq = 2

    async def call() -> Any:
        nonlocal seq
        i, seq = seq, seq + 2
        return await client.call(i, encode(MessageType.REQUEST, i, "Ping", {}))

    result = await timed(call, n, warmup)
    await client.close()
    return result


async def picows_strict_logins(url: str, n: int, warmup: int, creds: Credentials) -> Measured:
    from picows import ws_connect

    from alphapoint.decoding import decode_authenticate_result
    from alphapoint.frame import MessageType, encode

    listener = _picows_listener(strict=True)
    # The library's own payload, signed; the nonces this run's (as auth_frame's).
    signer = alphapoint.ApiKeyCredentials(
        api_key=creds.api_key,
        api_secret=creds.api_secret,
        user_id=creds.user_id,
        nonces=functools.partial(creds.nonce, "s"),
    )

    async def login() -> None:
        _, client = await ws_connect(listener, url)
        payload = signer.authenticate_payload()
        reply = await client.call(2, encode(MessageType.REQUEST, 2, "AuthenticateUser", payload))
        if not decode_authenticate_result(reply).authenticated:
            raise RuntimeError("login refused")
        await client.close()

    return await timed(login, n, warmup)


# -- ccxt -------------------------------------------------------------------------


async def ccxt_calls(url: str, n: int, warmup: int) -> Measured:
    """Ping round trips through ccxt's ndax websocket client.

    ``ccxt.pro.ndax`` can be pointed at any URL (``urls.api.ws``) but has no
    request/reply call: its ``handle_message`` routes replies by function name
    to its four market-data subscriptions only. A Ping reply is parsed and
    dropped, so this subclass adds the one missing route: it resolves the
    future that ccxt's own ``watch()`` made for ``Ping:<i>``. Everything else
    (aiohttp, ccxt's Client, its JSON handling, its futures) is ccxt's.
    """
    import ccxt.pro

    class NdaxWithPing(ccxt.pro.ndax):
        async def ping_call(self) -> Any:
            request_id = self.request_id()
            message_hash = f"Ping:{request_id}"
            request = {"m": 0, "i": request_id, "n": "Ping", "o": self.json({})}
            return await self.watch(self.urls["api"]["ws"], message_hash, request, message_hash)

        def handle_message(self, client: Any, message: Any) -> None:
            if isinstance(message, dict) and message.get("n") == "Ping":
                message_hash = f"Ping:{message.get('i')}"
                client.subscriptions.pop(message_hash, None)
                client.resolve(_loads(message["o"]), message_hash)
                return
            super().handle_message(client, message)

    exchange = NdaxWithPing({"urls": {"api": {"ws": url}}, "enableRateLimit": False})
    try:
        result = await timed(exchange.ping_call, n, warmup)
    finally:
        await exchange.close()
    return result


# -- the table of who can run what -------------------------------------------------

CallsFn = Callable[[str, int, int], Awaitable[Measured]]
PipelinedFn = Callable[[str, int, int, int], Awaitable[Measured]]
LoginsFn = Callable[[str, int, int, Credentials], Awaitable[Measured]]

CALLS: dict[tuple[str, str], CallsFn] = {
    ("floor", "asyncio"): floor_calls,
    ("floor", "trio"): floor_calls,
    ("alphapoint", "asyncio"): as_installed(False, alphapoint_calls),
    ("alphapoint", "trio"): as_installed(False, alphapoint_calls),
    ("alphapoint-fast", "asyncio"): as_installed(True, alphapoint_calls),
    ("picows", "asyncio"): picows_calls,
    ("picows-strict", "asyncio"): as_installed(True, picows_strict_calls),
    ("ccxt", "asyncio"): ccxt_calls,
}
PIPELINED: dict[tuple[str, str], PipelinedFn] = {
    ("floor", "asyncio"): floor_pipelined_asyncio,
    ("floor", "trio"): floor_pipelined_trio,
    ("alphapoint", "asyncio"): as_installed(False, alphapoint_pipelined),
    ("alphapoint", "trio"): as_installed(False, alphapoint_pipelined),
    ("alphapoint-fast", "asyncio"): as_installed(True, alphapoint_pipelined),
    ("picows", "asyncio"): picows_pipelined,
}
LOGINS: dict[tuple[str, str], LoginsFn] = {
    ("floor", "asyncio"): floor_logins,
    ("floor", "trio"): floor_logins,
    ("alphapoint", "asyncio"): as_installed(False, alphapoint_logins),
    ("alphapoint", "trio"): as_installed(False, alphapoint_logins),
    ("alphapoint-fast", "asyncio"): as_installed(True, alphapoint_logins),
    ("picows", "asyncio"): picows_logins,
    ("picows-strict", "asyncio"): as_installed(True, picows_strict_logins),
}
#: Each network benchmark's table (``pipelined``'s functions take a concurrency too).
BY_BENCH: dict[str, dict[tuple[str, str], Any]] = {
    "calls": CALLS,
    "pipelined": PIPELINED,
    "logins": LOGINS,
}


def loop_family(backend: str) -> str:
    """uvloop runs the asyncio code: the tables above are keyed by asyncio or trio."""
    return "trio" if backend == "trio" else "asyncio"


def run_on(backend: str, fn: Callable[..., Awaitable[Measured]], *args: Any) -> Measured:
    """Run ``fn(*args)`` in a fresh event loop of ``backend``."""
    if backend == "trio":
        import trio

        return trio.run(fn, *args)
    if backend == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(fn(*args))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

"""Where a Ping round trip's client CPU time goes, layer by layer.

    python benchmarks/decompose.py [--bench calls|logins] [--backends asyncio,uvloop,trio]
                                   [-n N] [--repeats 7]

Each line adds one layer to the one before it, all against the same
out-of-process echo server, interleaved and repeated (median client CPU
microseconds per call, and the difference to the line before):

A. the floor: the raw ``websockets`` client (its asyncio or trio implementation);
B. websockets' Sans-I/O ``ClientProtocol`` over an anyio TCP stream, one task
   sending and then reading its own reply: what anyio's streams cost;
C. B with a reader task that hands each reply to the caller through an
   ``anyio.Event``: what alphapoint's architecture (one reader per
   connection, many callers) costs at the minimum;
D. ``alphapoint.connection.Connection.request``: alphapoint's transport and
   connection layers (frame codec, pending-call table, send lock, dispatch);
E. ``Session.call``: the session layer on top (per-call timeout, readiness
   check, reply check).

Under asyncio and uvloop, D and E run on alphapoint's asyncio driver (replies
resolved in ``data_received``), so they do not build on B and C there: B and C
show what the anyio driver, the one trio uses, costs.

``--bench logins`` does the same for an API-key login on a fresh connection:
A. the raw client; B. alphapoint's transport and ``Connection`` alone (open,
the connection's task, ``AuthenticateUser``, close); C. ``alphapoint.connect()``,
the session (its task group, the login steps and result, its states, closing).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import clients
from servers import ServerProcess, available_impls

_loads = json.loads


async def _sansio_stream(url: str) -> tuple[Any, Any]:
    import anyio
    from websockets.client import ClientProtocol
    from websockets.uri import parse_uri

    uri = parse_uri(url)
    stream = await anyio.connect_tcp(uri.host, uri.port)
    protocol = ClientProtocol(uri)
    protocol.send_request(protocol.connect())
    for data in protocol.data_to_send():
        await stream.send(data)
    while not protocol.events_received():
        protocol.receive_data(await stream.receive())
    return protocol, stream


async def sansio_one_task(url: str, n: int, warmup: int) -> clients.Measured:
    protocol, stream = await _sansio_stream(url)
    seq = 2

    async def call() -> Any:
        nonlocal seq
        i, seq = seq, seq + 2
        protocol.send_text(clients.ping_frame(i).encode())
        await stream.send(b"".join(protocol.data_to_send()))
        while True:
            events = protocol.events_received()
            if events:
                reply = _loads(events[0].data.decode())
                return _loads(reply["o"])
            protocol.receive_data(await stream.receive())

    result = await clients.timed(call, n, warmup)
    await stream.aclose()
    return result


async def sansio_reader_task(url: str, n: int, warmup: int) -> clients.Measured:
    import anyio

    protocol, stream = await _sansio_stream(url)
    pending: dict[int, list[Any]] = {}
    seq = 2

    async def reader() -> None:
        while True:
            protocol.receive_data(await stream.receive())
            for event in protocol.events_received():
                reply = _loads(event.data.decode())
                slot = pending.pop(reply["i"], None)
                if slot is not None:
                    slot[1] = _loads(reply["o"])
                    slot[0].set()

    async def call() -> Any:
        nonlocal seq
        i, seq = seq, seq + 2
        slot = pending[i] = [anyio.Event(), None]
        protocol.send_text(clients.ping_frame(i).encode())
        await stream.send(b"".join(protocol.data_to_send()))
        await slot[0].wait()
        return slot[1]

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        result = await clients.timed(call, n, warmup)
        tg.cancel_scope.cancel()
    await stream.aclose()
    return result


async def alphapoint_connection(url: str, n: int, warmup: int) -> clients.Measured:
    import anyio

    from alphapoint.connection import Connection
    from alphapoint.drivers import open_websocket
    from alphapoint.frame import MessageType

    websocket = await open_websocket(url)
    conn = Connection(websocket, url=url, on_event=lambda conn, event: None)
    async with anyio.create_task_group() as tg:
        tg.start_soon(conn.run)
        result = await clients.timed(
            lambda: conn.request(MessageType.REQUEST, "Ping", {}), n, warmup
        )
        tg.cancel_scope.cancel()
    await websocket.abort()
    return result


async def alphapoint_connection_login(
    url: str, n: int, warmup: int, creds: clients.Credentials
) -> clients.Measured:
    import anyio

    import alphapoint
    from alphapoint.connection import Connection
    from alphapoint.drivers import open_websocket
    from alphapoint.frame import MessageType

    credentials = creds.alphapoint()

    async def login() -> None:
        conn = Connection(await open_websocket(url), url=url, on_event=lambda conn, event: None)
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.run)
            payload = credentials.authenticate_payload()
            await conn.request(MessageType.REQUEST, "AuthenticateUser", payload)
            await conn.aclose(alphapoint.SessionClosed("done"))

    return await clients.timed(login, n, warmup)


Layers = list[tuple[str, Callable[[str], Callable[..., Awaitable[clients.Measured]]]]]

LAYERS: Layers = [
    ("A. raw websockets client (floor)", lambda family: clients.CALLS["floor", family]),
    ("B. Sans-I/O over anyio stream, one task", lambda family: sansio_one_task),
    ("C. B + reader task, anyio.Event handoff", lambda family: sansio_reader_task),
    ("D. alphapoint Connection.request", lambda family: alphapoint_connection),
    ("E. alphapoint Session.call", lambda family: clients.alphapoint_calls),
]


LOGIN_LAYERS: Layers = [
    ("A. raw websockets client (floor)", lambda family: clients.LOGINS["floor", family]),
    ("B. alphapoint Connection: open, log in, close", lambda family: alphapoint_connection_login),
    ("C. alphapoint.connect() session", lambda family: clients.LOGINS["alphapoint", family]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description="Where a Ping round trip's CPU time goes.")
    parser.add_argument("--bench", choices=["calls", "logins"], default="calls")
    parser.add_argument("--backends", default="asyncio,uvloop,trio")
    parser.add_argument("-n", type=int, default=None, help="calls (3000) or logins (300)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    creds = clients.Credentials(secrets.token_hex(8), secrets.token_hex(16), "7")
    impl = available_impls()[0]
    logins = args.bench == "logins"
    layers = LOGIN_LAYERS if logins else LAYERS
    n = args.n or (300 if logins else 3000)
    extra: tuple[Any, ...] = (creds,) if logins else ()
    what = "API-key login" if logins else "Ping round trip"
    print(f"client CPU µs per {what} over {args.repeats} repetitions (echo server: {impl})")
    with ServerProcess(impl, creds.api_key, creds.api_secret, creds.user_id) as server:
        for backend in args.backends.split(","):
            family = clients.loop_family(backend)
            cpu: dict[str, list[float]] = {name: [] for name, _ in layers}
            wall: dict[str, list[float]] = {name: [] for name, _ in layers}
            for k in range(args.repeats):
                order = layers[k % len(layers) :] + layers[: k % len(layers)]
                for name, pick in order:
                    warmup = 20 if logins else 200
                    w, c = clients.run_on(backend, pick(family), server.url, n, warmup, *extra)
                    cpu[name].append(c / n * 1e6)
                    wall[name].append(w / n * 1e6)
            print(f"\n{backend}:")
            print(
                f"  {'layer':42} {'CPU min':>8} {'+ vs above':>10} {'CPU median':>10} "
                f"{'wall median':>11}"
            )
            previous = None
            for name, _ in layers:
                best = min(cpu[name])
                delta = "" if previous is None else f"{best - previous:+.1f}"
                print(
                    f"  {name:42} {best:8.1f} {delta:>10} {statistics.median(cpu[name]):10.1f} "
                    f"{statistics.median(wall[name]):11.1f}"
                )
                previous = best
        sys.stdout.flush()


if __name__ == "__main__":
    main()

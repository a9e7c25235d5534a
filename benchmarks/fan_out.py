"""Fan-out: events per second per core for one session, against its number of subscriptions.

``python benchmarks/fan_out.py`` prints a table. One session subscribes to
Level1 for N instruments (``SubscribeLevel1``, one subscription each, each
read by a task of its own, as a collector does), then asks the server for K
``Level1UpdateEvent`` frames, round-robin over the N instruments, and counts
them as the consumers receive them. The client's CPU time
(``time.process_time``; the server is a process of its own) divided by K is
the cost of an event end to end: reading, decoding, routing to its
subscription, and the consumer taking it. Each row is the median of
``--repeats`` runs; the table also gives the ratio to the row with one
subscription. The clients (``--clients``), side by side:

* ``tasks``: alphapoint, each subscription read by a task of its own;
* ``merged``: alphapoint, every subscription read in one task through
  ``alphapoint.merge(*subscriptions).batches()``;
* ``websockets``: a hand-written loop over the raw ``websockets`` client that
  reads the same frames, decodes them twice and counts them per instrument in
  a dict (no subscriptions, no tasks);
* ``picows``: the same over picows's callbacks with orjson (the fast extra's
  parts with nothing around them: a floor; asyncio and uvloop only);
* ``strict``: that picows loop reading each frame with alphapoint's frame
  codec (``frame.decode_fields``) instead of orjson twice: the cost of the
  library's strict reading alone, with none of its hand-over (asyncio and
  uvloop only).

``--instructions`` counts instructions instead of timing: each client runs
in a child process under valgrind's callgrind twice, with floods of
``--events`` and six times as many (each after a warm-up of a tenth), and
the difference divided by the difference in events is its instructions per
event (the server runs outside valgrind, and is faster than a client under
it, so every read is a full socket buffer: the counts repeat within 0.3%).

``--driver`` is passed to ``alphapoint.connect`` (``auto`` by default, so that
a faster driver, once installed, is what this measures); ``--backends``
picks the event loops.

The server (``--serve``, started by this script) answers ``SubscribeLevel1``
with a snapshot and ``Flood`` {"count": K, "instruments": N} with the K events
and then its reply; it runs on picows when installed, else on websockets. On
picows it encodes all the frames of an answer first and writes them at once,
so that the client reads as fast as it can, many frames to a read, as a
collector that is the bottleneck does: written as they were encoded
(``--per-frame-writes``, how this benchmark ran before the fifth round), the
server's own encoding was slower than the client, whose reads then brought a
frame or two each, a system call and a turn of the loop per event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.loads

COUNTS = [1, 10, 100, 1000]
BACKENDS = ["asyncio", "uvloop", "trio"]


def level1(instrument: int, k: int) -> dict[str, Any]:
    """A Level1 update as NDAX sends it (PascalCase, every field)."""
    price = 30_000.0 + (k % 1000) / 10
    return {
        "OMSId": 1,
        "InstrumentId": instrument,
        "BestBid": price - 0.5,
        "BestOffer": price + 0.5,
        "LastTradedPx": price,
        "LastTradedQty": 0.01,
        "LastTradeTime": 1_700_000_000_000 + k,
        "SessionOpen": 29_500.0,
        "SessionHigh": 31_000.0,
        "SessionLow": 29_000.0,
        "SessionClose": price,
        "Volume": 0.01,
        "CurrentDayVolume": 123.45,
        "CurrentDayNumTrades": 6789,
        "CurrentDayPxChange": 500.0,
        "Rolling24HrVolume": 234.56,
        "Rolling24NumTrades": 7890,
        "Rolling24HrPxChange": 1.7,
        "TimeStamp": str(1_700_000_000_000 + k),
    }


def respond(text: str | bytes, send: Callable[[str], None]) -> None:
    """The server's answer to one request: zero or more frames, through ``send``."""
    frame = _loads(text)
    m, i, n, o = frame["m"], frame["i"], frame["n"], _loads(frame["o"] or "{}")
    if m not in (0, 2):
        return
    if n == "SubscribeLevel1":
        payload: Any = level1(o["InstrumentId"], 0)
    elif n == "Flood":
        count, instruments = o["count"], o["instruments"]
        for k in range(count):
            event = level1(1 + k % instruments, k)
            send(_dumps({"m": 3, "i": k, "n": "Level1UpdateEvent", "o": _dumps(event)}))
        payload = {"sent": count}
    else:
        payload = {"result": True, "errormsg": None, "errorcode": 0, "detail": None}
    send(_dumps({"m": 1, "i": i, "n": n, "o": _dumps(payload)}))


def _add_frame(out: bytearray, text: str) -> None:
    """A server's (unmasked) text frame carrying ``text``, added to ``out``."""
    data = text.encode()
    size = len(data)
    if size < 126:
        out += bytes((0x81, size))
    elif size < 65536:
        out += bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        out += bytes((0x81, 127)) + size.to_bytes(8, "big")
    out += data


async def serve() -> None:
    """Serve until standard input closes; print ``PORT n`` once listening."""
    loop = asyncio.get_running_loop()
    try:
        from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server
    except ImportError:
        from websockets.asyncio.server import ServerConnection
        from websockets.asyncio.server import serve as ws_serve

        async def handler(ws: ServerConnection) -> None:
            async for message in ws:
                out: list[str] = []
                respond(message, out.append)
                for text in out:
                    await ws.send(text)

        async with ws_serve(handler, "127.0.0.1", 0, compression=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            print(f"PORT {port}", flush=True)
            await loop.run_in_executor(None, sys.stdin.buffer.read)
        return

    per_frame = "--per-frame-writes" in sys.argv

    class Listener(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is WSMsgType.TEXT:
                if per_frame:
                    respond(
                        frame.get_payload_as_bytes(),
                        lambda text: transport.send(WSMsgType.TEXT, text.encode()),
                    )
                    return
                # Every frame of the answer encoded first, then written at once:
                # the client reads them as fast as it can, many to a read.
                out = bytearray()
                respond(frame.get_payload_as_bytes(), lambda text: _add_frame(out, text))
                transport.underlying_transport.write(bytes(out))
            elif frame.msg_type is WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()

    server = await ws_create_server(lambda _request: Listener(), "127.0.0.1", 0)
    async with server:
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        await loop.run_in_executor(None, sys.stdin.buffer.read)


# -- the clients -----------------------------------------------------------------


async def alphapoint_run(url: str, subscriptions: int, events: int, driver: str) -> float:
    """CPU seconds for ``events`` events over ``subscriptions`` subscriptions, a task each."""
    return await _alphapoint(url, subscriptions, events, driver, merged=False)


async def merged_run(url: str, subscriptions: int, events: int, driver: str) -> float:
    """The same, every subscription read in one task: ``merge(...).batches()``."""
    return await _alphapoint(url, subscriptions, events, driver, merged=True)


async def _alphapoint(
    url: str, subscriptions: int, events: int, driver: str, *, merged: bool
) -> float:
    import contextlib

    import anyio

    import alphapoint

    got = [0]
    target = [0]
    done = anyio.Event()

    async def consume(stream: alphapoint.Subscription) -> None:
        async for _event in stream:
            got[0] += 1
            if got[0] == target[0]:
                done.set()

    async def consume_merged(streams: list[alphapoint.Subscription]) -> None:
        async for batch in alphapoint.merge(*streams).batches():
            got[0] += len(batch)
            if got[0] >= target[0]:
                done.set()

    async with (
        alphapoint.connect(url, driver=driver, keepalive=None) as session,  # type: ignore[arg-type]
        contextlib.AsyncExitStack() as stack,
        anyio.create_task_group() as tg,
    ):
        streams = []
        for instrument in range(1, subscriptions + 1):
            stream = await stack.enter_async_context(
                session.subscribe(
                    "SubscribeLevel1",
                    {"OMSId": 1, "InstrumentId": instrument},
                    buffer=max(1024, 2 * events // subscriptions),
                )
            )
            streams.append(stream)
            if not merged:
                tg.start_soon(consume, stream)
        if merged:
            tg.start_soon(consume_merged, streams)

        async def flood(count: int) -> float:
            nonlocal done
            got[0], target[0], done = 0, count, anyio.Event()
            cpu = time.process_time()
            await session.call("Flood", {"count": count, "instruments": subscriptions}, timeout=600)
            await done.wait()
            return time.process_time() - cpu

        await flood(max(events // 10, subscriptions))  # warm-up
        cpu = await flood(events)
        tg.cancel_scope.cancel()
    return cpu


async def floor_run(url: str, subscriptions: int, events: int, driver: str) -> float:
    """The same with the raw websockets client: read, decode twice, count per instrument."""
    import anyio

    if anyio.get_current_task() and _is_trio():
        from websockets.trio.client import connect
    else:
        from websockets.asyncio.client import connect  # type: ignore[assignment]

    async with connect(url, compression=None, max_size=None) as ws:
        seq = 2
        for instrument in range(1, subscriptions + 1):
            o = _dumps({"OMSId": 1, "InstrumentId": instrument})
            await ws.send(_dumps({"m": 0, "i": seq, "n": "SubscribeLevel1", "o": o}))
            seq += 2
            await ws.recv()
        counts: dict[Any, int] = {}

        async def flood(count: int) -> float:
            nonlocal seq
            cpu = time.process_time()
            o = _dumps({"count": count, "instruments": subscriptions})
            await ws.send(_dumps({"m": 0, "i": seq, "n": "Flood", "o": o}))
            seq += 2
            received = 0
            while received < count:
                frame = _loads(await ws.recv())
                if frame["m"] == 3:
                    key = _loads(frame["o"])["InstrumentId"]
                    counts[key] = counts.get(key, 0) + 1
                    received += 1
            await ws.recv()  # the Flood reply
            return time.process_time() - cpu

        await flood(max(events // 10, subscriptions))
        return await flood(events)


async def picows_run(
    url: str, subscriptions: int, events: int, driver: str, *, strict: bool = False
) -> float:
    """The floor with the fast extra's parts: picows's callbacks, orjson twice, a dict
    (``strict``: alphapoint's frame codec in place of orjson, as :func:`strict_run`)."""
    import orjson
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    from alphapoint.frame import MessageType, decode_fields

    loads, event = orjson.loads, MessageType.EVENT
    loop = asyncio.get_running_loop()
    counts: dict[Any, int] = {}
    state = {"left": 0, "replies": 0}
    done: list[asyncio.Future[None]] = [loop.create_future()]

    # Two listeners, not one that asks ``strict`` at every frame: each floor's
    # callback is all that it measures, so neither pays for the other's test.
    class Listener(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            message = loads(frame.get_payload_as_bytes())
            if message["m"] == 3:
                key = loads(message["o"])["InstrumentId"]
                counts[key] = counts.get(key, 0) + 1
                state["left"] -= 1
            else:
                state["replies"] -= 1
            if state["left"] <= 0 and state["replies"] <= 0 and not done[0].done():
                done[0].set_result(None)

    class StrictListener(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            kind, _, _, payload = decode_fields(frame.get_payload_as_utf8_text())
            if kind is event:
                key = payload["InstrumentId"]
                counts[key] = counts.get(key, 0) + 1
                state["left"] -= 1
            else:
                state["replies"] -= 1
            if state["left"] <= 0 and state["replies"] <= 0 and not done[0].done():
                done[0].set_result(None)

    transport, _ = await ws_connect(StrictListener if strict else Listener, url)
    seq = 2

    async def request(name: str, payload: Any, count: int = 0) -> None:
        nonlocal seq
        done[0] = loop.create_future()
        state["left"], state["replies"] = count, 1
        o = _dumps(payload)
        transport.send(WSMsgType.TEXT, _dumps({"m": 0, "i": seq, "n": name, "o": o}).encode())
        seq += 2
        await done[0]

    for instrument in range(1, subscriptions + 1):
        await request("SubscribeLevel1", {"OMSId": 1, "InstrumentId": instrument})

    async def flood(count: int) -> float:
        cpu = time.process_time()
        await request("Flood", {"count": count, "instruments": subscriptions}, count)
        return time.process_time() - cpu

    await flood(max(events // 10, subscriptions))
    cpu = await flood(events)
    transport.disconnect()
    return cpu


async def strict_run(url: str, subscriptions: int, events: int, driver: str) -> float:
    """The picows floor reading each frame with alphapoint's frame codec
    (``frame.decode_fields``: the typed envelope, ``o``, the duplicate-key
    count) in place of orjson twice: what alphapoint's rules cost with none
    of its hand-over, the most any design of it could reach."""
    return await picows_run(url, subscriptions, events, driver, strict=True)


def floor_runs_on(backend: str) -> bool:
    """Whether the raw loop runs on ``backend``: under trio it needs ``websockets.trio``,
    which the websockets releases for Python 3.10 do not have (its column shows -)."""
    if backend != "trio":
        return True
    try:
        import websockets.trio.client  # noqa: F401
    except ImportError:
        return False
    return True


def picows_runs_on(backend: str) -> bool:
    """Whether the raw picows loop runs on ``backend`` (asyncio and uvloop, when installed)."""
    if backend == "trio":
        return False
    try:
        import orjson  # noqa: F401
        import picows  # noqa: F401
    except ImportError:
        return False
    return True


#: The clients measured: (column title, function, whether it runs on a backend).
CLIENTS: dict[str, tuple[str, Callable[..., Any], Callable[[str], bool]]] = {
    "tasks": ("alphapoint, a task per subscription", alphapoint_run, lambda _: True),
    "merged": ("alphapoint, merge().batches()", merged_run, lambda _: True),
    "websockets": ("raw websockets loop", floor_run, floor_runs_on),
    "picows": ("raw picows loop (orjson)", picows_run, picows_runs_on),
    "strict": ("raw picows loop, alphapoint's frame codec", strict_run, picows_runs_on),
}


def _is_trio() -> bool:
    from alphapoint.drivers import current_loop

    return current_loop() == "trio"


def run_on(backend: str, fn: Callable[..., Any], *args: Any) -> float:
    if backend == "trio":
        import trio

        result: float = trio.run(fn, *args)
        return result
    if backend == "uvloop":
        import uvloop

        return uvloop.run(fn(*args))  # type: ignore[no-any-return]
    return asyncio.run(fn(*args))


# -- instructions, by valgrind -------------------------------------------------------


def count_instructions(
    valgrind: str, url: str, backend: str, client: str, n: int, events: int, driver: str
) -> float:
    """Instructions per event of ``client``: two runs under callgrind, the difference."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from instructions import collected, under_callgrind

    def run(count: int) -> int:
        child = ["--child", backend, client, url, str(n), str(count), "--driver", driver]
        result = subprocess.run(
            under_callgrind(valgrind, __file__, *child),
            capture_output=True,
            text=True,
            timeout=1800,
        )
        return collected(result.stderr)

    small, large = events, 6 * events
    # Each run floods a tenth more first (flood()'s warm-up): 1.1 times its count.
    return (run(large) - run(small)) / (1.1 * (large - small))


# -- the table -----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instructions per event by valgrind (two runs per client) instead of CPU time",
    )
    parser.add_argument("--valgrind", default="valgrind", help="valgrind's path")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--driver", default="auto", help="alphapoint.connect(driver=...)")
    parser.add_argument(
        "--per-frame-writes",
        action="store_true",
        help="the server writes each frame as it encodes it (as before the fifth round)",
    )
    parser.add_argument(
        "--clients", default=",".join(CLIENTS), help=f"some of {', '.join(CLIENTS)}"
    )
    args = parser.parse_args()
    if args.serve:
        try:
            import uvloop

            uvloop.run(serve())
        except ImportError:
            asyncio.run(serve())
        return
    if args.child:
        backend, client, url, n, count = args.child
        run_on(backend, CLIENTS[client][1], url, int(n), int(count), args.driver)
        return
    counts = [int(c) for c in args.counts.split(",")]
    backends = args.backends.split(",")
    clients = args.clients.split(",")
    server = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve"]
        + (["--per-frame-writes"] if args.per_frame_writes else []),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    started = time.perf_counter()
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().decode().split()[1])
        url = f"ws://127.0.0.1:{port}/WSGateway/"
        samples: dict[tuple[str, str, int], list[float]] = {}
        for k in range(args.repeats):
            for backend in backends:
                for n in counts:
                    # Interleaved, each run starting with another client.
                    order = clients[k % len(clients) :] + clients[: k % len(clients)]
                    for client in order:
                        _, fn, runs_on = CLIENTS[client]
                        if not runs_on(backend):
                            continue
                        if args.instructions:
                            per_event = count_instructions(
                                args.valgrind, url, backend, client, n, args.events, args.driver
                            )
                        else:
                            cpu = run_on(backend, fn, url, n, args.events, args.driver)
                            per_event = cpu / args.events * 1e6
                        samples.setdefault((backend, client, n), []).append(per_event)
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=10)
    print(
        f"fan-out: {args.events:,} Level1 events per run, median of {args.repeats} runs, "
        f"{'instructions' if args.instructions else 'client CPU time'}, "
        f"driver={args.driver}, {time.perf_counter() - started:.0f} s: "
        f"python benchmarks/fan_out.py {' '.join(sys.argv[1:])}"
    )
    print()
    if args.instructions:
        print("Instructions per event of the client process (valgrind callgrind, floods of")
        print(f"{args.events:,} and {6 * args.events:,} events, the difference), median")
        print("[min-max], and the ratio to the same client's row with the fewest subscriptions.")
    else:
        print("µs of client CPU per event (median [min-max]), events/s per core, and the ratio")
        print("to the same client's row with the fewest subscriptions.")
    print()
    unit = "instructions/event" if args.instructions else "µs/event"
    header = ["backend", "subscriptions"]
    for client in clients:
        header += [f"{CLIENTS[client][0]} {unit}", "events/s", f"vs {counts[0]:,}"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for backend in backends:
        for n in counts:
            row = [backend, f"{n:,}"]
            for client in clients:
                got = samples.get((backend, client, n))
                base = samples.get((backend, client, counts[0]))
                if not got or not base:
                    row += ["-", "-", "-"]
                    continue
                median = statistics.median(got)
                shown = "{:,.0f}" if args.instructions else "{:.2f}"
                row += [
                    f"{shown.format(median)} [{shown.format(min(got))}-{shown.format(max(got))}]",
                    "-" if args.instructions else f"{1e6 / median:,.0f}",
                    f"{median / statistics.median(base):.2f}x",
                ]
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

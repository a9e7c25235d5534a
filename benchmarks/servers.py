"""A minimal APEX echo server, run in its own process for the benchmarks.

It answers just enough of the protocol, as cheaply as it can, so that on
loopback the client's cost is what the benchmarks see:

* ``Ping`` -> ``{"msg": "PONG"}``;
* ``AuthenticateUser`` with an API key -> the PascalCase reply live gateways
  send, after checking the HMAC signature and refusing a reused nonce exactly
  like the embedded gateway (``alphapoint.testing``);
* ``LogOut`` -> the standard response; anything else -> ``m=5`` "Endpoint Not Found".

Two implementations: ``picows`` on uvloop (the fastest Python WebSocket server
there is; used when installed) and the ``websockets`` asyncio server (always
available). Run as ``python benchmarks/servers.py [--impl picows|websockets]``;
the API key, secret and user id come from the environment
(``BENCH_API_KEY``, ``BENCH_API_SECRET``, ``BENCH_USER_ID``). It prints
``PORT <n>`` once listening and serves until its standard input closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from typing import Any

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.loads

PONG = _dumps({"msg": "PONG"})
LOGGED_OUT = _dumps({"result": True, "errormsg": None, "errorcode": 0, "detail": None})


class Apex:
    """The protocol logic, independent of the WebSocket implementation."""

    def __init__(self, api_key: str, api_secret: str, user_id: str) -> None:
        self.api_key, self.api_secret, self.user_id = api_key, api_secret, user_id
        self.used_nonces: set[str] = set()
        self.handlers: dict[str, Callable[[str], str]] = {
            "Ping": lambda o: PONG,
            "AuthenticateUser": self.authenticate,
            "LogOut": lambda o: LOGGED_OUT,
        }

    def respond(self, text: str | bytes) -> str | None:
        """The reply to one message, or ``None`` (no reply to non-frames, like live gateways)."""
        try:
            frame = _loads(text)
            m, i, n, o = frame["m"], frame["i"], frame["n"], frame["o"]
        except (ValueError, KeyError, TypeError):
            return None
        if m not in (0, 2, 4):
            return None
        handler = self.handlers.get(n)
        if handler is None:
            return _dumps({"m": 5, "i": i, "n": n, "o": "Endpoint Not Found"})
        return _dumps({"m": 1, "i": i, "n": n, "o": handler(o)})

    def authenticate(self, o: str) -> str:
        payload = _loads(o)
        fields = [payload.get(k) for k in ("APIKey", "Signature", "UserId", "Nonce")]
        api_key, signature, user_id, nonce = (str(v) for v in fields)
        expected = hmac.new(
            self.api_secret.encode(), f"{nonce}{user_id}{api_key}".encode(), hashlib.sha256
        ).hexdigest()
        if (
            api_key != self.api_key
            or user_id != self.user_id
            or not hmac.compare_digest(signature, expected)
            or nonce in self.used_nonces
        ):
            return _dumps(
                {"Authenticated": False, "Locked": False, "errormsg": "Invalid signature"}
            )
        self.used_nonces.add(nonce)
        return _dumps(
            {
                "Authenticated": True,
                "SessionToken": secrets.token_hex(16),
                "User": {
                    "UserId": int(user_id),
                    "UserName": "bench",
                    "Email": "bench@example.com",
                    "EmailVerified": True,
                    "AccountId": 1000 + int(user_id),
                    "OMSId": 1,
                    "Use2FA": False,
                },
                "Locked": False,
                "Requires2FA": False,
                "EnforceEnable2FA": False,
                "TwoFAType": None,
                "TwoFAToken": None,
                "errormsg": None,
            }
        )


async def _serve_websockets(apex: Apex, ready: Callable[[int], None]) -> None:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                reply = apex.respond(message)
                if reply is not None:
                    await ws.send(reply)

    async with serve(
        handler, "127.0.0.1", 0, backlog=4096, compression=None, max_size=2**22
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        ready(port)
        await _wait_for_stdin_eof()


async def _serve_picows(apex: Apex, ready: Callable[[int], None]) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    text, close = WSMsgType.TEXT, WSMsgType.CLOSE

    class Listener(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            kind = frame.msg_type
            if kind is text:
                reply = apex.respond(frame.get_payload_as_bytes())
                if reply is not None:
                    transport.send(text, reply.encode())
            elif kind is close:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()

    server = await ws_create_server(lambda _request: Listener(), "127.0.0.1", 0, backlog=4096)
    async with server:
        ready(server.sockets[0].getsockname()[1])
        await _wait_for_stdin_eof()


async def _wait_for_stdin_eof() -> None:
    """Serve until the parent closes our standard input (or dies)."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.buffer.read)


def available_impls() -> list[str]:
    """The server implementations this environment can run, fastest first."""
    impls = []
    try:
        import picows  # noqa: F401

        impls.append("picows")
    except ImportError:
        pass
    impls.append("websockets")
    return impls


class ServerProcess:
    """The echo server in a child process: ``with ServerProcess(...) as server: server.url``."""

    def __init__(self, impl: str, api_key: str, api_secret: str, user_id: str) -> None:
        self.impl = impl
        env = dict(
            os.environ,
            BENCH_API_KEY=api_key,
            BENCH_API_SECRET=api_secret,
            BENCH_USER_ID=user_id,
        )
        self._process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--impl", impl],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().decode()
        if not line.startswith("PORT "):
            self.close()
            raise RuntimeError(f"the {impl} benchmark server did not start")
        self.port = int(line.split()[1])
        self.url = f"ws://127.0.0.1:{self.port}/WSGateway/"
        self.pid = self._process.pid

    def close(self) -> None:
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=["picows", "websockets"], default=available_impls()[0])
    args = parser.parse_args()
    apex = Apex(
        os.environ["BENCH_API_KEY"], os.environ["BENCH_API_SECRET"], os.environ["BENCH_USER_ID"]
    )

    def ready(port: int) -> None:
        print(f"PORT {port}", flush=True)

    if args.impl == "picows":
        try:
            import uvloop

            run: Callable[[Any], None] = uvloop.run
        except ImportError:
            run = asyncio.run
        run(_serve_picows(apex, ready))
    else:
        asyncio.run(_serve_websockets(apex, ready))


if __name__ == "__main__":
    main()

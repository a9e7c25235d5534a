"""Sessions through proxies: HTTP CONNECT (plain and with credentials), wss:// through a
tunnel, the environment's proxy and loopback, and SOCKS5.

The proxies are written here, small and real: an anyio TCP listener on
127.0.0.1 that reads the client's request, records it, connects to the target
and relays bytes both ways. Nothing is mocked.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import secrets
import ssl
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import attrs
import pytest
import trustme
from anyio.streams.buffered import BufferedByteReceiveStream

import alphapoint
from alphapoint import ConnectError, InvalidURL, SessionState
from alphapoint.testing import GatewayFixture, demo_gateway

from .helpers import LIMIT, everything_said, unused_port

pytestmark = pytest.mark.anyio


PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "WS_PROXY",
    "WSS_PROXY",
    "SOCKS_PROXY",
    "NO_PROXY",
)

_STREAM_ENDED = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.IncompleteRead,
    anyio.DelimiterNotFound,
    OSError,
)


async def relay(
    client_in: anyio.abc.ByteReceiveStream,
    client_out: anyio.abc.ByteSendStream,
    upstream: anyio.abc.ByteStream,
    seen_upstream: bytearray,
) -> None:
    """Copy bytes both ways until either side ends; ``seen_upstream`` gets what went up."""
    async with anyio.create_task_group() as tasks:

        async def pump(
            source: anyio.abc.ByteReceiveStream,
            sink: anyio.abc.ByteSendStream,
            seen: bytearray | None,
        ) -> None:
            with contextlib.suppress(*_STREAM_ENDED):
                while True:
                    data = await source.receive()
                    if seen is not None:
                        seen += data
                    await sink.send(data)
            tasks.cancel_scope.cancel()

        tasks.start_soon(pump, client_in, upstream, seen_upstream)
        tasks.start_soon(pump, upstream, client_out, None)


@attrs.define
class ConnectRequest:
    """One CONNECT request, as the proxy received it."""

    request_line: str
    headers: dict[str, str]

    @property
    def target(self) -> str:
        return self.request_line.split(" ")[1]


class Server:
    """A listener on 127.0.0.1 that serves each connection with ``handle``."""

    def __init__(self) -> None:
        self.port = 0
        self._task_group: anyio.abc.TaskGroup | None = None

    async def handle(self, client: anyio.abc.SocketStream) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Any:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        task_group.start_soon(self._serve, listener)
        self._task_group = task_group
        return self

    async def _serve(self, listener: anyio.abc.Listener[anyio.abc.SocketStream]) -> None:
        async with listener:
            await listener.serve(self._handle_one)

    async def _handle_one(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            with contextlib.suppress(*_STREAM_ENDED):
                await self.handle(client)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        await self._task_group.__aexit__(None, None, None)


class ConnectProxy(Server):
    """An HTTP CONNECT proxy: answers ``status``; on 200, tunnels to the target.

    ``route_to`` sends every tunnel to that address, whatever host was asked
    for (a name that does not resolve, say).
    """

    def __init__(
        self,
        *,
        status: str = "200 Connection established",
        route_to: tuple[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.status = status
        self.route_to = route_to
        self.requests: list[ConnectRequest] = []
        self.tunnels = 0
        self.upstream = bytearray()

    def url(self, user_info: str = "") -> str:
        return f"http://{user_info}127.0.0.1:{self.port}"

    async def handle(self, client: anyio.abc.SocketStream) -> None:
        buffered = BufferedByteReceiveStream(client)
        head = await buffered.receive_until(b"\r\n\r\n", 65536)
        request_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        request = ConnectRequest(request_line, headers)
        self.requests.append(request)
        if not self.status.startswith("200"):
            await client.send(
                f"HTTP/1.1 {self.status}\r\n"
                'Proxy-Authenticate: Basic realm="proxy"\r\n'
                "Content-Length: 0\r\n\r\n".encode()
            )
            return
        host, _, port = request.target.rpartition(":")
        address = self.route_to or (host.strip("[]"), int(port))
        try:
            upstream = await anyio.connect_tcp(*address)
        except OSError:
            await client.send(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        async with upstream:
            await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.tunnels += 1
            await relay(buffered, client, upstream, self.upstream)


@attrs.define
class SocksRequest:
    """One SOCKS5 CONNECT request: how the address was given, the address, the port."""

    address_type: str
    host: str
    port: int


class Socks5Proxy(Server):
    """A minimal SOCKS5 proxy (RFC 1928): no authentication, CONNECT only."""

    def __init__(self) -> None:
        super().__init__()
        self.methods: list[bytes] = []
        self.requests: list[SocksRequest] = []
        self.tunnels = 0
        self.upstream = bytearray()

    def url(self, scheme: str = "socks5") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    async def handle(self, client: anyio.abc.SocketStream) -> None:
        buffered = BufferedByteReceiveStream(client)
        version, count = await buffered.receive_exactly(2)
        assert version == 5
        methods = await buffered.receive_exactly(count)
        self.methods.append(methods)
        if 0 not in methods:
            await client.send(b"\x05\xff")  # no acceptable method
            return
        await client.send(b"\x05\x00")
        version, command, _, address_type = await buffered.receive_exactly(4)
        assert version == 5
        if address_type == 1:
            kind, host = "ipv4", str(ipaddress.IPv4Address(await buffered.receive_exactly(4)))
        elif address_type == 3:
            length = (await buffered.receive_exactly(1))[0]
            kind, host = "domain", (await buffered.receive_exactly(length)).decode("idna")
        elif address_type == 4:
            kind, host = "ipv6", str(ipaddress.IPv6Address(await buffered.receive_exactly(16)))
        else:
            await client.send(b"\x05\x08\x00\x01\x00\x00\x00\x00\x00\x00")
            return
        port = int.from_bytes(await buffered.receive_exactly(2), "big")
        self.requests.append(SocksRequest(kind, host, port))
        if command != 1:
            await client.send(b"\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00")
            return
        try:
            upstream = await anyio.connect_tcp(host, port)
        except OSError:
            await client.send(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
            return
        async with upstream:
            await client.send(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
            self.tunnels += 1
            await relay(buffered, client, upstream, self.upstream)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- HTTP CONNECT -------------------------------------------------------------------------


async def test_a_session_logs_in_through_an_http_connect_proxy(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway, port = alphapoint_gateway.gateway, alphapoint_gateway.running.port
    async with (
        ConnectProxy() as proxy,
        alphapoint.connect(
            alphapoint_gateway.url,
            credentials=alphapoint_gateway.accounts.password,
            proxy=proxy.url(),
            keepalive=None,
        ) as session,
    ):
        assert session.authenticated
        assert (await session.call("GetUserInfo"))["UserName"] == "alice"
        assert [request.request_line for request in proxy.requests] == [
            f"CONNECT 127.0.0.1:{port} HTTP/1.1"
        ]
        assert proxy.requests[0].headers["host"] == f"127.0.0.1:{port}"
        assert "proxy-authorization" not in proxy.requests[0].headers
        assert proxy.tunnels == 1
        # The WebSocket handshake (and the login after it) went through the tunnel.
        assert proxy.upstream.startswith(b"GET /WSGateway/ HTTP/1.1\r\n")

        # A reconnect goes through the proxy again.
        async with session.state_changes() as changes:
            await gateway.drop_connections()
            with anyio.fail_after(LIMIT):
                async for state in changes:
                    if state is SessionState.AUTHENTICATED:
                        break
        assert (await session.call("GetUserInfo"))["UserName"] == "alice"
        assert len(proxy.requests) == 2
        assert proxy.tunnels == 2
    assert len(gateway.requests_for("WebAuthenticateUser")) == 1


async def test_proxy_credentials_are_sent_as_basic_auth(
    alphapoint_gateway: GatewayFixture,
) -> None:
    password = secrets.token_urlsafe(12)
    async with (
        ConnectProxy() as proxy,
        alphapoint.connect(
            alphapoint_gateway.url, proxy=proxy.url(f"proxyuser:{password}@")
        ) as session,
    ):
        assert await session.call("Ping") == {"msg": "PONG"}
    assert proxy.requests[0].headers["proxy-authorization"] == basic("proxyuser", password)
    assert password not in repr(session)


async def test_a_407_from_the_proxy_is_a_connect_error_without_the_password(
    alphapoint_gateway: GatewayFixture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    password = secrets.token_urlsafe(12)
    async with ConnectProxy(status="407 Proxy Authentication Required") as proxy:
        with anyio.fail_after(LIMIT), pytest.raises(ConnectError) as info:
            async with alphapoint.connect(
                alphapoint_gateway.url,
                credentials=alphapoint_gateway.accounts.password,
                proxy=proxy.url(f"proxyuser:{password}@"),
            ):
                pytest.fail("connected through a proxy that refused")
    message = str(info.value)
    assert "407" in message
    assert f"127.0.0.1:{proxy.port}" in message
    assert password not in everything_said(info.value)
    assert all(password not in record.getMessage() for record in caplog.records)
    assert proxy.requests[0].headers["proxy-authorization"] == basic("proxyuser", password)
    assert alphapoint_gateway.gateway.requests == []  # never reached


async def test_an_unreachable_proxy_with_credentials_does_not_leak_the_password(
    alphapoint_gateway: GatewayFixture,
) -> None:
    password = secrets.token_urlsafe(12)
    with unused_port() as port:
        for scheme in ("http", "socks5"):
            proxy = f"{scheme}://proxyuser:{password}@127.0.0.1:{port}"
            with anyio.fail_after(LIMIT), pytest.raises(ConnectError) as info:
                async with alphapoint.connect(alphapoint_gateway.url, proxy=proxy):
                    pytest.fail("connected through a proxy that is not there")
            assert f"127.0.0.1:{port}" in str(info.value)
            assert password not in everything_said(info.value)


async def test_an_invalid_proxy_url_does_not_leak_the_password(
    alphapoint_gateway: GatewayFixture,
) -> None:
    password = secrets.token_urlsafe(12)
    for proxy in (
        f"http://proxyuser:{password}@127.0.0.1:3128/some/path",
        f"ftp://proxyuser:{password}@127.0.0.1:3128",
        f"http://proxyuser:{password}@127.0.0.1:notaport",
        f"http://proxyuser:{password}@127.0.0.1:99999",
    ):
        with pytest.raises(InvalidURL) as info:
            async with alphapoint.connect(alphapoint_gateway.url, proxy=proxy):
                pytest.fail("connected with an invalid proxy URL")
        assert "proxy" in str(info.value)
        assert password not in everything_said(info.value)


# -- wss:// through a tunnel ------------------------------------------------------------------


async def test_wss_through_an_http_connect_proxy() -> None:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    gateway, accounts = demo_gateway()
    async with (
        gateway.serve(ssl=server) as running,
        ConnectProxy() as proxy,
        alphapoint.connect(
            running.url, credentials=accounts.password, proxy=proxy.url(), ssl=client
        ) as session,
    ):
        assert running.url.startswith("wss://localhost:")
        assert (await session.call("GetUserInfo"))["UserName"] == "alice"
        assert proxy.requests[0].request_line == f"CONNECT localhost:{running.port} HTTP/1.1"
        assert proxy.tunnels == 1
        # TLS runs end to end: the proxy relays a TLS handshake, then ciphertext.
        assert proxy.upstream[:1] == b"\x16"  # a TLS handshake record
        assert b"GET /WSGateway/" not in proxy.upstream


# -- the environment's proxy -------------------------------------------------------------------


def clear_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def set_proxy_environment(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.setenv(name, url)
        monkeypatch.setenv(name.lower(), url)


async def test_the_environment_proxy_is_not_used_for_loopback(
    alphapoint_gateway: GatewayFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_proxy_environment(monkeypatch)
    with unused_port() as dead:
        set_proxy_environment(monkeypatch, f"http://127.0.0.1:{dead}")
        for url in (
            alphapoint_gateway.url,
            alphapoint_gateway.url.replace("127.0.0.1", "localhost"),
        ):
            async with alphapoint.connect(
                url, credentials=alphapoint_gateway.accounts.password, proxy=True
            ) as session:
                assert (await session.call("GetUserInfo"))["UserName"] == "alice"
            # The default is proxy=True too.
            async with alphapoint.connect(url) as session:
                assert await session.call("Ping") == {"msg": "PONG"}


async def test_the_environment_proxy_is_used_for_other_hosts(
    alphapoint_gateway: GatewayFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control for the test above: the same variables do route a
    # non-loopback host through the proxy (which sends it to the gateway).
    clear_proxy_environment(monkeypatch)
    port = alphapoint_gateway.running.port
    async with ConnectProxy(route_to=("127.0.0.1", port)) as proxy:
        set_proxy_environment(monkeypatch, proxy.url())
        url = f"ws://gateway.example:{port}/WSGateway/"
        async with alphapoint.connect(
            url, credentials=alphapoint_gateway.accounts.password, allow_insecure=True
        ) as session:
            assert (await session.call("GetUserInfo"))["UserName"] == "alice"
        assert [request.target for request in proxy.requests] == [f"gateway.example:{port}"]
        # And proxy=None goes direct, even with the variables set.
        with anyio.fail_after(LIMIT), pytest.raises(ConnectError):
            async with alphapoint.connect(url, allow_insecure=True, proxy=None):
                pytest.fail("gateway.example resolved")
        assert len(proxy.requests) == 1


# -- SOCKS5 ------------------------------------------------------------------------------------


async def test_a_session_logs_in_through_a_socks5_proxy(
    alphapoint_gateway: GatewayFixture,
) -> None:
    port = alphapoint_gateway.running.port
    async with (
        Socks5Proxy() as proxy,
        alphapoint.connect(
            alphapoint_gateway.url,
            credentials=alphapoint_gateway.accounts.password,
            proxy=proxy.url(),
            keepalive=None,
        ) as session,
    ):
        assert session.authenticated
        assert (await session.call("GetUserInfo"))["UserName"] == "alice"
    assert proxy.requests == [SocksRequest("ipv4", "127.0.0.1", port)]
    assert proxy.methods == [b"\x00"]  # no credentials offered
    assert proxy.tunnels == 1
    assert proxy.upstream.startswith(b"GET /WSGateway/ HTTP/1.1\r\n")


async def test_socks5h_sends_the_host_name_to_the_proxy(
    alphapoint_gateway: GatewayFixture,
) -> None:
    port = alphapoint_gateway.running.port
    url = alphapoint_gateway.url.replace("127.0.0.1", "localhost")
    async with (
        Socks5Proxy() as proxy,
        alphapoint.connect(
            url, credentials=alphapoint_gateway.accounts.password, proxy=proxy.url("socks5h")
        ) as session,
    ):
        assert (await session.call("GetUserInfo"))["UserName"] == "alice"
    assert proxy.requests == [SocksRequest("domain", "localhost", port)]


async def test_a_socks5_proxy_that_cannot_reach_the_target_is_a_connect_error() -> None:
    with unused_port() as dead:
        async with Socks5Proxy() as proxy:
            with anyio.fail_after(LIMIT), pytest.raises(ConnectError) as info:
                async with alphapoint.connect(
                    f"ws://127.0.0.1:{dead}/WSGateway/", proxy=proxy.url()
                ):
                    pytest.fail("connected to a port nobody listens on")
    assert f"127.0.0.1:{proxy.port}" in str(info.value)
    assert proxy.requests == [SocksRequest("ipv4", "127.0.0.1", dead)]

"""Reaching the gateway through an HTTP CONNECT or SOCKS5 proxy.

Which proxy, and the CONNECT request itself, come from :mod:`websockets.proxy`
(``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``/``NO_PROXY``, RFC 6455's order of
preference); this module does the I/O over anyio. SOCKS needs the optional
``python-socks`` package (``pip install alphapoint[socks]``).

A proxy URL may carry a password: it never appears in an error message.
"""

from __future__ import annotations

import ssl as ssl_module
from typing import Any

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream
from websockets.exceptions import InvalidProxy
from websockets.proxy import Proxy, get_proxy, parse_proxy, prepare_connect_request
from websockets.uri import WebSocketURI

from .errors import HandshakeRefused, InvalidURL, NetworkError, UsageError

__all__ = ["open_proxy_stream", "proxy_for"]

_MAX_RESPONSE_HEAD = 16384


def proxy_for(uri: WebSocketURI, proxy: str | bool | None, *, loopback: bool) -> Proxy | None:
    """The proxy to use: ``proxy`` itself (a URL), the environment's (``True``), or none.

    The environment's proxies are never used for loopback hosts.
    """
    if proxy is None or proxy is False:
        return None
    if proxy is True:
        if loopback:
            return None
        found = get_proxy(uri)
        if found is None:
            return None
        proxy = found
    try:
        return parse_proxy(proxy)
    except InvalidProxy as exc:
        raise InvalidURL(f"invalid proxy URL: {exc.msg}") from None
    except ValueError:  # urllib's, for a port that is not a number or out of range
        raise InvalidURL("invalid proxy URL: the port is not a valid port number") from None


async def open_proxy_stream(proxy: Proxy, uri: WebSocketURI) -> anyio.abc.ByteStream:
    """A byte stream to ``uri``'s host and port, tunnelled through ``proxy``."""
    where = f"proxy {proxy.host}:{proxy.port}"
    if proxy.scheme.startswith("socks"):
        return await _open_socks(proxy, uri)
    try:
        if proxy.scheme == "https":
            stream: anyio.abc.ByteStream = await anyio.connect_tcp(
                proxy.host,
                proxy.port,
                ssl_context=ssl_module.create_default_context(),
                tls_hostname=proxy.host,
                tls_standard_compatible=False,
            )
        else:
            stream = await anyio.connect_tcp(proxy.host, proxy.port)
    except OSError as exc:
        raise NetworkError(f"could not connect to {where}: {exc}") from exc
    try:
        await stream.send(prepare_connect_request(proxy, uri, user_agent_header=None))
        head = await _read_head(stream, where)
    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        await anyio.aclose_forcefully(stream)
        raise NetworkError(f"{where} closed the connection during CONNECT") from None
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
    status_line = head.partition(b"\r\n")[0]
    parts = status_line.split(b" ", 2)
    status = parts[1].decode("ascii", "replace") if len(parts) > 1 else "?"
    if status != "200":
        await anyio.aclose_forcefully(stream)
        raise HandshakeRefused(
            f"{where} refused to CONNECT to {uri.host}:{uri.port}: "
            f"{status_line.decode('ascii', 'replace')}",
            status=int(status) if status.isascii() and status.isdigit() else None,
        )
    # The head ends at its blank line; a bare "HTTP/1.1 200 ...\r\n\r\n" (no
    # headers, as most proxies answer) is complete too.
    if not head.endswith(b"\r\n\r\n") or head.count(b"\r\n\r\n") > 1:
        await anyio.aclose_forcefully(stream)
        raise NetworkError(f"{where} sent data after its CONNECT response")
    return stream


async def _read_head(stream: anyio.abc.ByteStream, where: str) -> bytes:
    """The proxy's response head, up to and including the blank line."""
    head = b""
    while b"\r\n\r\n" not in head:
        if len(head) > _MAX_RESPONSE_HEAD:
            raise NetworkError(f"{where} sent an overlong response to CONNECT")
        head += await stream.receive()
    return head


async def _open_socks(proxy: Proxy, uri: WebSocketURI) -> anyio.abc.ByteStream:
    try:
        from python_socks import ProxyError as SocksError
        from python_socks import ProxyType
        from python_socks.async_.anyio import Proxy as SocksProxy
    except ImportError:
        raise UsageError(
            f"a {proxy.scheme} proxy needs python-socks: pip install 'alphapoint[socks]'"
        ) from None
    kind = ProxyType.SOCKS4 if proxy.scheme.startswith("socks4") else ProxyType.SOCKS5
    socks: Any = SocksProxy(
        kind,
        proxy.host,
        proxy.port,
        username=proxy.username,
        password=proxy.password,
        rdns=proxy.scheme in ("socks5h", "socks4a"),
    )
    try:
        stream: anyio.abc.ByteStream = await socks.connect(uri.host, uri.port, timeout=None)
    except (SocksError, OSError) as exc:
        raise NetworkError(
            f"SOCKS proxy {proxy.host}:{proxy.port} could not connect to "
            f"{uri.host}:{uri.port} ({type(exc).__name__})"
        ) from None
    return stream


async def wrap_tls(
    stream: anyio.abc.ByteStream, host: str, context: ssl_module.SSLContext
) -> TLSStream:
    """Start TLS to ``host`` over an already open (tunnelled) stream."""
    return await TLSStream.wrap(
        stream, server_side=False, hostname=host, ssl_context=context, standard_compatible=False
    )

"""The one place that chooses a driver and opens a client WebSocket with it.

``driver="auto"`` takes, for a direct connection under asyncio or uvloop, the
picows driver when picows is installed (``pip install 'alphapoint[fast]'``),
else the asyncio protocol driver (either way a reply wakes its caller straight
from the socket); and the anyio stream driver otherwise (trio, proxies). Errors of the socket,
TLS and the handshake are mapped here, at the boundary, to
:class:`ConnectError` and its subclasses: nothing from anyio, ssl or the OS
leaves this module.
"""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Awaitable, Callable
from typing import Literal

import anyio
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus

from ..errors import CertificateError, NetworkError, UsageError
from ..proxy import proxy_for
from ..urls import check_secure, is_loopback, parse_url
from .alarms import AsyncioDeadline
from .anyio_stream import open_stream_websocket
from .asyncio_protocol import open_asyncio_websocket
from .base import (
    DEFAULT_MAX_FRAGMENTS,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SEND_BUFFER,
    BaseWebSocket,
    refused_upgrade,
    websockets_logger,
)
from .loop import Loop, current_loop

__all__ = ["DRIVERS", "Driver", "open_websocket", "picows_installed"]

#: ``"auto"``; ``"picows"``, picows's parser on asyncio's callbacks (asyncio
#: and uvloop, direct connections, the ``fast`` extra); ``"asyncio"``,
#: websockets' parser on asyncio's callbacks (the same, without picows);
#: ``"anyio"``, anyio byte streams (any loop, proxies).
Driver = Literal["auto", "picows", "asyncio", "anyio"]
DRIVERS: tuple[Driver, ...] = ("auto", "picows", "asyncio", "anyio")


def picows_installed() -> bool:
    """Whether picows can be imported (the ``fast`` extra)."""
    try:
        import picows  # noqa: F401
    except ImportError:
        return False
    return True


def _picows_importable() -> bool:
    # Asked once: an import statement at every connection is not free.
    global _picows_known
    if _picows_known is None:
        _picows_known = picows_installed()
    return _picows_known


_picows_known: bool | None = None


def _picows_opener() -> Callable[..., Awaitable[BaseWebSocket]]:
    # Imported on first use (picows is optional), then kept: an import
    # statement at every connection resolves the package's name again.
    global _open_picows
    if _open_picows is None:
        from .picows_listener import open_picows_websocket

        _open_picows = open_picows_websocket
    return _open_picows


_open_picows: Callable[..., Awaitable[BaseWebSocket]] | None = None


#: What ``"auto"`` takes under asyncio for a direct connection: picows when it
#: is installed. Set it to ``"asyncio"`` to keep the fast extra's JSON but not
#: its driver; the test suite runs once with each driver.
auto_on_asyncio: Driver = "picows" if picows_installed() else "asyncio"


def _resolve(driver: Driver, *, proxied: bool, loop: Loop | None = None) -> Driver:
    if driver not in DRIVERS:
        raise UsageError(f"driver must be one of {', '.join(DRIVERS)}, not {driver!r}")
    if loop is None:
        loop = current_loop()
    if driver == "auto":
        driver = auto_on_asyncio if loop == "asyncio" and not proxied else "anyio"
    if driver == "asyncio" or driver == "picows":
        if loop != "asyncio":
            raise UsageError(f"driver={driver!r} needs an asyncio event loop (this is trio)")
        if proxied:
            raise UsageError(f"driver={driver!r} connects directly; a proxy needs driver='anyio'")
    if driver == "picows" and not _picows_importable():
        raise UsageError("driver='picows' needs picows: pip install 'alphapoint[fast]'")
    return driver


async def open_websocket(
    url: str,
    *,
    ssl: ssl_module.SSLContext | None = None,
    open_timeout: float = 10.0,
    close_timeout: float = 5.0,
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    allow_insecure: bool = False,
    proxy: str | bool | None = None,
    user_agent: str | None = None,
    driver: Driver = "auto",
    max_fragments: int = DEFAULT_MAX_FRAGMENTS,
    max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
    loop: Loop | None = None,
) -> BaseWebSocket:
    """Connect to ``url`` and complete the WebSocket handshake within ``open_timeout``.

    ``wss://`` verifies the certificate and host name with the system's CAs
    unless ``ssl`` gives another context. Plain ``ws://`` is refused for a host
    that is not loopback unless ``allow_insecure`` is true: credentials would
    cross the network in clear text.

    ``proxy`` is a proxy URL (``http://``, ``https://``, ``socks5://``...),
    ``True`` to take it from the environment (``HTTPS_PROXY``, ``NO_PROXY``...;
    never for loopback hosts), or ``None`` for a direct connection.

    What a gateway may make this side hold is bounded: ``max_message_size``
    bytes per message, fragments included; ``max_fragments`` frames per
    message (1008 past it); ``max_send_buffer`` bytes of answers (pongs)
    waiting while the gateway does not read (asyncio driver; the anyio
    driver's reader waits instead, for at most ``close_timeout``).

    ``loop`` is the running loop (:func:`current_loop`), from a caller that
    knows it already (a session asks once); it is asked otherwise.

    Raises :class:`NetworkError`, :class:`CertificateError`,
    :class:`HandshakeRefused` (all :class:`ConnectError`), or
    :class:`InvalidURL`, :class:`InsecureConnection`; never an anyio or OS error.
    """
    uri = parse_url(url)
    via = proxy_for(uri, proxy, loopback=is_loopback(uri.host))
    check_secure(uri, allow_insecure=allow_insecure)
    chosen = _resolve(driver, proxied=via is not None, loop=loop)
    where = f"{uri.host}:{uri.port}"
    context: ssl_module.SSLContext | None = None
    if uri.secure:
        context = ssl if ssl is not None else ssl_module.create_default_context()
    if chosen != "picows":  # picows parses and builds frames itself
        protocol = ClientProtocol(uri, max_size=max_message_size, logger=websockets_logger)
        request = protocol.connect()
        if user_agent is not None:
            request.headers["User-Agent"] = user_agent
        protocol.send_request(request)
    websocket: BaseWebSocket
    try:
        if chosen == "picows":
            # asyncio's awaits only: the alarm clock bounds them (AsyncioDeadline), not anyio.
            with AsyncioDeadline(open_timeout):
                return await _picows_opener()(
                    uri,
                    ssl=context,
                    open_timeout=open_timeout,
                    close_timeout=close_timeout,
                    max_message_size=max_message_size,
                    max_fragments=max_fragments,
                    max_send_buffer=max_send_buffer,
                    user_agent=user_agent,
                )
        if chosen == "asyncio":
            with AsyncioDeadline(open_timeout):
                websocket = await open_asyncio_websocket(
                    uri,
                    protocol,
                    ssl=context,
                    close_timeout=close_timeout,
                    max_fragments=max_fragments,
                    max_send_buffer=max_send_buffer,
                )
        else:
            with anyio.fail_after(open_timeout):
                websocket = await open_stream_websocket(
                    uri,
                    protocol,
                    ssl=context,
                    proxy=via,
                    close_timeout=close_timeout,
                    max_fragments=max_fragments,
                )
    except TimeoutError:
        raise NetworkError(f"no WebSocket connection to {where} within {open_timeout} s") from None
    except NetworkError as exc:  # the drivers' own: the server hung up during the handshake
        raise NetworkError(f"WebSocket handshake with {where} failed: {exc}") from None
    except ssl_module.SSLCertVerificationError as exc:
        detail = exc.reason or str(exc)
        if exc.verify_message:
            # Which check failed: "Hostname mismatch, ...", "unable to get local issuer ..."
            detail = f"{detail}: {exc.verify_message}"
        raise CertificateError(f"TLS handshake with {where} failed: {detail}") from exc
    except ssl_module.SSLError as exc:
        detail = exc.reason or str(exc)
        raise NetworkError(f"TLS handshake with {where} failed: {detail}") from exc
    except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
        detail = str(exc) or type(exc).__name__
        raise NetworkError(f"could not connect to {where}: {detail}") from exc
    failure = protocol.handshake_exc
    if failure is not None:
        await websocket.abort()
        if isinstance(failure, InvalidStatus):
            status = failure.response
            raise refused_upgrade(where, status.status_code, status.reason_phrase) from failure
        if isinstance(failure.__cause__, EOFError):
            # The server hung up before answering: the network's doing, as
            # the stream driver reports it too.
            raise NetworkError(
                f"{where} closed the connection during the WebSocket handshake"
            ) from failure
        raise refused_upgrade(where, None, str(failure)) from failure
    return websocket

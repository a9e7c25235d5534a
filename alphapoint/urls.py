"""Gateway URLs: what is accepted, what may travel in clear text, what may be shown.

Pure functions, shared by the driver chooser (which refuses a URL before any
socket opens) and the session (which names its gateway in reprs, logs and
errors without the ``user:password@`` part).
"""

from __future__ import annotations

import functools
import ipaddress

from websockets.exceptions import InvalidURI
from websockets.uri import WebSocketURI, parse_uri

from .errors import InsecureConnection, InvalidURL

__all__ = ["check_secure", "is_loopback", "parse_url", "without_user_info"]


def parse_url(url: str) -> WebSocketURI:
    """Parse and check a ``ws://`` or ``wss://`` URL; raises :class:`InvalidURL`.

    Parsed once per URL (each connection parsed it again: some 40 function
    calls); the same URL gives the same object, which nothing changes. A URL
    with a ``user:password@`` part is not kept.
    """
    if "@" in url:
        return _parse_url(url)
    return _parse_url_cached(url)


def _parse_url(url: str) -> WebSocketURI:
    try:
        return parse_uri(url)
    except (InvalidURI, ValueError):  # urllib raises ValueError for a bad port or IPv6 host
        raise InvalidURL(f"not a ws:// or wss:// URL: {without_user_info(url)!r}") from None


_parse_url_cached = functools.lru_cache(maxsize=256)(_parse_url)


def without_user_info(url: str) -> str:
    """``url`` with any ``user:password@`` part masked: messages carry no secrets."""
    if "@" not in url:  # the usual URL: itself (a scan in C, not three partitions)
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "…@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


@functools.lru_cache(maxsize=256)  # asked at every connection, and pure
def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost`` or a loopback address)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_secure(uri: WebSocketURI, *, allow_insecure: bool) -> None:
    """Refuse plain ``ws://`` to a host that is not loopback, unless allowed.

    Credentials would cross the network in clear text.
    """
    if not uri.secure and not allow_insecure and not is_loopback(uri.host):
        raise InsecureConnection(
            f"refusing plain ws:// to {uri.host}: credentials would travel unencrypted; "
            "use wss:// or pass allow_insecure=True"
        )

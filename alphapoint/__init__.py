"""alphapoint: authenticated sessions on AlphaPoint APEX WebSocket gateways.

The public surface is re-exported here::

    async with alphapoint.connect("wss://api.example.com/WSGateway/") as session:
        await session.login(alphapoint.ApiKeyCredentials(api_key=..., api_secret=..., user_id="96"))
        info = await session.call("GetUserInfo")
"""

from .client import connect
from .credentials import ApiKeyCredentials, Credentials, PasswordCredentials
from .decoding import array_row, decode, decode_rows
from .errors import (
    AccountLocked,
    AlphaPointError,
    AlreadySubscribed,
    AuthenticationError,
    AuthenticationRejected,
    CertificateError,
    ConnectError,
    ConnectionClosed,
    DecodeError,
    EventOverflow,
    FrameError,
    HandshakeRefused,
    InsecureConnection,
    InvalidPayload,
    InvalidRequest,
    InvalidURL,
    NetworkError,
    NotAuthorized,
    OperationFailed,
    OperationNotSupported,
    PayloadError,
    ProtocolError,
    ReloginStorm,
    RequestError,
    RequestTimeout,
    ResourceNotFound,
    ServerError,
    SessionClosed,
    TransportError,
    TwoFactorRequired,
    UsageError,
)
from .events import Batches, Decoded, EventStream, MergedStream, StateChanges, Subscription, merge
from .frame import Frame, MessageType
from .login import TwoFactor
from .market_data import Level1, Level2Action, Level2Entry, Side, TickDirection, TickerBar, Trade
from .models import AuthenticateResult, AuthStatus, Event, User
from .open_limit import DEFAULT_OPEN_LIMIT, OpenLimiter, default_open_limiter
from .policies import Backoff, Keepalive, Relogin, full_jitter, is_retryable
from .session import DEFAULT_TIMEOUT, Session, SessionOptions
from .shutdown import Stop, stop_on_signals
from .signing import NonceSource, sign
from .state import SessionState
from .totp import Totp

__version__ = "0.1.0"
"""The version: the one place it is written (the package metadata reads it at build time)."""

__all__ = [
    "DEFAULT_OPEN_LIMIT",
    "DEFAULT_TIMEOUT",
    "AccountLocked",
    "AlphaPointError",
    "AlreadySubscribed",
    "ApiKeyCredentials",
    "AuthStatus",
    "AuthenticateResult",
    "AuthenticationError",
    "AuthenticationRejected",
    "Backoff",
    "Batches",
    "CertificateError",
    "ConnectError",
    "ConnectionClosed",
    "Credentials",
    "DecodeError",
    "Decoded",
    "Event",
    "EventOverflow",
    "EventStream",
    "Frame",
    "FrameError",
    "HandshakeRefused",
    "InsecureConnection",
    "InvalidPayload",
    "InvalidRequest",
    "InvalidURL",
    "Keepalive",
    "Level1",
    "Level2Action",
    "Level2Entry",
    "MergedStream",
    "MessageType",
    "NetworkError",
    "NonceSource",
    "NotAuthorized",
    "OpenLimiter",
    "OperationFailed",
    "OperationNotSupported",
    "PasswordCredentials",
    "PayloadError",
    "ProtocolError",
    "Relogin",
    "ReloginStorm",
    "RequestError",
    "RequestTimeout",
    "ResourceNotFound",
    "ServerError",
    "Session",
    "SessionClosed",
    "SessionOptions",
    "SessionState",
    "Side",
    "StateChanges",
    "Stop",
    "Subscription",
    "TickDirection",
    "TickerBar",
    "Totp",
    "Trade",
    "TransportError",
    "TwoFactor",
    "TwoFactorRequired",
    "UsageError",
    "User",
    "__version__",
    "array_row",
    "connect",
    "decode",
    "decode_rows",
    "default_open_limiter",
    "full_jitter",
    "is_retryable",
    "merge",
    "sign",
    "stop_on_signals",
]

"""One exception hierarchy, rooted at :class:`AlphaPointError`.

Users catch the base to handle anything this library raises, or a branch to
handle one kind of failure:

* :class:`UsageError`: a mistake in the caller's input (a bad URL, a payload
  that is not JSON, a buffer of 0...); never retried.
* :class:`TransportError`: the socket could not be opened, or was lost. Calls
  that fail this way were *not* answered; whether the gateway acted on them is
  unknown, so they are never re-sent automatically. Opening fails with one of
  :class:`NetworkError`, :class:`CertificateError` or
  :class:`HandshakeRefused`.
* :class:`ProtocolError`: the gateway sent something that is not APEX.
* :class:`RequestTimeout`: no reply within the call's timeout.
* :class:`RequestError`: the gateway refused a request (``result: false`` or
  an ``m=5`` error frame), with its code, message and detail.
* :class:`AuthenticationError`: :meth:`Session.login` did not end logged in.

``retryable`` has one meaning everywhere: whether the same operation may
succeed if tried again, on a new connection for transport errors. The default
reconnect policy, :func:`alphapoint.is_retryable`, is that attribute.

Messages never contain secrets: they name functions, fields and codes, never
payload values that could hold a password, signature, token or 2FA code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import AuthenticateResult

__all__ = [
    "AccountLocked",
    "AlphaPointError",
    "AlreadySubscribed",
    "AuthenticationError",
    "AuthenticationRejected",
    "CertificateError",
    "ConnectError",
    "ConnectionClosed",
    "DecodeError",
    "EventOverflow",
    "FrameError",
    "HandshakeRefused",
    "InsecureConnection",
    "InvalidPayload",
    "InvalidRequest",
    "InvalidURL",
    "NetworkError",
    "NotAuthorized",
    "OperationFailed",
    "OperationNotSupported",
    "PayloadError",
    "ProtocolError",
    "ReloginStorm",
    "RequestError",
    "RequestTimeout",
    "ResourceNotFound",
    "ServerError",
    "SessionClosed",
    "TransportError",
    "TwoFactorRequired",
    "UsageError",
]


class AlphaPointError(Exception):
    """Base class of every error this library raises."""

    #: Whether the same operation may succeed if tried again (on a new
    #: connection, for transport errors). The default reconnect policy.
    retryable: bool = False


# -- the caller's mistakes ---------------------------------------------------


class UsageError(AlphaPointError, ValueError, TypeError):
    """The caller asked for something that cannot work: a mistake in the code
    that uses the library, not a failure of the gateway. Never retryable.

    Also a ``ValueError`` and a ``TypeError``, so code that catches the builtin
    for a bad argument keeps working.
    """


class InvalidURL(UsageError):
    """The URL is not a ``ws://`` or ``wss://`` URL."""


class InvalidPayload(UsageError):
    """A request payload that cannot be sent: not JSON-serialisable."""


class InsecureConnection(UsageError):
    """Plain ``ws://`` to a host that is not loopback, without opting in."""


# -- transport ---------------------------------------------------------------


class TransportError(AlphaPointError):
    """The WebSocket could not be opened or was lost."""

    retryable = True


class ConnectError(TransportError):
    """Opening the connection failed; always one of the three subclasses below."""


class NetworkError(ConnectError):
    """DNS, TCP, a proxy, or a TLS failure other than the certificate check, or no
    connection within the open timeout. Retryable: networks come back."""


class CertificateError(ConnectError):
    """The gateway's TLS certificate failed verification (wrong host, unknown
    issuer, expired). Not retryable: it will not fix itself by retrying, and a
    client that keeps trying is a client that might be talking to an impostor."""

    retryable = False


class HandshakeRefused(ConnectError):
    """The gateway (or a proxy) answered the upgrade with an HTTP refusal, or with
    something that is not HTTP.

    ``status`` is the HTTP status (``None`` if the answer was not HTTP).
    Retryable for 5xx and 429 (maintenance, overload), not for other 4xx
    (a wrong path, forbidden): those stay wrong.
    """

    def __init__(self, message: str, *, status: int | None) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = status is not None and (status >= 500 or status == 429)


class ConnectionClosed(TransportError):
    """The connection closed while a call was waiting, or before it was sent.

    A call that fails with this error got no reply: the gateway may or may not
    have acted on it.
    """

    def __init__(self, message: str, *, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        #: WebSocket close code received from the peer, if any (1000 = normal).
        self.code = code
        #: WebSocket close reason received from the peer, if any.
        self.reason = reason

    def copy(self) -> ConnectionClosed:
        """A fresh error of the same type, message, code, reason and cause.

        One error may fail many calls at once: each raises its own copy, so no
        two tasks unwind (and extend the traceback of) the same instance.
        """
        copy = type(self)(str(self), code=self.code, reason=self.reason)
        copy.__cause__ = self.__cause__
        return copy


class SessionClosed(ConnectionClosed):
    """The session was closed by this side; it cannot be used any more."""

    retryable = False


# -- protocol ----------------------------------------------------------------


class ProtocolError(AlphaPointError):
    """The gateway sent something that does not follow the APEX protocol."""


class FrameError(ProtocolError):
    """A WebSocket message is not a valid APEX frame (``m``/``i``/``n``/``o``)."""


class DecodeError(ProtocolError):
    """A payload does not have the shape of the expected reply.

    ``path`` names the offending field by its Python attribute path, whatever
    the reply's casing (for example ``authenticated`` or ``user.user_id``), or
    is empty for the payload itself.
    """

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class PayloadError(FrameError, DecodeError):
    """A frame whose envelope is valid but whose payload ``o`` is JSON this library refuses.

    Python's JSON reader takes what JSON does not allow (``NaN``,
    ``Infinity``) and lets the last of two equal keys win (``{"Authenticated":
    false, "Authenticated": true}``); this library refuses both, and an
    integer too long to read (``10**5000``). ``path`` names the field as sent (``User.UserId``,
    ``[3].Price``); the message names it too, never its value. A reply with
    such a payload fails its call with this error at once.
    """

    def __init__(
        self, message: str, *, path: str, function: str, seq: int, message_type: int
    ) -> None:
        super().__init__(message, path=path)
        #: The envelope of the frame: its ``n``, ``i`` and ``m``.
        self.function = function
        self.seq = seq
        self.message_type = message_type


# -- timeouts ----------------------------------------------------------------


class RequestTimeout(AlphaPointError, TimeoutError):
    """No reply arrived within the call's timeout (also a builtin TimeoutError).

    The request may still be processed by the gateway; a late reply is dropped.
    """

    retryable = True

    def __init__(self, message: str, *, function: str = "", timeout: float | None = None) -> None:
        super().__init__(message)
        self.function = function
        self.timeout = timeout


# -- refused requests --------------------------------------------------------


class RequestError(AlphaPointError):
    """The gateway refused a request.

    Raised for a standard response with ``result: false`` and for an ``m=5``
    error frame (``code`` is then ``None`` unless the payload carried one).
    """

    #: The APEX error code this class stands for, on subclasses.
    error_code: int | None = None

    def __init__(
        self,
        function: str,
        message: str,
        *,
        code: int | None = None,
        detail: Any = None,
    ) -> None:
        text = f"{function} failed"
        if code is not None:
            text += f" with code {code}"
        if message:
            text += f": {message}"
        super().__init__(text)
        #: The APEX function that was called.
        self.function = function
        #: The gateway's ``errormsg`` (or the raw ``m=5`` text).
        self.message = message
        #: The gateway's ``errorcode``, when it sent one.
        self.code = code
        #: The gateway's ``detail``, as sent (often a string, sometimes null).
        self.detail = detail

    @staticmethod
    def for_code(
        function: str, message: str, *, code: int | None, detail: Any = None
    ) -> RequestError:
        """The most specific subclass for ``code``."""
        cls = _BY_CODE.get(code, RequestError) if code is not None else RequestError
        return cls(function, message, code=code, detail=detail)


class NotAuthorized(RequestError):
    """Code 20: the call needs a logged-in session (or more permissions)."""

    error_code = 20


class InvalidRequest(RequestError):
    """Code 100: the request's payload was not acceptable."""

    error_code = 100


class OperationFailed(RequestError):
    """Code 101: the gateway could not carry out the request."""

    error_code = 101


class ServerError(RequestError):
    """Code 102: the gateway failed internally."""

    error_code = 102
    retryable = True


class ResourceNotFound(RequestError):
    """Code 104: the requested resource does not exist."""

    error_code = 104


class OperationNotSupported(RequestError):
    """Code 106: the gateway does not support this operation."""

    error_code = 106


class AlreadySubscribed(RequestError):
    """Code 909: the session already has this subscription."""

    error_code = 909


_BY_CODE: dict[int, type[RequestError]] = {
    cls.error_code: cls
    for cls in (
        NotAuthorized,
        InvalidRequest,
        OperationFailed,
        ServerError,
        ResourceNotFound,
        OperationNotSupported,
        AlreadySubscribed,
    )
    if cls.error_code is not None
}


# -- events ------------------------------------------------------------------


class EventOverflow(AlphaPointError):
    """An event subscriber fell behind: its bounded buffer filled and events were lost.

    Raised from the subscriber's iterator once it has read every event it did
    receive, so the consumer learns exactly where the gap is.
    """

    def __init__(self, message: str, *, dropped: int) -> None:
        super().__init__(message)
        #: How many events were dropped for this subscriber.
        self.dropped = dropped


# -- login -------------------------------------------------------------------


class AuthenticationError(AlphaPointError):
    """:meth:`Session.login` did not end with a logged-in session.

    ``result`` is the gateway's decoded reply; ``str(error)`` is a message fit
    to show an end user.
    """

    def __init__(self, result: AuthenticateResult, *, message: str | None = None) -> None:
        super().__init__(message or result.display_message)
        self.result = result


class AuthenticationRejected(AuthenticationError):
    """Wrong credentials (or a wrong 2FA code)."""


class ReloginStorm(AlphaPointError):
    """The gateway ended every login soon after it was made, ``in_a_row`` times: the
    session stopped logging in again rather than storm the gateway (and risk
    locking the account). See :class:`alphapoint.Relogin`."""

    def __init__(self, message: str, *, in_a_row: int) -> None:
        super().__init__(message)
        self.in_a_row = in_a_row


class AccountLocked(AuthenticationError):
    """The user is locked, usually after too many failed attempts; an admin must unlock it."""


class TwoFactorRequired(AuthenticationError):
    """The user has 2FA enabled and no (or no valid) two-factor code was given."""

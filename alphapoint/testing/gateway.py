"""An embedded APEX-compatible gateway, for demos, tests and users' own tests.

It speaks the wire protocol as live gateways do (PascalCase replies by
default, ``m=5`` with a raw string for unknown functions, no reply at all to
text that is not a frame) and keeps the state a login needs: users with
passwords, TOTP secrets and lockout after failed attempts; API keys whose HMAC
it verifies, refusing a reused nonce; session tokens for
``WebAuthenticateUser``. A test answers functions of its own with
:meth:`Gateway.route`, and test hooks (``send_event``, ``drop_connections``,
``expire_session_tokens``, ``answer_pings``) let it misbehave the way real
gateways do.
"""

from __future__ import annotations

import contextlib
import enum
import hmac
import inspect
import itertools
import json
import logging
import secrets
import ssl as ssl_module
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar, overload

import anyio
import anyio.abc
import attrs
from anyio.streams.tls import TLSListener

from ..drivers.anyio_stream import StreamWebSocket
from ..drivers.server import accept_websocket
from ..errors import ConnectionClosed, FrameError, InvalidPayload
from ..frame import Frame, MessageType, decode_frame, encode_frame
from ..instruments import MIXED, event_instrument, split_by_instrument
from ..signing import sign
from ..totp import Totp
from .home import Home, on_home_loop
from .routes import Refusal, RequestContext, RouteHandler, standard_response
from .users import GatewayApiKey, GatewayUser

__all__ = [
    "Casing",
    "Gateway",
    "GatewayApiKey",
    "GatewayUser",
    "LoggedRequest",
    "RunningGateway",
    "TwoFactorKeys",
]

logger = logging.getLogger("alphapoint.testing.gateway")

NOT_AUTHORIZED = 20
INVALID_REQUEST = 100
SERVER_ERROR = 102
RESOURCE_NOT_FOUND = 104
ALREADY_SUBSCRIBED = 909

#: The message types a client sends, each answered.
_CLIENT_REQUESTS = (MessageType.REQUEST, MessageType.SUBSCRIBE, MessageType.UNSUBSCRIBE)

#: Symbols the gateway knows unless told others (Bitazza accepts them in place of ids).
DEFAULT_SYMBOLS: Mapping[str, int] = {"BTCUSD": 1, "ETHUSD": 2}

_UNKNOWN: Any = object()


def _instruments_named(function: str, payload: Any) -> set[Any]:
    """The instruments an event names (empty: it names none, so every subscriber gets it)."""
    instrument = event_instrument(function, payload)
    if instrument is MIXED:
        return {key for key in split_by_instrument(function, payload) if key is not None}
    return set() if instrument is None or isinstance(instrument, tuple) else {instrument}


class TwoFactorKeys(enum.Enum):
    """How a 2FA user's login reply names the second factor."""

    APEX = "apex"  #: ``TwoFAType``, ``TwoFAToken`` (the documentation, most gateways)
    NDAX = "ndax"  #: ``AuthType``, ``Pending2FaToken``, ``AddtlInfo`` (NDAX's login)


class Casing(enum.Enum):
    """How the gateway spells reply keys."""

    PASCAL = "pascal"  #: as live gateways send them: ``Authenticated``, ``OMSId``
    CAMEL = "camel"  #: as the documentation shows them: ``authenticated``, ``omsId``


@attrs.frozen
class LoggedRequest:
    """One request the gateway received: the proof of what a client sent."""

    connection: int
    type: MessageType
    seq: int
    function: str
    payload: Any = attrs.field(repr=False, eq=False)


@attrs.define
class _SessionToken:
    user: GatewayUser
    expires_at: float


class _Connection:
    """One client connection's state on the gateway."""

    def __init__(self, number: int, websocket: StreamWebSocket) -> None:
        self.number = number
        self.websocket = websocket
        self.user: GatewayUser | None = None
        self.awaiting_2fa: GatewayUser | None = None
        self.token: str | None = None
        #: Subscribe function -> the instruments subscribed (None: every one).
        self.subscriptions: dict[str, set[Any]] = {}


#: A built-in function's answer: ``(connection, payload) -> reply payload``, None for no reply.
_Builtin = Callable[["_Connection", Any], Any]

H = TypeVar("H", bound=RouteHandler)


class Gateway:
    """The embedded gateway's accounts, state and behaviour.

    ``await gateway.serve()`` is not how it runs: use ``async with
    gateway.serve(port=0) as running:`` and connect to ``running.url``.
    """

    def __init__(
        self,
        users: Iterable[GatewayUser] = (),
        api_keys: Iterable[GatewayApiKey] = (),
        *,
        max_failed_attempts: int = 5,
        casing: Casing = Casing.PASCAL,
        oms_id: int = 1,
        session_token_ttl: float = 3600.0,
        two_factor_reply_authenticated: bool = True,
        two_factor_keys: TwoFactorKeys = TwoFactorKeys.APEX,
        symbols: Mapping[str, int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.users: dict[str, GatewayUser] = {}
        self.api_keys: dict[str, GatewayApiKey] = {}
        for user in users:
            self.add_user(user)
        for key in api_keys:
            self.add_api_key(key)
        self.max_failed_attempts = max_failed_attempts
        #: Reply casing; may be switched while running.
        self.casing = casing
        self.oms_id = oms_id
        self.session_token_ttl = session_token_ttl
        #: Answer a 2FA user's AuthenticateUser with ``Authenticated: true`` *and*
        #: ``Requires2FA: true``, as some live gateways do (the trap clients fall into).
        self.two_factor_reply_authenticated = two_factor_reply_authenticated
        #: How a 2FA user's login reply names the kind and token of the second factor.
        self.two_factor_keys = two_factor_keys
        #: Instrument symbols a subscription may name instead of an ``InstrumentId``.
        self.symbols: dict[str, int] = dict(DEFAULT_SYMBOLS if symbols is None else symbols)
        #: Whether Ping is answered; turn off to simulate a half-open connection.
        self.answer_pings = True
        #: Every request received, in order.
        self.requests: list[LoggedRequest] = []
        self._clock = clock
        self._tokens: dict[str, _SessionToken] = {}
        self._used_nonces: dict[str, set[str]] = {}
        self._connections: dict[int, _Connection] = {}
        #: Every session token handed out, in order (tests look for them in output).
        self.issued_tokens: list[str] = []
        self._numbers = itertools.count(1)
        self._event_seq = itertools.count(2, 2)
        #: Exceptions raised by route handlers (not Refusal), oldest first.
        self.handler_errors: list[Exception] = []
        #: The loop serving this gateway, when it runs in a thread of its own.
        self._home: Home | None = None
        self._routes: dict[str, RouteHandler] = {}
        self._builtins: dict[str, _Builtin] = {
            "Ping": self._ping,
            "AuthenticateUser": self._authenticate_user,
            "Authenticate2FA": self._authenticate_2fa,
            "WebAuthenticateUser": self._web_authenticate_user,
            "LogOut": self._log_out,
            "GetUserInfo": self._get_user_info,
        }
        for subscribe, unsubscribe in _SUBSCRIPTIONS.items():
            self._builtins[subscribe] = self._subscriber(subscribe)
            self._builtins[unsubscribe] = self._unsubscriber(subscribe)

    # -- accounts -------------------------------------------------------------

    def add_user(self, user: GatewayUser) -> GatewayUser:
        """Add (or replace) a user; user names are case-insensitive."""
        self.users[user.username.lower()] = user
        return user

    def add_api_key(self, key: GatewayApiKey) -> GatewayApiKey:
        """Add (or replace) an API key."""
        self.api_keys[key.api_key] = key
        return key

    def user_by_id(self, user_id: int) -> GatewayUser | None:
        """The user with ``user_id``, if any."""
        return next((u for u in self.users.values() if u.user_id == user_id), None)

    def requests_for(self, function: str) -> list[LoggedRequest]:
        """The logged requests that called ``function``."""
        return [r for r in self.requests if r.function == function]

    # -- running --------------------------------------------------------------

    def serve(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl: ssl_module.SSLContext | None = None,
        path: str = "/WSGateway/",
    ) -> RunningGateway:
        """Listen on ``host:port`` (0 picks a free port) while the ``async with`` block runs."""
        return RunningGateway(self, host=host, port=port, ssl=ssl, path=path)

    async def handle(self, websocket: StreamWebSocket) -> None:
        """Serve one accepted WebSocket until it closes."""
        connection = _Connection(next(self._numbers), websocket)
        self._connections[connection.number] = connection
        try:
            async with anyio.create_task_group() as later:
                try:
                    await self._read(connection, later)
                finally:
                    # Replies async handlers are still working on have no one to go to.
                    later.cancel_scope.cancel()
        finally:
            del self._connections[connection.number]
            await websocket.abort()

    async def _read(self, connection: _Connection, later: anyio.abc.TaskGroup) -> None:
        """Answer each request in turn; an async route's answer is awaited in ``later``."""
        try:
            while True:
                message = await connection.websocket.receive()
                if isinstance(message, bytes):
                    continue
                try:
                    frame = decode_frame(message)
                except FrameError:
                    continue  # live gateways answer nothing to text that is not a frame
                if frame.type in _CLIENT_REQUESTS:
                    await self._answer(connection, frame, later)
        except ConnectionClosed:
            pass

    async def _answer(
        self, connection: _Connection, frame: Frame, later: anyio.abc.TaskGroup
    ) -> None:
        self.requests.append(
            LoggedRequest(connection.number, frame.type, frame.seq, frame.function, frame.payload)
        )
        route = self._routes.get(frame.function)
        if route is None:
            await self._answer_builtin(connection, frame)
            return
        events: list[tuple[str, Any]] = []
        context = RequestContext(frame.function, connection.number, connection.user, events=events)
        try:
            payload = route(frame.payload, context)
        except Exception as exc:  # noqa: BLE001 - answered, and kept for the test to see
            payload = self._error_reply(frame.function, exc)
        if inspect.isawaitable(payload):
            # The connection goes on reading (and answering Ping) meanwhile.
            later.start_soon(self._answer_when_done, connection, frame, payload, events)
        else:
            await self._reply(connection, frame, payload, events)

    async def _answer_when_done(
        self,
        connection: _Connection,
        frame: Frame,
        pending: Awaitable[Any],
        events: list[tuple[str, Any]],
    ) -> None:
        try:
            payload = await pending
        except Exception as exc:  # noqa: BLE001 - answered, and kept for the test to see
            payload = self._error_reply(frame.function, exc)
        with contextlib.suppress(ConnectionClosed):  # the client left while the handler worked
            await self._reply(connection, frame, payload, events)

    async def _answer_builtin(self, connection: _Connection, frame: Frame) -> None:
        builtin = self._builtins.get(frame.function)
        if builtin is None:
            reply = Frame(MessageType.ERROR, frame.seq, frame.function, "Endpoint Not Found")
            await connection.websocket.send_text(encode_frame(reply))
            return
        if not isinstance(frame.payload, dict):
            payload: Any = standard_response(
                False, "Invalid Request", INVALID_REQUEST, "payload must be an object"
            )
        else:
            payload = builtin(connection, frame.payload)
        if payload is not None:
            await self._reply(connection, frame, payload, [])

    async def _reply(
        self,
        connection: _Connection,
        frame: Frame,
        payload: Any,
        events: list[tuple[str, Any]],
    ) -> None:
        """Send the reply to ``frame``, then the events its handler pushed, in order."""
        frames = [Frame(MessageType.REPLY, frame.seq, frame.function, payload)]
        frames += [Frame(MessageType.EVENT, next(self._event_seq), *event) for event in events]
        try:
            texts = [encode_frame(reply) for reply in frames]
        except InvalidPayload as exc:  # the handler's reply (or an event) is not JSON
            failed = self._error_reply(frame.function, exc)
            texts = [encode_frame(Frame(MessageType.REPLY, frame.seq, frame.function, failed))]
        for text in texts:
            await connection.websocket.send_text(text)

    def _error_reply(self, function: str, error: Exception) -> dict[str, Any]:
        """The reply to a handler that raised: its refusal, else a generic Server Error.

        Any exception but a :class:`Refusal` is a bug in the test (a failed
        assert in a handler, say): it is logged and kept for
        :meth:`check_handler_errors`, which the pytest fixture calls on teardown.
        """
        if isinstance(error, Refusal):
            return error.reply()
        self.handler_errors.append(error)
        logger.error("the %s handler raised %s", function, type(error).__name__, exc_info=error)
        detail = f"the {function} handler raised {type(error).__name__}"
        return standard_response(False, "Server Error", SERVER_ERROR, detail)

    # -- routes ---------------------------------------------------------------

    @overload
    def route(self, function: str) -> Callable[[H], H]: ...

    @overload
    def route(self, function: str, handler: H) -> H: ...

    def route(self, function: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Answer ``function`` with ``handler(payload, context)``; also a decorator.

        ``payload`` is the request's decoded ``o`` (any JSON value), ``context``
        a :class:`RequestContext` (the connection's user, ``push()`` for
        events). The handler returns the reply's payload (any JSON value); it
        may be ``async``, and is then awaited while the connection goes on
        reading. Raising :class:`Refusal` answers the standard ``result:
        false`` reply; any other exception answers a generic one (code 102)
        and is kept in ``handler_errors``. A route replaces the built-in
        answer of the same function (``GetUserInfo``, ``Ping``...), and a later
        route the earlier one.
        """
        if not isinstance(function, str) or not function:
            raise TypeError("a route's function name is a non-empty str")

        def add(handler: H) -> H:
            if not callable(handler):
                raise TypeError(f"a route's handler is callable, not {type(handler).__name__}")
            self._routes[function] = handler
            return handler

        return add if handler is None else add(handler)

    def check_handler_errors(self) -> None:
        """Raise the oldest exception a route handler raised, if any (and forget it).

        The pytest fixture calls it when the test ends, so that a failed
        assertion inside a handler fails the test even though the client only
        saw a generic error reply.
        """
        if self.handler_errors:
            raise self.handler_errors.pop(0)

    # -- test hooks -----------------------------------------------------------

    @property
    def connection_count(self) -> int:
        """How many clients are connected now."""
        return len(self._connections)

    @on_home_loop
    async def send_event(
        self,
        function: str,
        payload: Any,
        *,
        user_id: int | None = None,
        connection: int | None = None,
        seq: int | None = None,
    ) -> int:
        """Push an ``m=3`` event to every connection; returns how many got it.

        ``user_id`` limits it to the connections logged in as that user,
        ``connection`` to the connection with that number (a
        :attr:`LoggedRequest.connection`, a :attr:`RequestContext.connection`).
        ``seq`` sets the event's ``i`` (to collide with a pending request, say).
        """
        sent = 0
        for client in list(self._connections.values()):
            if connection is not None and client.number != connection:
                continue
            if user_id is not None and (client.user is None or client.user.user_id != user_id):
                continue
            number = next(self._event_seq) if seq is None else seq
            try:
                await client.websocket.send_text(
                    encode_frame(Frame(MessageType.EVENT, number, function, payload))
                )
            except ConnectionClosed:
                continue
            sent += 1
        return sent

    @on_home_loop
    async def publish(self, function: str, payload: Any) -> int:
        """Push an event to the connections subscribed to it; returns how many got it.

        ``function`` is an event name (``Level1UpdateEvent``...). An object
        naming an ``InstrumentId`` reaches only the subscribers to that
        instrument; so does an array-shaped update (Level2, trades, ticker)
        whose entries name it in their field (an update whose entries name
        several reaches the subscribers to any of them, whole, as it came).
        """
        subscribe = _EVENT_SOURCES.get(function)
        named = _instruments_named(function, payload)
        sent = 0
        for connection in list(self._connections.values()):
            wanted = connection.subscriptions.get(subscribe or "")
            if wanted is None or (named and not named & wanted):
                continue
            try:
                await connection.websocket.send_text(
                    encode_frame(Frame(MessageType.EVENT, next(self._event_seq), function, payload))
                )
            except ConnectionClosed:
                continue
            sent += 1
        return sent

    def subscribers(self, subscribe: str) -> int:
        """How many connections hold a subscription made with ``subscribe``."""
        # A copy taken at once: the gateway's thread may add or drop connections meanwhile.
        connections = list(self._connections.values())
        return sum(1 for c in connections if subscribe in c.subscriptions)

    @on_home_loop
    async def logout_event(self, *, user_id: int | None = None) -> int:
        """End sessions the way the exchange does: log out, then push a LogoutEvent.

        Every logged-in connection (or ``user_id``'s) is logged out and told;
        returns how many were.
        """
        targets = [
            c
            for c in self._connections.values()
            if c.user is not None and (user_id is None or c.user.user_id == user_id)
        ]
        sent = 0
        for connection in targets:
            self._forget_login(connection)
            frame = Frame(MessageType.EVENT, next(self._event_seq), "LogoutEvent", {})
            try:
                await connection.websocket.send_text(encode_frame(frame))
            except ConnectionClosed:
                continue
            sent += 1
        return sent

    @on_home_loop
    async def drop_connections(self) -> None:
        """Cut every connection at the TCP level, with no closing handshake."""
        for connection in list(self._connections.values()):
            await connection.websocket.abort()

    def expire_session_tokens(self) -> None:
        """Forget every session token, as if an hour had passed."""
        self._tokens.clear()

    def forget_logins(self) -> None:
        """Drop every connection's login (and its token) without telling anyone.

        What a gateway that restarted its session store does: no LogoutEvent;
        the next call is simply refused with code 20.
        """
        for connection in list(self._connections.values()):
            self._forget_login(connection)

    # -- functions ------------------------------------------------------------

    def _ping(self, connection: _Connection, payload: dict[str, Any]) -> Any:
        return {"msg": "PONG"} if self.answer_pings else None

    def _authenticate_user(self, connection: _Connection, payload: dict[str, Any]) -> Any:
        if "APIKey" in payload:
            user, error = self._check_api_key(payload)
        elif "UserName" in payload:
            user, error = self._check_password(payload)
        else:
            return standard_response(
                False, "Invalid Request", INVALID_REQUEST, "UserName and Password, or APIKey"
            )
        if user is None:
            return self._cased(
                {"Authenticated": False, "Locked": error == "User is locked", "errormsg": error}
            )
        if user.totp_secret:
            connection.awaiting_2fa = user
            reply: dict[str, Any] = {
                "Authenticated": self.two_factor_reply_authenticated,
                "User": self._user_record(user),
                "Locked": False,
                "Requires2FA": True,
                "EnforceEnable2FA": False,
            }
            if self.two_factor_keys is TwoFactorKeys.NDAX:
                # NDAX's names, with a token for the pending second step.
                reply.update(
                    {"AuthType": "Google", "Pending2FaToken": secrets.token_hex(8), "AddtlInfo": ""}
                )
            else:
                reply.update({"TwoFAType": "Google", "TwoFAToken": ""})
            reply["errormsg"] = None
            return self._cased(reply)
        token = self._log_in(connection, user)
        return self._cased(
            {
                "Authenticated": True,
                "SessionToken": token,
                "User": self._user_record(user),
                "Locked": False,
                "Requires2FA": False,
                "EnforceEnable2FA": False,
                "TwoFAType": None,
                "TwoFAToken": None,
                "errormsg": None,
            }
        )

    def _check_password(self, payload: dict[str, Any]) -> tuple[GatewayUser | None, str]:
        username, password = payload.get("UserName"), payload.get("Password")
        user = self.users.get(username.lower()) if isinstance(username, str) else None
        if user is None or not isinstance(password, str):
            return None, "Invalid username or password"
        if user.locked:
            return None, "User is locked"
        if not hmac.compare_digest(password.encode(), user.password.encode()):
            return None, self._failed(user, "Invalid username or password")
        user.failed_attempts = 0
        return user, ""

    def _check_api_key(self, payload: dict[str, Any]) -> tuple[GatewayUser | None, str]:
        fields = [payload.get(name) for name in ("APIKey", "Signature", "UserId", "Nonce")]
        if not all(isinstance(value, str) and value for value in fields):
            return None, "APIKey, Signature, UserId and Nonce must be non-empty strings"
        api_key, signature, user_id, nonce = (str(value) for value in fields)
        key = self.api_keys.get(api_key)
        user = self.user_by_id(int(key.user_id)) if key and key.user_id.isdigit() else None
        if key is None or user is None or user_id != key.user_id:
            return None, "Invalid API key"
        if user.locked:
            return None, "User is locked"
        expected = sign(key.api_secret, nonce, user_id, api_key)
        if not hmac.compare_digest(signature, expected):
            return None, self._failed(user, "Invalid signature")
        used = self._used_nonces.setdefault(api_key, set())
        if nonce in used:
            return None, self._failed(user, "Nonce already used")
        used.add(nonce)
        user.failed_attempts = 0
        return user, ""

    def _failed(self, user: GatewayUser, error: str) -> str:
        user.failed_attempts += 1
        if user.failed_attempts >= self.max_failed_attempts:
            user.locked = True
            logger.info(
                "user %s locked after %d failed attempts", user.username, user.failed_attempts
            )
            return "User is locked"
        return error

    def _authenticate_2fa(self, connection: _Connection, payload: dict[str, Any]) -> Any:
        user = connection.awaiting_2fa
        code = payload.get("Code")
        if user is None or user.totp_secret is None:
            return self._cased({"Authenticated": False, "errormsg": "No login awaits a 2FA code"})
        if user.locked:
            return self._cased(
                {"Authenticated": False, "Locked": True, "errormsg": "User is locked"}
            )
        if not isinstance(code, str) or not Totp(user.totp_secret, clock=self._clock).verify(code):
            return self._cased(
                {"Authenticated": False, "errormsg": self._failed(user, "Invalid 2FA code")}
            )
        user.failed_attempts = 0
        connection.awaiting_2fa = None
        token = self._log_in(connection, user)
        return self._cased({"Authenticated": True, "SessionToken": token, "UserId": user.user_id})

    def _web_authenticate_user(self, connection: _Connection, payload: dict[str, Any]) -> Any:
        token = payload.get("SessionToken")
        if isinstance(token, str):
            entry = self._tokens.get(token)
            if entry is None or entry.expires_at < self._clock() or entry.user.locked:
                self._tokens.pop(token, None)
                return self._cased({"Authenticated": False, "errormsg": "Session token not valid"})
            connection.user, connection.token = entry.user, token
            entry.expires_at = self._clock() + self.session_token_ttl
            return self._cased(
                {"Authenticated": True, "SessionToken": token, "UserId": entry.user.user_id}
            )
        user, error = self._check_password(payload)
        if user is None:
            return self._cased({"Authenticated": False, "errormsg": error})
        if user.totp_secret:
            connection.awaiting_2fa = user
            return self._cased({"Authenticated": False, "Requires2FA": True, "TwoFAType": "Google"})
        token = self._log_in(connection, user)
        return self._cased({"Authenticated": True, "SessionToken": token, "UserId": user.user_id})

    def _log_out(self, connection: _Connection, payload: dict[str, Any]) -> Any:
        self._forget_login(connection)
        return standard_response(True, None, 0, None)

    def _get_user_info(self, connection: _Connection, payload: dict[str, Any]) -> Any:
        user = connection.user
        if user is None:
            return standard_response(False, "Not Authorized", NOT_AUTHORIZED, None)
        record = self._user_record(user)
        record.update({"Locked": user.locked, "NumberOfFailedAttempt": user.failed_attempts})
        return self._cased(record)

    def _subscriber(self, subscribe: str) -> _Builtin:
        def handle(connection: _Connection, payload: dict[str, Any]) -> Any:
            if connection.user is None:
                return standard_response(False, "Not Authorized", NOT_AUTHORIZED, None)
            instrument = self._instrument(payload)
            if instrument is _UNKNOWN:
                return standard_response(False, "Resource Not Found", RESOURCE_NOT_FOUND, None)
            held = connection.subscriptions.setdefault(subscribe, set())
            if instrument in held:
                # As live gateways answer: the first subscription keeps delivering.
                detail = json.dumps(payload, separators=(",", ":"))
                return standard_response(False, "Already Subscribed.", ALREADY_SUBSCRIBED, detail)
            held.add(instrument)
            return self._snapshot(subscribe, instrument)

        return handle

    def _instrument(self, payload: dict[str, Any]) -> Any:
        """The instrument id a subscribe payload names (by id or by symbol)."""
        if "InstrumentId" not in payload and "Symbol" in payload:
            return self.symbols.get(payload["Symbol"], _UNKNOWN)
        return payload.get("InstrumentId")

    def _unsubscriber(self, subscribe: str) -> _Builtin:
        def handle(connection: _Connection, payload: dict[str, Any]) -> Any:
            instruments = connection.subscriptions.get(subscribe, set())
            instruments.discard(self._instrument(payload))
            if not instruments:
                connection.subscriptions.pop(subscribe, None)
            return standard_response(True, None, 0, None)

        return handle

    def _snapshot(self, subscribe: str, instrument: Any) -> Any:
        if subscribe == "SubscribeLevel1":
            return {
                "OMSId": self.oms_id,
                "InstrumentId": instrument,
                "BestBid": 0.0,
                "BestOffer": 0.0,
                "LastTradedPx": 0.0,
            }
        return []

    # -- helpers --------------------------------------------------------------

    def _log_in(self, connection: _Connection, user: GatewayUser) -> str:
        token = secrets.token_hex(16)
        self.issued_tokens.append(token)
        self._tokens[token] = _SessionToken(user, self._clock() + self.session_token_ttl)
        connection.user, connection.token = user, token
        logger.info("connection %d logged in as %s", connection.number, user.username)
        return token

    def _forget_login(self, connection: _Connection) -> None:
        if connection.token is not None:
            self._tokens.pop(connection.token, None)
        # The socket's subscriptions outlive its login, as on live gateways: a
        # subscribe sent again after a new login is answered 909.
        connection.user = connection.token = connection.awaiting_2fa = None

    def _user_record(self, user: GatewayUser) -> dict[str, Any]:
        return {
            "UserId": user.user_id,
            "UserName": user.username,
            "Email": user.email,
            "EmailVerified": user.email_verified,
            "AccountId": user.account_id,
            "OMSId": self.oms_id,
            "Use2FA": user.totp_secret is not None,
        }

    def _cased(self, reply: dict[str, Any]) -> dict[str, Any]:
        return reply if self.casing is Casing.PASCAL else _camel_case(reply)


#: The subscriptions the gateway offers: subscribe function -> unsubscribe function.
_SUBSCRIPTIONS = {
    "SubscribeLevel1": "UnsubscribeLevel1",
    "SubscribeLevel2": "UnsubscribeLevel2",
    "SubscribeTrades": "UnsubscribeTrades",
    "SubscribeTicker": "UnsubscribeTicker",
}
#: Event name -> the subscribe function that starts it.
_EVENT_SOURCES = {
    "Level1UpdateEvent": "SubscribeLevel1",
    "Level2UpdateEvent": "SubscribeLevel2",
    "TradeDataUpdateEvent": "SubscribeTrades",
    "TickerDataUpdateEvent": "SubscribeTicker",
}

_CAMEL_SPECIAL = {"OMSId": "omsId", "errormsg": "errormsg"}


def _camel_case(value: Any) -> Any:
    """PascalCase keys as the documentation spells them (``OMSId`` -> ``omsId``)."""
    if isinstance(value, dict):
        return {
            _CAMEL_SPECIAL.get(key, key[:1].lower() + key[1:]): _camel_case(item)
            for key, item in value.items()
        }
    return value


@attrs.frozen
class _Run:
    """One run of a :class:`RunningGateway`'s listener: how to stop it, and when it has."""

    scope: anyio.CancelScope
    done: anyio.Event


class RunningGateway:
    """A :class:`Gateway` listening on a socket; made by :meth:`Gateway.serve`."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        host: str,
        port: int,
        ssl: ssl_module.SSLContext | None,
        path: str,
    ) -> None:
        self.gateway = gateway
        self.host = host
        self.port = port
        self._ssl = ssl
        self._path = path
        #: The task group of the ``async with`` block: every run of the listener lives in it.
        self._task_group: anyio.abc.TaskGroup | None = None
        self._run: _Run | None = None

    @property
    def url(self) -> str:
        """The URL clients connect to."""
        scheme = "wss" if self._ssl is not None else "ws"
        host = "localhost" if self._ssl is not None and self.host == "127.0.0.1" else self.host
        if ":" in host:
            host = f"[{host}]"  # an IPv6 address
        return f"{scheme}://{host}:{self.port}{self._path}"

    async def __aenter__(self) -> RunningGateway:
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            await self.start()
        except BaseException:
            self._task_group = None
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group, self._task_group = self._task_group, None
        try:
            await self.stop()
        finally:
            if task_group is not None:
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)

    @property
    def _home(self) -> Home | None:
        return self.gateway._home

    @on_home_loop
    async def start(self) -> None:
        """Listen (again, on the same port once it has one).

        Called from anywhere inside the ``async with`` block (a test, with its
        own task groups and clients opened since): each run of the listener is
        a task of the block's task group, never a scope of the caller's.
        """
        if self._task_group is None:
            raise RuntimeError("start() and stop() work inside `async with gateway.serve()`")
        if self._run is not None:
            raise RuntimeError("the gateway is already running")
        listener: anyio.abc.Listener[Any] = await anyio.create_tcp_listener(
            local_host=self.host, local_port=self.port, reuse_port=False
        )
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        if self._ssl is not None:
            listener = TLSListener(listener, self._ssl, standard_compatible=False)
        try:
            self._run = await self._task_group.start(self._serve, listener)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await listener.aclose()
            raise
        logger.info("gateway listening on %s", self.url)

    @on_home_loop
    async def stop(self) -> None:
        """Stop listening and cut every connection (a gateway restart, with :meth:`start`)."""
        run, self._run = self._run, None
        if run is None:
            return
        # Cancelling the handlers cuts their connections (no closing handshake).
        run.scope.cancel()
        with anyio.CancelScope(shield=True):
            await run.done.wait()

    async def _serve(
        self,
        listener: anyio.abc.Listener[Any],
        *,
        task_status: anyio.abc.TaskStatus[_Run] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """One run of the listener: accept and serve until :meth:`stop` cancels it."""
        run = _Run(anyio.CancelScope(), anyio.Event())
        try:
            with run.scope:
                task_status.started(run)
                await listener.serve(self._accept)
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()
            run.done.set()

    async def _accept(self, stream: anyio.abc.ByteStream) -> None:
        try:
            websocket = await accept_websocket(stream)
        except Exception:
            logger.debug("handshake failed", exc_info=True)
            await anyio.aclose_forcefully(stream)
            return
        if websocket is not None:
            await self.gateway.handle(websocket)

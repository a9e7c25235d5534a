"""What a test's own handler for an APEX function gets, and how it refuses.

``gateway.route("SendOrder", handler)`` makes the embedded gateway answer
``SendOrder`` with what ``handler(payload, context)`` returns: the reply's
payload, any JSON value. The handler may be a plain or an ``async`` function;
it runs on the gateway's event loop. Raising :class:`Refusal` answers the
standard ``result: false`` reply, as a live gateway refuses a request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from .users import GatewayUser

__all__ = ["Refusal", "RequestContext", "RouteHandler"]

RouteHandler = Callable[[Any, "RequestContext"], Any]
"""A route's handler: ``handler(payload, context) -> reply payload``, or an awaitable of it."""


class Refusal(Exception):
    """Raised by a route handler to answer APEX's standard refusal.

    The client receives ``{"result": false, "errormsg": message, "errorcode":
    code, "detail": detail}``, which it turns into a typed ``RequestError``
    (``NotAuthorized`` for 20, ``OperationFailed`` for 101, ...).
    """

    def __init__(self, code: int, message: str, detail: Any = None) -> None:
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(f"a Refusal's code is an int, not {type(code).__name__}")
        if not isinstance(message, str):
            raise TypeError(f"a Refusal's message is a str, not {type(message).__name__}")
        super().__init__(f"refused with code {code}: {message}")
        #: The reply's ``errorcode``.
        self.code = code
        #: The reply's ``errormsg``.
        self.message = message
        #: The reply's ``detail``: any JSON value, usually a string or None.
        self.detail = detail

    def reply(self) -> dict[str, Any]:
        """The standard response this refusal is answered with."""
        return standard_response(False, self.message, self.code, self.detail)


def standard_response(result: bool, message: str | None, code: int, detail: Any) -> dict[str, Any]:
    """APEX's standard response, always spelled in lowercase."""
    return {"result": result, "errormsg": message, "errorcode": code, "detail": detail}


@attrs.frozen
class RequestContext:
    """Who sent the request a route handler answers, and a way to push events back.

    Made by the gateway for each request (``events`` is the list it reads
    the pushed events from); handlers read it, never build it.
    """

    #: The APEX function called (the route's name).
    function: str
    #: The connection's number, as in :attr:`LoggedRequest.connection` and
    #: ``gateway.send_event(..., connection=...)``.
    connection: int
    #: The user this connection is logged in as, or None (not logged in, or
    #: waiting for its second factor).
    user: GatewayUser | None
    _events: list[tuple[str, Any]] = attrs.field(factory=list, repr=False, eq=False, alias="events")

    def push(self, function: str, payload: Any) -> None:
        """Send an ``m=3`` event to this connection right after the reply.

        Events pushed while handling a request follow its reply, in the order
        pushed: the client reads the reply first, as from a live gateway that
        confirms an order, then reports its state.
        """
        if not isinstance(function, str) or not function:
            raise TypeError("an event's function name is a non-empty str")
        self._events.append((function, payload))

"""The session's life as data: its states, what moves it, and every legal move.

In the spirit of h11's ``_state.py``: :data:`TRANSITIONS` is the whole story
of a session, one row per legal move, and :class:`StateMachine` is the only
thing that changes a session's state. A move that is not in the table is a bug
in this library: it raises :class:`IllegalTransition` at once, rather than
leave a session that says one thing and does another. ``CLOSED`` is final: no
row leaves it.

What the session does follows from the state: calls go through in
``CONNECTED`` and ``AUTHENTICATED`` (:attr:`StateMachine.accepts_calls`), a
re-login starts only from ``AUTHENTICATED``, and nothing is installed once
``closing`` (the one flag: the user is leaving, the state not yet ``CLOSED``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

__all__ = [
    "ACCEPTS_CALLS",
    "TRANSITIONS",
    "IllegalTransition",
    "SessionState",
    "StateMachine",
    "Trigger",
]


class SessionState(enum.Enum):
    """Where a session is in its life; see :meth:`Session.state_changes`."""

    CONNECTING = "connecting"  #: opening the first connection
    AUTHENTICATING = "authenticating"  #: logging in (or resuming) on a connection
    CONNECTED = "connected"  #: open, not logged in (no credentials, or before login())
    AUTHENTICATED = "authenticated"  #: logged in: calls go through
    RECONNECTING = "reconnecting"  #: the connection dropped; waiting or reconnecting
    CLOSED = "closed"  #: finished, by the user or after giving up

    #: By identity, as members compare: Enum's own hashes the name in a method
    #: of Python, on every move of the table (a few per login).
    __hash__ = object.__hash__


class Trigger(enum.Enum):
    """What happened to a session; the table says where it goes next."""

    OPENED = "a connection opened and logs in (or resumes the login)"
    READY = "a connection is ready and logged in: calls go through"
    READY_ANONYMOUS = "a connection is ready, not logged in: calls go through"
    LOGGED_IN = "the user logged in on the ready connection"
    LOGGED_OUT = "the login ended (LogOut, or a LogoutEvent with nothing to log in again with)"
    LOGIN_LOST = "the gateway ended the login: logging in again on the same connection"
    DROPPED = "the connection dropped, or an attempt to replace it failed: reconnecting"
    ENDED = "the session ended, closed by the user or after giving up"

    __hash__ = object.__hash__  # as SessionState's


_S, _T = SessionState, Trigger

#: Every legal move: (state, trigger) -> the next state. Nothing leaves CLOSED.
TRANSITIONS: Mapping[tuple[SessionState, Trigger], SessionState] = {
    # The first connection.
    (_S.CONNECTING, _T.OPENED): _S.AUTHENTICATING,
    (_S.CONNECTING, _T.READY_ANONYMOUS): _S.CONNECTED,
    (_S.AUTHENTICATING, _T.READY): _S.AUTHENTICATED,
    (_S.AUTHENTICATING, _T.READY_ANONYMOUS): _S.CONNECTED,  # resume refused, no credentials
    # Logging in and out by hand, and the gateway ending a login.
    (_S.CONNECTED, _T.LOGGED_IN): _S.AUTHENTICATED,
    (_S.CONNECTED, _T.LOGGED_OUT): _S.CONNECTED,
    (_S.AUTHENTICATED, _T.LOGGED_IN): _S.AUTHENTICATED,
    (_S.AUTHENTICATED, _T.LOGGED_OUT): _S.CONNECTED,
    (_S.AUTHENTICATED, _T.LOGIN_LOST): _S.AUTHENTICATING,
    # Drops and reconnects.
    (_S.CONNECTING, _T.DROPPED): _S.RECONNECTING,  # the first closed as it became ready
    (_S.CONNECTED, _T.DROPPED): _S.RECONNECTING,
    (_S.AUTHENTICATED, _T.DROPPED): _S.RECONNECTING,
    (_S.AUTHENTICATING, _T.DROPPED): _S.RECONNECTING,  # the re-login's connection dropped
    (_S.RECONNECTING, _T.DROPPED): _S.RECONNECTING,  # an attempt failed; another follows
    (_S.RECONNECTING, _T.OPENED): _S.AUTHENTICATING,
    (_S.RECONNECTING, _T.READY_ANONYMOUS): _S.CONNECTED,
    # The end, from anywhere but the end.
    **{(state, _T.ENDED): _S.CLOSED for state in SessionState if state is not _S.CLOSED},
}

#: The states in which calls go through the current connection.
ACCEPTS_CALLS = frozenset({SessionState.CONNECTED, SessionState.AUTHENTICATED})


class IllegalTransition(RuntimeError):
    """A move the table does not allow: a bug in alphapoint, never the gateway's doing."""


class StateMachine:
    """A session's state, changed only by :meth:`fire` and only as the table allows.

    Plain data: it calls nobody. Its owner acts on the state :meth:`fire`
    returns (a move to the same state, such as another failed reconnect, is
    not a change).
    """

    __slots__ = ("closing", "state")

    def __init__(self) -> None:
        self.state = SessionState.CONNECTING
        #: The user is leaving: no connection is installed and no task starts
        #: any more, and the state is CLOSED once the logout and close are done.
        self.closing = False

    def fire(self, trigger: Trigger) -> SessionState:
        """Move on ``trigger`` and return the new state; raises
        :class:`IllegalTransition` if the table has no such move."""
        try:
            self.state = TRANSITIONS[self.state, trigger]
        except KeyError:
            raise IllegalTransition(
                f"a session in state {self.state.name} cannot move on {trigger.name} "
                f"({trigger.value})"
            ) from None
        return self.state

    @property
    def accepts_calls(self) -> bool:
        """Whether calls may go through the current connection now."""
        return self.state in ACCEPTS_CALLS

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    @property
    def open(self) -> bool:
        """Whether calls can still be made (now, or once reconnected)."""
        return not self.closing and self.state is not SessionState.CLOSED

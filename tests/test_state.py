"""The session's state machine: the table itself, and the session keeping to it."""

from __future__ import annotations

import anyio
import pytest

import alphapoint
from alphapoint.frame import Frame, MessageType
from alphapoint.state import TRANSITIONS, IllegalTransition, SessionState, StateMachine, Trigger
from alphapoint.testing.faults import login_reply
from alphapoint.testing.scripted import ScriptedConnection, serve_script

from .helpers import LIMIT

CLOSED = SessionState.CLOSED


# -- the table -----------------------------------------------------------------------------------


def test_nothing_leaves_closed() -> None:
    assert not [key for key in TRANSITIONS if key[0] is CLOSED]
    machine = StateMachine()
    machine.fire(Trigger.ENDED)
    for trigger in Trigger:
        with pytest.raises(IllegalTransition, match="CLOSED"):
            machine.fire(trigger)
        assert machine.state is CLOSED


def test_every_state_can_end_and_is_reachable_from_connecting() -> None:
    reachable = {SessionState.CONNECTING}
    frontier = [SessionState.CONNECTING]
    while frontier:
        state = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in reachable:
                reachable.add(target)
                frontier.append(target)
    assert reachable == set(SessionState)
    for state in SessionState:
        if state is not CLOSED:
            assert TRANSITIONS[state, Trigger.ENDED] is CLOSED


@pytest.mark.parametrize(
    ("state", "trigger"),
    [
        (state, trigger)
        for state in SessionState
        for trigger in Trigger
        if (state, trigger) not in TRANSITIONS
    ],
)
def test_a_move_not_in_the_table_fails_loudly(state: SessionState, trigger: Trigger) -> None:
    machine = StateMachine()
    machine.state = state
    with pytest.raises(IllegalTransition, match=f"{state.name} cannot move on {trigger.name}"):
        machine.fire(trigger)
    assert machine.state is state


def test_calls_go_through_only_when_connected_or_authenticated() -> None:
    machine = StateMachine()
    for state in SessionState:
        machine.state = state
        assert machine.accepts_calls is (
            state in (SessionState.CONNECTED, SessionState.AUTHENTICATED)
        )


# -- a closed session stays closed ---------------------------------------------------------------


@pytest.mark.anyio
async def test_a_re_login_that_ends_as_the_user_leaves_does_not_revive_the_session() -> None:
    """The gateway logs the session out; the re-login's reply and a pushed event
    arrive back to back (one write), and the user leaves the block on that
    event. Whichever of the re-login and the user runs first, the session ends
    CLOSED, for good: no state after CLOSED, not authenticated after the block.

    (Before the state machine, trio's scheduler let the re-login record its
    login after the close in about a quarter of runs; the scenario is repeated
    so that both orders are met.)"""

    async def script(connection: ScriptedConnection) -> None:
        login = await connection.receive_frame()
        await connection.reply(login, login_reply("token-1"))
        ping = await connection.receive_frame()
        await connection.reply(ping, {"msg": "PONG"})
        await connection.event("LogoutEvent", {}, seq=1)
        relogin = await connection.receive_frame()
        assert relogin.function == "AuthenticateUser"
        await connection.send_together(
            Frame(MessageType.REPLY, relogin.seq, relogin.function, login_reply("token-2")),
            Frame(MessageType.EVENT, 2, "Tick", {}),
        )
        while True:  # answer whatever else comes (a LogOut), until the client closes
            try:
                request = await connection.receive_frame()
            except alphapoint.ConnectionClosed:
                return
            await connection.reply(request, {"result": True, "errorcode": 0})

    credentials = alphapoint.PasswordCredentials("alice", "alice-password")
    for _ in range(12):
        states: list[SessionState] = []
        async with serve_script(script) as server:
            with anyio.fail_after(LIMIT):
                async with (
                    alphapoint.connect(
                        server.url,
                        credentials=credentials,
                        relogin=alphapoint.Relogin(initial=0.001, maximum=0.001),
                        on_state_change=states.append,
                    ) as session,
                    session.events("Tick") as ticks,
                ):
                    await session.call("Ping")
                    await ticks.__anext__()
        assert session.state is CLOSED
        assert not session.authenticated
        assert session.user is None
        assert states.count(CLOSED) == 1
        assert states[-1] is CLOSED, states

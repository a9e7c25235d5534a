"""The sync client, ``alphapoint.sync``, driven from plain (loop-less) tests.

The gateway runs on an event loop in a thread of its own
(:func:`~tests.helpers.gateway_in_thread`); each client runs its session on
its own loop thread, under asyncio and under trio (the ``backend`` fixture).
Every blocking call is bounded by a timeout; every test checks what a user
sees: values, typed errors, and no thread left behind.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

import alphapoint
import alphapoint.sync
from alphapoint import (
    AuthStatus,
    ConnectionClosed,
    DecodeError,
    Level2Entry,
    RequestTimeout,
    SessionClosed,
    SessionState,
    UsageError,
)
from alphapoint.sync import Backend, SyncSession

from .helpers import (
    LIMIT,
    SHORT,
    ThreadedGateway,
    gateway_in_thread,
    unused_port,
    wait_until_blocking,
)


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The event loop the sync client's thread runs."""
    value: Backend = request.param
    return value


@pytest.fixture
def served() -> Iterator[ThreadedGateway]:
    with gateway_in_thread() as served:
        yield served


@attrs.frozen
class Pong:
    msg: str


@attrs.frozen
class NumericPong:
    msg: int


class Outcome:
    """What a function run in another thread returned or raised, once it has."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, *args), name="test worker")
        self._thread.start()

    def _run(self, fn: Any, *args: Any) -> None:
        try:
            self.value = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def wait(self) -> Outcome:
        self._thread.join(LIMIT)
        assert not self._thread.is_alive(), "the other thread is still blocked"
        return self


def sync_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("alphapoint.sync")]


def seen(served: ThreadedGateway, function: str) -> int:
    return len(served.gateway.requests_for(function))


# -- calls ------------------------------------------------------------------------------------


def test_login_call_and_model(served: ThreadedGateway, backend: Backend) -> None:
    with alphapoint.sync.connect(served.url, backend=backend) as session:
        assert not session.authenticated
        result = session.login(served.accounts.password, timeout=LIMIT)
        assert result.status is AuthStatus.AUTHENTICATED
        assert session.authenticated
        assert session.user is not None
        assert session.user.user_name == "alice"
        info = session.call("GetUserInfo")
        assert info["UserId"] == 7
        user = session.call("GetUserInfo", model=alphapoint.User)
        assert (user.user_id, user.user_name, user.account_id) == (7, "alice", 1007)
        assert session.call("Ping", model=Pong) == Pong("PONG")
        with pytest.raises(DecodeError) as caught:
            session.call("Ping", model=NumericPong)
        assert caught.value.path == "msg"
    assert session.state is SessionState.CLOSED
    assert seen(served, "LogOut") == 1  # the block logged out, as the async one does


def test_credentials_log_in_on_open(served: ThreadedGateway, backend: Backend) -> None:
    with alphapoint.sync.connect(
        served.url, credentials=served.accounts.api_key, backend=backend
    ) as session:
        assert session.state is SessionState.AUTHENTICATED
        assert session.user is not None
        assert session.user.user_id == 7


def test_refusals_are_the_async_errors(served: ThreadedGateway, backend: Backend) -> None:
    wrong = alphapoint.PasswordCredentials("alice", "not the password")
    with alphapoint.sync.connect(served.url, backend=backend) as session:
        assert session.authenticate(wrong).status is AuthStatus.REJECTED
        with pytest.raises(alphapoint.AuthenticationRejected):
            session.login(wrong)
        with pytest.raises(alphapoint.NotAuthorized):
            session.call("GetUserInfo")
        with pytest.raises(alphapoint.RequestError) as caught:
            session.call("NoSuchFunction")
        assert caught.value.message == "Endpoint Not Found"
    with pytest.raises(alphapoint.AccountLocked):
        alphapoint.sync.connect(served.url, credentials=served.accounts.locked, backend=backend)


def test_a_failed_open_raises_and_leaves_no_thread(backend: Backend) -> None:
    with unused_port() as port, pytest.raises(alphapoint.NetworkError):
        alphapoint.sync.connect(f"ws://127.0.0.1:{port}/", open_timeout=LIMIT, backend=backend)
    assert not sync_threads()
    with pytest.raises(alphapoint.InvalidURL):
        alphapoint.sync.connect("http://127.0.0.1/", backend=backend)
    with pytest.raises(UsageError, match="wait_for_gateway"):  # the async connect's check
        alphapoint.sync.connect(
            "ws://127.0.0.1/", wait_for_gateway=True, reconnect=False, backend=backend
        )
    assert not sync_threads()


# -- timeouts and drops ---------------------------------------------------------------------


def test_a_call_nobody_answers_times_out(deaf_gateway_url: str, backend: Backend) -> None:
    session = alphapoint.sync.connect(
        deaf_gateway_url, timeout=SHORT, keepalive=None, close_timeout=SHORT, backend=backend
    )
    try:
        with pytest.raises(RequestTimeout) as caught:
            session.call("Ping")  # the session's timeout
        assert (caught.value.function, caught.value.timeout) == ("Ping", SHORT)
        with pytest.raises(TimeoutError):  # RequestTimeout is one
            session.call("Ping", timeout=SHORT / 2)
    finally:
        session.close()  # the gateway never answers the close: bounded by close_timeout
    assert not sync_threads()


def test_a_dropped_connection_fails_the_call_and_ends_the_events(
    served: ThreadedGateway, backend: Backend
) -> None:
    served.gateway.answer_pings = False
    with alphapoint.sync.connect(served.url, backend=backend) as session:
        session.login(served.accounts.password)
        with session.events() as events:
            consumer = Outcome(list, events)
            dropper = Outcome(drop_once_asked, served, "Ping")
            with pytest.raises(ConnectionClosed) as caught:
                session.call("Ping", timeout=LIMIT)
            assert type(caught.value) is ConnectionClosed  # not closed by this side
            assert caught.value.retryable
            assert dropper.wait().error is None
            # A session without credentials does not reconnect: its streams end with the drop.
            assert isinstance(consumer.wait().error, ConnectionClosed)
        assert session.state is SessionState.CLOSED
        with pytest.raises(ConnectionClosed):
            session.call("Ping")


def test_a_managed_session_carries_on_after_a_drop(
    served: ThreadedGateway, backend: Backend
) -> None:
    served.gateway.answer_pings = False
    with alphapoint.sync.connect(
        served.url, credentials=served.accounts.password, keepalive=None, backend=backend
    ) as session:
        dropper = Outcome(drop_once_asked, served, "Ping")
        with pytest.raises(ConnectionClosed):
            session.call("Ping", timeout=LIMIT)
        assert dropper.wait().error is None
        served.gateway.answer_pings = True
        # Waits for the reconnect and the login, then goes through.
        assert session.call("Ping", timeout=LIMIT) == {"msg": "PONG"}
        assert session.authenticated
    assert seen(served, "AuthenticateUser") + seen(served, "WebAuthenticateUser") == 2


def drop_once_asked(served: ThreadedGateway, function: str) -> None:
    wait_until_blocking(lambda: seen(served, function) > 0)
    served.run(served.gateway.drop_connections)


# -- events -----------------------------------------------------------------------------------


def test_events_iterate_until_the_session_closes(served: ThreadedGateway, backend: Backend) -> None:
    session = alphapoint.sync.connect(served.url, backend=backend)
    session.login(served.accounts.password)
    with session.subscribe("SubscribeLevel1", {"OMSId": 1, "InstrumentId": 1}) as level1:
        assert level1.snapshot["InstrumentId"] == 1
        with pytest.raises(TimeoutError, match=f"nothing came within {SHORT} s"):
            level1.next(timeout=SHORT)  # nothing published yet
        for price in (100.0, 101.0):
            published = {"OMSId": 1, "InstrumentId": 1, "LastTradedPx": price}
            assert served.run(served.gateway.publish, "Level1UpdateEvent", published) == 1
        assert level1.next(timeout=LIMIT).payload["LastTradedPx"] == 100.0
        assert next(level1).payload["LastTradedPx"] == 101.0
        # Closed from another thread: the iteration here ends (no timeout set).
        closer = Outcome(session.close)
        assert list(level1) == []
        assert closer.wait().error is None
    assert not sync_threads()
    with pytest.raises(StopIteration):
        level1.next()


def test_a_subscription_yields_typed_rows(served: ThreadedGateway, backend: Backend) -> None:
    entries = [
        [1, 1, 1700000000000, 0, price, 1, price, 1, 0.5, 0] for price in (100.0, 101.0, 102.0)
    ]
    with alphapoint.sync.connect(
        served.url, credentials=served.accounts.password, backend=backend
    ) as session:
        payload = {"OMSId": 1, "InstrumentId": 1, "Depth": 10}
        with session.subscribe("SubscribeLevel2", payload, timeout=LIMIT) as book:
            assert book.snapshot_rows(Level2Entry) == []  # the embedded gateway's empty book
            assert served.run(served.gateway.publish, "Level2UpdateEvent", entries[:2]) == 1
            assert served.run(served.gateway.publish, "Level2UpdateEvent", entries[2:]) == 1
            rows = book.decoded(Level2Entry)
            # Two events, three rows: one row at a time, whichever event it came in.
            assert [next(rows).price for _ in range(3)] == [100.0, 101.0, 102.0]
            with pytest.raises(TimeoutError):
                rows.next(timeout=SHORT)
        session.close()
        assert list(rows) == []  # the stream ended with the session


def test_event_streams_by_name_and_unsubscribing(served: ThreadedGateway, backend: Backend) -> None:
    with alphapoint.sync.connect(served.url, backend=backend) as session:
        session.login(served.accounts.password)
        with session.subscribe("SubscribeTrades", {"OMSId": 1, "InstrumentId": 1}):
            assert served.gateway.subscribers("SubscribeTrades") == 1
        assert seen(served, "UnsubscribeTrades") == 1
        with session.events("LogoutEvent", timeout=LIMIT) as logouts:
            assert served.run(served.gateway.logout_event) == 1
            assert next(logouts).function == "LogoutEvent"


# -- closing ----------------------------------------------------------------------------------


def test_close_from_another_thread_wakes_a_blocked_call(
    served: ThreadedGateway, backend: Backend
) -> None:
    served.gateway.answer_pings = False
    session = alphapoint.sync.connect(served.url, backend=backend)
    session.login(served.accounts.password)

    def close_once_asked() -> None:
        wait_until_blocking(lambda: seen(served, "Ping") > 0)
        session.close()

    closer = Outcome(close_once_asked)
    with pytest.raises(SessionClosed):
        session.call("Ping", timeout=LIMIT)
    assert closer.wait().error is None
    assert seen(served, "LogOut") == 1
    assert not sync_threads()


def test_close_twice_and_use_after_close(served: ThreadedGateway, backend: Backend) -> None:
    session = alphapoint.sync.connect(served.url, backend=backend)
    session.close()
    session.close()
    with session:  # leaving the block closes again: nothing happens
        pass
    assert session.state is SessionState.CLOSED
    with pytest.raises(SessionClosed):
        session.call("Ping")
    with pytest.raises(SessionClosed):
        session.login(served.accounts.password)
    with pytest.raises(SessionClosed), session.events():
        pytest.fail("entered a stream of a closed session")


def test_no_thread_is_left_behind(served: ThreadedGateway, backend: Backend) -> None:
    before = set(threading.enumerate())
    with alphapoint.sync.connect(served.url, backend=backend) as session:
        session.login(served.accounts.password)
        with session.subscribe("SubscribeLevel1", {"OMSId": 1, "InstrumentId": 1}):
            assert len(sync_threads()) == 1
    assert set(threading.enumerate()) == before


def test_a_client_never_closed_logs_out_when_the_script_ends(
    served: ThreadedGateway, backend: Backend
) -> None:
    script = (
        "import os, alphapoint, alphapoint.sync\n"
        "credentials = alphapoint.PasswordCredentials('alice', os.environ['PASSWORD'])\n"
        "session = alphapoint.sync.connect(os.environ['URL'], backend=os.environ['BACKEND'])\n"
        "session.login(credentials)\n"
    )
    env = {
        **os.environ,
        "URL": served.url,
        "BACKEND": backend,
        "PASSWORD": served.accounts.password.password,
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, timeout=LIMIT, capture_output=True, text=True
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert seen(served, "LogOut") == 1


# -- threads and loops ------------------------------------------------------------------------


def test_calling_it_from_its_own_thread_is_a_usage_error(
    served: ThreadedGateway, backend: Backend
) -> None:
    clients: list[SyncSession] = []
    errors: list[BaseException] = []

    def on_state_change(state: SessionState) -> None:
        if clients and state is SessionState.AUTHENTICATED:
            for blocking in (lambda: clients[0].call("Ping"), clients[0].close):
                try:
                    blocking()
                except UsageError as exc:
                    errors.append(exc)

    with alphapoint.sync.connect(
        served.url, on_state_change=on_state_change, backend=backend
    ) as session:
        clients.append(session)
        session.login(served.accounts.password)
        assert len(errors) == 2
        assert "its own thread" in str(errors[0])
        assert session.call("Ping") == {"msg": "PONG"}  # nothing was harmed


def test_it_works_inside_a_running_event_loop(served: ThreadedGateway) -> None:
    """As in a notebook: the caller's loop waits, the client's own loop does the work."""

    async def main() -> Any:
        with alphapoint.sync.connect(served.url) as session:
            session.login(served.accounts.password)
            return session.call("Ping")

    assert asyncio.run(main()) == {"msg": "PONG"}


# -- what it shows --------------------------------------------------------------------------


def test_secrets_stay_out_of_reprs_and_thread_names(
    served: ThreadedGateway, backend: Backend
) -> None:
    credentials = served.accounts.password
    url = served.url.replace("ws://", "ws://alice:url-secret@")
    with (
        alphapoint.sync.connect(url, credentials=credentials, backend=backend) as session,
        session.events() as events,
    ):
        shown = [repr(session), str(session), repr(events), *sync_threads()]
    assert any("127.0.0.1" in text for text in shown)
    for text in shown:
        assert "url-secret" not in text
        assert credentials.password not in text


def test_import_starts_nothing() -> None:
    code = (
        "import sys, threading, alphapoint.sync\n"
        "assert 'trio' not in sys.modules, 'trio imported'\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")


def test_it_takes_the_async_apis_arguments() -> None:
    """A facade that falls behind the async API fails here, not in a user's script."""

    def shown(function: Any) -> dict[str, str]:
        """Each parameter as help() shows it: name, annotation, default."""
        return {name: str(p) for name, p in inspect.signature(function).parameters.items()}

    sync = shown(alphapoint.sync.connect)
    assert sync.pop("backend") == "backend: 'Backend' = 'asyncio'"
    assert sync == shown(alphapoint.connect)
    for name in (
        "call",
        "authenticate",
        "authenticate_2fa",
        "login",
        "logout",
        "events",
        "subscribe",
    ):
        sync = shown(getattr(SyncSession, name))
        if name in ("events", "subscribe"):  # and the wait for the next event
            assert sync.pop("timeout") == "timeout: 'float | None' = None"
        assert sync == shown(getattr(alphapoint.Session, name)), name

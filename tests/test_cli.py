"""The ``alphapoint`` command, run for real (``python -m alphapoint``) in a subprocess.

Each ``authenticate`` run talks to the embedded gateway the test serves in its
own event loop (hence ``anyio.run_process``: the loop keeps serving while the
command runs). Every run is also checked for leaked secrets and tracebacks.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import attrs
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

import alphapoint
from alphapoint.demo import run_demo
from alphapoint.redaction import REDACTED
from alphapoint.testing import DemoAccounts, demo_gateway
from alphapoint.testing.config import GatewayConfigError, load_gateway_config
from alphapoint.testing.pytest_plugin import GatewayFixture
from alphapoint.testing.scripted import ScriptedConnection, serve_script

from .helpers import wrong_code

pytestmark = pytest.mark.anyio

#: A session token of the embedded gateway (``secrets.token_hex(16)``), or anything like it.
TOKEN_LIKE = re.compile(r"\b[0-9a-f]{32}\b")

#: The fields of an AuthenticateResult, as ``--json`` spells them.
RESULT_KEYS = {
    "authenticated",
    "locked",
    "requires_2fa",
    "two_fa_type",
    "two_fa_token",
    "session_token",
    "errormsg",
    "user",
    "user_id",
    "addtl_info",
    "status",
}


@pytest.fixture
def anyio_backend() -> str:
    # Most tests here start a Python subprocess, which runs the same whatever
    # backend the test's own loop uses, so running them under trio too would
    # only double the slowest tests in the suite. The in-process demo test is
    # parametrized over both backends explicitly.
    return "asyncio"


@attrs.frozen
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


#: ``python -m alphapoint`` as a terminal starts it, Ctrl-C (SIGINT) raising
#: KeyboardInterrupt, even if this process ignores SIGINT: a shell's background
#: job does, and a child inherits that.
ALPHAPOINT_FROM_A_TERMINAL = [
    sys.executable,
    "-c",
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('alphapoint', run_name='__main__', alter_sys=True)",
]


def clean_env(**variables: str) -> dict[str, str]:
    """This process's environment without any ALPHAPOINT_ variable, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHAPOINT_")}
    env.update(variables)
    return env


async def alphapoint_cmd(*args: str, env: dict[str, str] | None = None) -> Run:
    """``python -m alphapoint ARGS`` with stdin a pipe (not a terminal)."""
    completed = await anyio.run_process(
        [sys.executable, "-m", "alphapoint", *args],
        input=b"",
        check=False,
        env=clean_env() if env is None else env,
    )
    return Run(completed.returncode, completed.stdout.decode(), completed.stderr.decode())


def secrets_of(accounts: DemoAccounts) -> list[str]:
    return [
        accounts.password.password,
        accounts.two_factor.password,
        accounts.locked.password,
        accounts.api_key.api_secret,
        accounts.two_factor_secret,
    ]


def assert_clean(run: Run, secrets: Iterable[str]) -> None:
    """No secret, nothing shaped like a session token, no traceback, in either stream."""
    for secret in secrets:
        assert secret not in run.output
    assert not TOKEN_LIKE.search(run.output)
    assert "Traceback" not in run.stderr


def assert_interrupted(run: Run, command: str) -> None:
    """Ctrl-C: exit code 130, and one line on stderr (no traceback)."""
    assert run.code == 130, run.stderr
    assert run.stderr.splitlines() == [f"alphapoint {command}: interrupted"]


def fields(stdout: str) -> dict[str, str]:
    """The ``label: value`` lines of the readable output."""
    pairs = (line.split(":", 1) for line in stdout.splitlines() if ":" in line)
    return {label.strip(): value.strip() for label, value in pairs}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- authenticate --------------------------------------------------------------


async def test_password_login_exits_0(alphapoint_gateway: GatewayFixture) -> None:
    accounts = alphapoint_gateway.accounts
    run = await alphapoint_cmd(
        "authenticate",
        alphapoint_gateway.url,
        "--username",
        "alice",
        env=clean_env(ALPHAPOINT_PASSWORD=accounts.password.password),
    )
    assert run.code == 0, run.stderr
    assert fields(run.stdout) == {
        "status": "authenticated",
        "user": "alice",
        "user id": "7",
        "account id": "1007",
        "message": "Logged in.",
    }
    assert run.stderr == ""
    assert_clean(run, secrets_of(accounts))
    assert len(alphapoint_gateway.gateway.requests_for("AuthenticateUser")) == 1


async def test_api_key_login_json(alphapoint_gateway: GatewayFixture) -> None:
    key = alphapoint_gateway.accounts.api_key
    run = await alphapoint_cmd(
        "authenticate",
        alphapoint_gateway.url,
        "--api-key",
        key.api_key,
        "--user-id",
        key.user_id,
        "--json",
        env=clean_env(ALPHAPOINT_API_SECRET=key.api_secret),
    )
    assert run.code == 0, run.stderr
    data = json.loads(run.stdout)
    assert set(data) == RESULT_KEYS
    assert data["status"] == "authenticated"
    assert data["authenticated"] is True
    assert data["session_token"] == REDACTED
    assert data["two_fa_token"] is None
    assert data["user"]["user_name"] == "alice"
    assert data["user"]["user_id"] == 7
    assert data["user"]["account_id"] == 1007
    assert "use_2fa" in data["user"]
    assert_clean(run, secrets_of(alphapoint_gateway.accounts))


async def test_two_factor_login_with_code_exits_0(alphapoint_gateway: GatewayFixture) -> None:
    accounts = alphapoint_gateway.accounts
    code = alphapoint.Totp(accounts.two_factor_secret)()
    run = await alphapoint_cmd(
        "authenticate",
        alphapoint_gateway.url,
        "--username",
        "bob",
        "--two-factor-code-env",
        "MY_2FA_CODE",
        "--json",
        env=clean_env(ALPHAPOINT_PASSWORD=accounts.two_factor.password, MY_2FA_CODE=code),
    )
    assert run.code == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["status"] == "authenticated"
    assert data["requires_2fa"] is False
    assert data["session_token"] == REDACTED
    assert data["user"]["user_name"] == "bob"
    sent = alphapoint_gateway.gateway.requests_for("Authenticate2FA")
    assert [request.payload for request in sent] == [{"Code": code}]
    assert_clean(run, [*secrets_of(accounts), code])


async def test_wrong_password_exits_1(alphapoint_gateway: GatewayFixture) -> None:
    run = await alphapoint_cmd(
        "authenticate",
        alphapoint_gateway.url,
        "--username",
        "alice",
        env=clean_env(ALPHAPOINT_PASSWORD="not-the-password"),
    )
    assert run.code == 1
    assert fields(run.stdout) == {"status": "rejected", "message": "Invalid username or password"}
    assert_clean(run, [*secrets_of(alphapoint_gateway.accounts), "not-the-password"])


@pytest.mark.parametrize(
    ("who", "variable"),
    [
        (["--username", "alice"], "ALPHAPOINT_PASSWORD"),
        (["--api-key", "some-key", "--user-id", "7"], "ALPHAPOINT_API_SECRET"),
    ],
)
async def test_missing_secret_with_no_terminal_exits_2(
    alphapoint_gateway: GatewayFixture, who: list[str], variable: str
) -> None:
    run = await alphapoint_cmd("authenticate", alphapoint_gateway.url, *who)
    assert run.code == 2
    assert run.stdout == ""
    assert len(run.stderr.splitlines()) == 1
    assert variable in run.stderr
    assert "Traceback" not in run.stderr
    assert alphapoint_gateway.gateway.requests == []  # gave up before connecting


async def test_locked_account_exits_3(alphapoint_gateway: GatewayFixture) -> None:
    accounts = alphapoint_gateway.accounts
    run = await alphapoint_cmd(
        "authenticate",
        alphapoint_gateway.url,
        "--username",
        "carol",
        "--json",
        env=clean_env(ALPHAPOINT_PASSWORD=accounts.locked.password),
    )
    assert run.code == 3
    data = json.loads(run.stdout)
    assert data["status"] == "locked"
    assert data["locked"] is True
    assert data["session_token"] is None
    assert_clean(run, secrets_of(accounts))


async def test_two_factor_without_code_exits_4(alphapoint_gateway: GatewayFixture) -> None:
    accounts = alphapoint_gateway.accounts
    run = await alphapoint_cmd(
        "authenticate",
        alphapoint_gateway.url,
        "--username",
        "bob",
        env=clean_env(ALPHAPOINT_PASSWORD=accounts.two_factor.password),
    )
    assert run.code == 4
    assert fields(run.stdout)["status"] == "two_factor_required"
    assert fields(run.stdout)["2FA type"] == "Google"
    assert "--two-factor-code-env" in run.stderr
    assert alphapoint_gateway.gateway.requests_for("Authenticate2FA") == []
    assert_clean(run, secrets_of(accounts))


async def test_two_factor_with_wrong_code_exits_4(alphapoint_gateway: GatewayFixture) -> None:
    accounts = alphapoint_gateway.accounts
    code = wrong_code(accounts.two_factor_secret)
    run = await alphapoint_cmd(
        "authenticate",
        alphapoint_gateway.url,
        "--username",
        "bob",
        "--two-factor-code-env",
        "CODE",
        "--json",
        env=clean_env(ALPHAPOINT_PASSWORD=accounts.two_factor.password, CODE=code),
    )
    assert run.code == 4
    data = json.loads(run.stdout)
    assert data["status"] == "two_factor_required"
    assert data["errormsg"] == "Invalid 2FA code"
    assert len(alphapoint_gateway.gateway.requests_for("Authenticate2FA")) == 1
    assert_clean(run, [*secrets_of(accounts), code])


async def test_connection_refused_exits_5_with_one_line() -> None:
    url = f"ws://127.0.0.1:{free_port()}/WSGateway/"
    run = await alphapoint_cmd(
        "authenticate", url, "--username", "alice", env=clean_env(ALPHAPOINT_PASSWORD="pw-123456")
    )
    assert run.code == 5
    assert run.stdout == ""
    assert len(run.stderr.splitlines()) == 1
    assert run.stderr.startswith("alphapoint authenticate: error: could not connect")
    assert_clean(run, ["pw-123456"])


async def test_ctrl_c_stops_authenticate_cleanly_with_130() -> None:
    """Ctrl-C while the command waits for the gateway's reply: the session is
    closed with a closing handshake (1000), and the exit is 130 with one line."""
    asked, closed = anyio.Event(), anyio.Event()
    codes: list[int | None] = []

    async def script(connection: ScriptedConnection) -> None:
        assert (await connection.receive_frame()).function == "AuthenticateUser"
        asked.set()  # the command is in its event loop, waiting for the reply
        try:
            while True:
                await connection.websocket.receive()
        except alphapoint.ConnectionClosed as exc:
            codes.append(exc.code)
            closed.set()

    async with serve_script(script) as server:
        process = await anyio.open_process(
            [*ALPHAPOINT_FROM_A_TERMINAL, "authenticate", server.url, "--username", "alice"],
            env=clean_env(ALPHAPOINT_PASSWORD="pw-123456"),
        )
        async with process:
            assert process.stdout is not None
            assert process.stderr is not None
            with anyio.fail_after(30):  # a guard against a hang, not a timing assertion
                await asked.wait()
                process.send_signal(signal.SIGINT)
                code = await process.wait()
                stdout = b"".join([chunk async for chunk in process.stdout])
                stderr = b"".join([chunk async for chunk in process.stderr])
                await closed.wait()
    run = Run(code, stdout.decode(), stderr.decode())
    assert_interrupted(run, "authenticate")
    assert run.stdout == ""
    assert codes == [1000]
    assert_clean(run, ["pw-123456"])


@pytest.mark.parametrize(
    "args",
    [
        ["--username", "alice", "--api-key", "k", "--user-id", "7"],  # both ways at once
        ["--api-key", "k"],  # no --user-id
        ["--username", "alice", "--password", "pw-on-the-command-line"],  # no such option
        ["--username", "alice", "--timeout", "0"],
    ],
)
async def test_usage_errors_exit_2(args: list[str]) -> None:
    run = await alphapoint_cmd(
        "authenticate", "ws://127.0.0.1:9/", *args, env=clean_env(ALPHAPOINT_PASSWORD="pw")
    )
    assert run.code == 2
    assert run.stdout == ""
    assert "error" in run.stderr
    assert "Traceback" not in run.stderr


# -- demo ---------------------------------------------------------------------------


async def test_demo_command_exits_0() -> None:
    run = await alphapoint_cmd("demo")
    assert run.code == 0, run.output
    assert run.stderr == ""
    lines = run.stdout.splitlines()
    assert lines[0].startswith("Embedded AlphaPoint gateway listening on ws://127.0.0.1:")
    for expected in [
        "GetUserInfo: refused, as expected (GetUserInfo failed with code 20: Not Authorized)",
        "AuthenticateUser: authenticated as alice (user id 7)",
        "GetUserInfo: alice, user id 7, account id 1007",
        "AuthenticateUser (HMAC-SHA256 signature, fresh nonce): authenticated as alice (user id 7)",
        "AuthenticateUser: two-factor code required (Google)",
        "Authenticate2FA with the current TOTP code: authenticated (user id 8)",
        "GetUserInfo: bob, user id 8, account id 1008",
        "AuthenticateUser: locked (User is locked), as expected",
        "AuthenticateUser: rejected (Invalid username or password), as expected",
    ]:
        assert f"   {expected}" in lines
    assert lines[-1] == "All 6 steps behaved as expected."
    assert_clean(run, [])


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_demo_prints_no_secret(anyio_backend: str) -> None:
    gateway, accounts = demo_gateway()
    out = io.StringIO()
    assert await run_demo(out, gateway_and_accounts=(gateway, accounts))
    text = out.getvalue()
    assert text.endswith("All 6 steps behaved as expected.\n")
    # What the demo really sent: five logins, one 2FA code, all secrets.
    assert len(gateway.requests_for("AuthenticateUser")) == 5
    [two_factor] = gateway.requests_for("Authenticate2FA")
    sent_secrets = [two_factor.payload["Code"]] + [
        request.payload.get("Password") or request.payload["Signature"]
        for request in gateway.requests_for("AuthenticateUser")
    ]
    assert_clean(Run(0, text, ""), [*secrets_of(accounts), *sent_secrets])


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_demo_reports_a_step_that_misbehaves(anyio_backend: str) -> None:
    gateway, accounts = demo_gateway()
    gateway.users["carol"].locked = False  # the "locked account" step now logs in
    out = io.StringIO()
    assert not await run_demo(out, gateway_and_accounts=(gateway, accounts))
    text = out.getvalue()
    assert "   -> NOT what was expected" in text
    assert text.endswith("Step(s) 5 did not behave as expected.\n")


# -- gateway ------------------------------------------------------------------------


def write_config(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


GOOD_USERS = [
    {"username": "dora", "password": "dora-pw-1f2e3d", "user_id": 21},
    {
        "username": "eve",
        "password": "eve-pw-4c5b6a",
        "user_id": 22,
        "totp_secret": "JBSWY3DPEHPK3PXP",
    },
    {"username": "finn", "password": "finn-pw-7a8b9c", "user_id": 23, "locked": True},
]
GOOD_KEYS = [{"api_key": "dora-key", "api_secret": "dora-api-secret-0a0b", "user_id": "21"}]
GOOD_SECRETS = [
    "dora-pw-1f2e3d",
    "eve-pw-4c5b6a",
    "finn-pw-7a8b9c",
    "JBSWY3DPEHPK3PXP",
    "dora-api-secret-0a0b",
]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ('{"users": [', "not valid JSON"),
        (
            {"users": [{"username": "x", "password": "hunter2-secret", "user_id": "21"}]},
            "users[0].user_id: expected an integer, got a string",
        ),
        (
            {"users": GOOD_USERS, "api_keys": [{**GOOD_KEYS[0], "secret": "dora-api-secret-0a0b"}]},
            "api_keys[0].secret: unknown field",
        ),
    ],
)
async def test_gateway_bad_config_exits_2_with_one_line(
    tmp_path: Path, content: Any, message: str
) -> None:
    path = tmp_path / "gateway.json"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif content is not None:
        write_config(path, content)
    run = await alphapoint_cmd("gateway", "--config", str(path))
    assert run.code == 2
    assert run.stdout == ""
    [line] = run.stderr.splitlines()
    assert line.startswith(f"alphapoint gateway: error: {path}: ")
    assert message in line
    assert_clean(run, [*GOOD_SECRETS, "hunter2-secret"])


@attrs.frozen
class GatewayProcess:
    process: anyio.abc.Process
    stdout: BufferedByteReceiveStream
    url: str

    async def stop(self, signal_number: signal.Signals) -> Run:
        """Stop the gateway with a signal; its exit code and the rest of its output."""
        assert self.process.stderr is not None
        self.process.send_signal(signal_number)
        with anyio.fail_after(30):  # a guard against a hang, not a timing assertion
            code = await self.process.wait()
            stdout = b"".join([chunk async for chunk in self.stdout])
            stderr = b"".join([chunk async for chunk in self.process.stderr])
        return Run(code, stdout.decode(), stderr.decode())


@asynccontextmanager
async def gateway_process(*args: str) -> AsyncIterator[GatewayProcess]:
    """``alphapoint gateway ARGS`` running, with the URL its first line announces."""
    process = await anyio.open_process(
        [*ALPHAPOINT_FROM_A_TERMINAL, "gateway", *args], env=clean_env()
    )
    try:
        assert process.stdout is not None
        stdout = BufferedByteReceiveStream(process.stdout)
        with anyio.fail_after(30):  # a guard against a hang, not a timing assertion
            first = await stdout.receive_until(b"\n", 4096)
        url = first.decode().rsplit(" ", 1)[-1]
        assert url.startswith("ws://127.0.0.1:")
        yield GatewayProcess(process, stdout, url)
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()


async def test_gateway_with_config_serves_its_users(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "gateway.json",
        {"users": GOOD_USERS, "api_keys": GOOD_KEYS, "casing": "camel", "max_failed_attempts": 3},
    )
    async with gateway_process("--config", str(path), "--port", "0") as gateway:
        url = gateway.url
        async with alphapoint.connect(url) as session:
            result = await session.login(alphapoint.PasswordCredentials("dora", "dora-pw-1f2e3d"))
            assert result.user is not None
            assert result.user.user_id == 21
            info = await session.call("GetUserInfo")
            assert info["userName"] == "dora"  # camelCase, as configured
        async with alphapoint.connect(url) as session:
            key = alphapoint.ApiKeyCredentials(
                api_key="dora-key", api_secret="dora-api-secret-0a0b", user_id="21"
            )
            assert (await session.login(key)).status is alphapoint.AuthStatus.AUTHENTICATED
        async with alphapoint.connect(url) as session:
            eve = alphapoint.PasswordCredentials("eve", "eve-pw-4c5b6a")
            result = await session.login(eve, two_factor=alphapoint.Totp("JBSWY3DPEHPK3PXP"))
            assert result.status is alphapoint.AuthStatus.AUTHENTICATED
        async with alphapoint.connect(url) as session:
            finn = alphapoint.PasswordCredentials("finn", "finn-pw-7a8b9c")
            assert (await session.authenticate(finn)).status is alphapoint.AuthStatus.LOCKED
        run = await gateway.stop(signal.SIGINT)  # Ctrl-C
    assert_interrupted(run, "gateway")
    assert "dora, eve (2FA), finn (locked)" in run.stdout
    assert "Stopped." not in run.stdout
    assert_clean(run, GOOD_SECRETS)


async def test_gateway_demo_mode_names_users_not_secrets() -> None:
    async with gateway_process() as gateway:
        async with alphapoint.connect(gateway.url) as session:
            assert await session.call("Ping") == {"msg": "PONG"}
            with pytest.raises(alphapoint.NotAuthorized):
                await session.call("GetUserInfo")
        run = await gateway.stop(signal.SIGTERM)  # as kill and docker stop send
    assert run.code == 0, run.stderr
    assert "alice (password), bob (password + TOTP 2FA), carol (locked)" in run.stdout
    assert "generated afresh for each run" in run.stdout
    assert "--config FILE" in run.stdout
    assert_clean(run, [])


# -- the config loader, in-process ----------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [
        ([], "top level", "expected an object, got an array"),
        ({}, "users", "missing"),
        ({"users": {}}, "users", "expected an array, got an object"),
        ({"users": [], "extra": 1}, "extra", "unknown field"),
        ({"users": [{"password": "s3cr3t-value", "user_id": 1}]}, "users[0].username", "missing"),
        (
            {"users": [{"username": "a", "password": 123456789, "user_id": 1}]},
            "users[0].password",
            "expected a string, got a number",
        ),
        (
            {"users": [{"username": "a", "password": "s3cr3t-value", "user_id": 0}]},
            "users[0].user_id",
            "must be at least 1",
        ),
        (
            {
                "users": [
                    {
                        "username": "a",
                        "password": "s3cr3t-value",
                        "user_id": 1,
                        "totp_secret": "s3cr3t-value!",
                    }
                ]
            },
            "users[0].totp_secret",
            "not valid base32",
        ),
        (
            {
                "users": [
                    {"username": "a", "password": "s3cr3t-value", "user_id": 1, "locked": "yes"}
                ]
            },
            "users[0].locked",
            "expected true or false, got a string",
        ),
        (
            {
                "users": [
                    *GOOD_USERS,
                    {"username": "DORA", "password": "s3cr3t-value", "user_id": 5},
                ]
            },
            "users[3].username",
            "duplicate user name",
        ),
        (
            {"users": GOOD_USERS, "api_keys": [{**GOOD_KEYS[0], "user_id": "99"}]},
            "api_keys[0].user_id",
            "no user in 'users' has this user id",
        ),
        (
            {"users": GOOD_USERS, "api_keys": [{**GOOD_KEYS[0], "api_secret": ""}]},
            "api_keys[0].api_secret",
            "must not be empty",
        ),
        ({"users": [], "casing": "snake"}, "casing", 'expected one of "pascal", "camel"'),
        ({"users": [], "max_failed_attempts": True}, "max_failed_attempts", "expected an integer"),
    ],
)
def test_config_errors_name_the_field_not_the_value(
    tmp_path: Path, data: Any, field: str, problem: str
) -> None:
    path = write_config(tmp_path / "c.json", data)
    with pytest.raises(GatewayConfigError) as caught:
        load_gateway_config(path)
    error = caught.value
    assert isinstance(error, alphapoint.AlphaPointError)
    assert isinstance(error, ValueError)
    assert error.field == field
    assert str(error).startswith(f"{path}: {field}: {problem}")
    for secret in ["s3cr3t-value", "123456789", *GOOD_SECRETS, "snake"]:
        assert secret not in str(error)


def test_config_builds_the_gateway(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "c.json",
        {"users": GOOD_USERS, "api_keys": GOOD_KEYS, "casing": "camel", "max_failed_attempts": 3},
    )
    gateway = load_gateway_config(path)
    assert sorted(gateway.users) == ["dora", "eve", "finn"]
    assert gateway.users["eve"].totp_secret == "JBSWY3DPEHPK3PXP"
    assert gateway.users["finn"].locked
    assert not gateway.users["dora"].locked
    assert gateway.api_keys["dora-key"].user_id == "21"
    assert gateway.api_keys["dora-key"].api_secret == "dora-api-secret-0a0b"
    assert gateway.casing.value == "camel"
    assert gateway.max_failed_attempts == 3

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
from alphapoint.testing import DemoAccounts, GatewayFixture, demo_gateway
from alphapoint.testing.config import GatewayConfigError, load_gateway_config
from alphapoint.testing.scripted import ScriptedConnection, serve_script, serve_tcp

from .helpers import unused_port, wrong_code

pytestmark = pytest.mark.anyio

#: A session token of the embedded gateway (``secrets.token_hex(16)``), or anything like it.
TOKEN_LIKE = re.compile(r"\b[0-9a-f]{32}\b")

#: The fields of a login's ``--json`` record: the account and URL, the status
#: and what it means, and an AuthenticateResult's fields in snake_case.
RESULT_KEYS = {
    "account",
    "url",
    "message",
    "error_kind",
    "timings_ms",
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
    assert data["account"] == "user 7"
    assert data["url"] == alphapoint_gateway.url
    assert data["error_kind"] is None
    assert set(data["timings_ms"]) == {"connect", "login"}
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
    # The gateway's first reply said Authenticated: true (as live ones do), but
    # the code was refused: the record agrees with its status, not with that flag.
    assert alphapoint_gateway.gateway.two_factor_reply_authenticated
    assert data["authenticated"] is False
    assert data["requires_2fa"] is True
    assert data["locked"] is False
    assert data["session_token"] is None
    assert data["account"] == "bob"
    assert data["url"] == alphapoint_gateway.url
    assert data["message"] == data["errormsg"] == "Invalid 2FA code"
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


@pytest.mark.parametrize(
    ("command", "waits_for"),
    [
        ("authenticate", "AuthenticateUser"),
        ("call", "AuthenticateUser"),
        ("check", "AuthenticateUser"),
        ("ping", "Ping"),
    ],
)
async def test_ctrl_c_stops_a_command_cleanly_with_130(
    tmp_path: Path, command: str, waits_for: str
) -> None:
    """Ctrl-C while the command waits for the gateway's reply: the session is
    closed with a closing handshake (1000), and the exit is 130 with one line."""
    asked, closed = anyio.Event(), anyio.Event()
    codes: list[int | None] = []

    async def script(connection: ScriptedConnection) -> None:
        assert (await connection.receive_frame()).function == waits_for
        asked.set()  # the command is in its event loop, waiting for the reply
        try:
            while True:
                await connection.websocket.receive()
        except alphapoint.ConnectionClosed as exc:
            codes.append(exc.code)
            closed.set()

    async with serve_script(script) as server:
        args = {
            "authenticate": [server.url, "--username", "alice"],
            "call": [server.url, "GetUserInfo", "--username", "alice"],
            "check": [
                str(
                    accounts_file(
                        tmp_path / "a.toml",
                        f'[[accounts]]\nname = "a"\nurl = "{server.url}"\n'
                        'username = "alice"\npassword_env = "ALPHAPOINT_PASSWORD"\n',
                    )
                )
            ],
            "ping": [server.url],
        }[command]
        process = await anyio.open_process(
            [*ALPHAPOINT_FROM_A_TERMINAL, command, *args],
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
    assert_interrupted(run, command)
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


# -- check: an accounts file with every outcome ----------------------------------------


def accounts_file(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def records(stdout: str) -> dict[str, dict[str, Any]]:
    """JSON Lines, one record per account, keyed by account name (in the file's order)."""
    lines = [json.loads(line) for line in stdout.splitlines()]
    by_name = {line["account"]: line for line in lines}
    assert len(by_name) == len(lines)
    return by_name


def secret_printer(path: Path, secret: str) -> str:
    """A TOML array for a command that prints ``secret`` (kept in a file, not in argv)."""
    path.write_text(secret + "\n", encoding="utf-8")
    script = "import sys; print(open(sys.argv[1]).read().strip())"
    return json.dumps([sys.executable, "-c", script, str(path)])


async def test_check_reports_every_outcome(
    alphapoint_gateway: GatewayFixture, tmp_path: Path
) -> None:
    """One file, one account per outcome; the exit code is the worst (5: unreachable)."""
    accounts = alphapoint_gateway.accounts
    key = accounts.api_key
    with unused_port() as port:
        path = accounts_file(
            tmp_path / "accounts.toml",
            f"""
# every outcome alphapoint check can report
url = "{alphapoint_gateway.url}"
timeout = 10

[[accounts]]
name = "alice"
username = "alice"
password_env = "ALICE_PASSWORD"

[[accounts]]
name = "alice-key"
api_key = "{key.api_key}"
user_id = {key.user_id}
api_secret_command = {secret_printer(tmp_path / "secret.txt", key.api_secret)}

[[accounts]]
name = "bob-unattended"
username = "bob"
password_env = "BOB_PASSWORD"
totp_secret_env = "BOB_TOTP"

[[accounts]]
name = "bob"
username = "bob"
password_env = "BOB_PASSWORD"

[[accounts]]
name = "carol"
username = "carol"
password_env = "CAROL_PASSWORD"

[[accounts]]
name = "mallory"
username = "mallory"
password_env = "MALLORY_PASSWORD"

[[accounts]]
name = "dave"
username = "dave"
password_env = "DAVE_PASSWORD"

[[accounts]]
name = "elsewhere"
url = "ws://127.0.0.1:{port}/WSGateway/"
username = "alice"
password_env = "ALICE_PASSWORD"
""",
        )
        env = clean_env(
            ALICE_PASSWORD=accounts.password.password,
            BOB_PASSWORD=accounts.two_factor.password,
            BOB_TOTP=accounts.two_factor_secret,
            CAROL_PASSWORD=accounts.locked.password,
            MALLORY_PASSWORD="not-her-password",
        )
        run = await alphapoint_cmd("check", str(path), "--json", env=env)
        table = await alphapoint_cmd("check", str(path), "--concurrency", "3", env=env)

    assert run.code == 5, run.stderr
    found = records(run.stdout)
    assert list(found) == [
        "alice",
        "alice-key",
        "bob-unattended",
        "bob",
        "carol",
        "mallory",
        "dave",
        "elsewhere",
    ]
    statuses = {name: record["status"] for name, record in found.items()}
    assert statuses == {
        "alice": "authenticated",
        "alice-key": "authenticated",
        "bob-unattended": "authenticated",
        "bob": "two_factor_required",
        "carol": "locked",
        "mallory": "rejected",
        "dave": "usage_error",
        "elsewhere": "failed",
    }
    for name, record in found.items():
        assert set(record) == RESULT_KEYS, name
        # Every field agrees with the status.
        assert record["authenticated"] is (record["status"] == "authenticated")
        assert record["locked"] is (record["status"] == "locked")
        assert record["requires_2fa"] is (record["status"] == "two_factor_required")
        assert (record["session_token"] == REDACTED) is (record["status"] == "authenticated")
        assert (record["error_kind"] is None) is (record["status"] not in ("usage_error", "failed"))
        expected_url = f"ws://127.0.0.1:{port}/WSGateway/" if name == "elsewhere" else None
        assert record["url"] == (expected_url or alphapoint_gateway.url)
    assert found["alice"]["user"]["user_name"] == "alice"
    assert found["alice-key"]["user"]["user_id"] == 7
    assert found["bob-unattended"]["user"]["user_name"] == "bob"
    assert set(found["bob-unattended"]["timings_ms"]) == {"connect", "login", "two_factor"}
    assert found["bob"]["two_fa_type"] == "Google"
    assert found["carol"]["message"] == "User is locked"
    assert found["mallory"]["message"] == "Invalid username or password"
    assert found["dave"]["error_kind"] == "SecretUnavailable"
    assert "DAVE_PASSWORD" in found["dave"]["message"]
    assert found["elsewhere"]["error_kind"] == "NetworkError"
    assert found["elsewhere"]["message"].startswith("could not connect")
    # stderr stays quiet with --json: the records say it all.
    assert "Traceback" not in run.stderr

    gateway = alphapoint_gateway.gateway
    # Two runs, six logins each (dave and elsewhere never reach this gateway),
    # each on its own connection; one 2FA code per run; every login logged out.
    logins = gateway.requests_for("AuthenticateUser")
    assert len(logins) == 12
    assert len({request.connection for request in logins}) == 12
    assert len(gateway.requests_for("Authenticate2FA")) == 2
    assert len(gateway.requests_for("LogOut")) == 6

    assert table.code == 5, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ACCOUNT", "STATUS", "MS", "DETAIL"]
    rows = {line.split()[0]: line.split(None, 3) for line in lines[1:-1]}
    assert rows["alice"][1] == "authenticated"
    assert rows["alice"][3] == "user id 7, account id 1007"
    assert rows["dave"][3].startswith("SecretUnavailable: ")
    assert rows["elsewhere"][3].startswith("NetworkError: could not connect")
    assert lines[-1] == "3 of 8 account(s) authenticated"

    for each in (run, table):
        assert_clean(each, [*secrets_of(accounts), "not-her-password"])


@pytest.mark.parametrize(
    ("names", "code"),
    [
        (["alice"], 0),
        (["alice", "bob"], 4),
        (["alice", "bob", "mallory"], 1),
        (["alice", "bob", "mallory", "carol"], 3),
        (["alice", "carol", "dave"], 2),
    ],
)
async def test_check_exits_with_the_worst_outcome(
    alphapoint_gateway: GatewayFixture, tmp_path: Path, names: list[str], code: int
) -> None:
    accounts = alphapoint_gateway.accounts
    text = "".join(
        f'[[accounts]]\nname = "{name}"\nusername = "{name}"\npassword_env = "PW_{name}"\n'
        for name in names
    )
    env = clean_env(
        ALPHAPOINT_URL=alphapoint_gateway.url,  # no url in the file: the environment's
        PW_alice=accounts.password.password,
        PW_bob=accounts.two_factor.password,
        PW_carol=accounts.locked.password,
        PW_mallory="not-her-password",
    )
    path = accounts_file(tmp_path / "a.toml", text)
    run = await alphapoint_cmd("check", str(path), "--json", "--concurrency", "1", env=env)
    assert run.code == code, run.output
    assert list(records(run.stdout)) == names
    assert_clean(run, [*secrets_of(accounts), "not-her-password"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "no such file"),
        ("[[accounts]\n", "not valid TOML"),
        ('url = "ws://127.0.0.1:9/"\n', "accounts: missing"),
        (
            '[[accounts]]\nname = "a"\nusername = "a"\npassword = "hunter2-in-a-file"\n',
            "accounts[0].password: secrets are never written in the accounts file",
        ),
        (
            '[[accounts]]\nname = "a"\napi_key = "k"\nuser_id = "7"\n'
            'api_secret = "hunter2-in-a-file"\n',
            "accounts[0].api_secret: secrets are never written in the accounts file",
        ),
        (
            '[[accounts]]\nname = "a"\nusername = "a"\npassword_env = "P"\n',
            "accounts[0].url: missing",
        ),
        (
            'url = "ws://127.0.0.1:9/"\n[[accounts]]\nname = "a"\nusername = "a"\n',
            "accounts[0].password_env: missing",
        ),
        (
            'url = "ws://127.0.0.1:9/"\n[[accounts]]\nname = "a"\napi_key = "k"\n'
            'api_secret_env = "S"\n',
            "accounts[0].user_id: missing",
        ),
        (
            'url = "ws://127.0.0.1:9/"\n[[accounts]]\nname = "a"\npassword_env = "P"\n',
            "accounts[0].username: missing",
        ),
        (
            'url = "ws://127.0.0.1:9/"\n[[accounts]]\nname = "a"\nusername = "a"\n'
            'api_key = "k"\nuser_id = "7"\npassword_env = "P"\n',
            "accounts[0].api_key: give username or api_key, not both",
        ),
        (
            'url = "ws://127.0.0.1:9/"\n[[accounts]]\nname = "a"\nusername = "a"\n'
            'password_env = "P"\npassword_command = ["pass"]\n',
            "accounts[0].password_command: give password_env or password_command, not both",
        ),
        (
            'url = "ws://127.0.0.1:9/"\n[[accounts]]\nname = "a"\nusername = "a"\n'
            'password_env = "P"\ntimeout = -1\n',
            "accounts[0].timeout: must be a positive number",
        ),
        (
            'url = "ws://127.0.0.1:9/"\n[[accounts]]\nname = "a"\nusername = "a"\n'
            'password_env = "P"\n[[accounts]]\nname = "a"\nusername = "b"\npassword_env = "P"\n',
            "accounts[1].name: another account has this name",
        ),
        (
            'url = "ws://127.0.0.1:9/"\n[[accounts]]\nname = "a"\nusername = "a"\n'
            'password_env = "P"\nuser = "hunter2-in-a-file"\n',
            "accounts[0].user: unknown field",
        ),
    ],
)
async def test_check_bad_accounts_file_exits_2(
    tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "accounts.toml"
    if text is not None:
        accounts_file(path, text)
    run = await alphapoint_cmd("check", str(path), "--json")
    assert run.code == 2
    [line] = run.stderr.splitlines()
    assert line.startswith(f"alphapoint check: error: {path}: ")
    assert message in line
    [record] = [json.loads(line) for line in run.stdout.splitlines()]
    assert record["status"] == "usage_error"
    assert record["error_kind"] == "UsageError"
    assert message in record["message"]
    assert_clean(run, ["hunter2-in-a-file"])


async def test_check_secret_command_that_fails(tmp_path: Path) -> None:
    """A command that fails or prints nothing is that account's usage error; what it
    printed on stderr is not shown (it may hold a secret)."""
    leaky = json.dumps([sys.executable, "-c", "import sys; sys.exit('hunter2-leaked')"])
    empty = json.dumps([sys.executable, "-c", "pass"])
    path = accounts_file(
        tmp_path / "a.toml",
        'url = "ws://127.0.0.1:9/"\n'
        f'[[accounts]]\nname = "leaky"\nusername = "a"\npassword_command = {leaky}\n'
        f'[[accounts]]\nname = "empty"\nusername = "a"\npassword_command = {empty}\n'
        '[[accounts]]\nname = "missing"\nusername = "a"\n'
        'password_command = ["/nonexistent/alphapoint-secret"]\n',
    )
    run = await alphapoint_cmd("check", str(path), "--json")
    assert run.code == 2
    found = records(run.stdout)
    assert {record["status"] for record in found.values()} == {"usage_error"}
    assert found["leaky"]["message"] == "password_command (python) exited with code 1".replace(
        "python", sys.executable
    )
    assert found["empty"]["message"].endswith("printed nothing")
    assert "could not be run" in found["missing"]["message"]
    assert_clean(run, ["hunter2-leaked"])


# -- ping ------------------------------------------------------------------------------


async def test_ping_reports_round_trip(alphapoint_gateway: GatewayFixture) -> None:
    run = await alphapoint_cmd("ping", alphapoint_gateway.url)
    assert run.code == 0, run.stderr
    assert re.fullmatch(
        rf"PONG from {re.escape(alphapoint_gateway.url)} in [\d.]+ ms \(handshake [\d.]+ ms\)\n",
        run.stdout,
    )
    # ALPHAPOINT_URL is the default URL.
    run = await alphapoint_cmd(
        "ping", "--json", env=clean_env(ALPHAPOINT_URL=alphapoint_gateway.url)
    )
    assert run.code == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["status"] == "ok"
    assert record["message"] == "PONG"
    assert record["account"] is None
    assert record["url"] == alphapoint_gateway.url
    assert record["reply"] == {"msg": "PONG"}
    assert set(record["timings_ms"]) == {"connect", "ping"}
    gateway = alphapoint_gateway.gateway
    assert [request.function for request in gateway.requests] == ["Ping", "Ping"]


async def test_ping_failures_print_a_record() -> None:
    """Nothing listening, and a port that answers but is not WebSocket: exit 5,
    one line on stderr, and with --json a record on stdout."""

    async def not_websocket(stream: anyio.abc.ByteStream) -> None:
        await stream.receive()
        await stream.send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    with unused_port() as port:
        closed = await alphapoint_cmd("ping", f"ws://127.0.0.1:{port}/", "--json")
    async with serve_tcp(not_websocket) as server:
        refused = await alphapoint_cmd("ping", server.url, "--json")
    for run, kind in [(closed, "NetworkError"), (refused, "HandshakeRefused")]:
        assert run.code == 5
        record = json.loads(run.stdout)
        assert record["status"] == "failed"
        assert record["error_kind"] == kind
        [line] = run.stderr.splitlines()
        assert line == f"alphapoint ping: error: {record['message']}"


async def test_no_url_anywhere_exits_2() -> None:
    run = await alphapoint_cmd("ping", "--json")
    assert run.code == 2
    assert "ALPHAPOINT_URL" in run.stderr
    assert json.loads(run.stdout)["status"] == "usage_error"


# -- call ------------------------------------------------------------------------------


async def test_call_prints_the_reply(alphapoint_gateway: GatewayFixture) -> None:
    key = alphapoint_gateway.accounts.api_key
    env = clean_env(ALPHAPOINT_API_SECRET=key.api_secret)
    who = ["--api-key", key.api_key, "--user-id", key.user_id]
    plain = await alphapoint_cmd("call", alphapoint_gateway.url, "GetUserInfo", *who, env=env)
    assert plain.code == 0, plain.stderr
    info = json.loads(plain.stdout)
    assert info["UserName"] == "alice"
    assert info["AccountId"] == 1007

    env["ALPHAPOINT_URL"] = alphapoint_gateway.url
    run = await alphapoint_cmd("call", "GetUserInfo", "{}", *who, "--json", env=env)
    assert run.code == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["status"] == "ok"
    assert record["authenticated"] is True
    assert record["account"] == "user 7"
    assert record["function"] == "GetUserInfo"
    assert record["reply"] == info
    assert set(record["timings_ms"]) == {"connect", "login", "call"}
    gateway = alphapoint_gateway.gateway
    assert [request.payload for request in gateway.requests_for("GetUserInfo")] == [{}, {}]
    assert_clean(plain, secrets_of(alphapoint_gateway.accounts))
    assert_clean(run, secrets_of(alphapoint_gateway.accounts))


async def test_call_failures(alphapoint_gateway: GatewayFixture) -> None:
    accounts = alphapoint_gateway.accounts
    url = alphapoint_gateway.url
    alice = clean_env(ALPHAPOINT_PASSWORD=accounts.password.password)
    refused = await alphapoint_cmd(
        "call", url, "NoSuchFunction", '{"X": 1}', "--username", "alice", "--json", env=alice
    )
    assert refused.code == 5
    record = json.loads(refused.stdout)
    assert record["status"] == "failed"
    assert record["error_kind"] == "RequestError"
    assert record["function"] == "NoSuchFunction"
    assert record["reply"] is None

    wrong = await alphapoint_cmd(
        "call",
        url,
        "GetUserInfo",
        "--username",
        "alice",
        "--json",
        env=clean_env(ALPHAPOINT_PASSWORD="not-the-password"),
    )
    assert wrong.code == 1
    assert json.loads(wrong.stdout)["status"] == "rejected"
    assert alphapoint_gateway.gateway.requests_for("GetUserInfo") == []

    for args in (["AuthenticateUser", '{"UserName": "alice"}'], ["GetUserInfo", "[1,"]):
        usage = await alphapoint_cmd("call", url, *args, "--username", "alice", env=alice)
        assert usage.code == 2
        assert usage.stdout == ""
        assert len(usage.stderr.splitlines()) == 1
    for run in (refused, wrong):
        assert_clean(run, [*secrets_of(accounts), "not-the-password"])


# -- 2FA unattended, -v, URLs with user info --------------------------------------------


@pytest.mark.parametrize("variable", ["ALPHAPOINT_TOTP_SECRET", "BOB_TOTP"])
async def test_totp_secret_from_the_environment(
    alphapoint_gateway: GatewayFixture, variable: str
) -> None:
    accounts = alphapoint_gateway.accounts
    option = [] if variable == "ALPHAPOINT_TOTP_SECRET" else ["--totp-secret-env", variable]
    run = await alphapoint_cmd(
        "authenticate",
        alphapoint_gateway.url,
        "--username",
        "bob",
        *option,
        "--json",
        env=clean_env(
            ALPHAPOINT_PASSWORD=accounts.two_factor.password,
            **{variable: accounts.two_factor_secret},
        ),
    )
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["status"] == "authenticated"
    [sent] = alphapoint_gateway.gateway.requests_for("Authenticate2FA")
    assert alphapoint.Totp(accounts.two_factor_secret).verify(sent.payload["Code"])
    assert_clean(run, [*secrets_of(accounts), sent.payload["Code"]])


async def test_verbose_tells_progress_without_secrets(
    alphapoint_gateway: GatewayFixture,
) -> None:
    accounts = alphapoint_gateway.accounts
    # A URL with user info: it is never shown.
    url = alphapoint_gateway.url.replace("ws://", "ws://ops:url-secret-1234@")
    run = await alphapoint_cmd(
        "authenticate",
        url,
        "--username",
        "bob",
        "-v",
        "--json",
        env=clean_env(
            ALPHAPOINT_PASSWORD=accounts.two_factor.password,
            ALPHAPOINT_TOTP_SECRET=accounts.two_factor_secret,
        ),
    )
    assert run.code == 0, run.stderr
    shown = alphapoint_gateway.url.replace("ws://", "ws://…@")
    assert json.loads(run.stdout)["url"] == shown
    lines = run.stderr.splitlines()
    assert lines[0] == f"alphapoint authenticate: connecting to {shown}"
    patterns = [
        r"handshake \d+ ms",
        r"login \d+ ms: two_factor_required",
        r"2FA \d+ ms: authenticated",
    ]
    assert len(lines) == 1 + len(patterns)
    for line, pattern in zip(lines[1:], patterns, strict=True):
        assert re.fullmatch(f"alphapoint authenticate: {pattern}", line), line
    [code] = [r.payload["Code"] for r in alphapoint_gateway.gateway.requests_for("Authenticate2FA")]
    assert_clean(run, [*secrets_of(accounts), code, "url-secret-1234"])


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["--password", "hunter2-typed"], "$ALPHAPOINT_PASSWORD"),
        (["--password=hunter2-typed"], "$ALPHAPOINT_PASSWORD"),
        (["--api-secret", "hunter2-typed"], "$ALPHAPOINT_API_SECRET"),
        (["--secret", "hunter2-typed"], "$ALPHAPOINT_API_SECRET"),
        (["--totp-secret", "hunter2-typed"], "$ALPHAPOINT_TOTP_SECRET"),
        (["--code", "hunter2-typed"], "--two-factor-code-env VAR"),
        (["--token", "hunter2-typed"], "a session token is never given"),
    ],
)
async def test_secret_options_say_where_the_secret_goes(args: list[str], where: str) -> None:
    run = await alphapoint_cmd(
        "authenticate", "ws://127.0.0.1:9/", "--username", "alice", *args, "--json"
    )
    assert run.code == 2
    [line] = run.stderr.splitlines()
    option = args[0].split("=")[0]
    assert line.startswith(f"alphapoint authenticate: error: {option}: secrets are never")
    assert where in line
    assert "unrecognized" not in line
    assert json.loads(run.stdout)["status"] == "usage_error"
    assert_clean(run, ["hunter2-typed"])


async def test_version_is_the_package_version() -> None:
    run = await alphapoint_cmd("--version")
    assert run.code == 0
    assert run.stdout == f"alphapoint {alphapoint.__version__}\n"


async def test_check_concurrency_is_bounded(tmp_path: Path) -> None:
    """Four accounts, --concurrency 2, against a gateway that answers logins only in
    pairs: exactly two are in flight at a time (fewer would never be answered, more
    would show in the -v lines). Each check runs from "connecting" to "done"."""
    arrived = 0
    pairs = [anyio.Event(), anyio.Event()]

    async def script(connection: ScriptedConnection) -> None:
        nonlocal arrived
        request = await connection.receive_frame()
        assert request.function == "AuthenticateUser"
        arrived += 1
        pair = pairs[(arrived - 1) // 2]
        if arrived % 2 == 0:
            pair.set()
        await pair.wait()
        await connection.reply(request, {"Authenticated": False, "errormsg": "Not today"})
        await connection.wait_closed()

    async with serve_script(script) as server:
        text = f'url = "{server.url}"\n' + "".join(
            f'[[accounts]]\nname = "a{n}"\nusername = "a{n}"\npassword_env = "PW"\n'
            for n in range(4)
        )
        path = accounts_file(tmp_path / "a.toml", text)
        with anyio.fail_after(60):  # a guard against a hang, not a timing assertion
            run = await alphapoint_cmd(
                "check", str(path), "--concurrency", "2", "-v", "--json", env=clean_env(PW="pw-1")
            )
    assert run.code == 1, run.stderr
    assert {record["status"] for record in records(run.stdout).values()} == {"rejected"}
    in_flight, most = 0, 0
    for line in run.stderr.splitlines():
        if re.fullmatch(r"alphapoint check: \[a\d\] connecting to .*", line):
            in_flight += 1
            most = max(most, in_flight)
        elif re.fullmatch(r"alphapoint check: \[a\d\] done: rejected", line):
            in_flight -= 1
    assert (most, in_flight, arrived) == (2, 0, 4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["authenticate", "ws://127.0.0.1:9/"], "one of the arguments --username --api-key"),
        (["ping", "--timeout", "0"], "--timeout: must be a positive number"),
        (["check", "a.toml", "--concurrency", "0"], "--concurrency: must be at least 1"),
        (
            ["call", "ws://127.0.0.1:9/", "Ping", "--username", "a", "-x", "hunter2-typed"],
            "unrecognized arguments: -x",
        ),
    ],
)
async def test_argument_errors_print_a_record_with_json(args: list[str], message: str) -> None:
    run = await alphapoint_cmd(*args, "--json")
    assert run.code == 2
    assert run.stderr.startswith("usage: alphapoint ")
    assert message in run.stderr.splitlines()[-1]
    record = json.loads(run.stdout)
    assert record["status"] == "usage_error"
    assert message in record["message"]
    assert_clean(run, ["hunter2-typed"])

"""The example scripts, each run as ``python examples/NAME.py`` in a subprocess.

Against the fixture's gateway (credentials in the environment, as a user would
give them), and once each with no URL at all (the script's in-process demo gateway).
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import anyio
import attrs
import pytest
from anyio.streams.text import TextReceiveStream

from alphapoint.testing import Gateway, GatewayFixture

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TOKEN_LIKE = re.compile(r"\b[0-9a-f]{32}\b")


@pytest.fixture
def anyio_backend() -> str:
    # Every test here runs a Python subprocess, which behaves the same whichever
    # backend the test's loop (serving the fixture gateway) uses; running them
    # under trio as well would only double the suite's slowest tests.
    return "asyncio"


@attrs.frozen
class Run:
    code: int
    stdout: str
    stderr: str


async def run_example(name: str, *args: str, **variables: str) -> Run:
    """``python examples/NAME.py ARGS`` with no ALPHAPOINT_ variable but ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHAPOINT_")}
    env.update(variables)
    completed = await anyio.run_process(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args], input=b"", check=False, env=env
    )
    return Run(completed.returncode, completed.stdout.decode(), completed.stderr.decode())


def assert_clean(run: Run, secrets: list[str]) -> None:
    output = run.stdout + run.stderr
    for secret in secrets:
        assert secret not in output
    assert not TOKEN_LIKE.search(output)
    assert "Traceback" not in run.stderr


def api_key_env(fixture: GatewayFixture) -> dict[str, str]:
    key = fixture.accounts.api_key
    return {
        "ALPHAPOINT_API_KEY": key.api_key,
        "ALPHAPOINT_API_SECRET": key.api_secret,
        "ALPHAPOINT_USER_ID": key.user_id,
    }


def secrets_of(fixture: GatewayFixture) -> list[str]:
    accounts = fixture.accounts
    return [
        accounts.password.password,
        accounts.two_factor.password,
        accounts.locked.password,
        accounts.api_key.api_secret,
        accounts.two_factor_secret,
    ]


async def test_trading_bot(alphapoint_gateway: GatewayFixture) -> None:
    run = await run_example(
        "trading_bot",
        "--interval",
        "0",
        ALPHAPOINT_URL=alphapoint_gateway.url,
        ALPHAPOINT_ITERATIONS="2",
        **api_key_env(alphapoint_gateway),
    )
    assert run.code == 0, run.stderr
    assert run.stdout.splitlines() == [
        "Logged in as alice (user id 7) with an API key",
        "[1/2] Ping: PONG",
        "[1/2] GetUserInfo: alice, user id 7, account id 1007",
        "[2/2] Ping: PONG",
        "[2/2] GetUserInfo: alice, user id 7, account id 1007",
        "session: closed",
        "Done: 2 iteration(s).",
    ]
    # Leaving the block logged out.
    assert len(alphapoint_gateway.gateway.requests_for("LogOut")) == 1
    gateway = alphapoint_gateway.gateway
    assert "APIKey" in gateway.requests_for("AuthenticateUser")[0].payload
    assert len(gateway.requests_for("Ping")) == 2
    assert len(gateway.requests_for("GetUserInfo")) == 2
    assert_clean(run, secrets_of(alphapoint_gateway))


async def test_trading_bot_survives_a_gateway_restart(alphapoint_gateway: GatewayFixture) -> None:
    gateway, running = alphapoint_gateway.gateway, alphapoint_gateway.running
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHAPOINT_")}
    env.update(api_key_env(alphapoint_gateway), ALPHAPOINT_URL=alphapoint_gateway.url)
    command = [sys.executable, str(EXAMPLES / "trading_bot.py"), "--iterations", "30"]
    lines: list[str] = []
    async with await anyio.open_process(
        [*command, "--interval", "0.02"], env=env, stdin=subprocess.DEVNULL
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        output = TextReceiveStream(process.stdout)
        restarted = False
        pending = ""
        async for chunk in output:
            pending += chunk
            *complete, pending = pending.split("\n")
            lines += complete
            if not restarted and any(line.startswith("[3/30] GetUserInfo") for line in lines):
                # The gateway goes down and comes back on the same port mid-run.
                await running.stop()
                await running.start()
                restarted = True
        errors = b"".join([chunk async for chunk in process.stderr]).decode()
        code = await process.wait()
    assert code == 0, errors
    assert restarted
    assert lines[-1] == "Done: 30 iteration(s)."
    assert "session: reconnecting" in lines
    assert lines.index("session: authenticated") > lines.index("session: reconnecting")
    # The login was resumed with the session token: no second AuthenticateUser.
    assert len(gateway.requests_for("WebAuthenticateUser")) == 1
    assert len(gateway.requests_for("AuthenticateUser")) == 1
    # Every round but those interrupted by the restart completed, none was re-sent.
    interrupted = [line for line in lines if "interrupted, not re-sent" in line]
    completed = [line for line in lines if "] GetUserInfo: alice, user id 7" in line]
    assert len(completed) + len(interrupted) == 30
    assert len(gateway.requests_for("GetUserInfo")) == len(completed)
    assert_clean(Run(code, "\n".join(lines), errors), secrets_of(alphapoint_gateway))


async def test_trading_bot_without_credentials_exits_2(
    alphapoint_gateway: GatewayFixture,
) -> None:
    run = await run_example("trading_bot", alphapoint_gateway.url)
    assert run.code == 2
    assert "ALPHAPOINT_API_KEY" in run.stderr
    assert alphapoint_gateway.gateway.requests == []


async def test_account_check(alphapoint_gateway: GatewayFixture, tmp_path: Path) -> None:
    accounts = alphapoint_gateway.accounts
    names = tmp_path / "accounts.txt"
    names.write_text("# accounts to check\nbob\n\ncarol  # locked\n", encoding="utf-8")
    run = await run_example(
        "account_check",
        alphapoint_gateway.url,
        "alice",
        "mallory",
        "dave",
        "--file",
        str(names),
        ALPHAPOINT_PASSWORD_ALICE=accounts.password.password,
        ALPHAPOINT_PASSWORD_BOB=accounts.two_factor.password,
        ALPHAPOINT_PASSWORD_CAROL=accounts.locked.password,
        ALPHAPOINT_PASSWORD_MALLORY="not-her-password",
    )
    assert run.code == 1, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["ACCOUNT", "RESULT", "DETAIL"]
    rows = {line.split("  ")[0]: line for line in lines[1:-1]}
    assert rows.keys() == {"alice", "mallory", "dave", "bob", "carol"}
    assert re.fullmatch(r"alice +ok +user id 7, account id 1007", rows["alice"])
    assert re.fullmatch(r"mallory +rejected +Invalid username or password", rows["mallory"])
    assert re.fullmatch(r"dave +no password +set ALPHAPOINT_PASSWORD_DAVE", rows["dave"])
    assert re.fullmatch(r"bob +needs 2FA +two-factor type Google", rows["bob"])
    assert re.fullmatch(r"carol +locked +User is locked", rows["carol"])
    assert lines[-1] == "1 of 5 account(s) ok"
    gateway = alphapoint_gateway.gateway
    logins = gateway.requests_for("AuthenticateUser")
    assert sorted(request.payload["UserName"] for request in logins) == [
        "alice",
        "bob",
        "carol",
        "mallory",
    ]
    assert len({request.connection for request in logins}) == 4  # one connection each
    assert len(gateway.requests_for("LogOut")) == 1  # alice's session, once checked
    assert gateway.requests_for("Authenticate2FA") == []
    assert_clean(run, [*secrets_of(alphapoint_gateway), "not-her-password"])


async def test_account_check_all_ok_exits_0(alphapoint_gateway: GatewayFixture) -> None:
    run = await run_example(
        "account_check",
        "alice",
        ALPHAPOINT_URL=alphapoint_gateway.url,
        ALPHAPOINT_PASSWORD_ALICE=alphapoint_gateway.accounts.password.password,
    )
    assert run.code == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "1 of 1 account(s) ok"


async def publish_level1(gateway: Gateway, instruments: list[int]) -> None:
    """A market for the example's subscriptions: an update per instrument every 10 ms."""
    for tick in itertools.count():
        for instrument in instruments:
            update = {"OMSId": 1, "InstrumentId": instrument, "LastTradedPx": float(tick)}
            await gateway.publish("Level1UpdateEvent", update)
        await anyio.sleep(0.01)


async def test_market_data(alphapoint_gateway: GatewayFixture) -> None:
    async with anyio.create_task_group() as market:
        market.start_soon(publish_level1, alphapoint_gateway.gateway, [5, 9])
        run = await run_example(
            "market_data",
            alphapoint_gateway.url,
            "--instruments",
            "5,9",
            "--updates",
            "2",
            "--sessions",
            "3",
            "--pings",
            "2",
            **api_key_env(alphapoint_gateway),
        )
        market.cancel_scope.cancel()
    assert run.code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert re.fullmatch(r"instrument 5: 2 Level1 update\(s\), last price [\d.]+", lines[0])
    assert re.fullmatch(r"instrument 9: 2 Level1 update\(s\), last price [\d.]+", lines[1]) or (
        re.fullmatch(r"instrument 9: 2 Level1 update\(s\), last price [\d.]+", lines[0])
    )
    assert "market data: every update reached its own instrument's consumer" in lines[2]
    lines = lines[3:]
    for number in (1, 2, 3):
        assert re.fullmatch(
            rf"session {number}: alice \(user id 7\): 2/2 Ping\(s\) answered PONG "
            r"\(round trip [\d.]+ to [\d.]+ ms\)",
            lines[number - 1],
        )
    assert lines[3] == "3 of 3 session(s) succeeded"
    gateway = alphapoint_gateway.gateway
    logins = gateway.requests_for("AuthenticateUser")
    assert len({request.connection for request in logins}) == 4  # the watcher and 3
    assert len({request.payload["Nonce"] for request in logins}) == 4
    assert len(gateway.requests_for("Ping")) == 6
    assert_clean(run, secrets_of(alphapoint_gateway))


@pytest.mark.parametrize(
    ("name", "code", "expected"),
    [
        ("trading_bot", 0, ["[3/3] Ping: PONG", "Done: 3 iteration(s)."]),
        (
            "account_check",
            1,  # the demo checks a locked, a 2FA and an unknown account on purpose
            ["ok", "needs 2FA", "locked", "rejected", "1 of 4 account(s) ok"],
        ),
        (
            "market_data",
            0,
            [
                "instrument 1: 3 Level1 update(s)",
                "instrument 2: 3 Level1 update(s)",
                "every update reached its own instrument's consumer",
                "3/3 Ping(s) answered PONG",
                "3 of 3 session(s) succeeded",
            ],
        ),
    ],
)
async def test_examples_run_without_a_url(name: str, code: int, expected: list[str]) -> None:
    args = ["--interval", "0"] if name == "trading_bot" else []
    run = await run_example(name, *args)
    assert run.code == code, run.stderr
    assert run.stdout.startswith("No gateway URL given: ")
    assert "embedded demo gateway at ws://127.0.0.1:" in run.stdout.splitlines()[0]
    for text in expected:
        assert text in run.stdout
    assert_clean(run, [])

"""A user's project, outside this repository, type-checks against the installed package.

The test writes a small bot and its tests into a temporary directory and runs
``mypy --strict`` there with no configuration of ours, as a user would: the
package's ``py.typed`` and annotations must carry ``model=`` through to the
user's own class (through the sync client too), and a misspelt field must be
an error.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BOT = """
from __future__ import annotations

import attrs

import alphapoint


@attrs.frozen
class UserInfo:
    user_id: int
    user_name: str


async def run(url: str, credentials: alphapoint.PasswordCredentials) -> str:
    async with alphapoint.connect(url, credentials=credentials, wait_for_gateway=True) as session:
        async with alphapoint.stop_on_signals() as stop:
            info = await session.call("GetUserInfo", model=UserInfo)
            reveal_type(info)
            users = await session.call("GetUsers", model=list[UserInfo])
            reveal_type(users)
            untyped = await session.call("Ping")
            reveal_type(untyped)
            async with session.subscribe("SubscribeLevel2", {"InstrumentId": 1}) as book:
                for entry in book.snapshot_rows(alphapoint.Level2Entry):
                    reveal_type(entry.price)
                async for row in book.decoded(alphapoint.Trade):
                    reveal_type(row.taker_side)
                    break
        reveal_type(stop.signal)
        return info.user_name
"""

# An operations script on the sync client: each function returns a field of a
# typed reply or row, so a reply typed Any fails --strict ("Returning Any").
OPS = """
from __future__ import annotations

import attrs

import alphapoint
import alphapoint.sync


@attrs.frozen
class Account:
    user_name: str


def user_name(url: str, credentials: alphapoint.PasswordCredentials) -> str:
    with alphapoint.sync.connect(url, credentials=credentials, timeout=5) as session:
        return session.call("GetUserInfo", model=Account).user_name


def best_bid(session: alphapoint.sync.SyncSession) -> float:
    with session.subscribe("SubscribeLevel1", {"InstrumentId": 1}, timeout=5) as level1:
        return next(level1.decoded(alphapoint.Level1)).best_bid


def book_top(session: alphapoint.sync.SyncSession) -> float:
    with session.subscribe("SubscribeLevel2", {"InstrumentId": 1}) as book:
        return book.snapshot_rows(alphapoint.Level2Entry)[0].price
"""

# The user's tests, with the fixture (typed by GatewayFixture) and a route.
USER_TESTS = """
from __future__ import annotations

from typing import Any

import alphapoint
import alphapoint.sync
from alphapoint.testing import GatewayFixture, Refusal, RequestContext


def test_send_order(alphapoint_gateway: GatewayFixture) -> None:
    @alphapoint_gateway.gateway.route("SendOrder")
    def send_order(payload: Any, context: RequestContext) -> dict[str, Any]:
        if context.user is None:
            raise Refusal(20, "Not Authorized")
        return {"OrderId": 1}

    credentials = alphapoint_gateway.accounts.password
    with alphapoint.sync.connect(alphapoint_gateway.url, credentials=credentials) as session:
        reveal_type(session.call("SendOrder", {"Quantity": 1}))
    reveal_type(alphapoint_gateway.gateway.requests_for("SendOrder")[0].payload)
"""

MISTAKE = """
from __future__ import annotations

import attrs

import alphapoint


@attrs.frozen
class UserInfo:
    user_id: int


async def run(session: alphapoint.Session) -> int:
    info = await session.call("GetUserInfo", model=UserInfo)
    return info.nonexistent_field
"""


def mypy_strict(project: Path) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` on ``project`` with this interpreter's installed packages only."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file=",  # none of the repository's settings
            "--cache-dir",
            str(project / ".mypy_cache"),
            "--python-executable",
            sys.executable,
            str(project),
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.timeout(300)
def test_a_user_project_type_checks_and_sees_its_own_types(tmp_path: Path) -> None:
    project = tmp_path / "bot"
    project.mkdir()
    (project / "bot.py").write_text(textwrap.dedent(BOT))
    (project / "mistake.py").write_text(textwrap.dedent(MISTAKE))
    (project / "ops.py").write_text(textwrap.dedent(OPS))
    (project / "test_orders.py").write_text(textwrap.dedent(USER_TESTS))
    run = mypy_strict(project)
    # By file, in line order (mypy reports files in any order). Older mypy
    # versions spell builtins out ("builtins.float").
    revealed: dict[str, list[tuple[int, str]]] = {}
    for line in run.stdout.splitlines():
        if "Revealed type is" in line:
            file, number = line.split(":")[:2]
            shown = line.split("Revealed type is ", 1)[1].replace("builtins.", "")
            revealed.setdefault(file, []).append((int(number), shown))
    assert {file: [shown for _, shown in sorted(rows)] for file, rows in revealed.items()} == {
        "bot.py": [
            '"bot.UserInfo"',
            '"list[bot.UserInfo]"',
            '"Any"',
            '"float"',
            '"alphapoint.market_data.Side | None"',
            '"signal.Signals | None"',
        ],
        "test_orders.py": [
            '"Any"',  # the user's own function, untyped without model=
            '"Any"',  # the payload a request carried, as the gateway logged it
        ],
    }, run.stdout
    errors = [line for line in run.stdout.splitlines() if ": error:" in line]
    assert errors, run.stdout
    assert all(line.startswith("mistake.py:16:") for line in errors), run.stdout
    assert any('"UserInfo" has no attribute "nonexistent_field"' in line for line in errors)

"""The benchmarks keep working: ``benchmarks/run.py --smoke`` runs end to end.

``benchmarks/instructions.py`` needs valgrind and takes minutes, so only its
pure parts are tested here, and that it stops with a clear message without valgrind.

No timing is asserted: benchmarks are not tests. Packages of the ``bench``
extra that are not installed (as in CI, which installs ``.[dev]`` only) show
as "not installed" rows; everything else must run.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


@pytest.mark.timeout(120)
def test_smoke_run_prints_the_table(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": ""},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| benchmark | backend" in done.stdout
    for bench in ("decode", "calls", "pipelined", "logins", "sessions"):
        assert f"| {bench} " in done.stdout
    assert "error:" not in done.stdout
    assert (tmp_path / "performance.json").exists()


# -- benchmarks/instructions.py: its pure parts, and how it fails without valgrind ----------

INSTRUCTIONS = RUN.parent / "instructions.py"


def _load(path: Path) -> ModuleType:
    """A benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


CALLGRIND_STDERR = """\
==4321== Callgrind, a call-graph generating cache profiler
==4321== Command: python benchmarks/instructions.py --child calls asyncio floor
==4321==
==4321== Events    : Ir
==4321== Collected : 1085340827
==4321==
==4321== I   refs:      1,085,340,827
"""


def test_collected_reads_callgrinds_count() -> None:
    instructions = _load(INSTRUCTIONS)
    assert instructions.collected(CALLGRIND_STDERR) == 1_085_340_827
    with pytest.raises(ValueError, match="Collected"):
        instructions.collected("Traceback (most recent call last):\nConnectionRefusedError\n")


def test_per_op_is_the_difference_over_the_extra_operations() -> None:
    instructions = _load(INSTRUCTIONS)
    assert instructions.per_op(20, 1_103_484_485, 120, 1_379_391_573) == pytest.approx(2_759_070.88)
    with pytest.raises(ValueError, match="more"):
        instructions.per_op(120, 1, 120, 2)


def test_human_counts() -> None:
    instructions = _load(INSTRUCTIONS)
    assert instructions.human(2_015_123.0) == "2.015 M"
    assert instructions.human(51_249.0) == "51.2 k"
    assert instructions.human(950.0) == "950"


def test_instructions_plan_has_a_row_only_where_the_client_runs() -> None:
    instructions = _load(INSTRUCTIONS)
    rows = instructions.plan(
        ["calls", "pipelined", "logins"],
        ["asyncio", "trio"],
        ["floor", "picows-strict"],
        lambda client, backend: "ok",
    )
    # picows-strict has no pipelined run and, like picows, none under trio.
    assert [(r.bench, r.backend, r.client) for r in rows] == [
        ("calls", "asyncio", "floor"),
        ("calls", "asyncio", "picows-strict"),
        ("calls", "trio", "floor"),
        ("pipelined", "asyncio", "floor"),
        ("pipelined", "trio", "floor"),
        ("logins", "asyncio", "floor"),
        ("logins", "asyncio", "picows-strict"),
        ("logins", "trio", "floor"),
    ]
    assert "picows-strict" not in instructions.CLIENTS  # the default run stays as it was


@pytest.mark.parametrize(
    ("args", "path"),
    [(["--valgrind", "/nonexistent/valgrind"], None), ([], "empty")],
    ids=["--valgrind PATH that does not exist", "no valgrind on PATH"],
)
def test_instructions_without_valgrind_exits_2(
    tmp_path: Path, args: list[str], path: str | None
) -> None:
    env = {**os.environ, "PYTHONWARNINGS": ""}
    if path is not None:
        (tmp_path / path).mkdir()
        env["PATH"] = str(tmp_path / path)
    done = subprocess.run(
        [sys.executable, str(INSTRUCTIONS), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "valgrind not found" in done.stderr
    assert "Traceback" not in done.stderr

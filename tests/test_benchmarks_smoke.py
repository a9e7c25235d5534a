"""The benchmarks keep working: ``benchmarks/run.py --smoke`` runs end to end.

No timing is asserted: benchmarks are not tests. Packages of the ``bench``
extra that are not installed (as in CI, which installs ``.[dev]`` only) show
as "not installed" rows; everything else must run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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

"""The distributions as the package index would get them: built once per session
by the build backend (hatchling, as ``python -m build`` runs it) into a
temporary directory, then opened and read.

CI also runs ``python -m build`` and ``twine check`` (see ``.ci/run``); these
tests say what must be inside.
"""

from __future__ import annotations

import email.message
import email.parser
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import attrs
import pytest

import alphapoint

ROOT = Path(__file__).resolve().parent.parent

#: Builds one kind of distribution into the directory given, printing its file name.
BUILD = "import sys, hatchling.build as backend; print(getattr(backend, sys.argv[1])(sys.argv[2]))"


@attrs.frozen
class Distributions:
    wheel: Path
    sdist: Path


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Distributions:
    out = tmp_path_factory.mktemp("dist")
    built = {}
    for hook in ("build_wheel", "build_sdist"):
        done = subprocess.run(
            [sys.executable, "-c", BUILD, hook, str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=50,
        )
        assert done.returncode == 0, done.stderr
        built[hook] = out / done.stdout.strip().splitlines()[-1]
    return Distributions(wheel=built["build_wheel"], sdist=built["build_sdist"])


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode())


def source_version() -> str:
    """The version as written, once, in alphapoint/__init__.py (read, not imported)."""
    text = (ROOT / "alphapoint" / "__init__.py").read_text(encoding="utf-8")
    versions: list[str] = re.findall(r'^__version__ = "([^"]+)"$', text, flags=re.MULTILINE)
    [version] = versions
    return version


def test_wheel_has_the_licence_and_py_typed(dists: Distributions) -> None:
    with zipfile.ZipFile(dists.wheel) as archive:
        names = archive.namelist()
        info = f"alphapoint-{source_version()}.dist-info"
        assert f"{info}/licenses/LICENSE" in names
        licence = archive.read(f"{info}/licenses/LICENSE").decode()
        assert "alphapoint/py.typed" in names
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert licence == (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License\n\nCopyright (c) ")
    assert "alphapoint developers" in licence.splitlines()[2]
    assert "alphapoint = alphapoint.cli:main" in entry_points
    assert "alphapoint = alphapoint.testing.pytest_plugin" in entry_points
    # Only the package: no tests, docs or examples inside the wheel.
    assert {name.split("/")[0] for name in names} == {"alphapoint", info}


def test_wheel_metadata(dists: Distributions) -> None:
    metadata = wheel_metadata(dists.wheel)
    assert metadata["Name"] == "alphapoint"
    # One source for the version: the metadata, the package and the command agree.
    assert metadata["Version"] == source_version() == alphapoint.__version__
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Requires-Python"] == ">=3.10"
    assert metadata["Description-Content-Type"] == "text/markdown"
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    # A licence classifier beside a licence expression is refused by the index (PEP 639).
    assert not [c for c in classifiers if c.startswith("License ::")]
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert {"socks", "dev", "docs", "bench"} <= extras
    requires = metadata.get_all("Requires-Dist") or []
    assert "tomli>=1.1; python_version < '3.11'" in requires


def test_long_description_has_no_links_to_repository_files(dists: Distributions) -> None:
    """The README is the package index's page: a relative link there leads nowhere."""
    description = wheel_metadata(dists.wheel).get_payload()
    assert isinstance(description, str)
    assert "alphapoint check ACCOUNTS_FILE" in description
    targets = re.findall(r"\]\(([^)]+)\)", description)
    assert targets  # the README does link (to other sites, and within itself)
    relative = [t for t in targets if not t.startswith(("https://", "http://", "#"))]
    assert relative == []


def test_sdist_has_what_the_readme_names(dists: Distributions) -> None:
    version = source_version()
    with tarfile.open(dists.sdist) as archive:
        names = {name.removeprefix(f"alphapoint-{version}/") for name in archive.getnames()}
    for name in [
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "pyproject.toml",
        "mkdocs.yml",
        "alphapoint/py.typed",
        "docs/performance.md",
        "docs/reliability.md",
        "docs/protocol-captures.md",
        "examples/account_check.py",
        "examples/market_data.py",
        "examples/trading_bot.py",
        "tests/test_cli.py",
    ]:
        assert name in names, name
    assert not [name for name in names if name.startswith(("site/", "dist/"))]

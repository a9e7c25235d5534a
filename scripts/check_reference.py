"""Check that the API reference site documents every public name.

Run after ``mkdocs build`` (CI does): every name in the ``__all__`` of each
module the reference pages render must have an entry (an HTML anchor) on its
page. A name without a docstring is left out by mkdocstrings, so this fails
until it has one.

    python scripts/check_reference.py [SITE_DIR]
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

#: Module -> the page (under the site directory) that documents its ``__all__``.
PAGES = {
    "alphapoint": "reference/alphapoint/index.html",
    "alphapoint.sync": "reference/sync/index.html",
    "alphapoint.testing": "reference/testing/index.html",
    "alphapoint.checks": "reference/cli/index.html",
    "alphapoint.accounts_file": "reference/cli/index.html",
    "alphapoint.cli": "reference/cli/index.html",
}

#: Names documented in the page's prose rather than as an entry.
IN_PROSE = {"__version__"}


def missing(site: Path) -> list[str]:
    found: list[str] = []
    for module_name, page in PAGES.items():
        module = importlib.import_module(module_name)
        anchors = set(re.findall(r'id="([^"]+)"', (site / page).read_text(encoding="utf-8")))
        for name in module.__all__:
            if name in IN_PROSE:
                continue
            if not any(anchor == name or anchor.endswith("." + name) for anchor in anchors):
                found.append(f"{module_name}.{name} (on {page})")
    return found


def main() -> int:
    site = Path(sys.argv[1] if len(sys.argv) > 1 else "site")
    absent = missing(site)
    for name in absent:
        print(f"not in the API reference: {name}", file=sys.stderr)
    if not absent:
        print(f"the API reference documents every public name of {len(PAGES)} modules")
    return 1 if absent else 0


if __name__ == "__main__":
    sys.exit(main())

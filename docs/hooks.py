"""mkdocs hooks: the README (the guide) and the CHANGELOG are pages of the site.

They live at the top of the repository, where the package index and readers of
the source look for them; the site takes them as they are, so there is one copy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent

#: Site page -> the repository file it is made from.
PAGES = {"index.md": "README.md", "changelog.md": "CHANGELOG.md"}


#: The README names guides as `docs/NAME.md` (it has no links to files of the
#: repository, which would break on the package index); on the site they are pages.
GUIDE = re.compile(r"`docs/([\w-]+)\.md`")


def on_files(files: Files, config: Any) -> Files:
    for page, source in PAGES.items():
        text = (ROOT / source).read_text(encoding="utf-8")
        text = GUIDE.sub(r"[`docs/\1.md`](\1.md)", text)
        files.append(File.generated(config, page, content=text))
    return files

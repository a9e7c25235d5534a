"""Secrets out of anything that is logged or printed.

Frames are logged at DEBUG; a payload passes through :func:`redact` first, so
passwords, signatures, API secrets, session tokens and 2FA codes never reach a
log record. Keys are matched in any casing.

What the gateway sends back is another matter: a gateway may echo a password
in a close reason, an error message or a function name, under any key or
none. :class:`SecretSet` holds the secret values the client sent, and
:meth:`SecretSet.scrub` replaces each of them wherever it appears in a text
(an exception's message, a log line) before that text is shown.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable
from typing import Any

from .decoding import fold_key

__all__ = ["MAX_DEPTH", "NESTED", "REDACTED", "SECRET_KEYS", "SecretSet", "redact"]

REDACTED = "<redacted>"

#: What replaces a container nested deeper than :data:`MAX_DEPTH`.
NESTED = "<nested>"

#: How deep :func:`redact` copies containers.
MAX_DEPTH = 32

#: Folded keys (lowercase, no underscores) whose values are secrets.
SECRET_KEYS = frozenset(
    {
        "password",
        "signature",
        "apisecret",
        "secret",
        "sessiontoken",
        "twofatoken",
        "code",
        "pin",
        "tradepin",
    }
)

#: Folded keys whose values identify an account: shown in part.
_PARTIAL_KEYS = frozenset({"apikey"})


def redact(value: Any, *, _depth: int = 0) -> Any:
    """A copy of ``value`` with every secret replaced by ``"<redacted>"``.

    Containers nested deeper than :data:`MAX_DEPTH` are replaced by
    ``"<nested>"`` (whatever they hold, secrets included): a log line needs no
    more, and a gateway's deeply nested reply must not exhaust the stack of
    the task that logs it.
    """
    if isinstance(value, (dict, list, tuple)) and _depth >= MAX_DEPTH:
        return NESTED
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            folded = fold_key(key) if isinstance(key, str) else ""
            if folded in SECRET_KEYS and item is not None:
                out[key] = REDACTED
            elif folded in _PARTIAL_KEYS and isinstance(item, str):
                out[key] = item[:4] + "…" if len(item) > 8 else REDACTED
            else:
                out[key] = redact(item, _depth=_depth + 1)
        return out
    if isinstance(value, (list, tuple)):  # json.dumps sends a tuple as an array
        return [redact(item, _depth=_depth + 1) for item in value]
    return value


def _escapes_to_itself(value: str) -> bool:
    """Whether ``value`` reads the same inside a ``repr`` and a JSON string (most
    secrets: hex tokens, signatures, plain passwords), so only its raw form is sought."""
    return value.isascii() and value.isprintable() and not any(c in value for c in "\"'\\")


class SecretSet:
    """The secret values a client sent, to be scrubbed from text the gateway sent back.

    ``add(value)`` keeps a value for the set's life (a password, an API
    secret); ``add(value, recent=True)`` keeps it among the last
    :attr:`recent` such values (a signature, a session token, a 2FA code: a
    session makes new ones at every login, and the old ones are dead). Values
    shorter than :data:`MIN_LENGTH` characters are ignored: scrubbing them
    would blank out ordinary words and numbers and protect nothing. Each value
    is also scrubbed as it appears inside a quoted string (``repr`` and JSON
    escapes), as in a log line that shows a close reason or a frame.

    :meth:`scrub` costs one truthiness test when the set is empty; adding a
    value costs a set or deque insertion (the pattern is built when needed). The set
    never shows its values: its ``repr`` gives only how many it holds.
    """

    #: Values shorter than this are not kept.
    MIN_LENGTH = 4

    __slots__ = ("_kept", "_pattern", "_recent", "recent")

    def __init__(self, values: Iterable[str] = (), *, recent: int = 32) -> None:
        #: How many ``recent=True`` values are kept.
        self.recent = recent
        self._kept: set[str] = set()
        # (maxlen by position: deque parses a keyword argument at some 1.7 k instructions.)
        self._recent: deque[str] = deque(maxlen=recent)
        #: Every form of every value, longest first, as one pattern; None when empty.
        #: Every form of every value, longest first; None until needed after a change.
        self._pattern: list[str] | None = None
        for value in values:
            self.add(value)

    def add(self, value: str | None, *, recent: bool = False) -> None:
        """Scrub ``value`` from now on; ``None``, ``""`` and short values are ignored.

        Cheap: the pattern is built again only when :meth:`scrub` next needs it
        (a session adds a signature and a token at every login, and scrubs
        only when the gateway says something worth showing).
        """
        if not isinstance(value, str) or len(value) < self.MIN_LENGTH:
            return
        if recent:
            if value in self._recent or value in self._kept:
                return
            self._recent.append(value)  # the oldest goes, once there are ``recent``
        else:
            if value in self._kept:
                return
            if value in self._recent:
                self._recent = deque((v for v in self._recent if v != value), maxlen=self.recent)
            self._kept.add(value)
        self._pattern = None  # its forms are worked out again on the next scrub

    def _forms(self) -> list[str]:
        """Every form of every value, longest first (built again after an add)."""
        forms: set[str] = set()
        for secret in (*self._kept, *self._recent):
            forms.add(secret)
            if not _escapes_to_itself(secret):
                forms.add(repr(secret)[1:-1])  # as inside a repr()'d string
                forms.add(json.dumps(secret)[1:-1])  # as inside a JSON string
                forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
        # Longest first: a value that contains another is replaced whole.
        self._pattern = sorted(
            (f for f in forms if len(f) >= self.MIN_LENGTH), key=len, reverse=True
        )
        return self._pattern

    def scrub(self, text: str) -> str:
        """``text`` with every secret replaced by ``"<redacted>"``.

        Text without a secret, the usual case, costs a substring test per
        form; a pattern is compiled only for the forms the text holds. One
        pass: a value that happens to be part of ``"<redacted>"`` is not
        replaced again inside what was just put in.
        """
        if not (self._kept or self._recent):
            return text
        found = [form for form in (self._pattern or self._forms()) if form in text]
        if not found:
            return text
        return re.compile("|".join(map(re.escape, found))).sub(REDACTED, text)

    def __len__(self) -> int:
        return len(self._kept) + len(self._recent)

    def __bool__(self) -> bool:
        return bool(self._kept or self._recent)

    def __contains__(self, value: object) -> bool:
        return value in self._kept or value in self._recent

    def __repr__(self) -> str:
        return f"<SecretSet of {len(self)} value(s)>"

"""Secrets out of anything that is logged or printed.

Frames are logged at DEBUG; a payload passes through :func:`redact` first, so
passwords, signatures, API secrets, session tokens and 2FA codes never reach a
log record. Keys are matched in any casing.
"""

from __future__ import annotations

from typing import Any

from .decoding import fold_key

__all__ = ["MAX_DEPTH", "NESTED", "REDACTED", "SECRET_KEYS", "redact"]

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

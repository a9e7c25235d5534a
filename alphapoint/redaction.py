"""Secrets out of anything that is logged or printed.

Frames are logged at DEBUG; a payload passes through :func:`redact` first, so
passwords, signatures, API secrets, session tokens and 2FA codes never reach a
log record. Keys are matched in any casing.
"""

from __future__ import annotations

from typing import Any

from .decoding import fold_key

__all__ = ["REDACTED", "SECRET_KEYS", "redact"]

REDACTED = "<redacted>"

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


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret replaced by ``"<redacted>"``."""
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            folded = fold_key(key) if isinstance(key, str) else ""
            if folded in SECRET_KEYS and item is not None:
                out[key] = REDACTED
            elif folded in _PARTIAL_KEYS and isinstance(item, str):
                out[key] = item[:4] + "…" if len(item) > 8 else REDACTED
            else:
                out[key] = redact(item)
        return out
    if isinstance(value, (list, tuple)):  # json.dumps sends a tuple as an array
        return [redact(item) for item in value]
    return value

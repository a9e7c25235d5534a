"""Accounts for the embedded gateway from a JSON file (``alphapoint gateway --config FILE``).

The file holds known credentials, so a client under development can log in
with the same ones every run::

    {
      "users": [
        {"username": "alice", "password": "...", "user_id": 7},
        {"username": "bob", "password": "...", "user_id": 8, "totp_secret": "JBSWY3DPEHPK3PXP"},
        {"username": "carol", "password": "...", "user_id": 9, "locked": true}
      ],
      "api_keys": [{"api_key": "...", "api_secret": "...", "user_id": "7"}],
      "max_failed_attempts": 5,
      "casing": "pascal"
    }

Every problem raises :class:`GatewayConfigError`, whose message names the file
and the offending field but never a value (a value may be a secret).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from ..errors import AlphaPointError
from ..totp import Totp
from .gateway import Casing, Gateway, GatewayApiKey, GatewayUser

__all__ = ["GatewayConfigError", "load_gateway_config", "parse_gateway_config"]

T = TypeVar("T")

_TOP = frozenset({"users", "api_keys", "max_failed_attempts", "casing"})
_USER = frozenset({"username", "password", "user_id", "totp_secret", "locked"})
_API_KEY = frozenset({"api_key", "api_secret", "user_id"})


class GatewayConfigError(AlphaPointError, ValueError):
    """A gateway configuration file that cannot be used.

    ``source`` is the file, ``field`` the offending field (``users[1].user_id``)
    or empty when the problem is the file itself.
    """

    def __init__(self, source: str, problem: str, *, field: str = "") -> None:
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.field = field


def load_gateway_config(path: str | os.PathLike[str]) -> Gateway:
    """A :class:`Gateway` with the users and API keys the JSON file at ``path`` lists."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise GatewayConfigError(source, "no such file") from None
    except IsADirectoryError:
        raise GatewayConfigError(source, "is a directory, not a file") from None
    except UnicodeDecodeError:
        raise GatewayConfigError(source, "not UTF-8 text") from None
    except OSError as exc:
        raise GatewayConfigError(source, f"cannot be read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg describes the syntax error without quoting the document.
        problem = f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        raise GatewayConfigError(source, problem) from None
    return parse_gateway_config(data, source=source)


def parse_gateway_config(data: Any, *, source: str = "<config>") -> Gateway:
    """A :class:`Gateway` from an already-decoded configuration document."""
    reader = _Reader(source)
    top = reader.obj(data, "", _TOP)
    users = [
        reader.user(item, f"users[{index}]")
        for index, item in enumerate(reader.list(top, "users", required=True))
    ]
    seen_names: set[str] = set()
    seen_ids: set[int] = set()
    for index, user in enumerate(users):
        if user.username.lower() in seen_names:
            reader.fail(f"users[{index}].username", "duplicate user name")
        if user.user_id in seen_ids:
            reader.fail(f"users[{index}].user_id", "duplicate user id")
        seen_names.add(user.username.lower())
        seen_ids.add(user.user_id)
    api_keys = [
        reader.api_key(item, f"api_keys[{index}]", seen_ids)
        for index, item in enumerate(reader.list(top, "api_keys", required=False))
    ]
    if len({key.api_key for key in api_keys}) != len(api_keys):
        reader.fail("api_keys", "the same api_key is listed twice")
    max_failed = reader.field(top, "", "max_failed_attempts", _positive_int, default=5)
    casing = reader.field(top, "", "casing", _casing, default=Casing.PASCAL)
    return Gateway(users, api_keys, max_failed_attempts=max_failed, casing=casing)


class _Reader:
    """Checks one document, raising :class:`GatewayConfigError` with the field's path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, problem: str) -> NoReturn:
        raise GatewayConfigError(self.source, problem, field=field)

    def obj(self, value: Any, path: str, allowed: frozenset[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path or "top level", f"expected an object, got {_kind(value)}")
        unknown = sorted(key for key in value if key not in allowed)
        if unknown:
            field = f"{path}.{unknown[0]}" if path else unknown[0]
            self.fail(field, f"unknown field (expected one of: {', '.join(sorted(allowed))})")
        return value

    def list(self, top: dict[str, Any], name: str, *, required: bool) -> list[Any]:
        if name not in top:
            if required:
                self.fail(name, "missing")
            return []
        value = top[name]
        if not isinstance(value, list):
            self.fail(name, f"expected an array, got {_kind(value)}")
        return value

    def field(
        self,
        obj: dict[str, Any],
        path: str,
        name: str,
        check: Callable[[Any], T],
        *,
        default: T | None = None,
    ) -> T:
        field = f"{path}.{name}" if path else name
        if name not in obj or obj[name] is None:
            if default is None:
                self.fail(field, "missing")
            return default
        try:
            return check(obj[name])
        except (TypeError, ValueError) as exc:
            raise GatewayConfigError(self.source, str(exc), field=field) from None

    def user(self, value: Any, path: str) -> GatewayUser:
        obj = self.obj(value, path, _USER)
        totp_secret = self.field(obj, path, "totp_secret", _totp_secret, default="")
        return GatewayUser(
            self.field(obj, path, "username", _text),
            self.field(obj, path, "password", _text),
            user_id=self.field(obj, path, "user_id", _positive_int),
            totp_secret=totp_secret or None,
            locked=self.field(obj, path, "locked", _bool, default=False),
        )

    def api_key(self, value: Any, path: str, user_ids: set[int]) -> GatewayApiKey:
        obj = self.obj(value, path, _API_KEY)
        user_id = self.field(obj, path, "user_id", _user_id)
        if int(user_id) not in user_ids:
            self.fail(f"{path}.user_id", "no user in 'users' has this user id")
        return GatewayApiKey(
            self.field(obj, path, "api_key", _text),
            self.field(obj, path, "api_secret", _text),
            user_id=user_id,
        )


# Checks: each raises TypeError/ValueError with a message that names types, never values.


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_kind(value)}")
    if not value:
        raise ValueError("must not be empty")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {_kind(value)}")
    return value


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {_kind(value)}")
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _user_id(value: Any) -> str:
    """An API key's user id, kept as a string exactly as clients will sign it."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise TypeError(f"expected a string of digits or an integer, got {_kind(value)}")
    if not (value.isascii() and value.isdigit()):
        raise ValueError("must be a string of digits")
    return value


def _totp_secret(value: Any) -> str:
    secret = _text(value)
    try:
        Totp(secret)
    except ValueError:
        raise ValueError("not valid base32") from None
    return secret


def _casing(value: Any) -> Casing:
    choices = ", ".join(f'"{casing.value}"' for casing in Casing)
    if not isinstance(value, str):
        raise TypeError(f"expected one of {choices}, got {_kind(value)}")
    try:
        return Casing(value)
    except ValueError:
        raise ValueError(f"expected one of {choices}") from None

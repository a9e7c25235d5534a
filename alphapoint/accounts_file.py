"""The accounts file of ``alphapoint check``: which accounts to log in, and where their secrets are.

A TOML file. It names each secret's *source* (an environment variable, or a
command that prints it), never the secret itself, so it can be kept in version
control and shown in a review::

    url = "wss://api.example.com/WSGateway/"   # every account's, unless it names its own
    timeout = 10                              # seconds per step, unless an account says

    [[accounts]]
    name = "market-maker"
    api_key = "28c68ac3fcfafc3d4e8d653fe57e5baf"
    user_id = "96"
    api_secret_env = "MM_API_SECRET"

    [[accounts]]
    name = "treasury"
    username = "treasury@example.com"
    password_command = ["pass", "show", "exchange/treasury"]
    totp_secret_env = "TREASURY_TOTP_SECRET"   # 2FA, completed unattended

Every problem raises :class:`AccountsFileError`, whose message names the file
and the field (``accounts[1].password_env``), never a value.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

import attrs

from .errors import UsageError
from .session import DEFAULT_TIMEOUT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by CI on 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["AccountSpec", "AccountsFileError", "SecretSource", "load_accounts", "parse_accounts"]

_TOP = frozenset({"url", "timeout", "accounts"})
_ACCOUNT = frozenset(
    {
        "name",
        "url",
        "username",
        "api_key",
        "user_id",
        "password_env",
        "password_command",
        "api_secret_env",
        "api_secret_command",
        "totp_secret_env",
        "totp_secret_command",
        "timeout",
        "allow_insecure",
    }
)
#: Fields that would hold a secret itself: refused, with where the secret goes instead.
_SECRET_FIELDS = {
    "password": "password",
    "api_secret": "api_secret",
    "secret": "api_secret",
    "totp_secret": "totp_secret",
    "totp": "totp_secret",
    "code": "totp_secret",
}


class AccountsFileError(UsageError):
    """An accounts file that cannot be used: ``source`` is the file, ``field``
    the offending field (empty when the problem is the file itself).

    The message never quotes a value: a mistyped file may hold a secret.
    """

    def __init__(self, source: str, problem: str, *, field: str = "") -> None:
        super().__init__(f"{source}: {field}: {problem}" if field else f"{source}: {problem}")
        self.source = source
        self.field = field


@attrs.frozen
class SecretSource:
    """Where a secret is read: an environment variable (``env``) or the first
    line a command prints (``command``, run without a shell). Exactly one is set.

    ``what`` names the secret in messages (``password``, ``api_secret``...).
    """

    what: str
    env: str | None = None
    command: tuple[str, ...] | None = None

    def describe(self) -> str:
        """Where the secret comes from, for messages: ``$VAR`` or ``the command 'pass'``."""
        if self.env is not None:
            return f"${self.env}"
        assert self.command is not None
        return f"{self.what}_command ({self.command[0]})"


@attrs.frozen
class AccountSpec:
    """One account to check: whom to log in as, where, and where each secret is.

    ``username`` (with a password) or ``api_key`` and ``user_id`` (with an API
    secret); ``secret`` is the password's or the API secret's source;
    ``totp_secret``, when set, completes 2FA unattended. ``timeout`` bounds
    each step (reading a secret, connecting, each reply).
    """

    name: str
    url: str
    secret: SecretSource
    username: str | None = None
    api_key: str | None = None
    user_id: str | None = None
    totp_secret: SecretSource | None = None
    timeout: float = DEFAULT_TIMEOUT
    allow_insecure: bool = False


def load_accounts(
    path: str | os.PathLike[str],
    *,
    default_url: str | None = None,
    default_timeout: float = DEFAULT_TIMEOUT,
) -> list[AccountSpec]:
    """The accounts the TOML file at ``path`` lists, in order.

    An account's URL is its own ``url``, else the file's, else ``default_url``
    (the command line's ``ALPHAPOINT_URL``); its timeout likewise ends at
    ``default_timeout``.
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise AccountsFileError(source, "no such file") from None
    except IsADirectoryError:
        raise AccountsFileError(source, "is a directory, not a file") from None
    except OSError as exc:
        raise AccountsFileError(source, f"cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise AccountsFileError(source, "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        # Its message gives the position ("at line 3, column 9"), not the text.
        raise AccountsFileError(source, f"not valid TOML: {exc}") from None
    return parse_accounts(
        data, source=source, default_url=default_url, default_timeout=default_timeout
    )


def parse_accounts(
    data: Mapping[str, Any],
    *,
    source: str = "<accounts>",
    default_url: str | None = None,
    default_timeout: float = DEFAULT_TIMEOUT,
) -> list[AccountSpec]:
    """The accounts of an already-decoded accounts document (see :func:`load_accounts`)."""
    reader = _FieldReader(source)
    top = reader.table(data, "", _TOP)
    url = reader.optional(top, "", "url", _url) or default_url
    timeout = reader.optional(top, "", "timeout", _seconds) or default_timeout
    items = top.get("accounts")
    if items is None:
        reader.fail("accounts", "missing: list each account in an [[accounts]] table")
    if not isinstance(items, list) or not items:
        reader.fail("accounts", "expected one or more [[accounts]] tables")
    specs = [reader.account(item, f"accounts[{n}]", url, timeout) for n, item in enumerate(items)]
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        if spec.name in seen:
            reader.fail(f"accounts[{index}].name", "another account has this name")
        seen.add(spec.name)
    return specs


class _FieldReader:
    """Checks one document, raising :class:`AccountsFileError` with the field's path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, problem: str) -> NoReturn:
        raise AccountsFileError(self.source, problem, field=field)

    def table(self, value: Any, path: str, allowed: frozenset[str]) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            self.fail(path or "top level", f"expected a table, got {_kind(value)}")
        for key in value:
            field = f"{path}.{key}" if path else key
            if key in _SECRET_FIELDS:
                where = _SECRET_FIELDS[key]
                self.fail(
                    field,
                    "secrets are never written in the accounts file: name the environment "
                    f"variable that holds it ({where}_env) or a command that prints it "
                    f"({where}_command)",
                )
            if key not in allowed:
                self.fail(field, f"unknown field (expected one of: {', '.join(sorted(allowed))})")
        return value

    def optional(self, table: Mapping[str, Any], path: str, name: str, check: Any) -> Any:
        if name not in table:
            return None
        try:
            return check(table[name])
        except (TypeError, ValueError) as exc:
            self.fail(f"{path}.{name}" if path else name, str(exc))

    def required(self, table: Mapping[str, Any], path: str, name: str, check: Any) -> Any:
        if name not in table:
            self.fail(f"{path}.{name}", "missing")
        return self.optional(table, path, name, check)

    def source_of(
        self, table: Mapping[str, Any], path: str, what: str, *, required: bool
    ) -> SecretSource | None:
        env = self.optional(table, path, f"{what}_env", _variable)
        command = self.optional(table, path, f"{what}_command", _command)
        if env is not None and command is not None:
            self.fail(f"{path}.{what}_command", f"give {what}_env or {what}_command, not both")
        if env is None and command is None:
            if required:
                self.fail(f"{path}.{what}_env", f"missing: give {what}_env or {what}_command")
            return None
        return SecretSource(what, env=env, command=command)

    def account(self, value: Any, path: str, url: str | None, timeout: float) -> AccountSpec:
        table = self.table(value, path, _ACCOUNT)
        name = self.required(table, path, "name", _text)
        username = self.optional(table, path, "username", _text)
        api_key = self.optional(table, path, "api_key", _text)
        user_id = self.optional(table, path, "user_id", _user_id)
        if username is None and api_key is None:
            self.fail(f"{path}.username", "missing: give username (a password login) or api_key")
        if username is not None and api_key is not None:
            self.fail(f"{path}.api_key", "give username or api_key, not both")
        if api_key is not None and user_id is None:
            self.fail(f"{path}.user_id", "missing: an api_key needs the user_id it belongs to")
        if username is not None and user_id is not None:
            self.fail(f"{path}.user_id", "goes with api_key, not username")
        wrong = "api_secret" if username is not None else "password"
        for suffix in ("_env", "_command"):
            if wrong + suffix in table:
                self.fail(
                    f"{path}.{wrong}{suffix}",
                    "does not go with " + ("username" if username is not None else "api_key"),
                )
        secret = self.source_of(
            table, path, "password" if username is not None else "api_secret", required=True
        )
        assert secret is not None
        own_url = self.optional(table, path, "url", _url) or url
        if own_url is None:
            self.fail(f"{path}.url", "missing: give url here or at the top, or set ALPHAPOINT_URL")
        return AccountSpec(
            name=name,
            url=own_url,
            secret=secret,
            username=username,
            api_key=api_key,
            user_id=user_id,
            totp_secret=self.source_of(table, path, "totp_secret", required=False),
            timeout=self.optional(table, path, "timeout", _seconds) or timeout,
            allow_insecure=bool(self.optional(table, path, "allow_insecure", _bool)),
        )


# Checks: each raises TypeError/ValueError with a message that names kinds, never values.


#: What a TOML value is, in messages (bool before int: a bool is an int).
_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "a table"),
)


def _kind(value: Any) -> str:
    return next((name for kind, name in _KINDS if isinstance(value, kind)), "a date or time")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_kind(value)}")
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _url(value: Any) -> str:
    text = _text(value)
    if not text.startswith(("ws://", "wss://")):
        raise ValueError("expected a ws:// or wss:// URL")
    return text


def _variable(value: Any) -> str:
    text = _text(value)
    if "=" in text or "\0" in text:
        raise ValueError("expected the name of an environment variable")
    return text


_ARGV = "expected an array of strings (the command and its arguments)"


def _command(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise TypeError(f"{_ARGV}, got {_kind(value)}")
    if not all(isinstance(part, str) for part in value) or not value[0]:
        raise TypeError(_ARGV)
    return tuple(value)


def _user_id(value: Any) -> str:
    """Kept as a string, exactly as the signature will use it."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise TypeError(f"expected a string of digits or an integer, got {_kind(value)}")
    if not (value.isascii() and value.isdigit()):
        raise ValueError("must be a string of digits")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number of seconds, got {_kind(value)}")
    if not value > 0 or math.isinf(value):
        raise ValueError("must be a positive number of seconds")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {_kind(value)}")
    return value

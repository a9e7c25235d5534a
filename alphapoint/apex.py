"""The APEX rules, as pure functions: what a reply means, and how a login completes.

No I/O and no state: the session, the CLI and the tests all ask these the same
questions and get the same answers.

* A **standard response** (``result``, ``errormsg``, ``errorcode``,
  ``detail``) is read with one casing rule, the decoder's
  (:func:`alphapoint.decoding.fold_key`): ``errorcode``, ``ErrorCode`` and
  ``error_code`` are one key.
* ``result: false`` or an ``m=5`` frame is a :class:`RequestError`, the most
  specific subclass for its code; code 107 (Operation In Process) is not an
  error.
* Code 20 to a call made while logged in means the gateway ended the login:
  the call was not acted on, and may be sent again after a new login.
* A login is ``AuthenticateUser`` and, when the gateway asks for it,
  ``Authenticate2FA``; the two replies make one result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from .decoding import fold_key
from .errors import (
    AccountLocked,
    AuthenticationError,
    AuthenticationRejected,
    NotAuthorized,
    RequestError,
    TwoFactorRequired,
)
from .frame import Frame, MessageType
from .models import AuthenticateResult, AuthStatus
from .redaction import SecretSet

__all__ = [
    "OPERATION_IN_PROCESS",
    "check_reply",
    "check_reply_fields",
    "complete_two_factor",
    "error_code",
    "login_error",
    "refused_as_not_logged_in",
    "second_factor_error",
    "standard_field",
]

#: "Operation In Process": a refusal that is not an error (the request goes on).
OPERATION_IN_PROCESS: Final = 107

#: What a refused second factor says when the gateway says nothing.
CODE_NOT_ACCEPTED: Final = "The two-factor code was not accepted."

_MISSING: Any = object()


#: The standard-response fields, and how gateways capitalise them.
_CAPITALISED = {name: name.capitalize() for name in ("result", "errormsg", "errorcode", "detail")}


def standard_field(payload: Mapping[Any, Any], name: str) -> Any:
    """A standard-response field in any casing (``name`` folded: ``"errorcode"``), or None.

    The lowercase and capitalised spellings are looked up directly (what
    gateways send); any other casing is found by folding each key (on every
    reply that is not a standard response: so cheaply, by length first).
    """
    value = payload.get(name, _MISSING)
    if value is _MISSING:
        value = payload.get(_CAPITALISED.get(name) or name.capitalize(), _MISSING)
        if value is _MISSING:
            if _in_no_key(name, payload):
                return None
            size = len(name)
            for key, value in payload.items():
                if type(key) is str and (
                    (len(key) == size and key.lower() == name)
                    or ("_" in key and fold_key(key) == name)
                ):
                    return value
            return None
    return value


def _in_no_key(name: str, payload: Mapping[Any, Any]) -> bool:
    """Whether no key of ``payload`` can fold to ``name`` (a folded name: no
    underscore), told in C: ``name`` is not even in all its string keys
    folded together. Then the scan of each key is not needed (the login
    reply's ``result``: about 250 bytecodes).

    Sound: a key that folds to ``name`` (ASCII) folds to the same text
    inside the keys joined, as only a capital sigma lowers by its
    neighbours, and no such key holds one. False (scan) when a key is not
    a string.
    """
    if "_" in name:  # not folded: only the scan says
        return False
    try:
        keys = "".join(payload)
    except TypeError:
        return False
    return name not in fold_key(keys)


def error_code(payload: Mapping[Any, Any]) -> int | None:
    """The ``errorcode`` of a standard response, if it is an integer."""
    code = standard_field(payload, "errorcode")
    return code if type(code) is int else None


def check_reply(frame: Frame, secrets: SecretSet | None = None) -> Any:
    """The payload of a reply frame, or raise the :class:`RequestError` it stands for.

    The gateway's words in the error (``errormsg``, ``detail``, an ``m=5``
    text) are scrubbed of ``secrets``: a gateway may echo what it was sent.
    """
    return check_reply_fields(frame.type, frame.function, frame.payload, secrets)


def check_reply_fields(
    message_type: MessageType, function: str, payload: Any, secrets: SecretSet | None = None
) -> Any:
    """:func:`check_reply` of the reply frame of these fields, without making the frame."""
    if message_type is _ERROR:
        if isinstance(payload, dict):
            raise _refusal(function, payload, "error frame", secrets)
        text = payload if isinstance(payload, str) else "error frame"
        raise RequestError.for_code(function, _scrubbed(text, secrets), code=None)
    if (
        payload  # an empty reply (Ping's {}) says nothing more: no lookups
        and isinstance(payload, dict)
        # No value equal to false, no result: false (one scan in C, where
        # standard_field() would try each casing of "result").
        and False in payload.values()
        and standard_field(payload, "result") is False
        and error_code(payload) != OPERATION_IN_PROCESS
    ):
        raise _refusal(function, payload, "", secrets)
    return payload


#: Read on every reply: a module global costs less than the enum's attribute.
_ERROR = MessageType.ERROR


def _refusal(
    function: str, payload: Mapping[Any, Any], default: str, secrets: SecretSet | None
) -> RequestError:
    message = standard_field(payload, "errormsg")
    return RequestError.for_code(
        function,
        _scrubbed(message if isinstance(message, str) else default, secrets),
        code=error_code(payload),
        detail=_scrubbed(standard_field(payload, "detail"), secrets),
    )


def _scrubbed(value: Any, secrets: SecretSet | None) -> Any:
    """``value`` (a string, or JSON made of strings) without ``secrets``."""
    if not secrets:
        return value
    if isinstance(value, str):
        return secrets.scrub(value)
    if isinstance(value, dict):
        return {key: _scrubbed(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrubbed(item, secrets) for item in value]
    return value


def refused_as_not_logged_in(frame: Frame) -> bool:
    """Whether ``frame`` refuses its call with code 20 (Not Authorized).

    To a call sent while logged in, that means the gateway ended the login
    without saying so (no LogoutEvent): the call was not acted on.
    """
    payload = frame.payload
    return (
        isinstance(payload, dict)
        and standard_field(payload, "result") is False
        and error_code(payload) == NotAuthorized.error_code
    )


def login_error(result: AuthenticateResult, *, can_answer_2fa: bool) -> AuthenticationError | None:
    """What the AuthenticateUser reply ``result`` means for a login.

    ``None`` when the login is done, or when the gateway asks for a second
    factor and one can be given; otherwise the error to raise.
    """
    status = result.status
    if status is AuthStatus.AUTHENTICATED:
        return None
    if status is AuthStatus.LOCKED:
        return AccountLocked(result)
    if status is AuthStatus.REJECTED:
        return AuthenticationRejected(result)
    return None if can_answer_2fa else TwoFactorRequired(result)


def second_factor_error(second: AuthenticateResult) -> AuthenticationError | None:
    """What the Authenticate2FA reply ``second`` means: ``None`` if logged in."""
    if second.status is AuthStatus.AUTHENTICATED:
        return None
    if second.status is AuthStatus.LOCKED:
        return AccountLocked(second)
    return TwoFactorRequired(second, message=CODE_NOT_ACCEPTED)


def complete_two_factor(
    first: AuthenticateResult, second: AuthenticateResult
) -> AuthenticateResult:
    """One result for a login made of AuthenticateUser (``first``) and Authenticate2FA.

    The first reply names the user; the second says whether the code was
    accepted, and may carry the session token.
    """
    status = second.status
    if status is AuthStatus.AUTHENTICATED:
        return attrs.evolve(
            first,
            authenticated=True,
            requires_2fa=False,
            session_token=second.session_token or first.session_token,
            user_id=second.user_id,
            errormsg=None,
        )
    if status is AuthStatus.LOCKED:
        return attrs.evolve(first, locked=True, errormsg=second.errormsg)
    return attrs.evolve(first, errormsg=second.errormsg or CODE_NOT_ACCEPTED)

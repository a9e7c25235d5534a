"""The APEX rules (alphapoint.apex): pure functions, tested without a socket."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import alphapoint
from alphapoint.apex import (
    OPERATION_IN_PROCESS,
    check_reply,
    check_reply_fields,
    complete_two_factor,
    error_code,
    login_error,
    refused_as_not_logged_in,
    second_factor_error,
    standard_field,
)
from alphapoint.decoding import fold_key
from alphapoint.frame import Frame, MessageType
from alphapoint.models import AuthenticateResult, AuthStatus, User
from alphapoint.testing.strategies import spelled


def reply(payload: Any, *, type: MessageType = MessageType.REPLY) -> Frame:
    return Frame(type, 2, "SendOrder", payload)


@settings(max_examples=200, deadline=None)
@given(st.data(), st.sampled_from(["result", "errormsg", "errorcode", "detail"]))
def test_a_standard_field_is_read_in_every_casing_the_decoder_reads(
    data: st.DataObject, name: str
) -> None:
    key = data.draw(spelled(name))
    assert fold_key(key) == name  # the decoder's rule says it is the same key
    assert standard_field({"Other": 1, key: "found"}, name) == "found"


def _scanned(payload: dict[Any, Any], name: str) -> Any:
    """What standard_field() finds by looking at every key: the rule, spelled out."""
    for spelling in (name, name.capitalize()):
        if spelling in payload:
            return payload[spelling]
    for key, value in payload.items():
        if type(key) is str and (
            (len(key) == len(name) and key.lower() == name)
            or ("_" in key and key.replace("_", "").lower() == name)
        ):
            return value
    return None


#: Letters of the names, cased both ways, and those whose lowercase depends on
#: their neighbours (capital sigma) or is longer than they are (dotted capital I).
_KEY_LETTERS = "resultRESULTerrormsgERRORMSGcodeCODEdetailDETAIL_ \u03a3\u0130\u212a1"


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["result", "errormsg", "errorcode", "detail", "error_code", "Result"]),
    st.lists(
        st.tuples(st.text(_KEY_LETTERS, max_size=12) | st.integers(), st.integers()),
        max_size=8,
    ),
)
def test_a_standard_field_is_what_a_look_at_every_key_finds(
    name: str, items: list[tuple[Any, int]]
) -> None:
    """The look in C at all the keys at once (which spares the scan of each key
    when ``name`` cannot be there) finds what the scan finds, whatever the keys:
    split across neighbours, cased by them, not strings."""
    payload = dict(items)
    assert standard_field(payload, name) == _scanned(payload, name)


@pytest.mark.parametrize(
    "payload",
    [
        {"res": 1, "ult": 2},  # "result" only across two keys: none
        {"re_s": 1, "Ult": 2},
        {"RE\u03a3ULT": 1, "Result_x": 2},
        {1: "not a string", "re_sult": 3},  # a key that is not a string: scanned
        {"\u0130": 1, "RESULT_": 4},
    ],
)
def test_a_standard_field_across_keys_or_beside_other_keys(payload: dict[Any, Any]) -> None:
    assert standard_field(payload, "result") == _scanned(payload, "result")


@pytest.mark.parametrize("key", ["errorcode", "Errorcode", "ErrorCode", "ERRORCODE", "error_code"])
def test_every_casing_of_errorcode_gives_the_code(key: str) -> None:
    payload = {"result": False, "errormsg": "Not Authorized", key: 20}
    with pytest.raises(alphapoint.NotAuthorized) as info:
        check_reply(reply(payload))
    assert info.value.code == 20
    assert error_code(payload) == 20
    assert refused_as_not_logged_in(reply(payload))


def test_a_reply_that_is_not_a_standard_response_is_returned_as_it_is() -> None:
    for payload in [{"msg": "PONG"}, [], [[1, 2]], {"results": False}, "text", None]:
        assert check_reply(reply(payload)) is payload
        assert not refused_as_not_logged_in(reply(payload))


@pytest.mark.parametrize(
    ("payload", "refused"),
    [
        ({}, False),
        ({"msg": "PONG"}, False),
        ({"count": 0, "open": False}, False),  # values equal to false, no result: false
        ({"result": 0, "errorcode": 20}, False),  # 0 is not false
        ({"Result": False, "ErrorCode": 20, "ErrorMsg": "Not Authorized"}, True),
        ({"RESULT": False, "error_code": 100, "detail": None}, True),
        ({"result": False, "errorcode": 107}, False),  # Operation In Process
        ([False], False),
        (None, False),
    ],
)
@pytest.mark.parametrize("kind", [MessageType.REPLY, MessageType.ERROR])
def test_check_reply_fields_reads_a_reply_as_check_reply_reads_its_frame(
    payload: Any, refused: bool, kind: MessageType
) -> None:
    def outcome(check: Any) -> Any:
        try:
            return ("returned", check())
        except alphapoint.RequestError as exc:
            return ("raised", type(exc), str(exc), exc.code)

    by_frame = outcome(lambda: check_reply(reply(payload, type=kind)))
    by_fields = outcome(lambda: check_reply_fields(kind, "SendOrder", payload))
    assert by_fields == by_frame
    if kind is MessageType.ERROR or refused:
        assert by_fields[0] == "raised"
    else:
        assert by_fields == ("returned", payload)


def test_operation_in_process_is_not_an_error() -> None:
    payload = {"result": False, "errormsg": "Operation In Process", "errorcode": 107}
    assert OPERATION_IN_PROCESS == 107
    assert check_reply(reply(payload)) is payload


def test_error_frames_become_request_errors() -> None:
    with pytest.raises(alphapoint.RequestError, match="Endpoint Not Found") as info:
        check_reply(reply("Endpoint Not Found", type=MessageType.ERROR))
    assert info.value.code is None
    with pytest.raises(alphapoint.ResourceNotFound) as found:
        check_reply(
            reply({"ErrorMsg": "no such", "ErrorCode": 104, "Detail": "x"}, type=MessageType.ERROR)
        )
    assert (found.value.message, found.value.detail) == ("no such", "x")
    # An m=5 with code 20 is an error, but not "logged out": only result: false is.
    assert not refused_as_not_logged_in(
        reply({"errormsg": "Not Authorized", "errorcode": 20}, type=MessageType.ERROR)
    )


ALICE = User(user_id=7, user_name="alice")
FIRST = AuthenticateResult(
    authenticated=True, requires_2fa=True, two_fa_type="Google", user=ALICE, session_token="t1"
)


def test_login_error_says_what_a_first_reply_means() -> None:
    assert login_error(AuthenticateResult(authenticated=True), can_answer_2fa=False) is None
    assert login_error(FIRST, can_answer_2fa=True) is None
    assert isinstance(login_error(FIRST, can_answer_2fa=False), alphapoint.TwoFactorRequired)
    assert isinstance(
        login_error(AuthenticateResult(locked=True), can_answer_2fa=True), alphapoint.AccountLocked
    )
    assert isinstance(
        login_error(AuthenticateResult(), can_answer_2fa=True), alphapoint.AuthenticationRejected
    )


def test_a_login_with_its_second_factor_is_one_result() -> None:
    second = AuthenticateResult(authenticated=True, session_token="t2", user_id=7)
    merged = complete_two_factor(FIRST, second)
    assert merged.status is AuthStatus.AUTHENTICATED
    assert (merged.user, merged.session_token, merged.user_id) == (ALICE, "t2", 7)
    assert second_factor_error(second) is None

    refused = AuthenticateResult(authenticated=False, errormsg=None)
    merged = complete_two_factor(FIRST, refused)
    assert merged.status is AuthStatus.TWO_FACTOR_REQUIRED
    assert merged.errormsg == "The two-factor code was not accepted."
    error = second_factor_error(refused)
    assert isinstance(error, alphapoint.TwoFactorRequired)
    assert str(error) == "The two-factor code was not accepted."

    locked = AuthenticateResult(locked=True, errormsg="User is locked")
    assert complete_two_factor(FIRST, locked).status is AuthStatus.LOCKED
    assert isinstance(second_factor_error(locked), alphapoint.AccountLocked)

"""The connection makes each Event through its slots, not its __init__: the
same frozen attrs object as ``Event(function, payload, seq)``."""

from __future__ import annotations

import attrs
import pytest

from alphapoint import connection
from alphapoint.models import Event


def made_by_the_connection(function: str, payload: object, seq: int) -> Event:
    event = connection._new(Event)
    connection._set_function(event, function)
    connection._set_payload(event, payload)
    connection._set_seq(event, seq)
    return event


@pytest.mark.parametrize(
    ("function", "payload", "seq"),
    [("Level1UpdateEvent", {"InstrumentId": 1, "BestBid": 1.5}, 7), ("X", [[1, 2]], -(2**63))],
)
def test_an_event_made_through_its_slots_is_the_event_its_init_makes(
    function: str, payload: object, seq: int
) -> None:
    made, called = made_by_the_connection(function, payload, seq), Event(function, payload, seq)
    assert type(made) is Event
    assert made == called
    assert attrs.asdict(made) == attrs.asdict(called)
    assert repr(made) == repr(called)
    assert made.function == function
    assert made.payload is payload
    assert made.seq == seq
    assert attrs.evolve(made, seq=1) == Event(function, payload, 1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.seq = 3  # type: ignore[misc]


def test_the_event_class_is_one_its_slots_build() -> None:
    # Fields in the order the connection stores them, nothing run by __init__.
    assert [f.name for f in attrs.fields(Event)] == ["function", "payload", "seq"]
    assert connection._EVENT_SLOTS is not None

"""The connection makes each Event through its slots, not its __init__
(``connection._EVENT_SLOTS``): what a consumer receives is the same frozen
attrs object as ``Event(function, payload, seq)``."""

from __future__ import annotations

import anyio
import attrs
import pytest

import alphapoint
from alphapoint.models import Event
from alphapoint.testing import GatewayFixture

from .helpers import LIMIT

pytestmark = pytest.mark.anyio


async def test_a_received_event_is_the_event_its_init_makes(
    alphapoint_gateway: GatewayFixture,
) -> None:
    gateway = alphapoint_gateway.gateway
    payload = {"OMSId": 1, "InstrumentId": 1, "BestBid": 1.5, "LastTradeTime": 2**62}
    async with (
        alphapoint.connect(
            alphapoint_gateway.url, credentials=alphapoint_gateway.accounts.password
        ) as session,
        session.subscribe("SubscribeLevel1", {"OMSId": 1, "InstrumentId": 1}) as level1,
    ):
        with anyio.fail_after(LIMIT):
            await gateway.publish("Level1UpdateEvent", payload)
            received = await level1.__anext__()
    called = Event("Level1UpdateEvent", payload, received.seq)
    assert type(received) is Event
    assert received == called
    assert repr(received) == repr(called)
    assert attrs.asdict(received) == attrs.asdict(called)
    assert received.function == "Level1UpdateEvent"
    assert received.payload == payload
    assert type(received.seq) is int
    assert attrs.evolve(received, seq=1) == Event("Level1UpdateEvent", payload, 1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        received.seq = 3  # type: ignore[misc]


def test_the_event_class_is_one_its_slots_build() -> None:
    # The fields in the order the connection stores them; nothing run by __init__.
    assert [f.name for f in attrs.fields(Event)] == ["function", "payload", "seq"]
    assert not any(f.validator or f.converter for f in attrs.fields(Event))
    assert not hasattr(Event, "__attrs_post_init__")

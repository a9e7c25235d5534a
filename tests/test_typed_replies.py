"""Typed replies: ``call(..., model=T)`` and market-data rows read into models.

The converter is the login reply's: any key casing, strict primitive types,
defaults for missing keys and nulls, and a :class:`DecodeError` that names the
field (never the value). Array-shaped market data is read by position.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

import alphapoint
from alphapoint import (
    DecodeError,
    Level1,
    Level2Action,
    Level2Entry,
    Side,
    TickDirection,
    TickerBar,
    Trade,
    decode,
    decode_rows,
)
from alphapoint.testing import Gateway, demo_gateway
from alphapoint.testing.accounts import DemoAccounts

from .helpers import LIMIT

CAPTURES = Path(__file__).parent / "captures"


@attrs.frozen
class UserInfo:
    user_id: int
    user_name: str
    email: str = ""
    locked: bool = False
    number_of_failed_attempt: int = 0


@dataclasses.dataclass(frozen=True)
class UserInfoData:
    user_id: int
    user_name: str


@asynccontextmanager
async def logged_in() -> AsyncIterator[tuple[Gateway, alphapoint.Session, DemoAccounts]]:
    gateway, accounts = demo_gateway()
    async with (
        gateway.serve() as running,
        alphapoint.connect(running.url, credentials=accounts.password) as session,
    ):
        yield gateway, session, accounts


@pytest.mark.anyio
@pytest.mark.parametrize("model", [UserInfo, UserInfoData])
async def test_call_with_a_model_returns_an_instance_of_it(model: Any) -> None:
    """The gateway sends ``UserId``/``UserName``; attrs classes and dataclasses alike."""
    with anyio.fail_after(LIMIT):
        async with logged_in() as (_, session, _accounts):
            info = await session.call("GetUserInfo", model=model)
            raw = await session.call("GetUserInfo")
    assert type(info) is model
    assert (info.user_id, info.user_name) == (7, "alice")
    assert raw["UserName"] == "alice"


@pytest.mark.anyio
async def test_a_reply_that_does_not_fit_the_model_names_the_field() -> None:
    @attrs.frozen
    class Wrong:
        user_name: int  # the gateway sends a string

    @attrs.frozen
    class Missing:
        no_such_field: str  # and no default

    with anyio.fail_after(LIMIT):
        async with logged_in() as (_, session, _accounts):
            with pytest.raises(DecodeError) as wrong:
                await session.call("GetUserInfo", model=Wrong)
            with pytest.raises(DecodeError) as missing:
                await session.call("GetUserInfo", model=Missing)
            # The session is unharmed: decoding is the caller's, not the connection's.
            assert (await session.call("GetUserInfo", model=UserInfo)).user_id == 7
    assert wrong.value.path == "user_name"
    assert (
        str(wrong.value)
        == "GetUserInfo reply: field 'user_name': expected an integer, got a string"
    )
    assert missing.value.path == "no_such_field"
    assert "alice" not in str(wrong.value)


@pytest.mark.anyio
async def test_a_subscription_yields_decoded_rows_and_its_snapshot() -> None:
    level2 = [
        [10, 1, 1700000000000, 0, 99.5, 1, 100.25, 7, 0.5, 0],
        [11, 2, 1700000000001, 2, 99.5, 0, 101.0, 7, 0, 1],
    ]
    with anyio.fail_after(LIMIT):
        async with (
            logged_in() as (gateway, session, _accounts),
            session.subscribe("SubscribeLevel2", {"OMSId": 1, "InstrumentId": 7}) as book,
            session.subscribe("SubscribeLevel1", {"OMSId": 1, "InstrumentId": 7}) as top,
        ):
            assert book.snapshot_rows(Level2Entry) == []  # the embedded gateway's empty book
            assert top.snapshot_rows(Level1)[0].instrument_id == 7
            await gateway.publish("Level2UpdateEvent", level2)
            await gateway.publish(
                "Level1UpdateEvent",
                {"OMSId": 1, "InstrumentId": 7, "BestBid": 99, "TimeStamp": "5"},
            )
            rows = book.decoded(Level2Entry)
            first, second = await rows.__anext__(), await rows.__anext__()
            quote = await top.decoded(Level1).__anext__()
    assert first == Level2Entry(
        md_update_id=10,
        accounts=1,
        action_date_time=1700000000000,
        action_type=Level2Action.NEW,
        last_trade_price=99.5,
        orders=1,
        price=100.25,
        instrument_id=7,
        quantity=0.5,
        side=Side.BUY,
    )
    assert (second.action_type, second.side, second.quantity) == (Level2Action.DELETE, Side.SELL, 0)
    assert (quote.best_bid, quote.timestamp) == (99.0, 5)
    assert type(quote.best_bid) is float


def capture_payload(name: str, function: str) -> Any:
    """The payload of the gateway's first ``function`` frame in ``tests/captures/name``."""
    frames = json.loads((CAPTURES / name).read_text())["frames"]
    return next(f["o"] for f in frames if f["direction"] == "gateway" and f["n"] == function)


def test_captured_level2_trades_and_ticker_rows_decode_by_position() -> None:
    """Values as the captures' sources show them (docs/protocol-captures.md)."""
    book = decode_rows(
        Level2Entry, capture_payload("bitazza-level2-snapshot.json", "SubscribeLevel2")
    )
    assert [(e.price, e.quantity, e.side) for e in book] == [
        (86680.79, 1.10678, Side.BUY),
        (86680.78, 0.00054, Side.BUY),
        (86698.14, 3.83789, Side.SELL),
        (86698.15, 0.0003, Side.SELL),
    ]
    assert {e.instrument_id for e in book} == {7}
    trades = decode_rows(Trade, capture_payload("bitazza-trades-subscribe.json", "SubscribeTrades"))
    assert trades[0] == Trade(
        trade_id=1677912,
        instrument_id=7,
        quantity=0.002,
        price=86722.65,
        order1=4613916155527,
        order2=1216698119,
        trade_time=1790133812302,
        direction=TickDirection.UP_TICK,
        taker_side=Side.SELL,
        block_trade=0,
        client_order_id=0,
    )
    assert trades[1].block_trade == 1
    (bar,) = decode_rows(
        TickerBar, capture_payload("ndax-ticker-subscribe-ccxt.json", "SubscribeTicker")
    )
    assert (bar.instrument_id, bar.open, bar.close) == (8, 23075.76, 23075.39)
    assert bar.end_date_time - bar.begin_date_time == 60000


def test_captured_level1_reads_live_key_names_and_string_timestamps() -> None:
    (quote,) = decode_rows(
        Level1, capture_payload("foxbit-level1-subscribe.json", "SubscribeLevel1")
    )
    assert quote.rolling_24hr_num_trades == 688  # sent as Rolling24NumTrades
    assert quote.timestamp == 1551360481517  # sent as the string "1551360481517"
    assert quote.best_offer == 14599.0


ONE_OF, NOT_ONE = "expected one of 0, 1, 2, got", "that is not one of them"
NOT_FINITE = "expected a number, got a string that is not a finite number"


@pytest.mark.parametrize(
    ("payload", "path", "reason"),
    [
        (
            [[1, 2, 3, 9]],
            "[0].action_type",
            f"{ONE_OF} a number {NOT_ONE}",
        ),
        (
            [[1, 2, 3, True]],
            "[0].action_type",
            f"{ONE_OF} a boolean {NOT_ONE}",
        ),
        (
            [[1, 2, 3, 0, "x"]],
            "[0].last_trade_price",
            NOT_FINITE,
        ),
        (
            [[1, 2, 3, 0, "nan"]],
            "[0].last_trade_price",
            NOT_FINITE,
        ),
        (
            [[1, 2, 3, 0, 1.5], [1, 2, "later", 0]],
            "[1].action_date_time",
            "expected an integer, got a string",
        ),
        ([[1, 2, 3, 0, []]], "[0].last_trade_price", "expected a number, got an array"),
    ],
)
def test_a_bad_row_is_a_decode_error_naming_the_row_and_field(
    payload: Any, path: str, reason: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_rows(Level2Entry, payload, what="Level2UpdateEvent")
    assert caught.value.path == path
    assert str(caught.value) == f"Level2UpdateEvent reply: field {path!r}: {reason}"


def test_rows_are_read_from_one_row_many_rows_or_an_object() -> None:
    row = [5, 0, 0, 1]
    assert decode_rows(Level2Entry, row) == [
        Level2Entry(md_update_id=5, action_type=Level2Action.UPDATE)
    ]
    assert decode_rows(Level2Entry, [row, row]) == 2 * [
        Level2Entry(md_update_id=5, action_type=Level2Action.UPDATE)
    ]
    assert decode_rows(Level2Entry, []) == []
    # Extra trailing elements (gateways append fields) are left out; an object works too.
    assert decode_rows(Trade, [[1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 0, "new"]])[0].trade_id == 1
    assert decode_rows(Level2Entry, {"MDUpdateId": 3, "ProductPairCode": 9}) == [
        Level2Entry(md_update_id=3, instrument_id=9)
    ]


def test_models_of_your_own_decode_like_the_built_in_ones() -> None:
    @alphapoint.array_row
    @dataclasses.dataclass
    class Pair:
        bid: float
        ask: float

    @attrs.frozen
    class Product:
        product_id: int
        product: str = ""
        decimal_places: int = 8

    assert decode(list[Product], [{"ProductId": 1, "Product": "BTC", "DecimalPlaces": None}]) == [
        Product(1, "BTC", 8)
    ]
    assert decode_rows(Pair, [[1, 2.5]]) == [Pair(1.0, 2.5)]
    with pytest.raises(TypeError):
        alphapoint.array_row(int)

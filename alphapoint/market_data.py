"""Typed market-data rows: what the Level1, Level2, trades and ticker subscriptions carry.

Read them from a subscription with ``subscription.decoded(Level2Entry)`` (and
``subscription.snapshot_rows(Level2Entry)``), or decode any payload with
:func:`alphapoint.decoding.decode_rows`. Level1 arrives as an object; the
others as arrays, read by position in the order the fields are declared here
(the positions observed on live gateways, see ``docs/protocol-captures.md``).

Prices and quantities are ``float``: the gateways send JSON numbers, which
are binary floats once parsed; convert with ``Decimal(str(x))`` where exact
decimal arithmetic matters. Times are milliseconds since the Unix epoch.
Every field has a default, so a row that is shorter than expected (or a
``null``) still decodes; a value of the wrong type is a
:class:`~alphapoint.DecodeError` naming the field.
"""

from __future__ import annotations

import enum

import attrs

from .decoding import array_row

__all__ = ["Level1", "Level2Action", "Level2Entry", "Side", "TickDirection", "TickerBar", "Trade"]


class Side(enum.IntEnum):
    """The side of an order book entry, or the taker's side of a trade."""

    BUY = 0
    SELL = 1
    SHORT = 2
    UNKNOWN = 3


class Level2Action(enum.IntEnum):
    """What a Level2 entry does to its price level."""

    NEW = 0
    UPDATE = 1
    DELETE = 2


class TickDirection(enum.IntEnum):
    """A trade's price against the trade before it."""

    NO_CHANGE = 0
    UP_TICK = 1
    DOWN_TICK = 2


@attrs.frozen(slots=True)
class Level1:
    """The best bid and offer and the day's figures of one instrument (``Level1UpdateEvent``)."""

    oms_id: int = 0
    instrument_id: int = 0
    best_bid: float = 0.0
    best_offer: float = 0.0
    last_traded_px: float = 0.0
    last_traded_qty: float = 0.0
    last_trade_time: int = 0
    session_open: float = 0.0
    session_high: float = 0.0
    session_low: float = 0.0
    session_close: float = 0.0
    volume: float = 0.0
    current_day_volume: float = 0.0
    current_day_num_trades: int = 0
    current_day_px_change: float = 0.0
    rolling_24hr_volume: float = 0.0
    #: Live gateways send ``Rolling24NumTrades``; the docs say ``Rolling24HrNumTrades``.
    rolling_24hr_num_trades: int = attrs.field(
        default=0, metadata={"aliases": ("Rolling24NumTrades",)}
    )
    rolling_24hr_px_change: float = 0.0
    #: Sent as a string of digits by some gateways; read as a number either way.
    timestamp: int = 0


@array_row
@attrs.frozen(slots=True)
class Level2Entry:
    """One change to one price level of an order book (a Level2 snapshot or update row)."""

    md_update_id: int = 0
    #: How many accounts have orders at this price.
    accounts: int = 0
    action_date_time: int = 0
    action_type: Level2Action | None = None
    last_trade_price: float = 0.0
    orders: int = 0
    price: float = 0.0
    #: The wire's ``ProductPairCode``.
    instrument_id: int = attrs.field(default=0, metadata={"aliases": ("ProductPairCode",)})
    #: The quantity now at this price (0 when the level is deleted).
    quantity: float = 0.0
    side: Side | None = None


@array_row
@attrs.frozen(slots=True)
class Trade:
    """One trade (a ``SubscribeTrades`` snapshot or ``TradeDataUpdateEvent`` row)."""

    trade_id: int = 0
    instrument_id: int = 0
    quantity: float = 0.0
    price: float = 0.0
    order1: int = 0
    order2: int = 0
    trade_time: int = 0
    direction: TickDirection | None = None
    taker_side: Side | None = None
    #: 1 for a block trade, else 0.
    block_trade: int = 0
    client_order_id: int = 0


@array_row
@attrs.frozen(slots=True)
class TickerBar:
    """One candle of a ticker (a ``SubscribeTicker`` snapshot or ``TickerDataUpdateEvent`` row).

    The times may arrive with a fraction of a millisecond, so they are floats.
    """

    end_date_time: float = 0.0
    high: float = 0.0
    low: float = 0.0
    open: float = 0.0
    close: float = 0.0
    volume: float = 0.0
    inside_bid_price: float = 0.0
    inside_ask_price: float = 0.0
    instrument_id: int = 0
    begin_date_time: float = 0.0

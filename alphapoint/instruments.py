"""Which instrument a subscription or a market-data event names (pure).

Object-shaped payloads (Level1, subscriptions) name it by key: ``InstrumentId``,
or ``Symbol`` on gateways that accept one (Bitazza). Array-shaped updates name
it by position in each entry, as live gateways send them (see
docs/protocol-captures.md): a Level2 entry's field 7, a trade's field 1, a
ticker row's field 8. One array event may carry entries for several
instruments; :func:`split_by_instrument` gives each its own part.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "ARRAY_FIELDS",
    "MIXED",
    "event_instrument",
    "snapshot_instrument",
    "split_by_instrument",
    "subscription_key",
]

#: Event (and subscribe call) -> the position of the instrument in each entry.
ARRAY_FIELDS: Final[Mapping[str, int]] = {
    "Level2UpdateEvent": 7,
    "SubscribeLevel2": 7,
    "TradeDataUpdateEvent": 1,
    "SubscribeTrades": 1,
    "TickerDataUpdateEvent": 8,
    "SubscribeTicker": 8,
}


class _Mixed:
    """The key of an array event whose entries name more than one instrument."""

    def __repr__(self) -> str:
        return "MIXED"


MIXED: Final = _Mixed()


def _id(value: Any) -> Any:
    """An instrument id as a key: ``"82"`` (as some gateways send ids) is ``82``."""
    if type(value) is str and value.isascii() and value.isdigit():
        return int(value)
    return value


def subscription_key(payload: Mapping[str, Any]) -> Any:
    """The instrument a subscribe payload names: its ``InstrumentId``, else its
    ``Symbol`` (as ``("Symbol", symbol)``, until the snapshot says which id it is),
    else ``None``."""
    instrument = payload.get("InstrumentId")
    if instrument is not None:
        return _id(instrument)
    symbol = payload.get("Symbol")
    return None if symbol is None else ("Symbol", symbol)


def _entry_instrument(entry: Any, position: int) -> Any:
    if type(entry) is list and len(entry) > position:
        return _id(entry[position])
    return None


def event_instrument(function: str, payload: Any) -> Any:
    """The instrument an event names: a key, ``None`` (it names none), or :data:`MIXED`."""
    if type(payload) is dict:
        instrument = payload.get("InstrumentId")
        if instrument is None:
            return ("Symbol", payload["Symbol"]) if "Symbol" in payload else None
        return instrument if type(instrument) is int else _id(instrument)
    position = ARRAY_FIELDS.get(function)
    if position is None or type(payload) is not list or not payload:
        return None
    first = _entry_instrument(payload[0], position)
    for entry in payload:
        if _entry_instrument(entry, position) != first:
            return MIXED
    return first


def split_by_instrument(function: str, payload: list[Any]) -> dict[Any, list[Any]]:
    """The entries of a :data:`MIXED` array event, grouped by the instrument each names
    (``None`` for entries that name none), in the order they came."""
    position = ARRAY_FIELDS[function]
    parts: dict[Any, list[Any]] = {}
    for entry in payload:
        parts.setdefault(_entry_instrument(entry, position), []).append(entry)
    return parts


def snapshot_instrument(function: str, snapshot: Any) -> Any:
    """The instrument id a subscribe call's reply names, if it names exactly one."""
    instrument = event_instrument(function, snapshot)
    if instrument is MIXED or isinstance(instrument, tuple):
        return None
    return instrument

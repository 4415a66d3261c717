"""One venue order-book message in the venue's own strings, before any conversion.

The adapters (okx.py, bitget.py, kraken.py) turn a JSON value into ``BookMessage``s; the decimal
strings are kept verbatim until the instrument's scales are known (``recording.py``), because
the venue's checksum is computed on exactly these strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from obpipeline.sources.checksum_venues.lines import BadRecord

BID, ASK = 1, -1
DECIMAL = re.compile(r"\d{1,18}(?:\.\d{1,18})?")


@dataclass(slots=True)
class BookMessage:
    symbol: str  # the venue's spelling (``BTC-USDT``, ``XBT/CHF``)
    ts_event: int  # exchange time, ns
    is_snapshot: bool
    levels: list[tuple[int, str, str]] = field(default_factory=list)  # (side, price, size)
    checksum: int | None = None  # as the venue sent it (compared modulo 2**32)
    seq: int | None = None  # OKX seqId
    prev_seq: int | None = None  # OKX prevSeqId
    depth: int | None = None  # the subscribed depth the client must truncate to (Kraken)
    market: str = "spot"  # instrument.market: spot, swap, futures (OKX), mix (Bitget)


def levels_of(side: int, rows: object, what: str, out: list[tuple[int, str, str]]) -> None:
    """Append ``[[price, size, ...], ...]`` to ``out``, checking each string is a plain decimal."""
    if not isinstance(rows, list):
        raise BadRecord(f"{what}: expected a list of levels")
    for row in rows:
        if not isinstance(row, list) or len(row) < 2:
            raise BadRecord(f"{what}: a level is not [price, size, ...]")
        price, size = row[0], row[1]
        if not isinstance(price, str) or not DECIMAL.fullmatch(price):
            raise BadRecord(f"{what}: price {str(price)[:40]!r} is not a plain decimal string")
        if not isinstance(size, str) or not DECIMAL.fullmatch(size):
            raise BadRecord(f"{what}: size {str(size)[:40]!r} is not a plain decimal string")
        out.append((side, price, size))


def int_field(obj: dict, key: str, what: str, required: bool = True) -> int | None:
    """An integer field that may be sent as a JSON number or a decimal string."""
    v = obj.get(key)
    if v is None and not required:
        return None
    if isinstance(v, bool):
        raise BadRecord(f"{what}: {key} is not an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"-?\d{1,20}", v):
        return int(v)
    raise BadRecord(f"{what}: {key} {str(v)[:40]!r} is not an integer")


def ms_to_ns(obj: dict, key: str, what: str) -> int:
    ms = int_field(obj, key, what)
    assert ms is not None
    return ms * 1_000_000


def action_books(
    value: object,
    venue: str,
    channels: Collection[str],
    seq: str,
    prev_seq: str | None,
    market: Callable[[str, dict], str],
) -> list[BookMessage] | None:
    """OKX's and Bitget's shared ``books`` push: ``{"action": "snapshot"|"update", "arg":
    {"channel", "instId", ..}, "data": [{"asks", "bids", "ts", "checksum", <seq>..}]}`` →
    one BookMessage per data entry; None for other channels and events (acks, tickers)."""
    if not isinstance(value, dict) or "action" not in value:
        return None
    arg = value.get("arg")
    if not isinstance(arg, dict) or arg.get("channel") not in channels:
        return None
    what = f"{venue} books"
    symbol = arg.get("instId")
    if not isinstance(symbol, str):
        raise BadRecord(f"{what}: no instId")
    action = value["action"]
    if action not in ("snapshot", "update"):
        raise BadRecord(f"{what}: unknown action {str(action)[:20]!r}")
    data = value.get("data")
    if not isinstance(data, list) or not data:
        raise BadRecord(f"{what}: no data")
    out = []
    for d in data:
        if not isinstance(d, dict):
            raise BadRecord(f"{what}: a data entry is not an object")
        m = BookMessage(symbol, ms_to_ns(d, "ts", what), action == "snapshot")
        levels_of(ASK, d.get("asks", []), f"{venue} asks", m.levels)
        levels_of(BID, d.get("bids", []), f"{venue} bids", m.levels)
        m.checksum = int_field(d, "checksum", what, required=False)
        m.seq = int_field(d, seq, what, required=False)
        if prev_seq is not None:
            m.prev_seq = int_field(d, prev_seq, what, required=False)
        m.market = market(symbol, arg)
        out.append(m)
    return out

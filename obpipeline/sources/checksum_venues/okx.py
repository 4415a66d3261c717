"""OKX v5 ``books`` (and ``books-l2-tbt`` / ``books50-l2-tbt``) messages → BookMessages.

``{"arg": {"channel": "books", "instId": ..}, "action": "snapshot"|"update", "data": [{"asks":
[[px, sz, "0", n], ..], "bids": [..], "ts": "<ms>", "checksum": <int32>, "seqId", "prevSeqId"}]}``.
Other channels and events (subscribe acks, tickers, trades) are not book messages (None).
"""

from __future__ import annotations

from obpipeline.sources.checksum_venues.lines import BadRecord
from obpipeline.sources.checksum_venues.message import (
    ASK,
    BID,
    BookMessage,
    int_field,
    levels_of,
    ms_to_ns,
)

VENUE = "okx"
CHANNELS = frozenset({"books", "books-l2-tbt", "books50-l2-tbt"})
URL_MARK = b"okx.com"  # in the recorder's connection header
# A header-less message of this venue: the subscription argument and the OKX action.
SNIFF = (b'"arg":{"channel":"books', b'"action":')


def parse(value: object) -> list[BookMessage] | None:
    if not isinstance(value, dict) or "action" not in value:
        return None
    arg = value.get("arg")
    if not isinstance(arg, dict) or arg.get("channel") not in CHANNELS:
        return None
    symbol = arg.get("instId")
    if not isinstance(symbol, str):
        raise BadRecord("okx books: no instId")
    action = value["action"]
    if action not in ("snapshot", "update"):
        raise BadRecord(f"okx books: unknown action {str(action)[:20]!r}")
    data = value.get("data")
    if not isinstance(data, list) or not data:
        raise BadRecord("okx books: no data")
    out = []
    for d in data:
        if not isinstance(d, dict):
            raise BadRecord("okx books: a data entry is not an object")
        m = BookMessage(symbol, ms_to_ns(d, "ts", "okx books"), action == "snapshot")
        levels_of(ASK, d.get("asks", []), "okx asks", m.levels)
        levels_of(BID, d.get("bids", []), "okx bids", m.levels)
        m.checksum = int_field(d, "checksum", "okx books", required=False)
        m.seq = int_field(d, "seqId", "okx books", required=False)
        m.prev_seq = int_field(d, "prevSeqId", "okx books", required=False)
        m.market = market_of(symbol)
        out.append(m)
    return out


def market_of(symbol: str) -> str:
    """OKX instrument ids say their type: ``BTC-USDT``, ``UNI-USD-SWAP``, ``BTC-USD-220527``."""
    if symbol.endswith("-SWAP"):
        return "swap"
    last = symbol.rsplit("-", 1)[-1]
    return "futures" if last.isdigit() and len(last) == 6 else "spot"

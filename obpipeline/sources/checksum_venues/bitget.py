"""Bitget ``books`` messages (v1 spot/mix and v2) → BookMessages.

``{"action": "snapshot"|"update", "arg": {"instType": .., "channel": "books", "instId": ..},
"data": [{"asks": [[px, sz], ..], "bids": [..], "checksum": <int32>, "ts": "<ms>"}]}``.
``books5`` / ``books15`` are full top-N pictures without a delta stream; not read here.
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

VENUE = "bitget"
URL_MARK = b"bitget.com"
SNIFF = (b'"channel":"books"', b'"instType"')


def parse(value: object) -> list[BookMessage] | None:
    if not isinstance(value, dict) or "action" not in value:
        return None
    arg = value.get("arg")
    if not isinstance(arg, dict) or arg.get("channel") != "books":
        return None
    symbol = arg.get("instId")
    if not isinstance(symbol, str):
        raise BadRecord("bitget books: no instId")
    action = value["action"]
    if action not in ("snapshot", "update"):
        raise BadRecord(f"bitget books: unknown action {str(action)[:20]!r}")
    data = value.get("data")
    if not isinstance(data, list) or not data:
        raise BadRecord("bitget books: no data")
    out = []
    for d in data:
        if not isinstance(d, dict):
            raise BadRecord("bitget books: a data entry is not an object")
        m = BookMessage(symbol, ms_to_ns(d, "ts", "bitget books"), action == "snapshot")
        levels_of(ASK, d.get("asks", []), "bitget asks", m.levels)
        levels_of(BID, d.get("bids", []), "bitget bids", m.levels)
        m.checksum = int_field(d, "checksum", "bitget books", required=False)
        m.seq = int_field(d, "seq", "bitget books", required=False)
        m.market = "spot" if str(arg.get("instType", "sp")).lower() in ("sp", "spot") else "mix"
        out.append(m)
    return out

"""Kraken spot websocket v1 ``book`` messages → BookMessages.

``[channelID, {"as": [..], "bs": [..]}, "book-<depth>", "XBT/CHF"]`` is a snapshot;
``[channelID, {"a": [..]}, {"b": [..], "c": "<crc32>"}, "book-<depth>", pair]`` an update (one or
two side objects, the checksum in the last). Levels are ``[price, volume, timestamp(, "r")]``;
the message's exchange time is its latest level timestamp. Dict messages (events, heartbeats)
are not book messages.
"""

from __future__ import annotations

import re

from obpipeline.sources.checksum_venues.lines import BadRecord, seconds_to_ns
from obpipeline.sources.checksum_venues.message import ASK, BID, BookMessage, levels_of

VENUE = "kraken"
URL_MARK = b"ws.kraken.com"
SNIFF = (b'"book-', b'"c":"')
_CHANNEL = re.compile(r"book-(\d{1,5})")
_TS = re.compile(r"(\d{1,12})(?:\.(\d{1,18}))?")


def parse(value: object) -> list[BookMessage] | None:
    if not isinstance(value, list) or len(value) < 4 or not isinstance(value[-2], str):
        return None
    channel = _CHANNEL.fullmatch(value[-2])
    if channel is None:
        return None
    pair = value[-1]
    if not isinstance(pair, str):
        raise BadRecord("kraken book: no pair")
    parts = value[1:-2]
    if not parts or not all(isinstance(p, dict) for p in parts):
        raise BadRecord("kraken book: expected side objects between channelID and channel name")
    snapshot = any("as" in p or "bs" in p for p in parts)
    m = BookMessage(pair, 0, snapshot, depth=int(channel.group(1)))
    latest = 0
    for p in parts:
        for key, side in (("as", ASK), ("bs", BID), ("a", ASK), ("b", BID)):
            if key in p:
                start = len(m.levels)
                levels_of(side, p[key], f"kraken {key}", m.levels)
                for row in p[key][: len(m.levels) - start]:
                    latest = max(latest, _level_ts(row))
        if "c" in p:
            c = p["c"]
            if not isinstance(c, str) or not c.isdigit() or len(c) > 10:
                raise BadRecord(f"kraken book: checksum {str(c)[:20]!r} is not a decimal uint32")
            m.checksum = int(c)
    m.ts_event = latest
    return [m]


def _level_ts(row: list) -> int:
    if len(row) < 3 or not isinstance(row[2], str) or (t := _TS.fullmatch(row[2])) is None:
        raise BadRecord("kraken book: a level has no [price, volume, timestamp]")
    return seconds_to_ns(t.group(1).encode(), t.group(2).encode() if t.group(2) else None)

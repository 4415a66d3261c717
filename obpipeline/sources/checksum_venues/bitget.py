"""Bitget ``books`` messages (v1 spot/mix and v2) → BookMessages.

``{"action": "snapshot"|"update", "arg": {"instType": .., "channel": "books", "instId": ..},
"data": [{"asks": [[px, sz], ..], "bids": [..], "checksum": <int32>, "ts": "<ms>"}]}``.
``books5`` / ``books15`` are full top-N pictures without a delta stream; not read here.
"""

from __future__ import annotations

from obpipeline.sources.checksum_venues.message import BookMessage, action_books

VENUE = "bitget"
URL_MARK = b"bitget.com"
SNIFF = (b'"channel":"books"', b'"instType"')


def parse(value: object) -> list[BookMessage] | None:
    return action_books(value, VENUE, ("books",), "seq", None, _market)


def _market(symbol: str, arg: dict) -> str:
    """Bitget's subscription says the type: spot (``sp``/``SPOT``) or a futures (mix) product."""
    return "spot" if str(arg.get("instType", "sp")).lower() in ("sp", "spot") else "mix"

"""OKX v5 ``books`` (and ``books-l2-tbt`` / ``books50-l2-tbt``) messages → BookMessages.

``{"arg": {"channel": "books", "instId": ..}, "action": "snapshot"|"update", "data": [{"asks":
[[px, sz, "0", n], ..], "bids": [..], "ts": "<ms>", "checksum": <int32>, "seqId", "prevSeqId"}]}``.
Other channels and events (subscribe acks, tickers, trades) are not book messages (None).
"""

from __future__ import annotations

from obpipeline.sources.checksum_venues.message import BookMessage, action_books

VENUE = "okx"
CHANNELS = frozenset({"books", "books-l2-tbt", "books50-l2-tbt"})
URL_MARK = b"okx.com"  # in the recorder's connection header
# A header-less message of this venue: the subscription argument and the OKX action.
SNIFF = (b'"arg":{"channel":"books', b'"action":')


def parse(value: object) -> list[BookMessage] | None:
    return action_books(value, VENUE, CHANNELS, "seqId", "prevSeqId", lambda s, _: market_of(s))


def market_of(symbol: str) -> str:
    """OKX instrument ids say their type: ``BTC-USDT``, ``UNI-USD-SWAP``, ``BTC-USD-220527``."""
    if symbol.endswith("-SWAP"):
        return "swap"
    last = symbol.rsplit("-", 1)[-1]
    return "futures" if last.isdigit() and len(last) == 6 else "spot"

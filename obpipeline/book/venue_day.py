"""A checksum venue's day as the ChecksumValidator reads it (a type, no replay).

The reader (``sources/checksum_venues/sequence.py``) fills it: the instrument's raw_book_events
plus, per message, the venue's CRC32 and where the message was read. ``book/checksum.py``
replays the events and compares each row with its message's checksum. It lives in ``book`` so
that the book never imports a reader; the reader may import this type, as it imports ``Book``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from obpipeline.instruments import Instrument

NO_CHECKSUM = -1  # a message without a checksum (Kraken snapshots, OKX after 2026-06-23)


@dataclass
class VenueDay:
    """One instrument of a recording, ready to replay and validate."""

    venue: str
    symbol: str  # the venue's spelling (``XBT/CHF``); instrument.symbol is its safe form
    instrument: Instrument
    events: pl.DataFrame  # raw_book_events; msg_id = index into the per-message arrays below
    checksum: np.ndarray  # int64 per message: the venue's CRC32 mod 2**32, NO_CHECKSUM if none
    is_snapshot: np.ndarray  # bool per message
    file: np.ndarray  # int32 per message: index into files
    line: np.ndarray  # int64 per message
    files: list[str]
    price_decimals: int  # widest printed decimals (the fixed-decimal venues' checksum strings)
    size_decimals: int
    truncated: int = 0  # levels removed by the Kraken depth rule

    @property
    def messages(self) -> int:
        return len(self.checksum)

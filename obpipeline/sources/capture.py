"""The one interchange type of every source reader: a ``Capture`` of canonical frames.

Each reader (Binance websocket captures, Tardis CSV, the simulator's capture text) turns its
format into these frames; everything downstream (ingest, export, drills) takes a ``Capture`` and
never imports a reader's parser to get the type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from obpipeline.errors import CaptureError
from obpipeline.instruments import Instrument

__all__ = ["MAX_TIME_MS", "MIN_TIME_MS", "Capture", "CaptureError"]

# Receive and exchange times outside this window are quarantined: they are corrupt, and would
# otherwise overflow int64 nanoseconds or open a partition decades away (docs/DECISIONS.md).
MIN_TIME_MS = 1_262_304_000_000  # 2010-01-01T00:00:00Z
MAX_TIME_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z (exclusive)


@dataclass
class Capture:
    """One market/symbol's canonical frames from a sequence of capture files (one stream)."""

    instrument: Instrument
    events: pl.DataFrame
    golden_bbo: pl.DataFrame
    golden_depth: pl.DataFrame
    trades: pl.DataFrame
    quarantine: pl.DataFrame
    stats: dict[str, int] = field(default_factory=dict)

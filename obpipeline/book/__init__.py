"""Order-book replay: sequencing rules, the reference replayer and the compiled engine."""

from __future__ import annotations

import polars as pl

from obpipeline import schemas
from obpipeline.book.stream import Book, ReplayResult
from obpipeline.instruments import Instrument

ENGINES = ("reference",)
DEFAULT_ENGINE = "reference"


def replay(
    events: pl.DataFrame,
    instrument: Instrument,
    depth: int = schemas.DEFAULT_DEPTH,
    checkpoint: Book | None = None,
    engine: str = DEFAULT_ENGINE,
) -> ReplayResult:
    """Replay raw_book_events into book_snapshots with the chosen engine (same contract for all)."""
    if engine == "reference":
        from obpipeline.book.replayer import replay as run
    else:
        raise ValueError(f"unknown engine {engine!r}; choose from {ENGINES}")
    return run(events, instrument, depth, checkpoint)

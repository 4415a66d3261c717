"""A landing day of a checksum venue as a ``Capture``, staged like the Tardis landing source.

Landed recordings are named with their UTC date like every landing file; the day's files are
read whole and the instrument selected by its lake symbol (``XBT-CHF`` for ``XBT/CHF``). The
synthetic update ids start at the day's base, so a day's raw_book_events do not depend on the
previous day (``sources/day.start_book`` re-stamps the carried book at that base).

Beside the ingest datasets the day stages ``golden_checksum``: the venue's CRC32 per message,
numbered like the day's raw_book_events, which Gate A1 (``fidelity/checksum_gate.py``) compares
with the lake's books.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from obpipeline import schemas
from obpipeline.book.venue_day import NO_CHECKSUM, VenueDay
from obpipeline.errors import CaptureError
from obpipeline.instruments import safe_symbol
from obpipeline.sources.capture import Capture
from obpipeline.sources.checksum_venues.recording import Recording, read_recording
from obpipeline.sources.checksum_venues.sequence import sequence
from obpipeline.sources.ingest import Ingest, StagedParquet, day_bounds_ns, stage_capture

GOLDEN = "golden_checksum"


def venue_day(
    files: list[Path], venue: str, symbol: str, first_id: int = 0
) -> tuple[VenueDay, Recording]:
    """One instrument of landed recordings; ``symbol`` in the venue's spelling or its safe form."""
    rec = read_recording(files, venue)
    matches = [s for s in rec.symbols if symbol in (s, safe_symbol(s))]
    if not matches:
        raise CaptureError(
            f"no {venue} book messages for {symbol!r} in {', '.join(map(str, files))}; "
            f"present: {', '.join(rec.symbols) or 'none'}"
        )
    return sequence(rec, matches[0], first_id=first_id), rec


def golden_checksum(day: VenueDay, on: date) -> pl.DataFrame:
    """The ``golden_checksum`` rows of the messages whose exchange time falls on ``on``, their
    ``msg_id`` counted from 0 over the day's messages as the ingest numbers raw_book_events."""
    start, end = (pl.lit(x).cast(schemas.TS) for x in day_bounds_ns(on))
    heads = (
        day.events.unique("msg_id", keep="first", maintain_order=True)
        .filter((pl.col("ts_event") >= start) & (pl.col("ts_event") < end))
        .select(pl.int_range(pl.len()).alias("lake_id"), "msg_id", "ts_event", "ts_local")
    )
    per_message = pl.DataFrame(
        {
            "msg_id": np.arange(day.messages, dtype=np.int64),
            "checksum": day.checksum,
            "file": pl.Series(day.files, dtype=pl.String).gather(day.file),
            "line": day.line,
        }
    ).filter(pl.col("checksum") != NO_CHECKSUM)
    return (
        heads.join(per_message, on="msg_id", maintain_order="left")
        .with_columns(
            pl.col("lake_id").alias("msg_id"),
            pl.lit(day.price_decimals).alias("price_decimals"),
            pl.lit(day.size_decimals).alias("size_decimals"),
        )
        .select(schemas.golden_checksum().names())
        .cast(dict(schemas.golden_checksum()))
    )


def stage_day(
    files: list[Path],
    venue: str,
    symbol: str,
    depth: int,
    on: date,
    first_id: int,
    path_for: Callable[[str, date], Path],
) -> Ingest:
    """The day ``on`` staged (unpublished) like a Tardis day, with its ``golden_checksum``."""
    day, rec = venue_day(files, venue, symbol, first_id)
    staged = stage_capture(_capture(day, rec, depth), path_for, depth, on)
    if on in staged.days:
        writer = StagedParquet(path_for(GOLDEN, on), schemas.golden_checksum())
        staged.days[on].writers[GOLDEN] = writer  # published and discarded with the day
        writer.write(golden_checksum(day, on))
    return staged


def _capture(day: VenueDay, rec: Recording, depth: int) -> Capture:
    """The canonical frames: raw_book_events, no golden bbo/depth records (the checksums are the
    proof), the quarantine with file and line."""
    inst = day.instrument
    return Capture(
        instrument=inst,
        events=day.events,
        golden_bbo=pl.DataFrame(schema=schemas.golden_bbo(inst)),
        golden_depth=pl.DataFrame(schema=schemas.golden_depth(inst, depth)),
        trades=pl.DataFrame(schema=schemas.trades(inst)),
        quarantine=pl.DataFrame(rec.quarantine, schema=schemas.quarantine()),
        stats=rec.accounting(),
    )

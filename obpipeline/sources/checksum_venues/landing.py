"""A landing day of a checksum venue as a ``Capture``, staged like the Tardis landing source.

Landed recordings are named with their UTC date like every landing file; the day's files are
read whole and the instrument selected by its lake symbol (``XBT-CHF`` for ``XBT/CHF``). The
synthetic update ids start at the day's base, so a day's raw_book_events do not depend on the
previous day (``sources/day.start_book`` re-stamps the carried book at that base).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from obpipeline import schemas
from obpipeline.book.venue_day import VenueDay
from obpipeline.errors import CaptureError
from obpipeline.instruments import safe_symbol
from obpipeline.sources.capture import Capture
from obpipeline.sources.checksum_venues.recording import Recording, read_recording
from obpipeline.sources.checksum_venues.sequence import sequence


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


def day_capture(
    files: list[Path], venue: str, symbol: str, depth: int, first_id: int = 0
) -> Capture:
    """The canonical frames of one instrument: raw_book_events, no golden records (the
    checksums are the proof), the quarantine with file and line."""
    day, rec = venue_day(files, venue, symbol, first_id)
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

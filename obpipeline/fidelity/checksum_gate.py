"""Gates A0/A1 on checksum venues.

Per instrument-day: A0 counts gaps (OKX ``seqId`` breaks), unhandled gaps and crossed
books; A1 ``checksum`` fails on any mismatch and certifies, with the one-sided Clopper–Pearson
bound, the rate of messages whose top-of-book was wrong (every compared message is a trial:
the venue's CRC covers the top 25 / 10 levels after that message). The bound is graded like
the other partial-book references (``max_mismatch_rate_top``); ``insufficient`` when too few
messages were compared to certify it.

In the daily chain the landed day's raw_book_events are replayed by ``replay_checked`` against
its ``golden_checksum`` (``lake_checked``): the ``book_snapshots`` step marks the lake's rows
invalid from a mismatch to the next snapshot with its verdict (``mark_lake_day``), and the
``fidelity_metrics`` asset grades it (``lake_checksum_results``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from obpipeline import lake
from obpipeline.book import checksum as ck
from obpipeline.book.parquet_stream import mark_invalid
from obpipeline.book.stream import Book, ReplayCounters, ReplayResult
from obpipeline.book.venue_day import NO_CHECKSUM, VenueDay
from obpipeline.fidelity import stats
from obpipeline.fidelity.config import Thresholds
from obpipeline.fidelity.gates import FAIL, INSUFFICIENT, PASS, GateResult
from obpipeline.fidelity.lakeio import instrument_for


def checksum_results(
    result: ReplayResult, report: ck.ChecksumReport, thresholds: Thresholds | None = None
) -> list[GateResult]:
    """A0 (gaps, unhandled gaps, crossed) and A1 (checksum) for one replayed venue day."""
    t = thresholds or Thresholds()
    c = result.counters
    out = [
        _count("A0", "gaps", c.gaps, t.max_gaps),
        _count("A0", "unhandled_gaps", c.unsynced_at_end, t.max_unhandled_gaps),
        _count("A0", "crossed", c.crossed, t.max_crossed),
    ]
    return [*out, checksum_result(report, t)]


def checksum_result(report: ck.ChecksumReport, t: Thresholds) -> GateResult:
    """A1 ``checksum``: fails on any mismatch, else the Clopper–Pearson bound is graded."""
    n, bad = report.compared, report.mismatched
    upper = stats.clopper_pearson_upper(bad, n, t.confidence)
    first = report.mismatches[0] if report.mismatches else None
    status = FAIL if bad else (PASS if upper < t.max_mismatch_rate_top else INSUFFICIENT)
    return GateResult(
        "A1",
        "checksum",
        status,
        value=bad / n if n else None,
        threshold=t.max_mismatch_rate_top,
        detail=f"{n - bad}/{n} {report.venue} checksums matched ({report.symbol})"
        + (
            f"; first mismatch: message {first['msg_id']}, {first['file']} line {first['line']}"
            if first
            else ""
        ),
        first_failure_ns=first["ts_event"] if first else None,
        first_failure_msg_id=first["msg_id"] if first else None,
        metrics={
            "compared": float(n),
            "matched": float(n - bad),
            "mismatched": float(bad),
            "cp_upper": upper,
            "messages_with_checksum": float(report.messages_with_checksum),
        },
    )


def _count(gate: str, check: str, value: int, limit: int) -> GateResult:
    return GateResult(gate, check, FAIL if value > limit else PASS, float(value), float(limit))


def lake_checksum_results(
    root: Path, venue: str, symbol: str, day: date, t: Thresholds
) -> list[GateResult]:
    """A1 ``checksum`` of a materialised day with a ``golden_checksum`` partition (else none)."""
    checked = lake_checked(root, venue, symbol, day)
    return [] if checked is None else [checksum_result(checked[1], t)]


def lake_checked(
    root: Path, venue: str, symbol: str, day: date | str, start: Book | None = None
) -> tuple[ReplayResult, ck.ChecksumReport] | None:
    """The ChecksumValidator on a landed day (``None`` without a ``golden_checksum``): its
    raw_book_events replayed from ``start`` (else the day's own snapshot) by ``replay_checked``
    at the venue's checksum depth; the rows keep one level (their validity is what is read)."""
    golden_path = lake.partition_path("golden_checksum", venue, symbol, day, root)
    if not golden_path.exists():
        return None
    vday = lake_venue_day(root, venue, symbol, day, pl.read_parquet(golden_path))
    return ck.replay_checked(vday, 1, checkpoint=start)


def mark_lake_day(
    root: Path,
    venue: str,
    symbol: str,
    day: date | str,
    snapshots: Path,
    start: Book | None,
    counters: ReplayCounters,
) -> ReplayCounters:
    """The book_snapshots step on a checksum-venue day: the rows of ``snapshots`` (replayed
    from ``start``) invalid from a mismatch until the next snapshot, as ``replay_checked`` marks
    them, and ``counters`` with ``checksum_mismatched``. Other days: unchanged."""
    checked = lake_checked(root, venue, symbol, day, start)
    if checked is None:
        return counters
    result, report = checked
    if report.invalidated_rows:
        rows = result.snapshots
        mark_invalid(snapshots, rows["msg_id"].to_numpy(), rows["is_valid"].to_numpy())
    return replace(counters, checksum_mismatched=report.mismatched)


def lake_venue_day(
    root: Path, venue: str, symbol: str, day: date | str, golden: pl.DataFrame
) -> VenueDay:
    """The lake's raw_book_events and ``golden_checksum`` of a day as the validator reads them."""
    events = pl.read_parquet(lake.partition_path("raw_book_events", venue, symbol, day, root))
    inst = instrument_for(venue, symbol, events)
    heads = events.unique("msg_id", keep="first", maintain_order=True).sort("msg_id")
    n = int(heads["msg_id"].max()) + 1 if heads.height else 0
    checksum = np.full(n, NO_CHECKSUM, np.int64)
    is_snapshot = np.zeros(n, np.bool_)
    line = np.zeros(n, np.int64)
    file = np.zeros(n, np.int32)
    is_snapshot[heads["msg_id"].to_numpy()] = heads["is_snapshot"].to_numpy()
    ids = golden["msg_id"].to_numpy()
    checksum[ids] = golden["checksum"].to_numpy()
    line[ids] = golden["line"].to_numpy()
    file[ids] = (golden["file"].rank("dense") - 1).to_numpy()  # into the sorted names
    return VenueDay(
        venue=inst.venue,
        symbol=symbol,
        instrument=inst,
        events=events,
        checksum=checksum,
        is_snapshot=is_snapshot,
        file=file,
        line=line,
        files=golden["file"].unique().sort().to_list(),
        price_decimals=int(golden["price_decimals"].max() or 0),
        size_decimals=int(golden["size_decimals"].max() or 0),
    )

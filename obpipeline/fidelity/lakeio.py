"""Fidelity over the lake: read one day's datasets, judge it, store and collect ``fidelity_metrics``.

The library view of what the Dagster ``fidelity_metrics`` asset does, so the CLI, the report and
notebooks can evaluate any materialised day without a Dagster instance::

    day = evaluate_lake_day(Path("data/lake"), "binance-usdm", "BTCUSDT", "2024-03-05")
    frame = collect_metrics(Path("data/lake"), "binance-usdm", "BTCUSDT")  # all days, long

Inputs per day (hive paths of ``lake.py``): book_snapshots, raw_book_events, golden_bbo,
golden_depth, quarantine (row count), replay_counters (when the pipeline wrote them) and the
D-1 book_checkpoint (when it exists, the day was replayed from it: the carried-book check).
The pipeline's book_snapshots step runs the day's golden comparison (Gates A1 + A2,
``golden_lake_day``) on its staged file and stores its results as ``golden_results`` (long
metrics rows); ``evaluate_lake_day(..., reuse_golden=True)`` reads them back instead of comparing
the day again.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from obpipeline import lake, schemas
from obpipeline.book import checkpoint as ckpt
from obpipeline.fidelity.config import Thresholds, thresholds_for
from obpipeline.fidelity.evaluate import DayFidelity, GoldenDay, evaluate_day, golden_day
from obpipeline.fidelity.frames import BATCH_ROWS, Events, Table
from obpipeline.fidelity.gates import METRICS_SCHEMA, results_from_frame
from obpipeline.instruments import Instrument, instrument_from_schema, split_venue_id

METRICS = "fidelity_metrics"
GOLDEN = "golden_results"  # Gates A1 + A2 of the day, written by the book_snapshots step


def instruments_in_lake(root: Path, dataset: str = "book_snapshots") -> list[tuple[str, str]]:
    """(venue_id, symbol) pairs that have at least one partition of ``dataset``."""
    return lake.dataset_instruments(dataset, Path(root))


def lake_days(root: Path, dataset: str, venue: str, symbol: str) -> list[date]:
    return lake.dataset_days(dataset, venue, symbol, Path(root))


def instrument_for(venue_id: str, symbol: str, frame: pl.DataFrame | None = None) -> Instrument:
    """The instrument of a lake venue id and symbol (see instruments.instrument_from_schema)."""
    venue, market = split_venue_id(venue_id)
    return instrument_from_schema(venue, market, symbol, None if frame is None else frame.schema)


def _read(root: Path, dataset: str, venue: str, symbol: str, day) -> pl.DataFrame | None:
    path = lake.partition_path(dataset, venue, symbol, day, root)
    return pl.read_parquet(path) if path.exists() else None


def _path(root: Path, dataset: str, venue: str, symbol: str, day) -> Path | None:
    path = lake.partition_path(dataset, venue, symbol, day, root)
    return path if path.exists() else None


def _rows(path: Path | None) -> int:
    return pq.ParquetFile(path).metadata.num_rows if path is not None else 0


def _inputs(
    root: Path, venue: str, symbol: str, day: date, snapshots: Path, batch_rows: int
) -> tuple[Instrument, dict[str, Any]]:
    """The instrument (scales of raw_book_events, else of ``snapshots``) and the golden
    comparison's inputs of a day besides its book: raw_book_events and the golden records."""
    events = _path(root, "raw_book_events", venue, symbol, day)
    schema = pl.scan_parquet(events if events is not None else snapshots).collect_schema()
    return instrument_for(venue, symbol, pl.DataFrame(schema=schema)), {
        "events": Events(events, batch_rows) if events is not None else None,
        "golden_bbo": _path(root, "golden_bbo", venue, symbol, day),
        "golden_depth": _path(root, "golden_depth", venue, symbol, day),
    }


def golden_lake_day(
    root: Path, venue: str, symbol: str, day: date | str, snapshots: Path,
    batch_rows: int = BATCH_ROWS,
) -> GoldenDay:  # fmt: skip
    """Gates A1 + A2 of a day whose book_snapshots are at ``snapshots`` (the book_snapshots
    step's staged file), with the lake's raw_book_events and golden records: the comparison
    ``evaluate_lake_day`` would run, at the venue's thresholds."""
    root, day = Path(root), date.fromisoformat(str(day))
    inst, inputs = _inputs(root, venue, symbol, day, snapshots, batch_rows)
    return golden_day(
        Table(snapshots, batch_rows), inst, thresholds=thresholds_for(venue), **inputs
    )


def evaluate_lake_day(
    root: Path,
    venue: str,
    symbol: str,
    day: date | str,
    thresholds: Thresholds | None = None,
    with_materiality: bool = True,
    batch_rows: int = BATCH_ROWS,
    reuse_golden: bool = False,
) -> DayFidelity:
    """Gate A for one materialised day, from the lake's parquet files in bounded memory.

    The files are scanned, not loaded: integrity reads flags, times and ids for every row and
    checks the level columns ``batch_rows`` at a time; the golden comparison reads the level
    columns only of the rows a golden record aligns with. ``reuse_golden``: take Gates A1 + A2
    from the day's ``golden_results`` when the book_snapshots step stored them (judged at the
    venue's thresholds, so only when ``thresholds`` are those) instead of comparing again.
    """
    root = Path(root)
    day = date.fromisoformat(str(day))
    snapshots = _path(root, "book_snapshots", venue, symbol, day)
    if snapshots is None:
        raise FileNotFoundError(f"book_snapshots {venue} {symbol} {day} is not in {root}")
    inst, inputs = _inputs(root, venue, symbol, day, snapshots, batch_rows)
    counters_frame = _read(root, "replay_counters", venue, symbol, day)
    counters = counters_frame.row(0, named=True) if counters_frame is not None else None
    prev = lake.partition_path("book_checkpoint", venue, symbol, day - timedelta(days=1), root)
    checkpoint_in = ckpt.read(prev) if prev.exists() else None
    t = thresholds or thresholds_for(venue)
    reuse = reuse_golden and with_materiality and t == thresholds_for(venue)
    stored = _read(root, GOLDEN, venue, symbol, day) if reuse else None
    return evaluate_day(
        Table(snapshots, batch_rows),
        inst,
        **inputs,
        counters=counters,
        checkpoint_in=checkpoint_in,
        quarantined=_rows(_path(root, "quarantine", venue, symbol, day)),
        thresholds=t,
        with_materiality=with_materiality,
        golden=results_from_frame(stored) if stored is not None else None,
    )


def write_metrics(day: DayFidelity, root: Path, venue: str, symbol: str, d: date | str) -> Path:
    """Store a day's long metrics frame as the ``fidelity_metrics`` partition."""
    return lake.write_partition(day.metrics, METRICS, venue, symbol, d, Path(root))


def _is_long(frame: pl.DataFrame) -> bool:
    return {"gate", "check", "metric", "value", "status"} <= set(frame.columns)


def collect_metrics(
    root: Path, venue: str, symbol: str, compute_missing: bool = True, write: bool = False
) -> pl.DataFrame:
    """Every day's long metrics (a ``date`` column first), stored ones or computed from the lake.

    Days with book_snapshots but no (long-format) fidelity_metrics are evaluated when
    ``compute_missing``; ``write`` stores what was computed.
    """
    root = Path(root)
    days = sorted(
        set(lake_days(root, "book_snapshots", venue, symbol))
        | set(lake_days(root, METRICS, venue, symbol))
    )
    frames = []
    for d in days:
        stored = _read(root, METRICS, venue, symbol, d)
        if stored is not None and _is_long(stored):
            frame = stored.select(METRICS_SCHEMA.names())
        elif (
            compute_missing
            and lake.partition_path("book_snapshots", venue, symbol, d, root).exists()
        ):
            fid = evaluate_lake_day(root, venue, symbol, d)
            frame = fid.metrics
            if write:
                write_metrics(fid, root, venue, symbol, d)
        else:
            continue
        frames.append(frame.with_columns(pl.lit(d).alias("date")).select("date", *frame.columns))
    if not frames:
        return pl.DataFrame(schema={"date": pl.Date, **METRICS_SCHEMA})
    return pl.concat(frames, how="vertical_relaxed")


def snapshot_columns_for_realism(depth: int = schemas.DEFAULT_DEPTH) -> list[str]:
    """The book_snapshots columns Gate C needs (mid, spreads, depth, imbalance)."""
    return ["ts_event", "is_valid", *[n for g in schemas.level_names(depth) for n in g]]

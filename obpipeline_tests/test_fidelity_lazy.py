"""Gate A from the lake's parquet files in bounded memory equals Gate A on whole frames.

``evaluate_lake_day`` scans the files (level columns batch by batch, or only at the rows a golden
record aligns with); ``evaluate_day`` on the frames read whole is the reference. Tiny batches
(and tiny parquet row groups) put batch edges inside messages and between a fault and its
first detection; the days are simulated and real, clean and with every kind of fault.
"""

from __future__ import annotations

import gzip
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from obpipeline import book, lake
from obpipeline.book import checkpoint as ckpt
from obpipeline.fidelity import exact, lakeio
from obpipeline.fidelity.evaluate import DayFidelity, evaluate_day
from obpipeline.fidelity.frames import Events, Table
from obpipeline.sources import faults as F
from obpipeline.sources import synthetic as S
from obpipeline.sources.binance import read_capture
from obpipeline_tests.conftest import require_binance_data

SMALL = {"event_rate": 3.0, "msg_ms": 10_000, "d20_ms": 30_000, "warmup_events": 20_000}
DAY = date(2024, 3, 1)
BATCH = 997  # rows per batch: a prime, so batch edges fall anywhere in a message


def _capture(lines: list[bytes], path: Path):
    path.write_bytes(gzip.compress(b"".join(x + b"\n" for x in lines), compresslevel=1))
    return read_capture([path])


def _write(frame: pl.DataFrame, dataset: str, inst, day: date, root: Path) -> Path:
    """A lake partition with small row groups (so a scan really reads it in pieces)."""
    path = lake.partition_path(dataset, inst.venue_id, inst.symbol, day, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, row_group_size=4096, statistics=True)
    return path


def _lake_day(root: Path, cap, day: date, checkpoint=None):
    """Replay a capture as day ``day`` (from ``checkpoint``) and write every Gate A input."""
    res = book.replay(cap.events, cap.instrument, 20, checkpoint)
    inst = cap.instrument
    _write(res.snapshots, "book_snapshots", inst, day, root)
    _write(cap.events, "raw_book_events", inst, day, root)
    _write(cap.golden_bbo, "golden_bbo", inst, day, root)
    if cap.golden_depth.height:
        _write(cap.golden_depth, "golden_depth", inst, day, root)
    if cap.quarantine.height:
        _write(cap.quarantine, "quarantine", inst, day, root)
    _write(pl.DataFrame([res.counters.to_dict()]), "replay_counters", inst, day, root)
    ck = lake.partition_path("book_checkpoint", inst.venue_id, inst.symbol, day, root)
    ckpt.write(res.checkpoint, inst, ck)
    return res


def _whole(root: Path, venue: str, symbol: str, day: date) -> DayFidelity:
    """The reference: every file read whole, evaluated in one batch."""

    def read(name: str, d: date = day) -> pl.DataFrame | None:
        p = lake.partition_path(name, venue, symbol, d, root)
        return pl.read_parquet(p) if p.exists() else None

    snaps, events = read("book_snapshots"), read("raw_book_events")
    prev = lake.partition_path("book_checkpoint", venue, symbol, day - timedelta(days=1), root)
    quarantine = read("quarantine")
    return evaluate_day(
        snaps,
        lakeio.instrument_for(venue, symbol, events),
        events=events,
        golden_bbo=read("golden_bbo"),
        golden_depth=read("golden_depth"),
        counters=read("replay_counters").row(0, named=True),
        checkpoint_in=ckpt.read(prev) if prev.exists() else None,
        quarantined=quarantine.height if quarantine is not None else 0,
    )


def assert_same_day(a: DayFidelity, b: DayFidelity) -> None:
    assert_frame_equal(a.metrics, b.metrics)
    assert a.integrity.figures == b.integrity.figures
    assert a.integrity.first == b.integrity.first
    assert a.integrity.carried == b.integrity.carried
    assert_frame_equal(a.integrity.invalid_intervals, b.integrity.invalid_intervals)
    assert [c.kind for c in a.comparisons] == [c.kind for c in b.comparisons]
    for x, y in zip(a.comparisons, b.comparisons, strict=True):
        assert x.summary() == y.summary() and x.first_mismatch() == y.first_mismatch()
        assert (x.first_time_mismatch_ns, x.first_time_mismatch_msg_id) == (
            y.first_time_mismatch_ns,
            y.first_time_mismatch_msg_id,
        )
        for f in ("pairs", "mismatch_sample", "per_level"):
            assert_frame_equal(getattr(x, f), getattr(y, f))
    assert (a.materiality is None) == (b.materiality is None)
    if a.materiality is not None and b.materiality is not None:
        assert a.materiality.figures == b.materiality.figures


def _check(root: Path, inst, day: date) -> DayFidelity:
    lazy = lakeio.evaluate_lake_day(root, inst.venue_id, inst.symbol, day, batch_rows=BATCH)
    assert_same_day(lazy, _whole(root, inst.venue_id, inst.symbol, day))
    return lazy


@pytest.fixture(scope="module")
def sim_days() -> list[S.SimulatedDay]:
    return list(S.simulate_days(DAY, 2, **SMALL))


def test_simulated_days_clean_chained(sim_days, tmp_path) -> None:
    inst = sim_days[0].instrument
    r1 = _lake_day(tmp_path, _capture(sim_days[0].lines(), tmp_path / "d1.gz"), DAY)
    _lake_day(tmp_path, _capture(sim_days[1].lines(), tmp_path / "d2.gz"), DAY + timedelta(1),
              r1.checkpoint)  # fmt: skip
    first = _check(tmp_path, inst, DAY)
    second = _check(tmp_path, inst, DAY + timedelta(1))
    assert first.passed and second.passed
    assert second.integrity.carried.status == "compared"  # D-1's book carried to D's snapshot
    kinds = {c.kind: c for c in first.comparisons}
    assert {"bookTicker", "depth", "rest"} <= set(kinds) and kinds["depth"].aligned > 0


@pytest.mark.parametrize(
    "spec",
    [
        "all=0.01",
        "drop=0.02,duplicate=0.02",
        "scale_size=0.02,shift_price=0.01,stale_snapshot=1:7",
    ],
)
def test_simulated_day_with_faults(sim_days, tmp_path, spec) -> None:
    lines, report = F.inject(sim_days[0].lines(), spec, seed=3)
    assert report.injections
    cap = _capture(lines, tmp_path / "f.gz")
    _lake_day(tmp_path, cap, DAY)
    day = _check(tmp_path, cap.instrument, DAY)
    assert not day.passed


def test_time_aligned_references_lazy_equals_whole(sim_days, tmp_path) -> None:
    """Records without update ids (Tardis-like) take the time-aligned comparison: same result."""
    cap = _capture(sim_days[0].lines(), tmp_path / "d1.gz")
    res = book.replay(cap.events, cap.instrument, 20)
    no_ids = {
        n: g.with_columns(pl.lit(None, pl.Int64).alias("update_id"))
        for n, g in (("bbo", cap.golden_bbo), ("depth", cap.golden_depth))
    }
    paths = {}
    for n, g in no_ids.items():
        paths[n] = tmp_path / f"{n}.parquet"
        g.write_parquet(paths[n], row_group_size=512)
    snaps, events = tmp_path / "snaps.parquet", tmp_path / "events.parquet"
    res.snapshots.write_parquet(snaps, row_group_size=4096)
    cap.events.write_parquet(events, row_group_size=4096)
    whole = exact.day_comparisons(res.snapshots, cap.events, no_ids["bbo"], no_ids["depth"])
    lazy = exact.day_comparisons(
        Table(snaps, BATCH), Events(events, BATCH), paths["bbo"], paths["depth"]
    )
    assert [c.kind for c in whole] == ["quotes", "book_snapshot", "rest"]
    for x, y in zip(whole, lazy, strict=True):
        assert x.summary() == y.summary()
        assert_frame_equal(x.pairs, y.pairs)
        assert_frame_equal(x.mismatch_sample, y.mismatch_sample)
    assert whole[0].aligned > 0 and whole[0].mismatched < whole[0].aligned
    assert exact.offset_counts(res.snapshots, no_ids["depth"]) == exact.offset_counts(
        Table(snaps, BATCH), paths["depth"]
    )


def test_real_captures_clean_and_with_faults(tmp_path) -> None:
    data = require_binance_data()
    d1, d2 = date(2024, 7, 18), date(2024, 7, 19)
    c1 = read_capture([data / "usdm/btcusdt_20240718.gz"])
    r1 = _lake_day(tmp_path / "clean", c1, d1)
    c2 = read_capture([data / "usdm/btcusdt_20240719.gz"])
    _lake_day(tmp_path / "clean", c2, d2, r1.checkpoint)
    for d in (d1, d2):
        day = _check(tmp_path / "clean", c1.instrument, d)
        assert day.integrity.figures["gaps"] == 0
        assert {c.kind: c.mismatched for c in day.comparisons}.get("bookTicker") == 0
    for market, name in (("spot", "btcusdt_20240808.gz"), ("usdm", "btcusdt_20240808.gz")):
        raw = gzip.decompress((data / market / name).read_bytes()).splitlines()
        lines, _ = F.inject(raw, "all=0.005", seed=11)
        cap = _capture(lines, tmp_path / f"{market}.gz")
        _lake_day(tmp_path / market, cap, d1)
        assert not _check(tmp_path / market, cap.instrument, d1).passed


def test_mid_rows_keep_every_whole_second_mid_grid(sim_days, tmp_path) -> None:
    from obpipeline.fidelity import realism

    cap = _capture(sim_days[0].lines(), tmp_path / "d1.gz")
    snaps = book.replay(cap.events, cap.instrument, 20).snapshots
    # a late exchange time inside the day: the running maximum must be kept, not the stamp
    late = pl.int_range(pl.len()) == snaps.height // 2
    snaps = snaps.with_columns(
        pl.when(late).then(pl.col("ts_event") - pl.duration(seconds=90)).otherwise("ts_event")
    )
    path = tmp_path / "snaps.parquet"
    snaps.write_parquet(path, row_group_size=4096)
    reduced = realism.mid_rows(path)
    assert reduced.height <= snaps.height and reduced.columns == realism.L1_COLUMNS
    for every in ("1s", "5s", "1m", "1h"):
        assert_frame_equal(realism.mid_grid(snaps, every), realism.mid_grid(reduced, every))

"""Great Expectations suites over a day in batches: every row is checked, and the batched result
(counts, samples, mostly, row count, increasing across batch edges) is the whole day's."""

from __future__ import annotations

import polars as pl
import pytest

from obpipeline import book
from obpipeline.defs import expectations as E
from obpipeline.sources import synthetic
from obpipeline.verdict import Verdict

LIGHT = {"event_rate": 3.0, "msg_ms": 20_000, "d20_ms": 60_000, "warmup_events": 20_000}
BATCH = {"raw_book_events": 1_000, "book_snapshots": 500}


@pytest.fixture(scope="module")
def day() -> dict[str, pl.DataFrame]:
    sim = synthetic.simulate_day("2024-03-01", profile="demo", **LIGHT)
    raw = sim.raw_book_events()
    snapshots = book.replay(raw, sim.instrument).snapshots
    return {"raw_book_events": raw.head(12_000), "book_snapshots": snapshots}


def whole(dataset: str, frame: pl.DataFrame) -> Verdict:
    """The suite in one run over the whole day (the reference)."""
    return E.validate(dataset, frame, batch_rows=max(1, frame.height))


def batched(tmp_path, dataset: str, frame: pl.DataFrame) -> Verdict:
    path = tmp_path / f"{dataset}.parquet"
    frame.write_parquet(path)
    from_file = E.validate_parquet(dataset, path, batch_rows=BATCH[dataset])
    in_memory = E.validate(dataset, frame, batch_rows=BATCH[dataset])
    assert summary(from_file) == summary(in_memory)
    assert from_file.metadata["failed_expectations"] == in_memory.metadata["failed_expectations"]
    return from_file


def failed(r: Verdict) -> list[dict]:
    return r.metadata["failed_expectations"]


def summary(r: Verdict) -> tuple:
    return (
        r.passed,
        r.metadata["evaluated"],
        sorted((f["type"], f["column"], f["unexpected_count"]) for f in failed(r)),
    )


@pytest.mark.parametrize("dataset", ["raw_book_events", "book_snapshots"])
def test_clean_day_passes_in_batches(tmp_path, day, dataset: str) -> None:
    frame = day[dataset]
    assert frame.height > 5 * BATCH[dataset]
    result = batched(tmp_path, dataset, frame)
    assert result.passed and not failed(result)
    assert summary(result) == summary(whole(dataset, frame))


def _set(frame: pl.DataFrame, rows: list[int], column: str, value) -> pl.DataFrame:
    hit = pl.int_range(pl.len()).is_in(rows)
    return frame.with_columns(
        pl.when(hit)
        .then(pl.lit(value))
        .otherwise(pl.col(column))
        .cast(frame.schema[column])
        .alias(column)
    )


def test_raw_faults_are_counted_as_on_the_whole_day(tmp_path, day) -> None:
    raw = day["raw_book_events"]
    n = BATCH["raw_book_events"]
    edge = 3 * n  # first row of the fourth batch
    bad = _set(raw, [5, edge - 1, edge, 7_777], "size", -1)
    bad = _set(bad, [n - 1], "ts_local", None)
    # msg_id goes back exactly across a batch edge: only the pair spanning it shows it
    bad = _set(bad, [2 * n - 1], "msg_id", int(raw["msg_id"][2 * n]) + 10)
    result = batched(tmp_path, "raw_book_events", bad)
    reference = whole("raw_book_events", bad)
    assert summary(result) == summary(reference)
    counts = {f["column"]: f["unexpected_count"] for f in failed(result)}
    assert counts == {"size": 4, "ts_local": 1, "msg_id": 1}
    assert not result.passed
    assert {f["column"]: f["sample"] for f in failed(result)}["size"] == ["-1.0"] * 4


def test_snapshot_faults_and_mostly_over_the_day(tmp_path, day) -> None:
    snaps = day["book_snapshots"]
    valid = snaps["is_valid"].arg_true().to_list()
    allowed = len(valid) // 1_000  # mostly=0.999 of the valid rows
    assert allowed >= 3
    # nulls spread one per batch: each batch alone is over the limit (1 in 500), the day is not
    few = _set(snaps, valid[100::1_000][:allowed], "bid_price_1", None)
    result = batched(tmp_path, "book_snapshots", few)
    assert result.passed and summary(result) == summary(whole("book_snapshots", few))
    many = _set(snaps, valid[100::300], "bid_price_1", None)
    result = batched(tmp_path, "book_snapshots", many)
    assert summary(result) == summary(whole("book_snapshots", many))
    assert [f["column"] for f in failed(result)] == ["bid_price_1"]
    # last_update_id goes back exactly across a batch edge
    at = BATCH["book_snapshots"]
    assert snaps["is_valid"][at - 1] and snaps["is_valid"][at]
    back = _set(snaps, [at], "last_update_id", int(snaps["last_update_id"][at - 1]) - 1)
    result = batched(tmp_path, "book_snapshots", back)
    assert summary(result) == summary(whole("book_snapshots", back))
    assert [(f["column"], f["unexpected_count"]) for f in failed(result)] == [("last_update_id", 1)]


def test_empty_day_fails_the_row_count(tmp_path, day) -> None:
    empty = day["raw_book_events"].head(0)
    result = batched(tmp_path, "raw_book_events", empty)
    assert not result.passed
    assert [f["type"] for f in failed(result)] == ["expect_table_row_count_to_be_between"]
    assert summary(result) == summary(whole("raw_book_events", empty))


def test_bad_input(tmp_path) -> None:
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="x.parquet: not a readable parquet file"):
        E.validate_parquet("raw_book_events", tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="batch_rows"):
        E.validate_parquet("raw_book_events", tmp_path / "x.parquet", batch_rows=0)

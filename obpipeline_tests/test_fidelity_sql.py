"""The DuckDB queries in sql/ agree with the Polars comparisons, day by day, on a real lake."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from obpipeline import book, lake, schemas
from obpipeline.fidelity import exact
from obpipeline.fidelity.sql import run_sql, sql_path
from obpipeline.sources.binance import read_capture
from obpipeline_tests.conftest import require_binance_data

ENGINE = "reference"


def fabricated_depth(snapshots: pl.DataFrame, inst) -> pl.DataFrame:
    """Partial-book records from our own valid rows (every 7th), some wrong on purpose."""
    names = [n for g in schemas.level_names(20) for n in g]
    rows = (
        snapshots.filter(pl.col("is_valid"))
        .unique("last_update_id", keep="last", maintain_order=True)
        .gather_every(7)
        .with_row_index("k")
    )
    levels = pl.when(pl.col("k") % 3 == 0).then(20).when(pl.col("k") % 3 == 1).then(10).otherwise(5)
    rows = rows.with_columns(levels.cast(pl.Int16).alias("levels"))
    hide = [
        pl.when(pl.col("levels") >= int(n.rsplit("_", 1)[1])).then(pl.col(n)).alias(n)
        for n in names
    ]
    size_t, price_t = rows.schema["bid_size_3"], rows.schema["ask_price_2"]
    wrong = [  # one 3-record incident on bid size 3, one single record on ask price 2
        pl.when(pl.col("k").is_between(10, 12))
        .then((pl.col("bid_size_3") + pl.lit(1)).cast(size_t))
        .otherwise(pl.col("bid_size_3"))
        .alias("bid_size_3"),
        pl.when(pl.col("k") == 40)
        .then((pl.col("ask_price_2") + pl.lit(1)).cast(price_t))
        .otherwise(pl.col("ask_price_2"))
        .alias("ask_price_2"),
    ]
    out = rows.with_columns(hide).with_columns(wrong).rename({"last_update_id": "update_id"})
    return schemas.conform(out, schemas.golden_depth(inst, 20), "golden_depth")


@pytest.fixture(scope="module")
def real_lake(tmp_path_factory) -> tuple[Path, list]:
    data = require_binance_data()
    root = tmp_path_factory.mktemp("lake")
    c1 = read_capture([data / "usdm/btcusdt_20240718.gz"])
    r1 = book.replay(c1.events, c1.instrument, engine=ENGINE)
    c2 = read_capture([data / "usdm/btcusdt_20240719.gz"])
    r2 = book.replay(c2.events, c2.instrument, checkpoint=r1.checkpoint, engine=ENGINE)
    inst = c1.instrument
    frames: dict[str, list[pl.DataFrame]] = {}
    for cap, res in ((c1, r1), (c2, r2)):
        for name, frame in (
            ("book_snapshots", res.snapshots),
            ("golden_bbo", cap.golden_bbo),
            ("raw_book_events", cap.events),
            ("golden_depth", fabricated_depth(res.snapshots, inst)),
        ):
            frames.setdefault(name, []).append(frame)
    days = []
    for name, parts in frames.items():
        # a day-1 file runs past midnight: rows go to the partition of their exchange date
        whole = pl.concat(parts).with_columns(pl.col("ts_event").dt.date().alias("_day"))
        for (day,), part in whole.group_by("_day", maintain_order=True):
            lake.write_partition(part.drop("_day"), name, inst.venue_id, inst.symbol, day, root)
            days.append(day)
    return root, sorted(set(days))


def day_frames(root: Path, day) -> dict[str, pl.DataFrame]:
    v, s = "binance-usdm", "BTCUSDT"
    return {
        n: pl.read_parquet(lake.partition_path(n, v, s, day, root))
        for n in ("book_snapshots", "golden_bbo", "golden_depth", "raw_book_events")
    }


def test_bbo_sql_agrees_with_polars(real_lake) -> None:
    root, days = real_lake
    out = run_sql("golden_bbo_comparison", root)
    assert out["date"].to_list() == days
    for row in out.iter_rows(named=True):
        f = day_frames(root, row["date"])
        c = exact.compare_bbo(f["book_snapshots"], f["golden_bbo"], f["raw_book_events"])
        got = {k: row[k] for k in ("records", "aligned", "matched", "mismatched", "incidents")}
        assert got == {k: getattr(c, k) for k in got}
        assert (row["time_checked"], row["time_mismatched"]) == (c.time_checked, 0)
        assert row["aligned"] > 100


def test_depth_sql_agrees_with_polars_including_incidents_and_levels(real_lake) -> None:
    root, days = real_lake
    out = run_sql("golden_depth_comparison", root)
    total_incidents = 0
    for row in out.iter_rows(named=True):
        f = day_frames(root, row["date"])
        c = exact.compare_depth(f["book_snapshots"], f["golden_depth"], f["raw_book_events"])
        got = {k: row[k] for k in ("records", "aligned", "matched", "mismatched", "incidents")}
        assert got == {k: getattr(c, k) for k in got}
        total_incidents += c.incidents
    assert total_incidents == 2 * len(days)  # the fabricated errors, once per day
    per_level = run_sql("golden_depth_per_level", root)
    polars_levels = (
        pl.concat(
            [
                exact.compare_depth(
                    (f := day_frames(root, d))["book_snapshots"], f["golden_depth"]
                ).per_level
                for d in days
            ]
        )
        .group_by("level")
        .agg(pl.col("compared").sum(), pl.col("matched").sum())
        .sort("level")
    )
    assert per_level["level"].to_list() == polars_levels["level"].to_list()
    assert per_level["compared"].to_list() == polars_levels["compared"].to_list()
    assert per_level["matched"].to_list() == polars_levels["matched"].to_list()
    wrong = per_level.filter(pl.col("matched") < pl.col("compared"))["level"].to_list()
    assert wrong == [2, 3]


def test_filters_and_the_cli(real_lake, capsys) -> None:
    from obpipeline.cli import main

    root, days = real_lake
    one = run_sql("golden_bbo_comparison", root, {"date_from": str(days[-1])})
    assert one["date"].to_list() == [days[-1]]
    assert run_sql("golden_bbo_comparison", root, {"venue": "nowhere"}).height == 0
    assert sql_path("golden_bbo_comparison").name == "golden_bbo_comparison.sql"
    assert main(["sql", "golden_bbo_comparison", "--lake", str(root), "--format", "csv"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("venue,symbol,date,records,aligned") and str(days[0]) in text

"""The HTML report and the asset-level functions over a lake built from real captures."""

from __future__ import annotations

import polars as pl

from obpipeline import lake
from obpipeline.fidelity import assets, lakeio
from obpipeline.fidelity.report import build_report
from obpipeline_tests.test_fidelity_sql import real_lake  # noqa: F401  (module fixture)


def test_lake_days_are_evaluated_and_stored(real_lake) -> None:  # noqa: F811
    root, days = real_lake
    assert lakeio.instruments_in_lake(root) == [("binance-usdm", "BTCUSDT")]
    metrics = lakeio.collect_metrics(root, "binance-usdm", "BTCUSDT", write=True)
    assert sorted(set(metrics["date"].to_list())) == days
    stored = pl.read_parquet(
        lake.partition_path("fidelity_metrics", "binance-usdm", "BTCUSDT", days[0], root)
    )
    assert {"gate", "check", "metric", "value", "status", "blocking"} <= set(stored.columns)
    table = assets.daily_table(metrics)
    assert table["day"].to_list() == days
    # the fabricated depth errors fail A1 (depth); the bookTicker evidence is clean
    assert not table["integrity_ok"].any()
    verdicts = metrics.filter(pl.col("metric") == "value")
    bbo = verdicts.filter(pl.col("check") == "bookTicker")["status"].to_list()
    assert set(bbo) == {"insufficient"}  # clean, but a few minutes cannot certify 0.01 %
    assert set(verdicts.filter(pl.col("check") == "depth")["status"].to_list()) == {"fail"}


def test_day_asset_outcomes(real_lake) -> None:  # noqa: F811
    root, days = real_lake
    day = assets.fidelity_day(root, "binance-usdm", "BTCUSDT", days[-1])
    outcome = {c.name: c for c in day.checks}
    assert set(outcome) == {"gate_a", "gate_a2", "gate_c"}
    assert not outcome["gate_a"].passed and "A1:depth" in outcome["gate_a"].description
    assert outcome["gate_c"].severity == "WARN"
    assert day.metadata["golden_compared"] > 100 and day.metadata["integrity_ok"] is False


def test_html_report_is_self_contained(real_lake, tmp_path) -> None:  # noqa: F811
    root, days = real_lake
    mutation = {
        "summary": {"mutant_runs": 1, "detected": 1, "clean_runs": 1, "false_alarms": 0},
        "runs": [
            {"dataset": "real x", "mutant": "clean", "passed": True, "applicable": True},
            {
                "dataset": "real x",
                "mutant": "tick_1%",
                "passed": False,
                "applicable": True,
                "detected": True,
                "latency_seconds": 1.5,
                "first_check": "A0:crossed",
                "failed_checks": ["A0:crossed"],
            },  # fmt: skip
        ],
    }
    out = build_report(root, tmp_path / "r.html", mutation=mutation)
    text = out.read_text()
    assert text.startswith("<!doctype html>") and "data:image/png;base64," in text
    for section in ("Gate A — per day", "Gate B — the mutation proof", "binance-usdm"):
        assert section in text
    for d in days:
        assert str(d) in text
    assert "caught" in text and "http://" not in text and "https://" not in text


def test_gate_c_window_reads_each_day_once_until_rewritten(
    real_lake,  # noqa: F811
    tmp_path,
    monkeypatch,
) -> None:
    """Gate C's window re-reads the same days every day: each day's walk sample is decoded once
    while its file is unchanged, and again once the file is rewritten (same results either way)."""
    import shutil

    from obpipeline.fidelity import frames
    from obpipeline.fidelity.config import thresholds_for

    root, days = real_lake
    copy = tmp_path / "lake"
    shutil.copytree(root, copy)
    t = thresholds_for("binance-usdm")
    decoded: list[str] = []
    real_batches = frames.batches

    def counting(source, columns, rows=frames.BATCH_ROWS):
        decoded.append(str(source))
        return real_batches(source, columns, rows)

    monkeypatch.setattr(assets, "batches", counting)
    assets._day_walk.cache_clear()
    first = assets.realism_window(copy, "binance-usdm", "BTCUSDT", days[-1], t, 7)
    assert len(decoded) == len(days)  # one walk sample per day of the window
    again = assets.realism_window(copy, "binance-usdm", "BTCUSDT", days[-1], t, 7)
    assert len(decoded) == len(days)  # nothing decoded again
    assert [(r.check, r.value, r.status) for r in again.results] == [
        (r.check, r.value, r.status) for r in first.results
    ]
    path = lake.partition_path("book_snapshots", "binance-usdm", "BTCUSDT", days[0], copy)
    frame = pl.read_parquet(path)
    lake.write_partition(frame.head(frame.height // 2), "book_snapshots", "binance-usdm",
                         "BTCUSDT", days[0], copy)  # fmt: skip
    assets.realism_window(copy, "binance-usdm", "BTCUSDT", days[-1], t, 7)
    assert decoded[len(days) :] == [str(path.resolve())]  # only the rewritten day is read again

"""The Dagster chain in process on the simulator: 3 chained days, identical re-runs, loud D-1 gaps.

A small simulator profile keeps a day at ~8 k messages so the whole module runs in well under a
minute; the Great Expectations suites run here (once, the import is paid once per process).
"""

import hashlib
import io
import json
import shutil
import warnings
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from obpipeline import lake
from obpipeline.defs import build_definitions
from obpipeline.defs.assets import ALONGSIDE_RAW, CHECKPOINT, COUNTERS, GOLDEN, METRICS, SNAPSHOTS
from obpipeline.defs.config import InstrumentConfig, PlatformConfig, SourceConfig
from obpipeline.defs.local import materialize_range
from obpipeline.fidelity import exact, lakeio
from obpipeline.fidelity.assets import fidelity_day

warnings.filterwarnings("ignore")

SMALL = {"event_rate": 2.0, "msg_ms": 10_000, "warmup_events": 20_000}
DAYS = ["2025-03-01", "2025-03-02", "2025-03-03"]
ASSETS = [
    "raw_book_events",
    "book_checkpoint",
    "book_snapshots",
    "book_features",
    "fidelity_metrics",
    "fidelity_report",
]


def platform(tmp: Path, ge: bool = False, **options) -> PlatformConfig:
    return PlatformConfig(
        instruments=(InstrumentConfig(source=SourceConfig(options={**SMALL, **options})),),
        lake=tmp / "lake",
        alert_log=tmp / "alerts.jsonl",
        window_start=date(2025, 3, 1),
        window_end=date(2025, 3, 10),
        great_expectations=ge,
    )


def files_of(cfg: PlatformConfig, day: str) -> dict[str, str]:
    """sha256 of every lake file of one day (all datasets)."""
    return {
        str(p.relative_to(cfg.lake)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(cfg.lake.glob(f"*/venue=*/symbol=*/date={day}/part-0.parquet"))
    }


@pytest.fixture(scope="module")
def compared() -> list[str]:
    """Every golden comparison (``exact.day_comparisons``) the ``chained`` run made."""
    return []


@pytest.fixture(scope="module")
def chained(tmp_path_factory, compared):
    """Three days materialised in one range run (as a backfill run does), GE suites included."""
    tmp = tmp_path_factory.mktemp("chain")
    cfg = platform(tmp, ge=True)
    defs = build_definitions(cfg)
    real = exact.day_comparisons

    def counted(snapshots, *args, **kw):
        compared.append(str(getattr(snapshots, "source", snapshots)))
        return real(snapshots, *args, **kw)

    with dg.instance_for_test(temp_dir=str(tmp)) as instance, pytest.MonkeyPatch.context() as mp:
        mp.setattr(exact, "day_comparisons", counted)
        run = materialize_range(defs, instance, cfg.instruments[0], DAYS[0], DAYS[-1])
        mp.undo()
        yield cfg, defs, instance, run


def test_three_chained_days_materialise(chained):
    cfg, _, instance, run = chained
    assert run.success, run.step_errors
    for asset in ASSETS:
        assert sorted(run.materialized[asset]) == DAYS, asset
    # the chain: day 1 syncs on its own opening snapshot, days 2-3 start from the D-1 checkpoint
    started = [run.metadata[(CHECKPOINT, d)]["started_from"] for d in DAYS]
    assert started == ["own snapshot", "D-1 checkpoint", "D-1 checkpoint"]
    for day in DAYS:
        meta = run.metadata[(SNAPSHOTS, day)]
        assert meta["golden_compared"] > 100 and meta["golden_mismatched"] == 0
        assert isinstance(meta["seconds"], float) and meta["dagster/row_count"] > 0
        written = {k.split("/")[0] for k in files_of(cfg, day)}
        assert written >= {*ASSETS, *ALONGSIDE_RAW, COUNTERS, GOLDEN, "book_features_1s"}
    report = pl.read_parquet(next(cfg.lake.glob(f"fidelity_report/*/*/date={DAYS[-1]}/*")))
    assert report["day"].cast(pl.String).to_list() == DAYS and report["integrity_ok"].all()
    # checks are partitioned: every evaluation carries its day, all passed
    assert not [c for c in run.failed_checks if c["severity"] == "ERROR"], run.failed_checks
    asset_key = dg.AssetKey(["binance_usdm", "btcusdt", "raw_book_events"])
    for name in ("raw_id_chain", "ge_suite"):
        records = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(asset_key, name), limit=10
        )
        assert sorted(r.partition for r in records) == DAYS, name


def _bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


def _same(a: dict, b: dict) -> bool:
    """Metadata equal, NaN included."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def test_one_golden_comparison_a_day(chained, compared):
    """book_snapshots compares each day once (the staged file); fidelity_metrics never does, and
    its metrics, verdicts and metadata are those of a fresh evaluation of the day."""
    cfg, _, _, run = chained
    assert run.success, run.step_errors
    assert len(compared) == len(DAYS)
    assert all(Path(s).name == ".part-0.parquet.staged" for s in compared), compared
    inst = cfg.instruments[0]
    venue, symbol = inst.venue_id, inst.symbol
    for day in DAYS:
        stored = pl.read_parquet(lake.partition_path(METRICS, venue, symbol, day, cfg.lake))
        fresh = fidelity_day(cfg.lake, venue, symbol, day, reuse_golden=False)
        assert _bytes(stored) == _bytes(fresh.metrics), day
        reused = fidelity_day(cfg.lake, venue, symbol, day)
        assert _bytes(reused.metrics) == _bytes(fresh.metrics), day
        assert _same(reused.metadata, fresh.metadata), day
        assert [v.passed for v in reused.checks] == [v.passed for v in fresh.checks]
        assert reused.checks[0].passed and reused.checks[1].passed  # gate_a, gate_a2
        # Gate A alone: the stored A1 + A2 rows are exactly what evaluate_lake_day computes
        gate_a = lakeio.evaluate_lake_day(cfg.lake, venue, symbol, day)
        assert {c.kind for c in gate_a.comparisons} >= {"bookTicker", "depth", "rest"}
        golden = pl.read_parquet(lake.partition_path(GOLDEN, venue, symbol, day, cfg.lake))
        assert golden.equals(gate_a.metrics.filter(pl.col("gate").is_in(["A1", "A2"])))
        again = lakeio.evaluate_lake_day(cfg.lake, venue, symbol, day, reuse_golden=True)
        assert again.comparisons == [] and _bytes(again.metrics) == _bytes(gate_a.metrics)
        assert again.summary() == gate_a.summary()
        meta = run.metadata[(METRICS, day)]
        assert {k: meta[k] for k in ("golden_compared", "bookTicker_aligned", "depth_incidents")}
        for k in (
            "golden_records",
            "golden_compared",
            "golden_mismatched",
            "bookTicker_aligned",
            "depth_aligned",
            "rest_aligned",
            "depth_incidents",
            "mismatch_rate_upper95",
        ):
            assert meta[k] == fresh.metadata[k], (day, k)  # fmt: skip


def test_metrics_follow_the_stored_golden_results(chained, tmp_path, monkeypatch):
    """fidelity_metrics judges Gates A1 + A2 from ``golden_results``, not by comparing again: a
    doctored stored verdict shows in its metrics; without the file (an older lake) it compares."""
    cfg = chained[0]
    root = tmp_path / "lake"
    shutil.copytree(cfg.lake, root)
    venue, symbol, day = cfg.instruments[0].venue_id, cfg.instruments[0].symbol, DAYS[1]
    path = lake.partition_path(GOLDEN, venue, symbol, day, root)
    touch = (pl.col("check") == "touch") & (pl.col("metric") == "value")
    doctored = pl.read_parquet(path).with_columns(
        status=pl.when(touch).then(pl.lit("fail")).otherwise("status"),
        detail=pl.when(touch).then(pl.lit("doctored")).otherwise("detail"),
    )
    doctored.write_parquet(path)

    def no_comparison(*_, **__):
        raise AssertionError("compared again")

    with monkeypatch.context() as m:
        m.setattr(exact, "day_comparisons", no_comparison)
        result = fidelity_day(root, venue, symbol, day)
    row = result.metrics.filter(pl.col("gate") == "A1", touch)
    assert row["status"].to_list() == ["fail"] and row["detail"].to_list() == ["doctored"]
    gate_a = next(v for v in result.checks if v.name == "gate_a")
    assert not gate_a.passed and "A1:touch doctored" in gate_a.description
    assert result.metadata["failed_checks"] == ["A1:touch"]
    path.unlink()  # no stored results: compared as before
    assert fidelity_day(root, venue, symbol, day).metadata["gate_a_passed"] is True


def test_rematerialising_a_day_writes_identical_bytes(chained):
    cfg, defs, instance, _ = chained
    before = files_of(cfg, DAYS[1])
    run = materialize_range(defs, instance, cfg.instruments[0], DAYS[1])
    assert run.success, run.step_errors
    after = files_of(cfg, DAYS[1])
    assert sorted(after) == sorted(before)
    assert [k for k in before if before[k] != after[k]] == []


def test_missing_previous_day_fails_loudly(tmp_path):
    """Days without an opening snapshot need D-1: without it the run fails, nothing is written."""
    cfg = platform(tmp_path, opening_snapshot=False, snapshot_every=None)
    defs = build_definitions(cfg)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        run = materialize_range(defs, instance, cfg.instruments[0], DAYS[1])
    assert not run.success
    error = next(e for step, e in run.step_errors.items() if step.endswith(CHECKPOINT))
    assert "D-1 book_checkpoint (2025-03-01) is missing" in error
    assert "does not open with its own exchange snapshot" in error
    assert "raw_book_events" in run.materialized  # the raw day itself is fine
    assert CHECKPOINT not in run.materialized and SNAPSHOTS not in run.materialized
    assert not list(cfg.lake.glob(f"{CHECKPOINT}/*/*/date={DAYS[1]}/*"))

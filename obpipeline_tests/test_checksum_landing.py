"""The Dagster landing source takes checksum-venue recordings: a landed Kraken day runs the whole
daily chain (raw_book_events → book_checkpoint → book_snapshots → features → fidelity_metrics),
unchanged, and its book_snapshots are the very books whose every checksum matched."""

from __future__ import annotations

import shutil
import warnings
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from obpipeline.book import checksum as ck
from obpipeline.defs import build_definitions
from obpipeline.defs.config import InstrumentConfig, PlatformConfig
from obpipeline.defs.local import materialize_range
from obpipeline.sources.checksum_venues.recording import read_recording
from obpipeline.sources.checksum_venues.sequence import sequence
from obpipeline.sources.day import SourceConfig, tardis_day_base
from obpipeline_tests.test_checksum_venues import recording_path

warnings.filterwarnings("ignore")

DAY = date(2021, 4, 17)
DEPTH = 20


def test_landed_kraken_day_runs_the_daily_chain(tmp_path: Path) -> None:
    src = recording_path("kraken")
    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(src, landing / "kraken_20210417.txt")
    source = SourceConfig(kind="landing", path=landing, format="kraken")
    inst = InstrumentConfig(venue="kraken", market="spot", symbol="ETH-CHF", source=source)
    cfg = PlatformConfig(
        instruments=(inst,),
        lake=tmp_path / "lake",
        alert_log=tmp_path / "alerts.jsonl",
        window_start=DAY,
        window_end=date(2021, 4, 18),
        depth=DEPTH,
        great_expectations=False,
    )
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        run = materialize_range(build_definitions(cfg), instance, inst, DAY)
    assert run.success, (run.step_errors, run.failed_checks)
    day = DAY.isoformat()
    raw = run.metadata[("raw_book_events", day)]
    assert raw["quarantined"] == 0 and raw["gaps"] == 0
    assert run.metadata[("book_checkpoint", day)]["started_from"] == "own snapshot"
    features = run.metadata[("book_features", day)]
    assert features["dagster/row_count"] == 318 and features["invalid_rows"] == 0
    metrics = run.metadata[("fidelity_metrics", day)]
    assert metrics["gate_a_passed"] and metrics["integrity_ok"]
    assert metrics["gaps"] == metrics["crossed"] == metrics["invalid_rows"] == 0

    # the lake's rows are the books the ChecksumValidator proved, message for message
    lake_day = tmp_path / "lake" / "book_snapshots" / "venue=kraken-spot" / "symbol=ETH-CHF"
    (path,) = lake_day.rglob("*.parquet")
    landed = pl.read_parquet(path)
    venue_day = sequence(read_recording([src]), "ETH/CHF", first_id=tardis_day_base(DAY))
    checked, report = ck.replay_checked(venue_day, DEPTH)
    assert report.compared == 317 and report.mismatched == 0
    assert raw["messages"] == venue_day.messages == landed.height
    assert landed.drop("ts_event", "ts_local").equals(
        checked.snapshots.drop("ts_event", "ts_local")
    )
    assert landed["is_valid"].all()

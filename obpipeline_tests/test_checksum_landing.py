"""The landing source takes checksum-venue recordings: a landed Kraken day is staged as
raw_book_events that replay to the same books as the recording itself (every checksum matched
there), under the symbol's safe form."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import polars as pl

from obpipeline import book
from obpipeline.book import checksum as ck
from obpipeline.sources.checksum_venues.recording import read_recording
from obpipeline.sources.checksum_venues.sequence import sequence
from obpipeline.sources.day import DayRequest, SourceConfig, ingest_day, tardis_day_base
from obpipeline_tests.test_checksum_venues import recording_path

DAY = date(2021, 4, 17)
LEVELS = [f"{s}_{k}_{i}" for s in ("bid", "ask") for k in ("price", "size") for i in range(1, 11)]


def test_landed_kraken_day_replays_like_the_recording(tmp_path: Path) -> None:
    src = recording_path("kraken")
    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(src, landing / "kraken_20210417.txt")
    source = SourceConfig(kind="landing", path=landing, format="kraken")
    req = DayRequest(source, "kraken", "spot", "ETH-CHF", DAY, tmp_path / "lake", depth=10)
    staged = ingest_day(req)
    out = staged.publish(DAY, req.path("quarantine"))
    assert "symbol=ETH-CHF" in str(out["raw_book_events"])
    events = pl.read_parquet(out["raw_book_events"])
    day = sequence(read_recording([src]), "ETH/CHF", first_id=tardis_day_base(DAY))
    assert events["first_update_id"].min() == tardis_day_base(DAY)
    landed = book.replay(events, day.instrument, 10)
    checked, report = ck.replay_checked(day, 10)
    assert report.compared == 317 and report.mismatched == 0
    assert landed.snapshots.select(LEVELS).equals(checked.snapshots.select(LEVELS))
    assert landed.counters.gaps == 0 and landed.snapshots["is_valid"].all()

"""The Dagster landing source takes checksum-venue recordings: a landed Kraken day runs the whole
daily chain (raw_book_events + golden_checksum → book_checkpoint → book_snapshots → features →
fidelity_metrics), its book_snapshots are the very books whose every checksum matched, and
fidelity_metrics' Gate A1 ``checksum`` compares the lake's books with the venue's CRC32 of every
message: 2,234 of 2,234 on the clean recording; a corrupted size fails the day's gate_a check at
that message, with the counts in the check's metadata, and the lake's book_snapshots rows are
invalid from that message to the venue's recovery (a resubscribe's snapshot)."""

from __future__ import annotations

import json
import shutil
import warnings
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from obpipeline import book
from obpipeline.book import checksum as ck
from obpipeline.defs import build_definitions
from obpipeline.defs.config import InstrumentConfig, PlatformConfig
from obpipeline.defs.local import RunSummary, materialize_range
from obpipeline.instruments import safe_symbol
from obpipeline.sources.checksum_venues.recording import read_recording
from obpipeline.sources.checksum_venues.sequence import sequence
from obpipeline.sources.day import SourceConfig, tardis_day_base
from obpipeline_tests.test_checksum_venues import EXPECTED, recording_path

warnings.filterwarnings("ignore")

DAY = date(2021, 4, 17)
RESUBSCRIBE_AFTER = 150  # ETH/CHF message followed by a resubscribe in the corrupted test
DEPTH = 20


def _platform(
    tmp_path: Path,
    landing: Path,
    symbols: list[str],
    venue: str = "kraken",
    market: str = "spot",
    day: date = DAY,
) -> PlatformConfig:
    source = SourceConfig(kind="landing", path=landing, format=venue)
    return PlatformConfig(
        instruments=tuple(
            InstrumentConfig(venue=venue, market=market, symbol=s, source=source) for s in symbols
        ),
        lake=tmp_path / "lake",
        alert_log=tmp_path / "alerts.jsonl",
        window_start=day,
        window_end=day + timedelta(days=1),
        depth=DEPTH,
        great_expectations=False,
    )


def _gate_a(run: RunSummary) -> dg.AssetCheckEvaluation:
    """The day's gate_a evaluation on fidelity_metrics (with its metadata)."""
    (ev,) = [
        e.event_specific_data
        for e in run.result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name == "gate_a"
    ]
    return ev


@pytest.mark.parametrize("every", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_landed_kraken_days_run_the_daily_chain_with_every_checksum(
    tmp_path: Path, every: bool
) -> None:
    """ETH/CHF (every run), or the recording's five instruments (slow: 2,234 checksums)."""
    src = recording_path("kraken")
    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(src, landing / "kraken_20210417.txt")
    rec = read_recording([src])
    symbols = rec.symbols if every else ["ETH/CHF"]
    cfg = _platform(tmp_path, landing, [safe_symbol(s) for s in symbols])
    defs, day, compared = build_definitions(cfg), DAY.isoformat(), 0
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        for inst, symbol in zip(cfg.instruments, symbols, strict=True):
            run = materialize_range(defs, instance, inst, DAY)
            assert run.success, (run.step_errors, run.failed_checks)
            venue_day = sequence(rec, symbol, first_id=tardis_day_base(DAY))
            n = int((venue_day.checksum != -1).sum())
            assert run.metadata[("golden_checksum", day)]["dagster/row_count"] == n
            metrics = run.metadata[("fidelity_metrics", day)]
            assert metrics["gate_a_passed"], metrics["failed_checks"]
            assert metrics["checksum_compared"] == metrics["checksum_matched"] == n
            assert metrics["checksum_mismatched"] == 0
            gate = _gate_a(run)
            assert gate.passed and gate.metadata["A1_checksum_compared"].value == n
            compared += metrics["checksum_compared"]
            if symbol != "ETH/CHF":
                continue
            raw = run.metadata[("raw_book_events", day)]
            assert raw["quarantined"] == 0 and raw["gaps"] == 0
            assert run.metadata[("book_checkpoint", day)]["started_from"] == "own snapshot"
            features = run.metadata[("book_features", day)]
            assert features["dagster/row_count"] == 318 and features["invalid_rows"] == 0
            assert run.metadata[("book_snapshots", day)]["checksum_mismatched"] == 0
            assert metrics["gaps"] == metrics["crossed"] == metrics["invalid_rows"] == 0
            # the lake's rows are the books the ChecksumValidator proved, message for message
            lake_day = tmp_path / "lake" / "book_snapshots" / "venue=kraken-spot"
            (path,) = (lake_day / "symbol=ETH-CHF").rglob("*.parquet")
            landed = pl.read_parquet(path)
            checked, report = ck.replay_checked(venue_day, DEPTH)
            assert report.compared == n == 317 and report.mismatched == 0
            assert raw["messages"] == venue_day.messages == landed.height
            assert landed.drop("ts_event", "ts_local").equals(
                checked.snapshots.drop("ts_event", "ts_local")
            )
            assert landed["is_valid"].all()
    assert compared == (EXPECTED["kraken"] if every else 317)


def _corrupt_first_top_update(text: str, symbol: str) -> tuple[int, str]:
    """Size × 1.001 on the first update of ``symbol`` that changed the checksummed top (its
    checksum differs from the previous message's): (its line number, the corrupted text)."""
    lines, previous = text.splitlines(keepends=True), None
    for i, line in enumerate(lines):
        ts, _, body = line.partition(": ")
        if not body.startswith("[") or f'"{symbol}"' not in body:
            continue
        msg = json.loads(body)
        data, crc = msg[1], msg[1].get("c")
        side = "a" if "a" in data else "b" if "b" in data else None
        if side and crc != previous and float(data[side][0][1]) > 0:
            size = data[side][0][1]
            data[side][0][1] = f"{float(size) * 1.001:.{len(size.split('.')[1])}f}"
            lines[i] = f"{ts}: {json.dumps(msg, separators=(',', ':'))}\n"
            return i + 1, "".join(lines)
        previous = crc if crc is not None else previous
    raise AssertionError(f"no update of {symbol} changed the top")


def _resubscribed(src: Path, symbol: str, after: int) -> str:
    """The recording with a resubscribe of ``symbol`` after its message ``after``: a snapshot
    of the whole book at that point (every later checksum proves it), as Kraken sends one."""
    clean = sequence(read_recording([src]), symbol)
    end = book.replay(clean.events.filter(pl.col("msg_id") <= after), clean.instrument, 1)
    inst, at = clean.instrument, int(clean.line[after])
    assert (inst.price_scale, inst.size_scale) == (clean.price_decimals, clean.size_decimals)
    lines = src.read_text().splitlines(keepends=True)
    ts, _, body = lines[at - 1].partition(": ")

    def text(value: int, scale: int) -> str:
        digits = str(value).rjust(scale + 1, "0")
        return f"{digits[:-scale]}.{digits[-scale:]}"

    def levels(prices: np.ndarray, sizes: np.ndarray) -> list[list[str]]:
        return [
            [text(p, inst.price_scale), text(q, inst.size_scale), ts]
            for p, q in zip(prices.tolist(), sizes.tolist(), strict=True)
        ]

    b = end.checkpoint
    now = {"as": levels(b.ask_price, b.ask_size), "bs": levels(b.bid_price, b.bid_size)}
    snapshot = json.dumps([json.loads(body)[0], now, "book-1000", symbol], separators=(",", ":"))
    return "".join([*lines[:at], f"{ts}: {snapshot}\n", *lines[at:]])


def test_corrupted_landed_day_fails_gate_a_on_its_checksum(tmp_path: Path) -> None:
    src = recording_path("kraken")
    landing = tmp_path / "landing"
    landing.mkdir()
    resubscribed = tmp_path / "resubscribed.txt"
    resubscribed.write_text(_resubscribed(src, "ETH/CHF", RESUBSCRIBE_AFTER))
    line, text = _corrupt_first_top_update(resubscribed.read_text(), "ETH/CHF")
    (landing / "kraken_20210417.txt").write_text(text)
    cfg = _platform(tmp_path, landing, ["ETH-CHF"])
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        run = materialize_range(build_definitions(cfg), instance, cfg.instruments[0], DAY)
    assert not run.success  # the blocking gate_a check failed the day
    gate = _gate_a(run)
    assert not gate.passed and "A1:checksum" in gate.description
    meta = {k: v.value for k, v in gate.metadata.items()}
    assert meta["statuses"]["A1:checksum"] == "fail"
    assert meta["A1_checksum_mismatched"] == 1  # the resubscribed book matches every checksum
    assert (
        meta["A1_checksum_compared"] == meta["A1_checksum_matched"] + meta["A1_checksum_mismatched"]
    )
    assert meta["A1_checksum_compared"] < 317  # rows after the mismatch are not compared
    # located at the corrupted message: its file and line in the check's description
    assert f"{landing / 'kraken_20210417.txt'} line {line}" in gate.description
    # the lake's book_snapshots are invalid exactly from that message to the venue's recovery
    # (the resubscribe's snapshot), the mismatch counted by the book_snapshots step
    day = sequence(read_recording([landing / "kraken_20210417.txt"]), "ETH/CHF")
    (bad,) = np.flatnonzero(day.line == line).tolist()
    (recovered,) = np.flatnonzero(day.is_snapshot[bad + 1 :]) + bad + 1
    assert recovered == RESUBSCRIBE_AFTER + 1 < day.messages - 100
    lake_day = tmp_path / "lake" / "book_snapshots" / "venue=kraken-spot" / "symbol=ETH-CHF"
    (path,) = lake_day.rglob("*.parquet")
    landed = pl.read_parquet(path, columns=["msg_id", "is_valid"])
    msg = landed["msg_id"].to_numpy()
    assert landed.height == day.messages and (msg == np.arange(day.messages)).all()
    assert (landed["is_valid"].to_numpy() == ((msg < bad) | (msg >= recovered))).all()
    assert (~landed["is_valid"]).sum() == recovered - bad > 0
    assert run.metadata[("book_snapshots", DAY.isoformat())]["checksum_mismatched"] == 1
    counters = pl.read_parquet(next((tmp_path / "lake" / "replay_counters").rglob("*.parquet")))
    assert counters["checksum_mismatched"].to_list() == [1]


def test_landed_okx_day_shallower_than_its_checksum_is_replayed_for_it(tmp_path: Path) -> None:
    """OKX checksums cover 25 levels; at depth 20 the gate replays the day's events deeper."""
    day = date(2022, 5, 13)
    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(recording_path("okx"), landing / "okx_20220513.txt")
    cfg = _platform(tmp_path, landing, ["BTC-USDT"], "okx", "spot", day)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        run = materialize_range(build_definitions(cfg), instance, cfg.instruments[0], day)
    assert run.success, (run.step_errors, run.failed_checks)
    metrics = run.metadata[("fidelity_metrics", day.isoformat())]
    assert metrics["checksum_compared"] == metrics["checksum_matched"] == 98
    assert metrics["checksum_mismatched"] == 0 and metrics["gate_a_passed"]

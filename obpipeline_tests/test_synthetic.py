"""The simulated exchange: deterministic, Binance-shaped, chained, and exactly reproduced.

The exactness tests are the point: the Binance adapter and the reference replayer, fed the
simulator's capture files, must rebuild the simulator's true book after every message — all 20
levels — across chained days, and every golden record (bookTicker, depth20) must match.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from obpipeline import book
from obpipeline.book.stream import Book as Checkpoint
from obpipeline.fidelity import exact
from obpipeline.sources import synthetic as S
from obpipeline.sources.binance import lines_frame, parse_lines
from obpipeline.sources.capture import Capture
from obpipeline.sources.synthetic import paths as P
from obpipeline_tests.conftest import require_binance_data

DAY = date(2024, 3, 1)
# A light configuration for format/determinism checks: a few thousand messages.
LIGHT = {"event_rate": 3.0, "msg_ms": 20_000, "d20_ms": 60_000, "warmup_events": 20_000}


def parse(sim: S.SimulatedDay, data: bytes | None = None) -> Capture:
    raw = sim.capture if data is None else data
    return parse_lines(lines_frame(raw, sim.file_name()), market="usdm", symbol="BTCUSDT")


def valid_rows(snapshots: pl.DataFrame) -> pl.DataFrame:
    """The replayer's last valid row per message (pre-sync messages are re-emitted once synced)."""
    return (
        snapshots.filter(pl.col("is_valid"))
        .unique("msg_id", keep="last", maintain_order=True)
        .sort("msg_id")
    )


def assert_same_books(truth: pl.DataFrame, rows: pl.DataFrame) -> None:
    """Every truth row has a replayed row with identical ids, times and 20 levels."""
    assert rows.height == truth.height, (rows.height, truth.height)
    cols = [c for c in truth.columns if c not in ("is_valid", "crossed_repaired", "resynced")]
    joined = truth.select(cols).join(rows.select(cols), on="msg_id", how="left", suffix="_r")
    for c in cols:
        if c == "msg_id":
            continue
        bad = joined.filter(~pl.col(c).eq_missing(pl.col(c + "_r")))
        assert bad.height == 0, f"{c}: {bad.height} rows differ, first msg_id {bad['msg_id'][0]}"
    assert not rows["crossed_repaired"].any() and not rows["resynced"].any()


def book_dict(px: np.ndarray, qty: np.ndarray) -> dict[int, int]:
    return dict(zip(px.tolist(), qty.tolist(), strict=True))


def assert_checkpoint_is(ck: Checkpoint, opening: S.Book, inst) -> None:
    """The replayed end-of-day book equals the exchange's next opening book (full depth)."""
    t, lot = inst.tick_units, inst.lot_units
    assert book_dict(ck.bid_price, ck.bid_size) == book_dict(
        opening.bid_px * t, opening.bid_qty * lot
    )
    assert book_dict(ck.ask_price, ck.ask_size) == book_dict(
        opening.ask_px * t, opening.ask_qty * lot
    )


# ----------------------------------------------------------------------------- unit level


def test_profiles_and_overrides() -> None:
    demo = S.get_profile("demo", event_rate=7.0, window_ticks=123)
    assert demo.event_rate == 7.0 and demo.model.window_ticks == 123
    assert S.get_profile("real").msg_ms == 48
    with pytest.raises(ValueError):
        S.get_profile("demo", no_such_knob=1)
    with pytest.raises(ValueError):
        S.get_profile("huge")


def test_same_inputs_same_bytes_and_seed_matters() -> None:
    a = S.simulate_day(DAY, seed=3, **LIGHT)
    b = S.simulate_day(DAY, seed=3, **LIGHT)
    c = S.simulate_day(DAY, seed=4, **LIGHT)
    assert a.capture == b.capture
    assert a.truth.equals(b.truth)
    assert a.capture != c.capture
    assert 3_000 <= a.n_messages <= 4_400


def test_any_day_on_its_own() -> None:
    """Day D's state does not depend on which days were simulated before (no hidden state)."""
    far = DAY + timedelta(days=300)
    alone = P.daily_states(far, 0, "binance-usdm", "BTCUSDT", 1)[0]
    in_range = P.daily_states(far - timedelta(days=5), 0, "binance-usdm", "BTCUSDT", 7)[5]
    assert alone == in_range
    prof = S.get_profile("demo", **LIGHT)
    inst = S.instrument_for()
    o1 = S.opening_book(far, 0, "binance-usdm", "BTCUSDT", prof, inst)
    S.simulate_day(far - timedelta(days=1), **LIGHT)
    o2 = S.opening_book(far, 0, "binance-usdm", "BTCUSDT", prof, inst)
    assert np.array_equal(o1.bid_px, o2.bid_px) and np.array_equal(o1.ask_qty, o2.ask_qty)


def test_days_chain_on_book_and_update_ids() -> None:
    d1 = S.simulate_day(DAY, **LIGHT)
    d2 = S.simulate_day(DAY + timedelta(days=1), opening_snapshot=False, **LIGHT)
    s1, s2 = d1.stats(), d2.stats()
    assert s1["last_update_id"] == S.uid_base(DAY + timedelta(days=1)) == s2["prev_update_id"]
    assert s2["first_update_id"] > s2["prev_update_id"]
    for a, b in (
        (d1.closing_book.bid_px, d2.opening_book.bid_px),
        (d1.closing_book.bid_qty, d2.opening_book.bid_qty),
        (d1.closing_book.ask_px, d2.opening_book.ask_px),
        (d1.closing_book.ask_qty, d2.opening_book.ask_qty),
    ):
        assert np.array_equal(a, b)
    # every exchange time of day D is inside day D; the settlement message is the last diff
    midnight = int(np.datetime64(str(DAY + timedelta(days=1)), "ms").astype(np.int64))
    assert d1.records.msgs[:, 0].max() < midnight and d1.records.msgs[-1, 1] == midnight - 1
    assert s1["snapshots"] == 24 and s2["snapshots"] == 23  # no opening one on day 2


def test_capture_format_matches_binance_usdm() -> None:
    sim = S.simulate_day(DAY, **LIGHT)
    lines = sim.lines()
    kinds: dict[str, list[dict]] = {}
    locals_: list[int] = []
    for ln in lines:
        ts, js = ln.split(b" ", 1)
        assert re.fullmatch(rb"\d{19}", ts)
        locals_.append(int(ts))
        obj = json.loads(js)
        kinds.setdefault(obj.get("stream", "rest"), []).append(obj)
    assert locals_ == sorted(locals_), "lines are in receive order"
    assert set(kinds) == {
        "btcusdt@depth@0ms",
        "btcusdt@bookTicker",
        "btcusdt@trade",
        "btcusdt@depth20@100ms",
        "rest",
    }
    price = re.compile(r"\d+\.\d{2}")
    qty = re.compile(r"\d+\.\d{3}")
    diff = kinds["btcusdt@depth@0ms"][5]["data"]
    assert list(diff) == ["e", "E", "T", "s", "U", "u", "pu", "b", "a"]
    for side in ("b", "a"):
        prices = [float(p) for p, _ in diff[side]]
        assert prices == sorted(prices)  # Binance lists both sides in ascending price
        assert all(price.fullmatch(p) and qty.fullmatch(q) for p, q in diff[side])
    bt = kinds["btcusdt@bookTicker"][0]["data"]
    assert list(bt) == ["e", "u", "s", "b", "B", "a", "A", "T", "E"]
    tr = kinds["btcusdt@trade"][0]["data"]
    assert list(tr) == ["e", "E", "T", "s", "t", "p", "q", "X", "m"]
    d20 = kinds["btcusdt@depth20@100ms"][0]["data"]
    assert list(d20) == ["e", "E", "T", "s", "U", "u", "pu", "b", "a"]
    assert all(
        len(r["data"]["b"]) == len(r["data"]["a"]) == 20 for r in kinds["btcusdt@depth20@100ms"]
    )
    snap = kinds["rest"][0]
    assert list(snap) == ["lastUpdateId", "E", "T", "bids", "asks"]
    assert 0 < len(snap["bids"]) <= 1000 and 0 < len(snap["asks"]) <= 1000
    bids = [float(p) for p, _ in snap["bids"]]
    assert bids == sorted(bids, reverse=True)
    # the opening snapshot arrives after diffs newer than itself, and reflects one of them
    diffs = [r["data"] for r in kinds["btcusdt@depth@0ms"]]
    pos = {
        int(json.loads(ln.split(b" ", 1)[1]).get("lastUpdateId", -1)): i
        for i, ln in enumerate(lines)
    }
    snap_line = pos[snap["lastUpdateId"]]
    earlier_u = [
        json.loads(ln.split(b" ", 1)[1])["data"]["u"]
        for ln in lines[:snap_line]
        if b"@depth@0ms" in ln
    ]
    assert snap["lastUpdateId"] in earlier_u and max(earlier_u) > snap["lastUpdateId"]
    assert all(d["pu"] == p["u"] for p, d in zip(diffs, diffs[1:], strict=False))
    # same layout as the real capture (keys of each record kind)
    data = require_binance_data() / "usdm" / "btcusdt_20240808.gz"
    real: dict[str, list[str]] = {}
    with gzip.open(data, "rt") as f:
        for ln, _ in zip(f, range(2000), strict=False):
            obj = json.loads(ln.split(" ", 1)[1])
            name = obj.get("stream", "rest").split("@", 1)[-1] if "stream" in obj else "rest"
            real.setdefault(name, list(obj.get("data", obj)))
    assert real["depth@0ms"] == list(diff) and real["bookTicker"] == list(bt)
    assert real["trade"] == list(tr) and real["rest"] == list(snap)


def test_write_day_is_deterministic_gzip(tmp_path: Path) -> None:
    sim = S.simulate_day(DAY, **LIGHT)
    p1 = S.write_day(sim, tmp_path / "a")
    p2 = S.write_day(S.simulate_day(DAY, **LIGHT), tmp_path / "b")
    assert p1["capture"].read_bytes() == p2["capture"].read_bytes()
    assert gzip.decompress(p1["capture"].read_bytes()) == sim.capture
    assert pl.read_parquet(p1["truth"]).equals(sim.truth)


# ----------------------------------------------------------------------------- exactness


def _replay_chain(days: list[S.SimulatedDay]) -> None:
    """Day 1 syncs from its opening snapshot; later days start from the previous checkpoint."""
    checkpoint = None
    for k, sim in enumerate(days):
        cap = parse(sim)
        assert cap.quarantine.height == 0
        res = book.replay(cap.events, cap.instrument, 20, checkpoint, engine="reference")
        c = res.counters
        assert (c.gaps, c.crossed, c.duplicates, c.stale, c.unsynced_at_end) == (0, 0, 0, 0, 0)
        rows = valid_rows(res.snapshots)
        snaps = rows.filter(pl.col("msg_id").is_in(sim.snapshot_msg_ids))
        assert snaps.height == len(sim.snapshot_msg_ids)  # every REST snapshot was taken in
        rows = rows.filter(~pl.col("msg_id").is_in(sim.snapshot_msg_ids))
        if k > 0:  # chained from the checkpoint: valid from the very first message
            assert c.invalid_rows == 0
        assert_same_books(sim.truth, rows)
        bbo = exact.compare_bbo(res.snapshots, cap.golden_bbo)
        depth = exact.compare_depth(res.snapshots, cap.golden_depth)
        assert bbo.compared > 0 and bbo.mismatched == 0
        # every depth20 record reflects a published message: all but pre-sync ones align
        assert depth.mismatched == 0 and depth.compared >= cap.golden_depth.height - 2
        assert_checkpoint_is(res.checkpoint, sim.closing_book, cap.instrument)
        checkpoint = res.checkpoint


def test_exact_three_chained_demo_days_without_intraday_snapshots() -> None:
    days = list(S.simulate_days(DAY, 3, opening_snapshot="first", snapshot_every=None))
    assert [d.stats()["snapshots"] for d in days] == [1, 0, 0]
    assert all(20_000 <= d.n_messages <= 50_000 for d in days)
    _replay_chain(days)


@pytest.mark.slow
def test_exact_three_chained_demo_days_with_hourly_snapshots() -> None:
    days = list(S.simulate_days(DAY + timedelta(days=10), 3, snapshot_every=60))
    assert all(d.stats()["snapshots"] == 24 for d in days)
    _replay_chain(days)


def test_simulate_and_verify_cli(tmp_path: Path) -> None:
    """``obpipeline simulate`` files pass ``obpipeline verify`` across chained days."""
    from obpipeline.cli import main

    out = tmp_path / "sim"
    sets = [x for k, v in LIGHT.items() for x in ("--set", f"{k}={v}")]
    argv = ["simulate", "--date", "2024-03-01", "--days", "2", "--snapshot-every", "none"]
    assert main([*argv, *sets, "--out", str(out)]) == 0
    files = sorted(out.glob("btcusdt_*.gz"))
    assert [f.name for f in files] == ["btcusdt_20240301.gz", "btcusdt_20240302.gz"]
    assert sorted(p.name for p in (out / "truth").iterdir()) == [
        "BTCUSDT_20240301.parquet",
        "BTCUSDT_20240302.parquet",
    ]
    assert main(["verify", *map(str, files)]) == 0


@pytest.mark.slow
def test_verify_cli_on_three_demo_days(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from obpipeline.cli import main

    for every in ("none", "60"):
        out = tmp_path / every
        argv = ["simulate", "--date", "2024-03-01", "--days", "3", "--snapshot-every", every]
        assert main([*argv, "--out", str(out)]) == 0
        capsys.readouterr()
        assert main(["verify", *map(str, sorted(out.glob("btcusdt_*.gz")))]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["verdict"] == "pass" and summary["golden_compared"] > 10_000


@pytest.mark.slow
def test_real_volume_day() -> None:
    import time

    started = time.perf_counter()
    sim = S.simulate_day(DAY, profile="real", truth_depth=0)
    n = 0
    for chunk in sim.iter_chunks():
        n += len(chunk)
    seconds = time.perf_counter() - started
    assert 1_600_000 <= sim.n_messages <= 1_900_000
    assert 20_000_000 <= sim.n_level_updates <= 40_000_000
    assert seconds < 120, seconds


def test_raw_book_events_equal_the_adapters() -> None:
    """The columnar shortcut (used by benchmarks and the Dagster layer) is the parsed capture."""
    sim = S.simulate_day(DAY, **LIGHT)
    assert sim.raw_book_events().equals(parse(sim).events)


def test_simulate_cli_with_faults_writes_the_report(tmp_path: Path) -> None:
    from obpipeline.cli import main

    sets = [x for k, v in LIGHT.items() for x in ("--set", f"{k}={v}")]
    argv = ["simulate", "--date", "2024-03-01", "--faults", "drop=0.01,malformed=0.001"]
    assert main([*argv, *sets, "--no-truth", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "faults" / "BTCUSDT_20240301.json").read_text())
    assert report["counts"]["drop"] > 0 and report["counts"]["malformed"] > 0
    lines = gzip.decompress((tmp_path / "btcusdt_20240301.gz").read_bytes()).splitlines()
    assert len(lines) == report["output_lines"] == report["input_lines"] - report["counts"]["drop"]
    assert not (tmp_path / "truth").exists()

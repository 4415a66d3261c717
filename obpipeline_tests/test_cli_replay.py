"""The installed ``obpipeline`` console script: replay writes exact parquet, verify fails loudly."""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from pathlib import Path

import polars as pl

from obpipeline_tests.conftest import CONTINUATIONS, FuturesStream, require_binance_data


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["obpipeline", *args], capture_output=True, text=True, timeout=300)


def summary(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_replay_then_continue_from_checkpoint(tmp_path: Path) -> None:
    data = require_binance_data()
    day1, day2 = (data / f for f in CONTINUATIONS[1])
    ck = tmp_path / "ck.parquet"
    out = tmp_path / "lake"
    p1 = cli("replay", str(day1), "--out", str(out), "--checkpoint-out", str(ck), "--depth", "10")
    assert p1.returncode == 0, p1.stderr
    s1 = summary(p1)
    # replay builds the books; the golden comparison is verify's
    assert (s1["gaps"], s1["crossed"]) == (0, 0) and s1["golden_records"] > 0
    assert "golden_compared" not in s1
    p2 = cli("verify", str(day2), "--checkpoint-in", str(ck))
    assert p2.returncode == 0, p2.stdout
    s2 = summary(p2)
    assert s2["verdict"] == "pass" and s2["golden_compared"] > 0 and s2["snapshots"] == 0

    files = sorted(
        out.glob("book_snapshots/venue=binance-usdm/symbol=BTCUSDT/date=*/part-0.parquet")
    )
    assert files, "no book_snapshots written"
    book = pl.read_parquet(files[-1])
    assert {
        "ts_event",
        "ts_local",
        "last_update_id",
        "bid_price_10",
        "ask_size_10",
        "is_valid",
    } <= set(book.columns)
    # prices compare exactly equal to the exchange's decimal strings
    top = book.filter("is_valid").row(-1, named=True)
    assert isinstance(top["bid_price_1"], Decimal)
    assert Decimal(str(top["bid_price_1"])) == top["bid_price_1"]


def test_verify_exits_1_on_golden_mismatch(tmp_path: Path) -> None:
    s = FuturesStream()
    s.snapshot([("100.0", "1.000")], [("100.1", "1.000")])
    s.diff(bids=[("100.0", "2.000")])
    s.book_ticker("100.0", "2.500", "100.1", "1.000")
    path = s.write(tmp_path / "btcusdt_bad.gz")
    proc = cli("verify", str(path))
    assert proc.returncode == 1
    result = summary(proc)
    assert result["verdict"] == "fail" and result["golden_mismatched"] == 1


def test_verify_reports_quarantine_with_file_and_line(tmp_path: Path) -> None:
    s = FuturesStream()
    s.snapshot([("100.0", "1.000")], [("100.1", "1.000")])
    s.raw("{broken")
    s.diff(bids=[("100.0", "2.000")])
    path = s.write(tmp_path / "btcusdt_q.gz")
    proc = cli("verify", str(path))
    assert f"quarantined {path}:2:" in proc.stdout
    assert summary(proc)["quarantined"] == 1


def test_verify_sums_every_day_of_several_files(tmp_path: Path) -> None:
    """Over several days, each golden kind's totals are summed over the days (not the last day's)
    and match the day totals: only each day's totals are kept, its comparisons are dropped."""
    data = require_binance_data()
    day1, day2 = (data / f for f in CONTINUATIONS[1])
    proc = cli("verify", str(day1), str(day2), "--out", str(tmp_path / "lake"))
    assert proc.returncode == 0, proc.stdout
    s = summary(proc)
    days = [o for o in s["outputs"] if "book_snapshots" in o]
    assert len(days) >= 2, s["outputs"]
    kinds = {k: v for k, v in s.items() if k.startswith("golden_") and k.endswith("_compared")}
    total = kinds.pop("golden_compared")
    assert kinds and total == sum(kinds.values()) > 0, s

"""Bad input never becomes a wrong book: every field is checked, checkpoints carry their identity,
names from file contents never leave the lake, other instruments are quarantined per line."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from obpipeline import book, lake
from obpipeline.book import checkpoint as ckpt
from obpipeline.defs import alerts
from obpipeline.instruments import CaptureError, Instrument, get_instrument
from obpipeline.sources import binance
from obpipeline.sources.binance import lines_frame
from obpipeline.sources.capture import Capture
from obpipeline_tests.conftest import FuturesStream

CLI = str(Path(sys.executable).parent / "obpipeline")
BIDS = [("100.0", "1.000"), ("99.9", "2.000")]
ASKS = [("100.1", "1.500"), ("100.2", "2.500")]


def synced() -> FuturesStream:
    s = FuturesStream()
    s.snapshot(BIDS, ASKS)
    s.diff(bids=[("100.0", "1.100")])
    return s


def parse(lines: list[str], **kw) -> Capture:
    """Both paths: the fast pass must give up or agree with the Polars path."""
    frame = lines_frame(("\n".join(lines) + "\n").encode(), "c.gz")
    slow = binance._parse_lines_polars(frame, **kw)
    fast = binance._parse_fast(frame, kw.get("market"), kw.get("symbol"), 20)
    if fast is not None:
        for name in ("events", "golden_bbo", "golden_depth", "trades", "quarantine"):
            assert getattr(fast, name).equals(getattr(slow, name)), name
    return slow


def accounted(c: Capture) -> bool:
    s = c.stats
    parts = ("blank_lines", "ignored_other_streams", "messages", "golden_bbo", "golden_depth")
    return s["lines"] == sum(s[k] for k in parts) + s["trades"] + s["quarantined"]


def diff_line(s: FuturesStream, **data) -> str:
    """A futures diff after ``s`` with fields replaced (a value of ... removes the field)."""
    base = {"e": "depthUpdate", "E": s.t_ms + 5, "T": s.t_ms + 4, "s": "BTCUSDT"}
    base.update({"U": s.u + 1, "u": s.u + 1, "pu": s.u, "b": [["100.0", "1.200"]], "a": []})
    for k, v in data.items():
        if v is ...:
            base.pop(k)
        else:
            base[k] = v
    body = json.dumps({"stream": "btcusdt@depth@0ms", "data": base})
    return f"{s._local()} {body}"


# ----------------------------------------------------------------------------- item 1 and 6


BAD_DIFFS = {
    "null price": ({"b": [[None, "569.567"]]}, "price 'null'"),
    "null size": ({"b": [["100.0", None]]}, "size 'null'"),
    "NaN price": ({"b": [["NaN", "1.000"]]}, "price 'NaN'"),
    "inf size": ({"a": [["100.3", "inf"]]}, "size 'inf'"),
    "null level": ({"b": [None]}, "null level"),
    "level of nulls": ({"b": [[None, None]]}, "price 'null'"),
    "one-field level": ({"b": [[None]]}, "level [null] has 1 fields"),
    "null bid list": ({"b": None}, "without bid or ask list"),
    "missing E": ({"E": ...}, "without its exchange time"),
    "null T": ({"T": None}, "without its exchange time"),
    "E float": ({"E": 1.5}, "E '1.5' is not an integer"),
    "E true": ({"E": True}, "E 'true' is not an integer"),
    "E string": ({"E": "abc"}, "E 'abc' is not an integer"),
    "E overflow ns": ({"E": 99_999_999_999_999_999}, "outside the sane window"),
    "E beyond int64": ({"E": 10**20}, "is not an integer"),
    "E far past": ({"E": 1000}, "outside the sane window"),
    "u null": ({"u": None}, "without U/u"),
    "U float": ({"U": 2.5}, "U '2.5' is not an integer"),
    "negative ids": ({"U": -5, "u": -5}, "negative update id"),
    "U > u": ({"U": 10**9, "u": 5}, "is after last update id"),
    "pu string": ({"pu": "x"}, "pu 'x' is not an integer"),
    "missing pu": ({"pu": ...}, "without pu"),
    "negative price": ({"b": [["-100.0", "1.000"]]}, "non-positive price"),
    "off-grid price": ({"b": [["100.05", "1.000"]]}, "tick grid"),
}


@pytest.mark.parametrize("name", sorted(BAD_DIFFS))
def test_bad_field_in_a_diff_is_quarantined_with_its_reason(name: str) -> None:
    change, reason = BAD_DIFFS[name]
    s = synced()
    lines = [*s.lines, diff_line(s, **change)]
    c = parse(lines, market="usdm")
    q = c.quarantine
    assert q["line"].to_list() == [3], q
    assert reason in q["reason"][0], q["reason"][0]
    assert accounted(c)
    prices = c.events["price"].drop_nulls().cast(pl.Float64).to_list()
    assert all(p > 0 for p in prices) and 569.567 not in prices


def test_null_price_never_becomes_a_price_zero_level() -> None:
    s = synced()
    s.raw(diff_line(s, b=[[None, "569.567"]]).split(" ", 1)[1])
    c = binance.parse_lines(lines_frame(("\n".join(s.lines)).encode(), "c.gz"), market="usdm")
    r = book.replay(c.events, c.instrument, engine="reference")
    assert 0 not in r.checkpoint.bid_price.tolist()
    assert c.quarantine["reason"].to_list() == [
        "price 'null' is not a decimal on the 0.1 tick grid"
    ]


@pytest.mark.parametrize(
    ("stamp", "reason"),
    [
        ("-1720000000000000000", "outside"),
        ("0000000000000", "outside"),
        ("99999999999999999", "outside"),  # µs that overflow int64 ns
        ("17200000000x0", "not an integer"),
    ],
)
def test_receive_timestamp_out_of_range_is_quarantined(stamp: str, reason: str) -> None:
    s = synced()
    lines = [*s.lines, stamp + " " + diff_line(s).split(" ", 1)[1]]
    c = parse(lines, market="usdm")
    assert c.quarantine["line"].to_list() == [3] and reason in c.quarantine["reason"][0]


def test_rest_snapshot_with_a_price_twice_or_an_empty_side_is_quarantined() -> None:
    s = FuturesStream()
    s.snapshot([("100.0", "1.000"), ("100.00", "2.000")], ASKS)  # the same price, spelled twice
    s.snapshot([], ASKS)
    s.snapshot(BIDS, ASKS)
    c = parse(s.lines, market="usdm", symbol="BTCUSDT")
    assert c.quarantine["line"].to_list() == [1, 2]
    assert "price twice on the bid side" in c.quarantine["reason"][0]
    assert "empty bid or ask side" in c.quarantine["reason"][1]
    assert c.stats["messages"] == 1 and accounted(c)


def test_trade_and_book_ticker_values_out_of_range_are_quarantined() -> None:
    s = synced()
    t = s.t_ms
    trade = {
        "e": "trade",
        "E": t,
        "T": t,
        "s": "BTCUSDT",
        "t": 1,
        "p": "0.0",
        "q": "1.000",
        "m": False,
    }
    trade2 = dict(trade, p="100.0", q="1.000", t=-1)
    s.raw(json.dumps({"stream": "btcusdt@trade", "data": trade}))
    s.raw(json.dumps({"stream": "btcusdt@trade", "data": trade2}))
    s.book_ticker("-100.0", "1.000", "100.1", "1.000")
    s.book_ticker(None, "1.000", "100.1", "1.000")
    c = parse(s.lines, market="usdm")
    reasons = dict(zip(c.quarantine["line"], c.quarantine["reason"], strict=True))
    assert "non-positive trade price" in reasons[3]
    assert "negative trade id" in reasons[4]
    assert "negative" in reasons[5] and "'null'" in reasons[6]
    assert c.trades.height == 0 and c.golden_bbo.height == 0 and accounted(c)


# ----------------------------------------------------------------------------- item 5 and 3


def test_lines_of_another_symbol_are_quarantined_per_line() -> None:
    s = synced()
    other = diff_line(s).replace("btcusdt@depth", "ethusdt@depth")
    s.diff(bids=[("100.0", "1.300")])
    lines = [*s.lines[:2], other, *s.lines[2:]]
    c = parse(lines)  # symbol detected: the one of most stream lines
    assert c.instrument.symbol == "BTCUSDT"
    assert c.quarantine["line"].to_list() == [3]
    assert c.quarantine["reason"][0].startswith("other instrument: stream 'ethusdt@depth@0ms'")
    assert c.stats["messages"] == 3 and accounted(c)
    given = parse(lines, symbol="ETHUSDT", market="usdm")  # as told: the others go
    assert given.quarantine["line"].to_list() == [2, 4]


def test_no_majority_symbol_is_a_clear_error() -> None:
    s = synced()
    other = diff_line(s).replace("btcusdt@depth", "ethusdt@depth")
    with pytest.raises(CaptureError, match="pass --symbol"):
        parse([s.lines[1], other])


def test_a_stream_name_can_not_choose_a_path() -> None:
    s = synced()
    evil = [line.replace("btcusdt@", "../../../../x@") for line in s.lines]
    with pytest.raises(CaptureError, match="unusable symbol name"):
        parse(evil)
    s.diff(bids=[("100.0", "1.300")])
    c = parse([*s.lines, evil[-1]])  # one such line among good ones: quarantined
    assert c.quarantine["reason"][0].startswith("other instrument")
    for bad in ("..", "a/b", "", "x" * 65, "a b", "é"):
        with pytest.raises(CaptureError):
            lake.partition_dir("book_snapshots", "binance-usdm", bad, "2024-01-01")
        with pytest.raises(CaptureError):
            lake.partition_dir("book_snapshots", bad, "BTCUSDT", "2024-01-01")
    with pytest.raises(CaptureError, match="unusable symbol name"):
        Instrument("binance", "usdm", "../x", Decimal("0.1"), Decimal("1"), "binance_futures")


def test_cli_rejects_a_traversal_name_in_one_line_and_writes_nothing_outside(tmp_path) -> None:
    s = synced()
    path = tmp_path / "in" / "evil.gz"
    path.parent.mkdir()
    evil = [x.replace("btcusdt@", "../../../x@") for x in s.lines]
    path.write_bytes(gzip.compress(("\n".join(evil) + "\n").encode()))
    out = tmp_path / "out"
    before = set(tmp_path.rglob("*"))
    proc = subprocess.run(
        [CLI, "replay", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path / "in",
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "unusable symbol name" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert set(tmp_path.rglob("*")) == before


# ----------------------------------------------------------------------------- item 2


def _replayed():
    s = synced()
    c = parse(s.lines, market="usdm")
    return c, book.replay(c.events, c.instrument, engine="reference")


def test_checkpoint_carries_and_checks_its_identity(tmp_path) -> None:
    c, r = _replayed()
    path = ckpt.write(r.checkpoint, c.instrument, tmp_path / "ck.parquet", day=date(2024, 7, 18))
    ident = ckpt.identity(path)
    assert ident == ckpt.Identity(
        "binance", "usdm", "BTCUSDT", "2024-07-18", r.checkpoint.last_update_id
    )
    back = ckpt.read(path, expect_instrument=c.instrument, expect_day="2024-07-18")
    assert back.last_update_id == r.checkpoint.last_update_id
    spot = get_instrument("binance", "spot", "BTCUSDT")
    with pytest.raises(ckpt.CheckpointMismatch, match=r"binance-usdm BTCUSDT.*not of binance-spot"):
        ckpt.read(path, expect_instrument=spot)
    with pytest.raises(ckpt.CheckpointMismatch, match="closing 2024-07-18, expected .*2024-07-19"):
        ckpt.read(path, expect_day=date(2024, 7, 19))
    undated = ckpt.write(r.checkpoint, c.instrument, tmp_path / "u.parquet")
    with pytest.raises(ckpt.CheckpointMismatch, match="an unknown day"):
        ckpt.read(undated, expect_day="2024-07-18")
    assert ckpt.read(undated, expect_instrument=c.instrument).is_valid


def test_legacy_checkpoint_is_refused_when_anything_is_expected(tmp_path) -> None:
    c, r = _replayed()
    legacy = tmp_path / "legacy.parquet"
    ckpt.to_frame(r.checkpoint, c.instrument).write_parquet(legacy)
    assert ckpt.identity(legacy) is None
    assert ckpt.read(legacy).last_update_id == r.checkpoint.last_update_id  # nothing expected
    with pytest.raises(ckpt.CheckpointMismatch, match="carries no identity"):
        ckpt.read(legacy, expect_instrument=c.instrument)


# ----------------------------------------------------------------------------- item 7


def test_temp_files_of_a_killed_write_are_cleaned_on_the_next_write(tmp_path) -> None:
    target = tmp_path / "p" / "part-0.parquet"
    frame = pl.DataFrame({"a": [1]})
    code = (
        "import os, sys, polars as pl\n"
        "from obpipeline import lake\n"
        "pl.DataFrame.write_parquet = lambda *a, **k: os._exit(9)\n"  # dies mid-write
        f"lake.write_parquet_atomic(pl.DataFrame({{'a': [1]}}), {str(target)!r})\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    stale = list(target.parent.glob(".part-0.parquet.*.tmp"))
    assert len(stale) == 1 and not target.exists()
    lake.write_parquet_atomic(frame, target)
    assert list(target.parent.glob(".*.tmp")) == [] and pl.read_parquet(target).equals(frame)


def test_a_temp_file_of_a_write_in_progress_is_kept(tmp_path) -> None:
    import fcntl

    target = tmp_path / "part-0.parquet"
    live = tmp_path / ".part-0.parquet.abc.tmp"
    fd = os.open(live, os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        lake.write_parquet_atomic(pl.DataFrame({"a": [1]}), target)
        assert live.exists()
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.invalid/services/T0/B0/SECRETTOKEN?key=SECRETKEY",
        "http://127.0.0.1:9/SECRETTOKEN",
        "hooks.example/SECRETTOKEN",
        "http://user:SECRETPASS@[::1/SECRETTOKEN",
        "ht!tp://SECRETTOKEN",
    ],
)
def test_webhook_url_never_reaches_the_alert_log(tmp_path, url: str) -> None:
    log = tmp_path / "alerts.jsonl"
    written = alerts.deliver({"kind": "test"}, log, url)
    assert "webhook_error" in written
    assert "SECRET" not in log.read_text() and "SECRET" not in json.dumps(written)


def test_continuation_from_a_later_checkpoint_is_a_failure() -> None:
    s = synced()
    s.diff(bids=[("100.0", "1.200")])
    day1 = parse(s.lines, market="usdm")
    n = len(s.lines)
    s.diff(bids=[("100.0", "1.300")])
    s.diff(asks=[("100.1", "1.600")])
    day2 = parse(s.lines[n:], market="usdm", symbol="BTCUSDT")
    r1 = book.replay(day1.events, day1.instrument, engine="reference")
    r2 = book.replay(day2.events, day2.instrument, checkpoint=r1.checkpoint, engine="reference")
    assert ckpt.continuation_failures(r2.counters.to_dict(), r1.checkpoint) == []
    # day 2 again, from day 2's own end: every message is older than the book
    again = book.replay(day2.events, day2.instrument, checkpoint=r2.checkpoint, engine="reference")
    failures = ckpt.continuation_failures(again.counters.to_dict(), r2.checkpoint)
    assert "every one of the 2 diffs is older than the checkpoint" in failures[0]
    assert "no message was applied" in failures[1]
    empty = book.replay(day2.events.head(0), day2.instrument, engine="reference")
    assert "no message was applied" in ckpt.continuation_failures(empty.counters.to_dict(), None)[0]

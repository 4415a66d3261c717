"""Tardis.dev CSV: the real schema excerpts, message/snapshot/quarantine rules on hand-built files,
time-aligned golden matching, and exports of every real Binance capture replayed back exactly."""

from __future__ import annotations

import csv
import gzip
import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from obpipeline import book, schemas
from obpipeline.cli import main as cli_main
from obpipeline.errors import CaptureError
from obpipeline.export.tardis import export_capture
from obpipeline.fidelity import exact
from obpipeline.instruments import get_instrument
from obpipeline.sources.tardis import classify, decimals_needed, read_tardis, to_fixed

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
EXCERPTS = SHARED / "tardis-excerpts"
BINANCE = SHARED / "binance"
HEADER = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"
LEVELS20 = [n for group in schemas.level_names(20) for n in group]


def excerpt(name: str) -> Path:
    path = EXCERPTS / name
    if not path.exists():
        pytest.skip(f"Tardis excerpts not found at {EXCERPTS} (../shared/data beside the repo)")
    return path


def raw_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def dec(values) -> list[Decimal | None]:
    return [None if v is None else Decimal(str(v)) for v in values]


def write(path: Path, lines: list[str], gz: bool = False) -> Path:
    text = "\n".join([HEADER, *lines]) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        path.write_text(text)
    return path


def row(lt: int, snap: bool, side: str, price: str, amount: str, sym: str = "BTCUSDT") -> str:
    return f"binance-futures,{sym},{lt - 500},{lt},{str(snap).lower()},{side},{price},{amount}"


# ----------------------------------------------------------------------------- real excerpts


def test_incremental_book_l2_excerpt_is_one_snapshot_message():
    path = excerpt("deribit_incremental_book_L2_BTC-PERPETUAL.csv")
    cap = read_tardis([path])
    raw = raw_rows(path)
    ev = cap.events
    assert cap.instrument.venue_id == "tardis-deribit"
    assert (cap.instrument.price_scale, cap.instrument.size_scale) == (1, 0)  # inferred
    assert ev.height == len(raw) == 15 and cap.quarantine.height == 0
    assert ev["msg_id"].unique().to_list() == [0] and ev["is_snapshot"].all()
    assert ev["last_update_id"].unique().to_list() == [0]
    assert ev["prev_update_id"].is_null().all()
    assert dec(ev["price"].to_list()) == [Decimal(r["price"]) for r in raw]
    assert dec(ev["size"].to_list()) == [Decimal(r["amount"]) for r in raw]
    assert ev["side"].to_list() == [schemas.BID if r["side"] == "bid" else schemas.ASK for r in raw]
    us = int(raw[0]["local_timestamp"])
    assert ev["ts_local"].dt.epoch("us")[0] == us
    result = book.replay(ev, cap.instrument, engine="reference")
    assert result.counters.rows == 1 and result.snapshots["is_valid"].all()
    bids = sorted((Decimal(r["price"]) for r in raw if r["side"] == "bid"), reverse=True)
    asks = sorted(Decimal(r["price"]) for r in raw if r["side"] == "ask")
    assert dec([result.snapshots["bid_price_1"][0]]) == [bids[0] if bids else None]
    assert dec([result.snapshots["ask_price_1"][0]]) == [asks[0] if asks else None]


@pytest.mark.parametrize("levels", [5, 25])
def test_book_snapshot_excerpts_are_exact_golden_depth(levels):
    path = excerpt(f"binance-futures_book_snapshot_{levels}_BTCUSDT.csv")
    assert classify(path).kind == "book_snapshot" and classify(path).levels == levels
    cap = read_tardis([path], depth=25)
    raw = raw_rows(path)
    g = cap.golden_depth
    assert g.height == len(raw) and cap.quarantine.height == 0
    assert g["levels"].unique().to_list() == [levels] and g["update_id"].is_null().all()
    # 2020 data quoted 0.01: the registered 0.1 tick is widened, never rounded
    assert cap.instrument.price_scale == 2 and cap.stats["scale_widened"] == 1
    for i in range(levels):
        for side, src in (("bid", "bids"), ("ask", "asks")):
            assert dec(g[f"{side}_price_{i + 1}"].to_list()) == [
                Decimal(r[f"{src}[{i}].price"]) for r in raw
            ]
            assert dec(g[f"{side}_size_{i + 1}"].to_list()) == [
                Decimal(r[f"{src}[{i}].amount"]) for r in raw
            ]


def test_quotes_excerpt_is_exact_golden_bbo():
    path = excerpt("huobi-dm-swap_quotes_BTC-USD.csv")
    cap = read_tardis([path])
    raw = raw_rows(path)
    g = cap.golden_bbo
    assert g.height == len(raw) and cap.quarantine.height == 0
    for col, src in (
        ("bid_price", "bid_price"),
        ("bid_size", "bid_amount"),
        ("ask_price", "ask_price"),
        ("ask_size", "ask_amount"),
    ):
        assert dec(g[col].to_list()) == [Decimal(r[src]) for r in raw]
    assert g["ts_event"].dt.epoch("us").to_list() == [int(r["timestamp"]) for r in raw]


def test_trades_excerpt_keeps_uuid_trades_and_aggressor_side():
    path = excerpt("bitmex_trades_XBTUSD.csv")
    cap = read_tardis([path])
    raw = raw_rows(path)
    t = cap.trades
    assert t.height == len(raw) and cap.quarantine.height == 0
    assert t["trade_id"].is_null().all() and cap.stats["trade_ids_not_integer"] == len(raw)
    assert t["is_buyer_maker"].to_list() == [r["side"] == "sell" for r in raw]
    assert dec(t["price"].to_list()) == [Decimal(r["price"]) for r in raw]
    assert dec(t["size"].to_list()) == [Decimal(r["amount"]) for r in raw]


def test_unknown_header_is_an_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(CaptureError, match="not a Tardis"):
        read_tardis([path])


# ----------------------------------------------------------------------------- message rules

SNAP = [
    row(1_000, True, "bid", "100.5", "1"),
    row(1_000, True, "bid", "100.4", "2"),
    row(1_000, True, "ask", "100.6", "3"),
]


def replayed(paths, **kw):
    cap = read_tardis(paths, **kw)
    return cap, book.replay(cap.events, cap.instrument, engine="reference")


def top(result, i=-1):
    s = result.snapshots
    return tuple(
        str(s[c][i]) if s[c][i] is not None else None
        for c in ("bid_price_1", "bid_size_1", "ask_price_1", "ask_size_1")
    )


@pytest.mark.parametrize("gz", [False, True])
def test_messages_group_by_local_timestamp_and_skip_before_first_snapshot(tmp_path, gz):
    lines = [
        row(900, False, "bid", "99.9", "1"),  # before any snapshot: skipped, counted
        row(950, False, "ask", "101", "1"),
        *SNAP,
        row(2_000, False, "bid", "100.5", "0"),  # one message of two rows
        row(2_000, False, "bid", "100.45", "5"),
        row(3_000, False, "ask", "100.6", "4.25"),
    ]
    cap, r = replayed([write(tmp_path / ("l2.csv.gz" if gz else "l2.csv"), lines, gz)])
    st = cap.stats
    assert st["skipped_before_snapshot_messages"] == 2 and st["skipped_before_snapshot_rows"] == 2
    assert st["messages"] == 3 and st["snapshot_messages"] == 1 and st["level_updates"] == 3
    ev = cap.events
    assert ev["msg_id"].to_list() == [0, 0, 0, 1, 1, 2]
    assert ev["last_update_id"].to_list() == [0, 0, 0, 1, 1, 2]
    assert ev["first_update_id"].to_list() == ev["last_update_id"].to_list()
    assert ev["prev_update_id"].to_list() == [None, None, None, 0, 0, 1]
    assert cap.instrument.price_scale == 2  # 100.45 widens the registered 0.1 tick
    c = r.counters
    assert (c.rows, c.gaps, c.invalid_rows, c.unsynced_at_end) == (3, 0, 0, 0)
    assert top(r, 1) == ("100.45", "5.000", "100.60", "3.000")
    assert top(r, 2) == ("100.45", "5.000", "100.60", "4.250")


def test_plain_and_gzip_give_identical_frames(tmp_path):
    lines = [*SNAP, row(2_000, False, "bid", "100.3", "0.5")]
    a = read_tardis([write(tmp_path / "a.csv", lines)])
    b = read_tardis([write(tmp_path / "b.csv.gz", lines, gz=True)])
    assert a.events.equals(b.events)


def test_snapshot_after_diffs_replaces_the_whole_book(tmp_path):
    lines = [
        *SNAP,
        row(2_000, False, "bid", "100.3", "7"),
        row(3_000, True, "bid", "99", "1"),  # reconnection: a new snapshot, different book
        row(3_000, True, "ask", "99.5", "2"),
        row(4_000, False, "ask", "99.4", "1"),
    ]
    cap, r = replayed([write(tmp_path / "l2.csv", lines)])
    assert cap.stats["snapshot_messages"] == 2
    snap_ids = cap.events.filter(pl.col("is_snapshot"))["last_update_id"].unique().sort()
    assert snap_ids.to_list() == [0, 1]  # the second snapshot describes the book at id 1
    c = r.counters
    assert (c.snapshot_checks, c.snapshot_mismatches, c.resyncs, c.gaps) == (1, 1, 1, 0)
    final = r.checkpoint
    assert final.bid_price.tolist() == [990] and final.ask_price.tolist() == [994, 995]
    assert r.snapshots["is_valid"].all()


def test_snapshot_equal_to_the_book_is_a_check_and_snapshot_only_feeds_work(tmp_path):
    diff = row(1_200, False, "bid", "100.3", "7")
    again = [
        *(line.replace(",1000,", ",1500,") for line in SNAP),
        row(1_500, True, "bid", "100.3", "7"),
    ]
    _, r = replayed([write(tmp_path / "a.csv", [*SNAP, diff, *again])])
    assert (r.counters.snapshot_checks, r.counters.snapshot_mismatches) == (1, 0)
    assert r.counters.rows == 3 and r.snapshots["is_valid"].all()
    # every message a snapshot (Bitget-style): each one replaces the book
    lines = [*SNAP, row(1_500, True, "bid", "100", "1"), row(1_500, True, "ask", "100.2", "1")]
    _, r = replayed([write(tmp_path / "b.csv", lines)])
    assert r.counters.rows == 2 and top(r) == ("100.0", "1.000", "100.2", "1.000")


def test_bad_rows_quarantine_their_message_and_break_the_chain(tmp_path):
    lines = [
        *SNAP,
        row(2_000, False, "bid", "100.3", "1"),
        row(2_000, False, "bid", "abc", "1"),  # bad price: the whole message goes
        row(3_000, False, "ask", "100.7", "1"),  # next message no longer chains: gap
        row(4_000, False, "middle", "100.7", "1"),  # bad side
        row(5_000, True, "bid", "100", "1"),  # a snapshot resyncs
        row(5_000, True, "ask", "100.2", "1"),
        row(6_000, False, "ask", "100.1", "2"),
    ]
    path = write(tmp_path / "l2.csv", lines)
    cap, r = replayed([path])
    q = cap.quarantine
    assert q["line"].to_list() == [5, 6, 8]
    assert q["reason"][0] == "dropped with its message (bad line 6)"
    assert q["reason"][1] == "price is missing or not a number"
    assert q["reason"][2] == "side is not bid/ask"
    assert q["record"].to_list() == [lines[3], lines[4], lines[6]]
    assert set(q["file"]) == {str(path)}
    assert cap.stats["quarantined_messages"] == 2
    c = r.counters
    assert c.gaps == 1 and c.resyncs == 1 and c.unsynced_at_end == 0
    s = r.snapshots
    assert s["is_valid"].to_list() == [True, False, True, True]
    assert top(r) == ("100.0", "1.000", "100.1", "2.000")


def test_ragged_lines_are_quarantined_not_fatal(tmp_path):
    lines = [*SNAP, row(2_000, False, "bid", "100.3", "1") + ",extra"]
    cap, r = replayed([write(tmp_path / "l2.csv", lines)])
    assert cap.quarantine["reason"].to_list() == ["expected 8 fields"]
    assert cap.quarantine["record"].to_list() == [lines[-1]]
    assert r.counters.rows == 1


def test_off_grid_values_with_an_explicit_instrument_are_quarantined(tmp_path):
    inst = get_instrument("tardis", "binance-futures", "BTCUSDT")
    lines = [*SNAP, row(2_000, False, "bid", "100.33", "1")]
    cap = read_tardis([write(tmp_path / "l2.csv", lines)], instrument=inst)
    assert cap.quarantine["reason"].to_list() == ["price is not a decimal on the 0.1 tick grid"]


def test_scale_inference_and_exact_conversion():
    import numpy as np

    x = np.array([61800.2, 1e-7, 0.001, 5.0, 0.1 + 0.2])
    assert decimals_needed(x[:4]) == 7
    units, ok = to_fixed(x, 7)
    assert units[:4].tolist() == [618002000000, 1, 10000, 50000000] and ok[:4].all()
    assert not ok[4]  # 0.30000000000000004 is not on any grid <= 12 decimals... at 7 it is off


def test_grouped_files_need_a_symbol(tmp_path):
    lines = [*SNAP, row(1_200, True, "bid", "5", "1", sym="ETHUSDT")]
    path = write(tmp_path / "grouped.csv", lines)
    cap = read_tardis([path])  # the first row's symbol; the other symbol's row is quarantined
    assert cap.quarantine["line"].to_list() == [5]
    assert cap.quarantine["reason"][0].startswith("other instrument")
    cap = read_tardis([path], symbol="ETHUSDT")
    assert cap.instrument.symbol == "ETHUSDT" and cap.events.height == 1


def test_checkpoint_start_compares_the_opening_snapshot(tmp_path):
    day1 = [*SNAP, row(2_000, False, "bid", "100.3", "1")]
    day2 = [line.replace(",1000,", ",9000,") for line in SNAP]
    cap1, r1 = replayed([write(tmp_path / "d1.csv", day1)])
    assert r1.checkpoint.last_update_id == 1
    cap2 = read_tardis([write(tmp_path / "d2.csv", day2)], start_update_id=1)
    r2 = book.replay(cap2.events, cap2.instrument, checkpoint=r1.checkpoint, engine="reference")
    # the carried book has 100.3 that the opening snapshot lacks: counted, then resynced
    assert (r2.counters.snapshot_checks, r2.counters.snapshot_mismatches) == (1, 1)
    same = [*day2, row(9_000, True, "bid", "100.3", "1")]
    cap3 = read_tardis([write(tmp_path / "d3.csv", same)], start_update_id=1)
    r3 = book.replay(cap3.events, cap3.instrument, checkpoint=r1.checkpoint, engine="reference")
    assert (r3.counters.snapshot_checks, r3.counters.snapshot_mismatches) == (1, 0)


# ----------------------------------------------------------------------------- golden by time


def test_golden_alignment_rule_within_one_message(tmp_path):
    lines = [*SNAP, row(2_000, False, "bid", "100.5", "9"), row(3_000, False, "ask", "100.6", "8")]
    cap, r = replayed([write(tmp_path / "l2.csv", lines)])
    q = "binance-futures,BTCUSDT,{t},{lt},{aa},{ap},{bp},{ba}"
    quotes = [
        q.format(t=1, lt=500, aa=3, ap=100.6, bp=100.5, ba=1),  # before the first message
        q.format(t=1, lt=1_000, aa=3, ap=100.6, bp=100.5, ba=1),  # offset 0
        q.format(t=1, lt=1_999, aa=3, ap=100.6, bp=100.5, ba=9),  # stamped early: +1
        q.format(t=1, lt=3_500, aa=3, ap=100.6, bp=100.5, ba=9),  # late: -1
        q.format(t=1, lt=3_600, aa=3, ap=100.6, bp=100.5, ba=2),  # never was the book
    ]
    qpath = tmp_path / "quotes.csv"
    qpath.write_text(
        "\n".join(
            [
                "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount",
                *quotes,
            ]
        )
        + "\n"
    )
    golden = read_tardis([qpath]).golden_bbo
    cmp = exact.compare_windowed("quotes", exact.TOUCH, r.snapshots, golden)
    assert (cmp.records, cmp.compared, cmp.matched, cmp.mismatched) == (5, 4, 3, 1)
    assert cmp.mismatches["ts_local"].dt.epoch("us").to_list() == [3_600]
    counts = exact.offset_counts(r.snapshots, golden)
    assert counts == {"offset_0": 1, "offset_-1": 1, "offset_+1": 1, "not_aligned": 1}


# ----------------------------------------------------------------------------- real captures

PAIRS = [
    ("usdm/btcusdt_20230404.dat.gz", "usdm/btcusdt_20230405.dat.gz"),
    ("usdm/btcusdt_20240718.gz", "usdm/btcusdt_20240719.gz"),
    ("spot/btcusdt_20240808.gz", "spot/btcusdt_20240809.gz"),
    ("cm/btcusd_perp_20240808.gz", "cm/btcusd_perp_20240809.gz"),
    ("usdm/btcusdt_20240808.gz", None),
]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Every capture exported to Tardis (continuations from the day-1 checkpoint)."""
    if not BINANCE.is_dir():
        pytest.skip(
            f"real Binance captures not found at {BINANCE} (../shared/data beside the repo)"
        )
    out = tmp_path_factory.mktemp("tardis")
    done = {}
    for day1, day2 in PAIRS:
        ex1 = export_capture([BINANCE / day1], out / day1.split("/")[0], compresslevel=1)
        done[day1] = (ex1, None)
        if day2:
            ex2 = export_capture(
                [BINANCE / day2], out / day2.split("/")[0], ex1.replay.checkpoint, compresslevel=1
            )
            done[day2] = (ex2, day1)
    return done


@pytest.mark.parametrize("capture", [f for pair in PAIRS for f in pair if f])
def test_exported_capture_replays_to_the_original_books_and_its_golden(exports, capture):
    ex, prev = exports[capture]
    files = ex.files
    start = None
    if prev:  # chain Tardis day 2 onto the Tardis replay of day 1: the carry-over is checked
        p = exports[prev][0].files
        cap1 = read_tardis([p["incremental_book_L2"]], depth=25)
        start = book.replay(cap1.events, cap1.instrument, 25).checkpoint
    cap = read_tardis(
        [files["incremental_book_L2"], files["book_snapshot_25"], files["quotes"], files["trades"]],
        depth=25,
        start_update_id=start.last_update_id if start else 0,
    )
    assert cap.quarantine.height == 0
    assert cap.instrument.venue_id == f"tardis-{ex.exchange}"
    r = book.replay(cap.events, cap.instrument, 25, start)
    c = r.counters
    assert (c.gaps, c.crossed, c.snapshot_mismatches, c.unsynced_at_end) == (0, 0, 0, 0)
    assert c.snapshot_checks == (1 if prev else 0)
    valid = r.snapshots.filter(pl.col("is_valid"))
    assert valid.height == r.snapshots.height == ex.rows.height == cap.stats["messages"]
    names = [n for g in schemas.level_names(25) for n in g]
    assert valid.select(names).equals(ex.rows.select(names))  # the original books, 25 levels
    for cmp in (
        exact.compare_windowed("book_snapshot", exact.TOP, r.snapshots, cap.golden_depth),
        exact.compare_windowed("quotes", exact.TOUCH, r.snapshots, cap.golden_bbo),
    ):
        assert cmp.records > 1000 and cmp.compared == cmp.matched == cmp.records, cmp.kind
    assert cap.trades.height == ex.stats["trades_rows"]


def test_reference_engine_agrees_and_export_is_deterministic(exports, tmp_path):
    ex, _ = exports["usdm/btcusdt_20240718.gz"]
    cap = read_tardis([ex.files["incremental_book_L2"]])
    a = book.replay(cap.events, cap.instrument, engine="reference")
    b = book.replay(cap.events, cap.instrument, engine="engine")
    assert a.snapshots.equals(b.snapshots) and a.counters == b.counters
    again = export_capture([BINANCE / "usdm/btcusdt_20240718.gz"], tmp_path, compresslevel=1)
    for kind, path in again.files.items():
        assert path.read_bytes() == ex.files[kind].read_bytes(), kind
    assert not list(tmp_path.glob(".*tmp"))


def test_cli_export_and_verify(exports, tmp_path, capsys):
    src = BINANCE / "usdm/btcusdt_20240718.gz"
    assert cli_main(["export", "--format", "tardis", str(src), "--out", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    files = summary["outputs"]
    argv = [
        "verify",
        "--format",
        "tardis",
        files["incremental_book_L2"],
        "--golden",
        files["book_snapshot_25"],
        "--golden",
        files["quotes"],
    ]
    assert cli_main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["verdict"] == "pass" and out["venue"] == "tardis-binance-futures"
    assert out["golden_compared"] == out["golden_matched"] > 3000
    assert out["golden_book_snapshot_compared"] > 0 and out["golden_quotes_compared"] > 0

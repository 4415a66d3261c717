"""obpipeline.features: every feature on a hand-built book, grids, trades, CLI, and properties.

The hand book uses prices near 100 (tick 0.1, lot 0.001, i.e. Binance USD-M BTCUSDT scales) so
that 1..100 bp bands fall between levels: 1 bp of a 100.05 mid is 0.010005.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obpipeline import features as F
from obpipeline import schemas
from obpipeline.instruments import get_instrument

INSTRUMENT = get_instrument("binance", "usdm", "BTCUSDT")
assert INSTRUMENT is not None
DEPTH = 5
T0 = datetime(2024, 6, 1, tzinfo=UTC)
CONFIG = F.FeatureConfig(
    walk_sizes=(0.5, 2.5, 10.0),
    rv_window="2s",
    grids=("1s",),
)

Level = tuple[str, str]


def book_frame(rows: list[dict]) -> pl.DataFrame:
    """book_snapshots rows from {"t": seconds, "bids": [(price, size)], "asks": [...], "valid"}."""
    bp, bs, ap, asz = schemas.level_names(DEPTH)
    data: dict[str, list] = {c: [] for c in schemas.book_snapshots(INSTRUMENT, DEPTH).names()}
    for k, row in enumerate(rows):
        ts = T0 + timedelta(seconds=row["t"])
        data["ts_event"].append(ts)
        data["ts_local"].append(ts + timedelta(milliseconds=5))
        data["msg_id"].append(k)
        data["last_update_id"].append(1000 + k)
        for side, pcols, scols in (("bids", bp, bs), ("asks", ap, asz)):
            levels = row[side]
            for j in range(DEPTH):
                present = j < len(levels)
                data[pcols[j]].append(Decimal(levels[j][0]) if present else None)
                data[scols[j]].append(Decimal(levels[j][1]) if present else None)
        data["is_valid"].append(row.get("valid", True))
        data["crossed_repaired"].append(False)
        data["resynced"].append(False)
    return pl.DataFrame(data, schema=schemas.book_snapshots(INSTRUMENT, DEPTH))


BIDS_0: list[Level] = [("100.0", "2"), ("99.9", "1"), ("99.8", "3"), ("99.5", "4")]
ASKS_0: list[Level] = [("100.1", "1"), ("100.2", "2"), ("100.4", "5")]
BIDS_1: list[Level] = [("100.0", "2.5"), ("99.9", "1"), ("99.8", "3"), ("99.5", "4"), ("99.4", "1")]
ASKS_1: list[Level] = [
    ("100.2", "2"),
    ("100.4", "5"),
    ("100.5", "1"),
    ("100.6", "1"),
    ("100.7", "1"),
]
BIDS_3: list[Level] = [
    ("100.1", "0.5"),
    ("100.0", "2.5"),
    ("99.9", "1"),
    ("99.8", "3"),
    ("99.5", "4"),
]
ASKS_5: list[Level] = [("100.2", "3"), *ASKS_1[1:]]

HAND = [
    {"t": 0.2, "bids": BIDS_0, "asks": ASKS_0},
    {"t": 0.7, "bids": BIDS_1, "asks": ASKS_1},
    {"t": 1.3, "bids": BIDS_1, "asks": ASKS_0, "valid": False},  # out of sync: all nulled
    {"t": 1.6, "bids": BIDS_3, "asks": ASKS_1},
    {"t": 2.4, "bids": BIDS_3, "asks": ASKS_1},  # unchanged: OFI 0
    {"t": 4.5, "bids": BIDS_3, "asks": ASKS_5},  # best ask queue 2 -> 3
]


def trades_frame(rows: list[tuple[float, str, str, bool]]) -> pl.DataFrame:
    """trades from (seconds, price, size, is_buyer_maker)."""
    return pl.DataFrame(
        {
            "ts_event": [T0 + timedelta(seconds=t) for t, *_ in rows],
            "ts_local": [T0 + timedelta(seconds=t) for t, *_ in rows],
            "trade_id": list(range(len(rows))),
            "price": [Decimal(p) for _, p, _, _ in rows],
            "size": [Decimal(q) for _, _, q, _ in rows],
            "is_buyer_maker": [m for *_, m in rows],
        },
        schema=schemas.trades(INSTRUMENT),
    )


TRADES = trades_frame(
    [
        (0.5, "100.1", "0.3", False),  # aggressive buy
        (0.7, "100.0", "0.2", True),  # aggressive sell
        (1.9, "100.2", "1", False),
    ]
)


@pytest.fixture(scope="module", params=["compiled", "polars_reference"])
def hand(request) -> pl.DataFrame:
    """Per-message features of HAND, by the fast path and by the polars reference."""
    frame = book_frame(HAND)
    if request.param == "compiled":
        return F.compute_features(frame, None, CONFIG, instrument=INSTRUMENT)
    return F.reference_features(frame, CONFIG, instrument=INSTRUMENT)


def row(features: pl.DataFrame, k: int) -> dict:
    return features.row(k, named=True)


def close(a: float | None, b: float, tol: float = 1e-9) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=tol, abs_tol=tol)


# --------------------------------------------------------------------------------------------
# hand-computed book


def test_schema_and_alignment(hand: pl.DataFrame) -> None:
    assert hand.schema == F.features_schema(CONFIG)
    assert hand["msg_id"].to_list() == list(range(len(HAND)))  # one row per snapshot, in order


def test_mid_microprice_spread(hand: pl.DataFrame) -> None:
    r0 = row(hand, 0)
    # mid = (100.0 + 100.1) / 2
    assert close(r0["mid"], 100.05)
    # size-weighted mid: (b qa + a qb) / (qb + qa) = (100.0*1 + 100.1*2) / 3 = 300.2 / 3
    assert close(r0["microprice"], 300.2 / 3)
    # spread 0.1 exactly (from the integers: no 100.1 - 100.0 = 0.09999999999999432), 1 tick
    assert r0["spread"] == 0.1
    assert r0["spread_ticks"] == 1.0
    # L1 spread in bp of mid: 0.1 / 100.05 * 1e4 = 9.99500249875...
    assert close(r0["spread_l1_bp"], 0.1 / 100.05 * 1e4)
    # row 0 has 4 bid levels: no 5th level, so no L5 spread; L10+ do not exist at depth 5
    assert r0["spread_l5_bp"] is None
    assert r0["spread_l10_bp"] is None and r0["spread_l20_bp"] is None
    r1 = row(hand, 1)
    # mid (100.0 + 100.2)/2 = 100.1, spread 0.2 = 2 ticks, L5: (100.7 - 99.4) / 100.1 * 1e4
    assert close(r1["mid"], 100.1)
    assert r1["spread"] == 0.2 and r1["spread_ticks"] == 2.0
    assert close(r1["spread_l5_bp"], 1.3 / 100.1 * 1e4)
    # microprice: (100.0*2 + 100.2*2.5) / 4.5 = 450.5 / 4.5
    assert close(r1["microprice"], 450.5 / 4.5)


def test_depth_bands_and_lower_bound_flags(hand: pl.DataFrame) -> None:
    r0 = row(hand, 0)
    # mid 100.05; 1 bp = 0.010005, 5 bp = 0.050025, 10 bp = 0.10005, 25 bp = 0.250125,
    # 100 bp = 1.0005. Bid distances: 100.0 -> 0.05, 99.9 -> 0.15, 99.8 -> 0.25, 99.5 -> 0.55
    assert [r0[f"bid_depth_{x}bp"] for x in (1, 5, 10, 25, 100)] == [0.0, 2.0, 2.0, 6.0, 10.0]
    # ask distances: 100.1 -> 0.05, 100.2 -> 0.15, 100.4 -> 0.35
    assert [r0[f"ask_depth_{x}bp"] for x in (1, 5, 10, 25, 100)] == [0.0, 1.0, 1.0, 3.0, 8.0]
    # level 5 absent on both sides: the whole book is visible, no figure is a lower bound
    assert not any(r0[f"{s}_depth_{x}bp_lb"] for s in ("bid", "ask") for x in (1, 5, 10, 25, 100))
    r1 = row(hand, 1)
    # mid 100.1; 10 bp = 0.1001, 25 bp = 0.25025, 100 bp = 1.001.
    # bids 100.0 (0.1) 2.5, 99.9 (0.2) 1, 99.8 (0.3) 3, 99.5 (0.6) 4, 99.4 (0.7) 1
    assert [r1[f"bid_depth_{x}bp"] for x in (1, 5, 10, 25, 100)] == [0.0, 0.0, 2.5, 3.5, 11.5]
    # asks 100.2 (0.1) 2, 100.4 (0.3) 5, 100.5 (0.4) 1, 100.6 (0.5) 1, 100.7 (0.6) 1
    assert [r1[f"ask_depth_{x}bp"] for x in (1, 5, 10, 25, 100)] == [0.0, 0.0, 2.0, 2.0, 10.0]
    # level 5 (the deepest visible) lies inside 100 bp on both sides: lower bound there only
    assert [r1[f"bid_depth_{x}bp_lb"] for x in (1, 5, 10, 25, 100)] == [False] * 4 + [True]
    assert [r1[f"ask_depth_{x}bp_lb"] for x in (1, 5, 10, 25, 100)] == [False] * 4 + [True]


def test_depth_band_edge_is_inclusive() -> None:
    """A level exactly x bp from mid is inside the x bp band (the distance is exact in ticks)."""
    rows = [
        {"t": 0.1, "bids": [("99.9", "1"), ("99.5", "2")], "asks": [("100.1", "1"), ("100.5", "2")]}
    ]
    frame = book_frame(rows)
    for out in (F.compute_features(frame, None, CONFIG), F.reference_features(frame, CONFIG)):
        r = row(out, 0)
        # mid 100.0: 99.9 and 100.1 are exactly 10 bp (0.1) away, 99.5 / 100.5 are 50 bp away
        assert [r[f"bid_depth_{x}bp"] for x in (1, 5, 10, 25, 100)] == [0.0, 0.0, 1.0, 1.0, 3.0]
        assert [r[f"ask_depth_{x}bp"] for x in (1, 5, 10, 25, 100)] == [0.0, 0.0, 1.0, 1.0, 3.0]


def test_imbalance(hand: pl.DataFrame) -> None:
    r0 = row(hand, 0)
    # L1: (2 - 1) / (2 + 1)
    assert close(r0["imbalance_1"], 1 / 3)
    # L5: bids 2+1+3+4 = 10, asks 1+2+5 = 8 (absent levels count 0): (10 - 8) / 18
    assert close(r0["imbalance_5"], 2 / 18)
    # 10 levels do not exist at depth 5
    assert r0["imbalance_10"] is None
    # row 3: L1 (0.5 - 2) / 2.5
    assert close(row(hand, 3)["imbalance_1"], -1.5 / 2.5)


def test_book_walk(hand: pl.DataFrame) -> None:
    r0 = row(hand, 0)
    # buy 0.5 < best ask size 1: all at 100.1; slippage = half-spread = 0.05 / 100.05 * 1e4
    assert close(r0["buy_vwap_0p5"], 100.1)
    assert close(r0["buy_slip_bp_0p5"], 0.05 / 100.05 * 1e4)
    # buy 2.5: 1 @ 100.1 + 1.5 @ 100.2 = 250.4 -> vwap 100.16, slip (100.16/100.05 - 1) * 1e4
    assert close(r0["buy_vwap_2p5"], 100.16)
    assert close(r0["buy_slip_bp_2p5"], (100.16 / 100.05 - 1) * 1e4)
    # buy 10 > the 8 visible on the asks: too thin -> null
    assert r0["buy_vwap_10"] is None and r0["buy_slip_bp_10"] is None
    # sell 2.5: 2 @ 100.0 + 0.5 @ 99.9 = 249.95 -> 99.98, slip (1 - 99.98/100.05) * 1e4
    assert close(r0["sell_vwap_2p5"], 99.98)
    assert close(r0["sell_slip_bp_2p5"], (1 - 99.98 / 100.05) * 1e4)
    # sell 10 = exactly the visible bids (2 + 1 + 3 + 4, exact lots): 200 + 99.9 + 299.4 + 398
    assert close(r0["sell_vwap_10"], 997.3 / 10)
    assert close(r0["sell_slip_bp_10"], (1 - 99.73 / 100.05) * 1e4)


def test_ofi_rules(hand: pl.DataFrame) -> None:
    # row 0 has no predecessor
    assert all(row(hand, 0)[f"ofi_{m}"] is None for m in range(1, 11))
    r1 = row(hand, 1)
    # L1 bid 100.0 unchanged, 2 -> 2.5: e_b = +0.5; ask 100.1 -> 100.2 (up): e_a = -q_prev = -1
    # OFI = e_b - e_a = 1.5
    assert close(r1["ofi_1"], 1.5)
    # L2 bid unchanged 99.9x1: 0; ask 100.2 -> 100.4 (up): e_a = -2 -> +2
    assert close(r1["ofi_2"], 2.0)
    # L3 ask 100.4 -> 100.5: e_a = -5 -> +5
    assert close(r1["ofi_3"], 5.0)
    # L4 ask absent (+inf) -> 100.6 x 1: price down, e_a = +1 -> -1; bid 99.5x4 unchanged
    assert close(r1["ofi_4"], -1.0)
    # L5 bid absent (-inf) -> 99.4 x 1: e_b = +1; ask absent -> 100.7 x 1: e_a = +1 -> 0
    assert close(r1["ofi_5"], 0.0)
    # levels 6..10 do not exist at depth 5
    assert all(r1[f"ofi_{m}"] is None for m in range(6, 11))
    # row 2 invalid, row 3 follows an invalid row: no contribution across the gap
    assert row(hand, 2)["ofi_1"] is None and row(hand, 3)["ofi_1"] is None
    # row 4 repeats row 3: zero at every level
    assert [row(hand, 4)[f"ofi_{m}"] for m in range(1, 6)] == [0.0] * 5
    # row 5: best ask 100.2 queue 2 -> 3 at the same price: e_a = +1 -> OFI_1 = -1
    assert close(row(hand, 5)["ofi_1"], -1.0)


def test_invalid_rows_are_kept_and_nulled(hand: pl.DataFrame) -> None:
    r2 = row(hand, 2)
    assert r2["is_valid"] is False and r2["msg_id"] == 2
    book_cols = [c for c in F.features_schema(CONFIG) if c not in F.PASSTHROUGH]
    book_cols = [c for c in book_cols if c != "is_valid" and not c.startswith("trade_")]
    assert all(r2[c] is None for c in book_cols)


def test_reference_equals_compiled() -> None:
    frame = book_frame(HAND)
    fast = F.compute_features(frame, None, CONFIG, instrument=INSTRUMENT)
    ref = F.reference_features(frame, CONFIG, instrument=INSTRUMENT)
    assert_same(fast, ref)


def test_summary_counts(hand: pl.DataFrame) -> None:
    summary = F.feature_summary(hand, CONFIG)
    assert summary["rows"] == 6 and summary["invalid_rows"] == 1 and summary["no_mid_rows"] == 1
    # buy 10: row 0 shows 8 on the asks -> thin; rows 1, 3, 4 show exactly 2+5+1+1+1 = 10
    # (fills, in exact lots); row 5 shows 11; row 2 is invalid and not counted
    assert summary["thin_book"]["buy_10"] == 1
    # sells of 10: row 0 exactly 10 -> fills; row 1 11.5; rows 3,4,5 0.5+2.5+1+3+4 = 11
    assert summary["thin_book"]["sell_10"] == 0
    assert summary["thin_book"]["buy_0p5"] == 0
    # 100 bp lower bounds: rows 1, 3, 4, 5 have 5 ask levels inside 100 bp; bids: rows 1, 3-5
    assert summary["depth_lower_bound"]["ask_100bp"] == 4
    assert summary["depth_lower_bound"]["bid_100bp"] == 4
    assert summary["depth_lower_bound"]["ask_1bp"] == 0


# --------------------------------------------------------------------------------------------
# trades and grids


def test_trades_per_message() -> None:
    out = F.compute_features(book_frame(HAND), TRADES, CONFIG)
    # trades at 0.5 s and 0.7 s belong to message 1 (0.2 < t <= 0.7), the one at 1.9 s to
    # message 4 (1.6 < t <= 2.4)
    assert out["trade_count"].to_list() == [0, 2, 0, 0, 1, 0]
    r1 = row(out, 1)
    # volume 0.3 + 0.2, signed +0.3 - 0.2, vwap (0.3*100.1 + 0.2*100.0) / 0.5 = 50.03 / 0.5
    assert close(r1["trade_volume"], 0.5)
    assert close(r1["trade_signed_volume"], 0.1)
    assert close(r1["trade_vwap"], 100.06)
    assert row(out, 0)["trade_vwap"] is None  # no trades: no VWAP (volume 0)
    assert close(row(out, 4)["trade_signed_volume"], 1.0)
    # without trades the columns are null, not zero
    assert F.compute_features(book_frame(HAND), None, CONFIG)["trade_count"].null_count() == 6


def test_grid_1s() -> None:
    msgs = F.compute_features(book_frame(HAND), None, CONFIG)
    grid = F.grid_features(msgs, TRADES, "1s", CONFIG)
    assert grid.schema == F.features_schema(CONFIG, grid=True)
    # intervals (t-1s, t], labelled by their end: 1s, 2s, 3s, 4s (empty), 5s
    assert grid["ts"].to_list() == [T0 + timedelta(seconds=s) for s in (1, 2, 3, 4, 5)]
    assert grid["n_messages"].to_list() == [2, 2, 1, 0, 1]
    assert grid["n_invalid"].to_list() == [0, 1, 0, 0, 0]
    # state as of the interval end: 1s -> message 1 (mid 100.1), 2s -> message 3 (100.15),
    # 3s -> message 4, 4s carries message 4, 5s -> message 5
    assert np.allclose(grid["mid"].to_list(), [100.1, 100.15, 100.15, 100.15, 100.15])
    assert grid["last_update_id"].to_list() == [1001, 1003, 1004, 1004, 1005]
    # OFI sums: 1s: null (row 0) + 1.5; 2s: row 2 and 3 have none -> 0; 3s: 0; 4s: empty;
    # 5s: -1
    assert grid["ofi_1"].to_list() == [1.5, 0.0, 0.0, 0.0, -1.0]
    assert grid["ofi_2"].to_list() == [2.0, 0.0, 0.0, 0.0, 0.0]
    # returns: ln(100.15 / 100.1) at 2s, then 0; rv over 2 s = 2 returns: needs both present
    r = math.log(100.15 / 100.1)
    lr = grid["log_return"].to_list()
    assert lr[0] is None and close(lr[1], r) and lr[2:] == [0.0, 0.0, 0.0]
    rv = grid["rv"].to_list()
    assert rv[:2] == [None, None] and close(rv[2], r) and rv[3:] == [0.0, 0.0]
    # trades: (0, 1] has the two at 0.5 / 0.7; (1, 2] the one at 1.9
    assert grid["trade_count"].to_list() == [2, 1, 0, 0, 0]
    assert close(grid["trade_signed_volume"][0], 0.1) and close(grid["trade_vwap"][0], 100.06)
    assert grid["trade_vwap"][2] is None


def test_grid_state_is_last_message_and_invalid_state_is_null() -> None:
    rows = [
        {"t": 0.1, "bids": BIDS_0, "asks": ASKS_0},
        {"t": 0.9, "bids": BIDS_1, "asks": ASKS_1},
        {"t": 0.9, "bids": BIDS_3, "asks": ASKS_1},  # same stamp: the later message wins
        {"t": 1.5, "bids": BIDS_3, "asks": ASKS_1, "valid": False},
    ]
    grid = F.grid_features(book_frame(rows), None, "1s", CONFIG)
    assert grid["last_update_id"].to_list() == [1002, 1003]
    assert close(grid["mid"][0], 100.15)
    assert grid["is_valid"].to_list() == [True, False] and grid["mid"][1] is None


def test_grid_uses_running_max_of_event_time() -> None:
    # message 1 is stamped before message 0: it stays after it (the book's order), in 1s
    rows = [
        {"t": 0.8, "bids": BIDS_0, "asks": ASKS_0},
        {"t": 0.3, "bids": BIDS_1, "asks": ASKS_1},
        {"t": 1.2, "bids": BIDS_1, "asks": ASKS_1},
    ]
    grid = F.grid_features(book_frame(rows), None, "1s", CONFIG)
    assert grid["last_update_id"].to_list() == [1001, 1002]
    assert grid["n_messages"].to_list() == [2, 1]


def test_grid_from_snapshots_equals_grid_from_features() -> None:
    frame = book_frame(HAND)
    direct = F.grid_features(frame, TRADES, "500ms", CONFIG)
    reused = F.grid_features(F.compute_features(frame, None, CONFIG), TRADES, "500ms", CONFIG)
    assert direct.equals(reused)
    assert direct.height == 9  # 0.5 s .. 4.5 s


def test_order_flow_imbalance_api() -> None:
    frame = book_frame(HAND)
    per_msg = F.order_flow_imbalance(frame, levels=3)
    assert per_msg.columns == ["ts_event", "ofi_1", "ofi_2", "ofi_3"]
    assert per_msg["ofi_1"].to_list() == [None, 1.5, None, None, 0.0, -1.0]
    per_s = F.order_flow_imbalance(frame, levels=2, every="1s")
    assert per_s["ofi_1"].to_list() == [1.5, 0.0, 0.0, 0.0, -1.0]
    assert per_s["ofi_2"].to_list() == [2.0, 0.0, 0.0, 0.0, 0.0]


def test_book_walk_api_and_lazy_input() -> None:
    frame = book_frame(HAND)
    walk = F.book_walk(frame.lazy(), sizes=(2.5,))
    assert walk.columns == ["buy_vwap_2p5", "buy_slip_bp_2p5", "sell_vwap_2p5", "sell_slip_bp_2p5"]
    assert close(walk["buy_vwap_2p5"][0], 100.16) and walk["buy_vwap_2p5"][2] is None


def test_empty_and_config_errors() -> None:
    empty = schemas.empty(schemas.book_snapshots(INSTRUMENT, DEPTH))
    assert F.compute_features(empty, None, CONFIG).schema == F.features_schema(CONFIG)
    assert F.grid_features(empty, None, "1s", CONFIG).height == 0
    assert F.parse_duration("1m30s") == 90 * 10**9 and F.parse_duration("100ms") == 10**8
    with pytest.raises(ValueError):
        F.parse_duration("1mo")
    with pytest.raises(ValueError):
        F.FeatureConfig(walk_sizes=(0.0,))
    with pytest.raises(ValueError):
        F.FeatureConfig(depth_bands_bp=(5.0, 5))  # both would be bid_depth_5bp
    with pytest.raises(ValueError):
        F.compute_features(book_frame(HAND), None, F.FeatureConfig(walk_sizes=(0.0001,)))
    with pytest.raises(ValueError):
        F.grid_features(book_frame(HAND), None, "1s", F.FeatureConfig(rv_window="100ms"))


# --------------------------------------------------------------------------------------------
# CLI


def test_cli_writes_features_and_grids(tmp_path) -> None:
    from obpipeline.cli import main

    book_dir = tmp_path / "book" / "date=2024-06-01"
    book_dir.mkdir(parents=True)
    frame = book_frame(HAND)
    frame.head(3).write_parquet(book_dir / "part-0.parquet")
    frame.slice(3).write_parquet(tmp_path / "book" / "part-1.parquet")
    TRADES.write_parquet(tmp_path / "trades.parquet")
    out = tmp_path / "out"
    code = main(
        [
            "features",
            str(tmp_path / "book"),
            "--out",
            str(out),
            "--grid",
            "1s,500ms",
            "--trades",
            str(tmp_path / "trades.parquet"),
        ]
    )
    assert code == 0
    per_msg = pl.read_parquet(out / "features.parquet")
    assert per_msg.height == 6 and per_msg["msg_id"].to_list() == list(range(6))
    assert pl.read_parquet(out / "features_1s.parquet").height == 5
    assert pl.read_parquet(out / "features_500ms.parquet").height == 9


def test_cli_prints_json_summary_last(tmp_path, capsys) -> None:
    from obpipeline.cli import main

    (tmp_path / "book").mkdir()
    book_frame(HAND).write_parquet(tmp_path / "book" / "x.parquet")
    assert main(["features", str(tmp_path / "book"), "--out", str(tmp_path / "o")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["rows"] == 6 and summary["invalid_rows"] == 1
    assert "buy_50" in summary["thin_book"] and summary["seconds"] >= 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "features.parquet",
        "features_100ms.parquet",
        "features_1s.parquet",
    ]


def test_cli_missing_input_fails(tmp_path, capsys) -> None:
    from obpipeline.cli import main

    (tmp_path / "none").mkdir()
    assert main(["features", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) != 0


# --------------------------------------------------------------------------------------------
# properties on random books


def assert_same(fast: pl.DataFrame, ref: pl.DataFrame) -> None:
    assert fast.columns == ref.columns
    for c in fast.columns:
        a, b = fast[c], ref[c]
        assert a.is_null().to_list() == b.is_null().to_list(), c
        if a.dtype == pl.Float64:
            x, y = a.drop_nulls().to_numpy(), b.drop_nulls().to_numpy()
            assert np.allclose(x, y, rtol=1e-10, atol=1e-9), c
        else:
            assert a.equals(b), c


@st.composite
def random_books(draw, min_l1_lots: int = 1, one_sided: bool = True) -> pl.DataFrame:
    """Uncrossed depth-5 books on the 0.1 grid near 60 000, 1..5 levels a side (sometimes 0),
    sizes in lots of 0.001, a few invalid rows."""
    n = draw(st.integers(1, 12))
    bp, bs, ap, asz = schemas.level_names(DEPTH)
    cols: dict[str, list] = {c: [] for c in (*bp, *bs, *ap, *asz)}
    pres: dict[str, list] = {c: [] for c in cols}
    valid = []
    for _ in range(n):
        best_bid = draw(st.integers(599_000, 601_000))
        best_ask = best_bid + draw(st.integers(1, 4))
        low = 0 if one_sided else 1
        for pcols, scols, best, sign in ((bp, bs, best_bid, -1), (ap, asz, best_ask, 1)):
            k = draw(st.integers(low, DEPTH))
            gaps = draw(st.lists(st.integers(1, 30), min_size=DEPTH, max_size=DEPTH))
            price = best
            for j in range(DEPTH):
                if j:
                    price += sign * gaps[j]
                lots = draw(st.integers(min_l1_lots if j == 0 else 1, 20_000))
                cols[pcols[j]].append(price)
                cols[scols[j]].append(lots)
                pres[pcols[j]].append(j < k)
                pres[scols[j]].append(j < k)
        valid.append(draw(st.booleans()) or draw(st.booleans()))  # ~75 % valid
    ts = np.cumsum(draw(st.lists(st.integers(0, 400), min_size=n, max_size=n)))
    data = {
        "ts_event": pl.Series((1_717_200_000_000 + ts) * 1_000_000).cast(schemas.TS),
        "ts_local": pl.Series((1_717_200_000_000 + ts) * 1_000_000).cast(schemas.TS),
        "msg_id": pl.Series(np.arange(n, dtype=np.int64)),
        "last_update_id": pl.Series(np.arange(n, dtype=np.int64)),
    }
    for c, values in cols.items():
        scale = INSTRUMENT.price_scale if "_price_" in c else INSTRUMENT.size_scale
        data[c] = schemas.from_unscaled(np.array(values), scale, np.array(pres[c]), c)
    data["is_valid"] = pl.Series(valid)
    data["crossed_repaired"] = pl.Series([False] * n)
    data["resynced"] = pl.Series([False] * n)
    frame = pl.DataFrame(data)
    return schemas.conform(frame, schemas.book_snapshots(INSTRUMENT, DEPTH), "book_snapshots")


PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(random_books())
def test_property_compiled_equals_polars_reference(book: pl.DataFrame) -> None:
    config = F.FeatureConfig(walk_sizes=(0.5, 5.0, 40.0), spread_levels=(1, 3, 5))
    assert_same(
        F.compute_features(book, None, config, instrument=INSTRUMENT),
        F.reference_features(book, config, instrument=INSTRUMENT),
    )


@PROPS
@given(random_books())
def test_property_unchanged_book_has_zero_ofi(book: pl.DataFrame) -> None:
    doubled = pl.concat([book, book]).sort("msg_id", maintain_order=True)  # each row twice
    ofi = F.order_flow_imbalance(doubled, levels=DEPTH)
    repeats = ofi[1::2]  # the second copy of each row follows an identical book
    valid = book["is_valid"].to_list()
    for m in range(1, DEPTH + 1):
        values = repeats[f"ofi_{m}"].to_list()
        assert [v for v, ok in zip(values, valid, strict=True) if ok] == [0.0] * sum(valid)
        assert all(v is None for v, ok in zip(values, valid, strict=True) if not ok)


@PROPS
@given(random_books(min_l1_lots=501, one_sided=False), st.integers(1, 500))
def test_property_small_buy_fills_at_best_ask(book: pl.DataFrame, lots: int) -> None:
    size = lots / 1000  # strictly below every best ask size (>= 0.501)
    walk = F.book_walk(book, sizes=(size,))
    feats = F.compute_features(book, None, F.FeatureConfig(walk_sizes=(size,)))
    valid = book["is_valid"].to_numpy()
    ask = book["ask_price_1"].cast(pl.Float64).to_numpy()[valid]
    bid = book["bid_price_1"].cast(pl.Float64).to_numpy()[valid]
    vwap = walk[f"buy_vwap_{F._num(size)}"].to_numpy()[valid]
    slip = walk[f"buy_slip_bp_{F._num(size)}"].to_numpy()[valid]
    mid = (ask + bid) / 2
    assert np.allclose(vwap, ask, rtol=1e-12)
    assert np.allclose(slip, (ask - bid) / 2 / mid * 1e4, rtol=1e-9)  # the half-spread, in bp
    assert np.allclose(slip, feats["spread_l1_bp"].to_numpy()[valid] / 2, rtol=1e-9)


@PROPS
@given(random_books())
def test_property_imbalance_bounded_and_spreads_non_negative(book: pl.DataFrame) -> None:
    feats = F.compute_features(book, None, F.FeatureConfig(spread_levels=(1, 2, 3, 4, 5)))
    for k in (1, 5):
        values = feats[f"imbalance_{k}"].drop_nulls().to_numpy()
        assert ((values >= -1.0) & (values <= 1.0)).all()
    for c in ("spread", "spread_ticks", *(f"spread_l{k}_bp" for k in (1, 2, 3, 4, 5))):
        assert (feats[c].drop_nulls().to_numpy() >= 0).all(), c
    ticks = feats["spread_ticks"].drop_nulls().to_numpy()
    assert (ticks == np.round(ticks)).all()  # integer-valued: exact from the decimals


@PROPS
@given(random_books())
def test_property_too_thin_book_is_null_and_counted(book: pl.DataFrame) -> None:
    # more than the whole visible ask side: 5 levels x 20 000 lots = 100 BTC at most
    config = F.FeatureConfig(walk_sizes=(100.001,))
    feats = F.compute_features(book, None, config)
    assert feats["buy_vwap_100p001"].null_count() == feats.height
    assert feats["sell_slip_bp_100p001"].null_count() == feats.height
    summary = F.feature_summary(feats, config)
    with_mid = feats["mid"].is_not_null().sum()
    assert summary["thin_book"]["buy_100p001"] == with_mid == summary["thin_book"]["sell_100p001"]


def test_chunked_input_equals_one_chunk() -> None:
    """Parquet reads give one chunk per row group; OFI must carry across chunk boundaries, and
    columns chunked differently must still work."""
    frame = book_frame(HAND)
    chunked = pl.concat([frame.head(2), frame.slice(2, 1), frame.slice(3)], rechunk=False)
    assert chunked["bid_price_1"].n_chunks() == 3
    one = F.compute_features(frame, TRADES, CONFIG)
    assert F.compute_features(chunked, TRADES, CONFIG).equals(one)
    ragged = chunked.with_columns(chunked["ask_size_2"].rechunk())  # one column in one chunk
    assert F.compute_features(ragged, TRADES, CONFIG).equals(one)
    assert F.compute_features(chunked.lazy(), TRADES, CONFIG).equals(one)


# --------------------------------------------------------------------------------------------
# a whole day streamed from files: the same frames as the in-memory functions, exactly

GRIDS = ("1s", "100ms")


def streamed(
    tmp_path, book: pl.DataFrame, trades: pl.DataFrame | None, config: F.FeatureConfig,
    batch_rows: int, grids: tuple[str, ...] = GRIDS, book_files: int = 1, instrument=INSTRUMENT,
) -> tuple[dict, pl.DataFrame, dict[str, pl.DataFrame]]:  # fmt: skip
    """write_day_features over ``book`` (split into ``book_files`` files) and ``trades``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    edges = [book.height * k // book_files for k in range(book_files + 1)]
    paths = []
    for k in range(book_files):
        paths.append(tmp_path / f"book-{k}.parquet")
        book.slice(edges[k], edges[k + 1] - edges[k]).write_parquet(paths[-1])
    trade_path = None
    if trades is not None:
        trade_path = tmp_path / "trades.parquet"
        trades.write_parquet(trade_path)
    out = tmp_path / "out"
    summary = F.write_day_features(
        paths, trade_path, out / "features.parquet",
        {every: out / f"features_{every}.parquet" for every in grids},
        config, instrument=instrument, batch_rows=batch_rows,
    )  # fmt: skip
    per_msg = pl.read_parquet(out / "features.parquet")
    return summary, per_msg, {e: pl.read_parquet(out / f"features_{e}.parquet") for e in grids}


def assert_streamed_equals_whole_day(
    tmp_path, book: pl.DataFrame, trades: pl.DataFrame | None, config: F.FeatureConfig,
    batch_rows: int, grids: tuple[str, ...] = GRIDS, book_files: int = 1,
) -> dict:  # fmt: skip
    summary, per_msg, grid = streamed(tmp_path, book, trades, config, batch_rows, grids, book_files)
    whole = F.compute_features(book, trades, config, instrument=INSTRUMENT)
    assert per_msg.schema == whole.schema
    assert per_msg.equals(whole)  # exact: same nulls, same bits
    for every in grids:
        want = F.grid_features(whole, trades, every, config)
        assert grid[every].schema == want.schema
        assert grid[every].equals(want), every
    expected = F.feature_summary(whole, config)
    expected |= {f"rows_{e}": grid[e].height for e in grids}
    expected["trades"] = None if trades is None else trades.height
    assert summary == expected
    return summary


def test_streamed_hand_day_every_batch_size(tmp_path) -> None:
    book = book_frame(HAND)
    for batch_rows in (1, 2, 5, 100):
        for trades in (None, TRADES):
            d = tmp_path / f"{batch_rows}-{trades is None}"
            assert_streamed_equals_whole_day(
                d, book, trades, CONFIG, batch_rows, ("1s", "500ms"), book_files=2
            )


@st.composite
def random_trades(draw, book: pl.DataFrame) -> pl.DataFrame:
    """Trades around the book's time span: some before the first and after the last message,
    ties with message stamps, out of time order or with null fields now and then."""
    ts = book["ts_event"].dt.epoch("ms").to_list()
    n = draw(st.integers(0, 15))
    times = draw(
        st.lists(
            st.one_of(st.sampled_from(ts), st.integers(ts[0] - 1500, ts[-1] + 2500)),
            min_size=n,
            max_size=n,
        )
    )
    if draw(st.booleans()):
        times = sorted(times)
    prices = draw(st.lists(st.integers(599_000, 601_000), min_size=n, max_size=n))
    lots = draw(st.lists(st.integers(1, 5_000), min_size=n, max_size=n))
    maker = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    frame = pl.DataFrame(
        {
            "ts_event": pl.Series(np.array(times, dtype=np.int64) * 1_000_000).cast(schemas.TS),
            "ts_local": pl.Series(np.array(times, dtype=np.int64) * 1_000_000).cast(schemas.TS),
            "trade_id": pl.Series(np.arange(n, dtype=np.int64)),
            "price": schemas.from_unscaled(np.array(prices, dtype=np.int64), 1),
            "size": schemas.from_unscaled(np.array(lots, dtype=np.int64), 3),
            "is_buyer_maker": pl.Series(maker, dtype=pl.Boolean),
        }
    )
    if n and draw(st.booleans()):
        k = draw(st.integers(0, n - 1))
        frame = frame.with_columns(
            pl.when(pl.int_range(n) == k).then(None).otherwise(pl.col("size")).alias("size")
        )
    return schemas.conform(frame, schemas.trades(INSTRUMENT), "trades")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_property_streamed_equals_whole_day(tmp_path_factory, data) -> None:
    book = data.draw(random_books())
    trades = data.draw(st.one_of(st.none(), random_trades(book)))
    batch_rows = data.draw(st.integers(1, 5))
    grids = data.draw(st.sampled_from([("1s",), ("100ms", "250ms"), ("700ms",)]))
    config = F.FeatureConfig(walk_sizes=(0.5, 5.0), rv_window="2s", grids=grids)
    tmp = tmp_path_factory.mktemp("day")
    assert_streamed_equals_whole_day(
        tmp, book, trades, config, batch_rows, grids, 1 + batch_rows % 2
    )


def _replayed(capture_path) -> tuple[pl.DataFrame, pl.DataFrame]:
    from obpipeline import book as replay_book
    from obpipeline.sources.binance import read_capture

    capture = read_capture([capture_path])
    return replay_book.replay(capture.events, capture.instrument).snapshots, capture.trades


@pytest.fixture(scope="module")
def demo_day(tmp_path_factory) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A simulated demo day (lighter messages), replayed: book_snapshots and trades."""
    from obpipeline.sources import synthetic

    sim = synthetic.simulate_day("2024-03-01", profile="demo", msg_ms=5_000)
    path = tmp_path_factory.mktemp("demo") / sim.file_name()
    path.write_bytes(sim.capture)
    return _replayed(path)


def test_streamed_simulated_day_with_trades(tmp_path, demo_day) -> None:
    book, trades = demo_day
    assert book.height > 10_000 and trades.height > 10_000
    config = F.FeatureConfig()
    summary = assert_streamed_equals_whole_day(tmp_path / "a", book, trades, config, 997)
    assert summary["rows"] == book.height and summary["rows_100ms"] > 800_000
    assert_streamed_equals_whole_day(tmp_path / "b", book, None, config, 4096, ("1s",), 3)


@pytest.mark.parametrize("name", ["usdm/btcusdt_20240808.gz", "spot/btcusdt_20240808.gz"])
def test_streamed_real_capture(tmp_path, name: str) -> None:
    from obpipeline_tests.conftest import require_binance_data

    book, trades = _replayed(require_binance_data() / name)
    assert trades.height > 0
    instrument = get_instrument("binance", name.split("/")[0], "BTCUSDT")
    assert instrument is not None
    summary, per_msg, grid = streamed(
        tmp_path, book, trades, F.FeatureConfig(), 1_999, instrument=instrument
    )
    whole = F.compute_features(book, trades, F.FeatureConfig(), instrument=instrument)
    assert per_msg.equals(whole)
    for every in GRIDS:
        assert grid[every].equals(F.grid_features(whole, trades, every, F.FeatureConfig()))
    assert summary["rows"] == book.height


def test_streamed_run_is_byte_identical_and_atomic(tmp_path) -> None:
    book = book_frame(HAND)
    book.write_parquet(tmp_path / "book.parquet")
    TRADES.write_parquet(tmp_path / "trades.parquet")
    out = tmp_path / "out"
    files = {"1s": out / "g.parquet"}

    def run(snapshots) -> None:
        F.write_day_features(
            snapshots, tmp_path / "trades.parquet", out / "f.parquet", files, CONFIG, batch_rows=2
        )

    run(tmp_path / "book.parquet")
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    run(tmp_path / "book.parquet")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    # a bad second file fails the run: the previous outputs stay, no temporary file is left
    book.drop("ts_event").write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"bad\.parquet: missing column\(s\) ts_event"):
        run([tmp_path / "book.parquet", tmp_path / "bad.parquet"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        run(tmp_path / "nope.parquet")
    with pytest.raises(ValueError, match="batch_rows"):
        F.write_day_features(tmp_path / "book.parquet", None, out / "f.parquet", batch_rows=0)


def test_streamed_empty_day(tmp_path) -> None:
    empty = book_frame(HAND).head(0)
    summary, per_msg, grid = streamed(tmp_path / "a", empty, None, CONFIG, 10, ("1s",))
    assert per_msg.equals(F.compute_features(empty, None, CONFIG))
    assert grid["1s"].equals(F.grid_features(empty, None, "1s", CONFIG))
    assert summary["rows"] == 0 and summary["rows_1s"] == 0
    # trades without messages still make a grid (null state)
    assert_streamed_equals_whole_day(tmp_path / "b", empty, TRADES, CONFIG, 10, ("1s",))


def test_rv_is_the_same_for_any_chunking() -> None:
    """rv sums each window afresh: the bits do not depend on how the column is chunked (Polars'
    rolling_sum does), and agree with the rolling sum to rounding."""
    rng = np.random.default_rng(5)
    r = pl.Series("log_return", rng.normal(0, 1e-4, 5_000)).scatter([0, 17, 2_000], None)
    one = F._realized_vol(r, 60)
    for cut in (1, 59, 60, 61, 2_500):
        assert F._realized_vol(r[cut:], 60, before=r[:cut]).equals(one[cut:])
    ref = r.pow(2).rolling_sum(60, min_samples=60).sqrt()
    assert one.is_null().to_list() == ref.is_null().to_list()
    assert np.allclose(one.drop_nulls().to_numpy(), ref.drop_nulls().to_numpy(), rtol=1e-12)

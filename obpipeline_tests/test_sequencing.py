"""Hand-built streams, one per sequencing rule of DESIGN.md §4, replayed by every engine."""

from __future__ import annotations

import json
from decimal import Decimal

import polars as pl
import pytest

from obpipeline import book
from obpipeline.fidelity import exact
from obpipeline.sources.binance import lines_frame, parse_lines
from obpipeline_tests.conftest import FuturesStream

BIDS = [("100.0", "1.000"), ("99.9", "2.000"), ("99.8", "3.000")]
ASKS = [("100.1", "1.500"), ("100.2", "2.500"), ("100.3", "3.500")]


def run(stream: FuturesStream, engine: str):
    capture = parse_lines(lines_frame("\n".join(stream.lines).encode(), "test.gz"))
    return capture, book.replay(capture.events, capture.instrument, depth=5, engine=engine)


def best(snapshots: pl.DataFrame, row: int) -> tuple:
    r = snapshots.row(row, named=True)
    return r["bid_price_1"], r["bid_size_1"], r["ask_price_1"], r["ask_size_1"]


@pytest.fixture(params=book.ENGINES)
def engine(request) -> str:
    return request.param


def synced_stream() -> FuturesStream:
    s = FuturesStream()
    s.snapshot(BIDS, ASKS)
    return s


def test_snapshot_after_diffs_buffers_and_bridges(engine: str) -> None:
    s = FuturesStream()
    s.diff(bids=[("100.0", "9.000")])  # before the snapshot's id: stale
    snapshot_u = s.u + 1  # the snapshot is taken in the middle of the next message
    s.diff(bids=[("99.9", "7.000")], n_ids=3)  # bridges: U <= L <= u
    s.diff(asks=[("100.1", "0.500")])
    s.snapshot(BIDS, ASKS, last_update_id=snapshot_u)  # arrives after the diffs
    s.diff(asks=[("100.2", "0.000")])
    capture, r = run(s, engine)
    c = r.counters
    assert (c.stale, c.gaps, c.crossed, c.resyncs) == (1, 0, 0, 0)
    snaps = r.snapshots
    # 3 invalid rows at arrival (best effort), snapshot row, 2 re-applied buffered diffs, 1 live
    assert snaps["is_valid"].to_list() == [False, False, False, True, True, True, True]
    assert snaps["resynced"].to_list() == [False] * 3 + [True] + [False] * 3
    last = snaps.row(-1, named=True)
    assert last["bid_size_2"] == Decimal("7.000")  # the bridging diff was applied
    assert last["ask_size_1"] == Decimal("0.500")
    assert last["ask_price_2"] == Decimal("100.3")  # 100.2 deleted
    assert last["bid_size_1"] == Decimal("1.000")  # the stale diff was not applied
    assert last["last_update_id"] == s.u


def test_stale_events_before_snapshot_are_dropped_and_counted(engine: str) -> None:
    s = FuturesStream()
    for _ in range(3):
        s.diff(bids=[("50.0", "1.000")])  # far away, would show in the book if applied
    s.snapshot(BIDS, ASKS, last_update_id=s.u + 2)  # taken inside the next message
    s.diff(asks=[("100.1", "2.000")], n_ids=3)  # U <= L <= u: the first one applied
    _, r = run(s, engine)
    assert r.counters.stale == 3
    assert r.counters.invalid_rows == 3
    valid = r.snapshots.filter("is_valid")
    assert valid.height == 2
    assert Decimal("50.0") not in valid["bid_price_4"].to_list() + valid["bid_price_3"].to_list()
    assert r.checkpoint.is_valid and len(r.checkpoint.bid_price) == 3


def test_gap_mid_stream_invalidates_until_next_snapshot(engine: str) -> None:
    s = synced_stream()
    s.diff(bids=[("100.0", "1.100")])
    s.diff(bids=[("100.0", "1.200")], emit=False)  # lost on the wire
    s.diff(bids=[("99.9", "2.200")])  # pu does not chain: gap
    s.diff(asks=[("100.1", "1.600")])
    s.snapshot(
        [("100.0", "1.200"), ("99.9", "2.200"), ("99.8", "3.000")], [("100.1", "1.600"), *ASKS[1:]]
    )
    s.diff(asks=[("100.2", "2.600")])
    s.book_ticker("100.0", "1.200", "100.1", "1.600")
    _, r = run(s, engine)
    c = r.counters
    assert (c.gaps, c.resyncs, c.invalid_rows, c.unsynced_at_end, c.stale) == (1, 1, 2, 0, 1)
    # rows: snapshot, diff, 2 invalid rows, the resyncing snapshot, the buffered diff with u == L
    # re-applied (futures rule: only u < L is stale), then the live diff
    assert r.snapshots["is_valid"].to_list() == [True, True, False, False, True, True, True]
    # "resynced" marks every row where a snapshot put the book in sync, the first one included
    assert r.snapshots["resynced"].to_list() == [True, False, False, False, True, False, False]
    assert best(r.snapshots, -1) == (
        Decimal("100.0"),
        Decimal("1.200"),
        Decimal("100.1"),
        Decimal("1.600"),
    )


def test_gap_without_resync_leaves_the_rest_invalid(engine: str) -> None:
    s = synced_stream()
    s.diff(bids=[("100.0", "1.100")], emit=False)
    for _ in range(4):
        s.diff(asks=[("100.3", "1.000")])
    _, r = run(s, engine)
    assert r.counters.gaps == 1 and r.counters.unsynced_at_end == 1
    assert r.snapshots["is_valid"].to_list() == [True] + [False] * 4
    assert not r.checkpoint.is_valid


def test_duplicate_message_is_dropped_and_counted(engine: str) -> None:
    s = synced_stream()
    s.diff(bids=[("100.0", "1.100")])
    s.lines.append(s.lines[-1])  # the same message delivered twice
    s.diff(bids=[("100.0", "1.300")])
    _, r = run(s, engine)
    assert (r.counters.duplicates, r.counters.gaps) == (1, 0)
    assert r.snapshots.height == 3
    assert best(r.snapshots, -1)[1] == Decimal("1.300")


def test_crossed_book_is_repaired_by_the_documented_rule(engine: str) -> None:
    s = synced_stream()
    # a bid above the best ask: the asks at or below it are stale and deleted
    s.diff(bids=[("100.2", "0.700")])
    # an ask below the best bid (not set by a bid): the bids at or above it are deleted
    s.diff(asks=[("100.0", "0.100")])
    _, r = run(s, engine)
    assert r.counters.crossed == 2
    assert r.snapshots["crossed_repaired"].to_list() == [False, True, True]
    row1 = r.snapshots.row(1, named=True)
    assert (row1["bid_price_1"], row1["ask_price_1"]) == (Decimal("100.2"), Decimal("100.3"))
    row2 = r.snapshots.row(2, named=True)
    assert (row2["bid_price_1"], row2["ask_price_1"]) == (Decimal("99.9"), Decimal("100.0"))


def test_malformed_line_is_quarantined_with_line_number_and_rest_replayed(engine: str) -> None:
    s = synced_stream()
    s.diff(bids=[("100.0", "1.100")])
    s.raw('{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","U":1,"u":')  # truncated
    s.raw("not a capture line at all")
    s.lines.append("")  # blank: not a record
    data = s.diff(bids=[("99.9", "2.100")], emit=False)
    data["b"][0][0] = "99.95"  # off the 0.1 tick grid
    s.raw(json.dumps({"stream": "btcusdt@depth@0ms", "data": data}))
    s.diff(asks=[("100.1", "1.700")])
    capture, r = run(s, engine)
    q = capture.quarantine
    assert q["line"].to_list() == [3, 4, 6]
    assert q["file"].to_list() == ["test.gz"] * 3
    assert "invalid JSON" in q["reason"][0]
    assert "unrecognised record" in q["reason"][1]
    assert "not a decimal on the 0.1 tick grid" in q["reason"][2]
    assert q["record"][1] == s.lines[3].split(" ", 1)[0] + " not a capture line at all"
    # the quarantined diff leaves a hole in the id chain: visible as a gap, never silently good
    assert r.counters.messages == 3 and r.counters.gaps == 1
    assert r.snapshots["is_valid"].to_list() == [True, True, False]


def test_snapshot_in_sync_is_checked_and_a_mismatch_resyncs(engine: str) -> None:
    s = synced_stream()
    s.diff(bids=[("100.0", "1.100")])
    s.snapshot([("100.0", "1.100"), *BIDS[1:]], ASKS)  # agrees
    s.snapshot([("100.0", "5.000"), *BIDS[1:]], ASKS)  # disagrees at the same id
    s.diff(asks=[("100.1", "1.000")])
    s.book_ticker("100.0", "5.000", "100.1", "1.000")
    capture, r = run(s, engine)
    c = r.counters
    assert (c.snapshot_checks, c.snapshot_mismatches, c.resyncs) == (2, 1, 1)
    assert best(r.snapshots, -1) == (
        Decimal("100.0"),
        Decimal("5.000"),
        Decimal("100.1"),
        Decimal("1.000"),
    )
    cmp = exact.compare_bbo(r.snapshots, capture.golden_bbo)
    assert (cmp.compared, cmp.mismatched) == (1, 0)


def test_golden_mismatch_is_reported() -> None:
    s = synced_stream()
    s.diff(bids=[("100.0", "1.100")])
    s.book_ticker("100.0", "1.100", "100.1", "1.500")
    s.diff(bids=[("100.0", "1.200")])
    s.book_ticker("100.0", "1.250", "100.1", "1.500")  # the exchange says otherwise
    capture, r = run(s, "reference")
    cmp = exact.compare_bbo(r.snapshots, capture.golden_bbo)
    assert (cmp.compared, cmp.matched, cmp.mismatched) == (2, 1, 1)


def test_spot_rule_chains_on_first_update_id(engine: str) -> None:
    lines = []
    t = 1_720_000_000_000

    def diff(first, last, bids=(), asks=()):
        data = {
            "e": "depthUpdate",
            "E": t,
            "s": "BTCUSDT",
            "U": first,
            "u": last,
            "b": [list(x) for x in bids],
            "a": [list(x) for x in asks],
        }
        lines.append(f"{t * 1000} " + json.dumps({"stream": "btcusdt@depth@100ms", "data": data}))

    diff(10, 12, bids=[("100.00", "1.00000000")])  # stale: u <= L
    diff(13, 15, bids=[("100.00", "2.00000000")])  # bridges: U <= L+1 <= u
    lines.append(
        f"{t * 1000} "
        + json.dumps({"lastUpdateId": 13, "bids": [["100.00", "1.5"]], "asks": [["100.01", "1"]]})
    )
    diff(16, 16, asks=[("100.01", "3.00000000")])  # chains: U == u+1
    diff(18, 19, asks=[("100.02", "1.00000000")])  # gap: 17 missing
    capture = parse_lines(lines_frame("\n".join(lines).encode(), "spot.gz"))
    assert capture.instrument.market == "spot"
    r = book.replay(capture.events, capture.instrument, engine=engine)
    c = r.counters
    assert (c.stale, c.gaps) == (1, 1)
    assert r.snapshots["is_valid"].to_list() == [False, False, True, True, True, False]
    assert r.snapshots.row(4, named=True)["bid_size_1"] == Decimal("2.00000000")


def test_empty_message_keeps_the_id_chain(engine: str) -> None:
    s = synced_stream()
    s.diff()  # no levels at all
    s.diff(bids=[("100.0", "1.100")])
    capture, r = run(s, engine)
    assert capture.events.filter(pl.col("side").is_null()).height == 1
    assert (r.counters.gaps, r.snapshots.height) == (0, 3)


def test_checkpoint_round_trip(tmp_path) -> None:
    from obpipeline.book import checkpoint

    s = synced_stream()
    s.diff(bids=[("100.0", "1.100")])
    capture, r = run(s, "reference")
    path = checkpoint.write(r.checkpoint, capture.instrument, tmp_path / "ck.parquet")
    back = checkpoint.read(path)
    assert back.last_update_id == r.checkpoint.last_update_id and back.is_valid
    assert back.bid_price.tolist() == [1000, 999, 998] and back.ask_size.tolist() == [
        1500,
        2500,
        3500,
    ]


@pytest.mark.parametrize(
    ("asks", "reason"),
    [
        ('[["60000.0"]]', "level [60000.0] has 1 fields"),
        ('[["60000.0","1.000","x"]]', "level [60000.0, 1.000, x] has 3 fields"),
        ("[null]", "null level in the bid or ask list"),
    ],
)
def test_malformed_level_is_quarantined_not_fatal(asks: str, reason: str) -> None:
    good = FuturesStream()
    good.snapshot(BIDS, ASKS)
    bad = (
        f'{good._local()} {{"stream":"btcusdt@depth@0ms","data":{{"E":1,"U":2,"u":2,"pu":1,'
        f'"b":[],"a":{asks}}}}}'
    )
    good.raw(bad.split(" ", 1)[1])
    capture = parse_lines(lines_frame("\n".join(good.lines).encode(), "c.gz"), market="usdm")
    assert capture.quarantine["line"].to_list() == [2]
    assert reason in capture.quarantine["reason"][0]

"""Gate A1 on hand-built streams and real captures: alignment, incidents, per-level, verdicts."""

from __future__ import annotations

import json

import polars as pl
import pytest

from obpipeline import book
from obpipeline.fidelity import exact
from obpipeline.fidelity.config import DEFAULT
from obpipeline.fidelity.gates import FAIL, INSUFFICIENT, PASS, SKIPPED
from obpipeline.sources.binance import lines_frame, parse_lines, read_capture
from obpipeline_tests.conftest import FuturesStream, require_binance_data

BIDS = [("100.0", "1.000"), ("99.9", "2.000"), ("99.8", "3.000")]
ASKS = [("100.1", "1.500"), ("100.2", "2.500"), ("100.3", "3.500")]


def depth_partial(s: FuturesStream, bids, asks, levels: int = 5) -> None:
    """A depth<levels> partial-book record of the book at the stream's current id."""
    data = {"e": "depthUpdate", "E": s.t_ms, "T": s.t_ms, "s": s.symbol, "U": s.u, "u": s.u,
            "pu": s.u - 1, "b": [list(x) for x in bids], "a": [list(x) for x in asks]}  # fmt: skip
    stream = f"{s.symbol.lower()}@depth{levels}@100ms"
    s.raw(json.dumps({"stream": stream, "data": data}))


def ticker(s: FuturesStream, b, bq, a, aq, u: int | None = None, late_ms: int = 0) -> None:
    """A bookTicker stamped, like the exchange's, with its depth message's transaction time."""
    t = s.t_ms - 1 + late_ms  # FuturesStream.diff stamps T = E - 1
    data = {"e": "bookTicker", "u": s.u if u is None else u, "s": s.symbol, "b": b, "B": bq,
            "a": a, "A": aq, "T": t, "E": t}  # fmt: skip
    s.raw(json.dumps({"stream": f"{s.symbol.lower()}@bookTicker", "data": data}))


def plain_bbo(snapshots: pl.DataFrame, golden_bbo: pl.DataFrame) -> tuple[int, int]:
    """(compared, matched) by the plain rule, written independently: a record stamped ``u``
    equals level 1 of the last valid row whose ``last_update_id`` is ``u``."""
    book_rows = snapshots.filter(pl.col("is_valid")).unique("last_update_id", keep="last")
    joined = golden_bbo.join(book_rows, left_on="update_id", right_on="last_update_id")
    same = joined.filter(
        (pl.col("bid_price") == pl.col("bid_price_1"))
        & (pl.col("bid_size") == pl.col("bid_size_1"))
        & (pl.col("ask_price") == pl.col("ask_price_1"))
        & (pl.col("ask_size") == pl.col("ask_size_1"))
    )
    return joined.height, same.height


def run(s: FuturesStream):
    capture = parse_lines(lines_frame("\n".join(s.lines).encode(), "test.gz"))
    result = book.replay(capture.events, capture.instrument, depth=5, engine="reference")
    return capture, result


def stream_with_tickers(wrong: set[int]) -> FuturesStream:
    """Snapshot, then 8 diffs each followed by a bookTicker at its id (``wrong``: bad sizes)."""
    s = FuturesStream()
    s.snapshot(BIDS, ASKS)
    for k in range(8):
        size = f"{1 + k}.000"
        s.diff(bids=[("100.0", size)])
        ticker(s, "100.0", "9.999" if k in wrong else size, "100.1", "1.500")
    return s


def test_aligned_records_match_and_unalignable_ones_are_explained() -> None:
    s = stream_with_tickers(set())
    ticker(s, "100.0", "8.000", "100.1", "1.500", u=s.u - 1)  # inside the last message
    capture, result = run(s)
    cmp = exact.compare_bbo(result.snapshots, capture.golden_bbo, capture.events)
    assert (cmp.records, cmp.aligned, cmp.matched, cmp.incidents) == (9, 8, 8, 0)
    assert cmp.not_aligned == {"inside_message": 1}
    assert cmp.time_checked == 8 and cmp.time_mismatched == 0
    assert plain_bbo(result.snapshots, capture.golden_bbo) == (cmp.aligned, cmp.matched)


def test_consecutive_mismatches_are_one_incident() -> None:
    capture, result = run(stream_with_tickers({2, 3, 4, 6}))
    cmp = exact.compare_bbo(result.snapshots, capture.golden_bbo, capture.events)
    assert (cmp.aligned, cmp.mismatched, cmp.incidents) == (8, 4, 2)
    t_ns, msg = cmp.first_mismatch()
    assert msg == 3  # the snapshot is message 0; bookTicker k follows diff k (msg k + 1)
    assert cmp.upper_bound() < cmp.upper_bound(incidents=False)
    by = {r.check: r for r in exact.exact_results([cmp], DEFAULT)}
    res, time_res = by["bookTicker"], by["bookTicker_time"]
    assert by["touch"].status == FAIL and by["touch"].metrics["incidents"] == 2
    assert by["top"].status == SKIPPED  # no partial-book reference
    assert res.status == FAIL and res.first_failure_msg_id == 3
    assert res.metrics["incidents"] == 2 and res.metrics["mismatched"] == 4
    assert time_res.check == "bookTicker_time" and time_res.status == PASS


def test_exchange_time_must_equal_the_depth_message_time() -> None:
    s = FuturesStream()
    s.snapshot(BIDS, ASKS)
    s.diff(bids=[("100.0", "5.000")])
    ticker(s, "100.0", "5.000", "100.1", "1.500")
    s.diff(bids=[("100.0", "6.000")])
    ticker(s, "100.0", "6.000", "100.1", "1.500", late_ms=1)  # 1 ms after its depth message
    capture, result = run(s)
    cmp = exact.compare_bbo(result.snapshots, capture.golden_bbo, capture.events)
    assert cmp.mismatched == 0 and (cmp.time_checked, cmp.time_mismatched) == (2, 1)
    results = {r.check: r for r in exact.exact_results([cmp], DEFAULT)}
    assert results["bookTicker_time"].status == FAIL
    assert results["bookTicker_time"].first_failure_msg_id == 2


def test_partial_depth_per_level_accuracy() -> None:
    s = FuturesStream()
    s.snapshot(BIDS, ASKS)
    s.diff(asks=[("100.2", "4.000")])
    asks_now = [ASKS[0], ("100.2", "4.000"), ASKS[2]]
    depth_partial(s, BIDS, asks_now)  # right
    depth_partial(s, BIDS[:2] + [("99.8", "3.001")], asks_now)  # level 3 bid size wrong
    depth_partial(s, BIDS, asks_now, levels=2)  # only 2 levels: a wrong level 3 is not looked at
    capture, result = run(s)
    cmp = exact.compare_depth(result.snapshots, capture.golden_depth, capture.events)
    assert (cmp.aligned, cmp.mismatched, cmp.incidents) == (3, 1, 1)
    per = {r["level"]: r for r in cmp.per_level.iter_rows(named=True)}
    assert per[1]["accuracy"] == 1.0 and per[2]["compared"] == 3
    assert per[3]["compared"] == 2 and per[3]["matched"] == 1
    assert per[4]["compared"] == 2 and per[4]["matched"] == 2  # absent on both sides: equal
    assert cmp.scope == exact.TOP


def test_rest_snapshot_compared_with_the_independent_book() -> None:
    s = FuturesStream()
    s.snapshot(BIDS, ASKS)
    s.diff(bids=[("100.0", "5.000")])
    at = s.u
    s.diff(asks=[("100.1", "0.500")])
    s.snapshot([("100.0", "5.000")] + BIDS[1:], ASKS, last_update_id=at)  # correct, late
    s.snapshot(BIDS, ASKS, last_update_id=at)  # claims id ``at`` with an older book
    capture, result = run(s)
    cmp = exact.compare_rest(result.snapshots, capture.events)
    # the opening snapshot synced the book: not a comparison; the two late ones are
    assert (cmp.records, cmp.aligned, cmp.mismatched) == (3, 2, 1)
    assert cmp.not_aligned == {"no_independent_valid_book": 1}


def fake(aligned: int, incidents: int, scope: str = exact.TOUCH, records: int | None = None):
    """A comparison with given counts (its pairs are not needed by the per-kind verdict)."""
    pairs = pl.DataFrame(
        schema={
            "update_id": pl.Int64,
            "ts_event": pl.Datetime("ns", "UTC"),
            "ts_ns": pl.Int64,
            "msg_id": pl.Int64,
            "levels": pl.Int16,
            "mismatch": pl.Boolean,
            "touch_mismatch": pl.Boolean,
        }
    )
    per = pl.DataFrame({"level": [1], "compared": [aligned], "matched": [aligned - incidents]})
    return exact.ExactComparison(
        "x", scope, aligned if records is None else records, aligned, aligned - incidents,
        incidents, 1, per.with_columns(accuracy=pl.lit(1.0)), pairs, pairs,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("aligned", "incidents", "scope", "status"),
    [
        (29_956, 0, exact.TOUCH, PASS),  # certifies < 0.01 % at the touch
        (29_955, 0, exact.TOUCH, INSUFFICIENT),  # one short: no error seen, nothing certified
        (2_995, 0, exact.TOP, PASS),
        (629, 0, exact.TOUCH, INSUFFICIENT),  # a 6-minute real capture
        (629, 1, exact.TOUCH, FAIL),
        (1_000_000, 1, exact.TOUCH, PASS),  # 1 incident in a million: bound 4.7e-6 < 1e-4
        (0, 0, exact.TOUCH, INSUFFICIENT),
    ],
)
def test_verdicts_follow_the_clopper_pearson_rule(aligned, incidents, scope, status) -> None:
    records = max(aligned, 10)
    res = exact.exact_results([fake(aligned, incidents, scope, records)], DEFAULT)[0]
    assert res.status == status


def test_no_records_is_skipped() -> None:
    results = exact.exact_results([fake(0, 0, records=0)], DEFAULT)
    assert [r.status for r in results] == [SKIPPED] * 3  # the kind, touch, top


def test_real_capture_agrees_with_the_plain_rule_and_times_agree() -> None:
    capture = read_capture([require_binance_data() / "usdm/btcusdt_20240808.gz"])
    result = book.replay(capture.events, capture.instrument, engine="reference")
    cmp = exact.compare_bbo(result.snapshots, capture.golden_bbo, capture.events)
    assert plain_bbo(result.snapshots, capture.golden_bbo) == (cmp.aligned, cmp.matched)
    assert cmp.aligned > 500
    assert cmp.time_checked >= cmp.aligned and cmp.time_mismatched == 0
    assert cmp.not_aligned["inside_message"] > 0.9 * cmp.records


def test_tardis_references_match_within_one_message(tmp_path) -> None:
    from obpipeline.export.tardis import export_capture
    from obpipeline.sources.tardis import read_tardis

    data = require_binance_data()
    export = export_capture(
        [data / "usdm/btcusdt_20240718.gz"], tmp_path, depth=20, engine="reference"
    )
    files = [export.files[k] for k in ("incremental_book_L2", "book_snapshot_20", "quotes")]
    capture = read_tardis(files)
    result = book.replay(capture.events, capture.instrument, depth=20, engine="reference")
    quotes = exact.compare_windowed("quotes", exact.TOUCH, result.snapshots, capture.golden_bbo)
    snaps = exact.compare_windowed(
        "book_snapshot", exact.TOP, result.snapshots, capture.golden_depth
    )
    for c in (quotes, snaps):
        assert c.aligned > 100 and c.mismatched == 0, c.summary()
    size = capture.golden_depth.schema["bid_size_3"]
    bad = capture.golden_depth.with_columns(
        pl.when(pl.int_range(pl.len()) == 50)
        .then((pl.col("bid_size_3") + pl.lit(1)).cast(size))
        .otherwise(pl.col("bid_size_3"))
        .alias("bid_size_3")
    )
    c = exact.compare_windowed("book_snapshot", exact.TOP, result.snapshots, bad)
    assert c.mismatched == 1 and c.incidents == 1
    assert c.per_level.filter(pl.col("level") == 3)["matched"][0] == c.aligned - 1


def test_pooled_touch_counts_each_book_state_once() -> None:
    s = FuturesStream()
    s.snapshot(BIDS, ASKS)
    for k in range(6):
        size = f"{1 + k}.000"
        s.diff(bids=[("100.0", size)])
        wrong = k in (2, 3)
        ticker(s, "100.0", "9.999" if wrong else size, "100.1", "1.500")
        bids = [("100.0", "9.999" if wrong else size)] + BIDS[1:]
        depth_partial(s, bids, ASKS)  # the same state, also wrong at the touch
    capture, result = run(s)
    comps = [
        exact.compare_bbo(result.snapshots, capture.golden_bbo, capture.events),
        exact.compare_depth(result.snapshots, capture.golden_depth, capture.events),
    ]
    touch = exact.pooled_evidence(comps, exact.TOUCH)
    assert (touch.aligned, touch.mismatched, touch.incidents) == (6, 2, 1)
    top = exact.pooled_evidence(comps, exact.TOP)
    assert (top.aligned, top.mismatched, top.kinds) == (6, 2, ["depth"])
    by = {r.check: r for r in exact.exact_results(comps, DEFAULT)}
    assert by["touch"].status == FAIL and by["touch"].first_failure_msg_id == 3


def test_day_comparisons_and_the_cli_summary() -> None:
    """One entry point for both alignments; the summary the CLI prints; mismatches side by side."""
    s = stream_with_tickers({2, 3})
    depth_partial(s, BIDS, ASKS)
    capture, result = run(s)
    comps = exact.day_comparisons(
        result.snapshots, capture.events, capture.golden_bbo, capture.golden_depth, rest=False
    )
    assert [c.kind for c in comps] == ["bookTicker", "depth"]
    out = exact.summary(comps)
    assert out["golden_bookTicker_compared"] == 8 and out["golden_bookTicker_mismatched"] == 2
    assert out["golden_mismatched"] == sum(c.mismatched for c in comps)
    # the partial-book record above is stamped T = E, its depth message T = E - 1
    assert (comps[0].time_mismatched, comps[1].time_mismatched) == (0, 1)
    assert out["golden_time_mismatched"] == 1
    bad = comps[0].mismatches
    assert bad.height == 2 and (bad["bid_size_1"] != bad["bid_size_1_book"]).all()
    # the same records without ids are aligned by time: the bookTicker kind becomes quotes
    by_time = exact.day_comparisons(
        result.snapshots, None, capture.golden_bbo, None, aligned_by="time"
    )
    assert [c.kind for c in by_time] == ["quotes"]
    assert (by_time[0].records, by_time[0].matched) == (8, 6)
    # an empty bookTicker frame is still reported (0 compared); an empty depth frame is not
    empty = exact.day_comparisons(
        result.snapshots, None, capture.golden_bbo.head(0), capture.golden_depth.head(0)
    )
    assert [(c.kind, c.records) for c in empty] == [("bookTicker", 0)]
    with pytest.raises(ValueError, match="aligned_by"):
        exact.day_comparisons(result.snapshots, aligned_by="clock")

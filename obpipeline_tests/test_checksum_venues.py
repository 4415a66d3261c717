"""Checksum venues on the real recordings: every checksum matches (the counts the recordings'
README gives), no gap, no crossed book, the engine equals the reference replayer; the venue
rules (strings, Kraken truncation, OKX seqId gaps) and bad lines on hand-built recordings."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from obpipeline.book import checksum as ck
from obpipeline.errors import CaptureError
from obpipeline.fidelity.checksum_gate import checksum_results
from obpipeline.sources.checksum_venues.recording import detect_venue, read_recording
from obpipeline.sources.checksum_venues.sequence import sequence

CHECKSUM_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "checksum"
FILES = {
    "okx": "okx/OKX.ws.1.0",
    "bitget": "bitget/BITGET.ws.1.0",
    "kraken": "kraken/KRAKEN.ws.50.0",
}
EXPECTED = {"okx": 191, "bitget": 443, "kraken": 2234}


def recording_path(venue: str) -> Path:
    path = CHECKSUM_DATA / FILES[venue]
    if not path.exists():
        pytest.skip(
            f"checksum recordings not found at {CHECKSUM_DATA} (../shared/data beside the repo)"
        )
    return path


@pytest.mark.parametrize("venue", list(FILES))
def test_every_checksum_matches(venue: str) -> None:
    path = recording_path(venue)
    assert detect_venue(path) == venue
    rec = read_recording([path])
    assert rec.quarantine == []
    totals = {"compared": 0, "mismatched": 0, "gaps": 0, "crossed": 0, "with": 0}
    for symbol in rec.symbols:
        day = sequence(rec, symbol)
        results = {}
        for engine in ("engine", "reference"):
            result, report = ck.replay_checked(day, 25, engine)
            results[engine] = (result, report)
        (res, rep), (ref, ref_rep) = results["engine"], results["reference"]
        assert res.snapshots.equals(ref.snapshots), symbol
        assert res.counters == ref.counters
        assert rep.to_dict() == ref_rep.to_dict()
        assert res.checkpoint.is_valid
        totals["compared"] += rep.compared
        totals["mismatched"] += rep.mismatched
        totals["with"] += rep.messages_with_checksum
        totals["gaps"] += res.counters.gaps
        totals["crossed"] += res.counters.crossed
        assert all(g.status == "pass" or g.check == "checksum" for g in checksum_results(res, rep))
        assert res.snapshots["is_valid"].all()
    assert totals == {
        "compared": EXPECTED[venue],
        "mismatched": 0,
        "gaps": 0,
        "crossed": 0,
        "with": EXPECTED[venue],
    }


def test_multi_instrument_selection() -> None:
    rec = read_recording([recording_path("kraken")])
    assert rec.symbols == ["ADA/XBT", "ETH/CHF", "OCEAN/XBT", "WAVES/EUR", "XMR/USD"]
    with pytest.raises(CaptureError, match="choose one with --symbol: ADA/XBT, ETH/CHF"):
        rec.select(None)
    with pytest.raises(CaptureError, match="present: ADA/XBT"):
        rec.select("XBT/CHF")
    day = sequence(rec, rec.select("ETH/CHF"))
    assert day.instrument.symbol == "ETH-CHF"  # the lake's safe form
    assert (day.price_decimals, day.size_decimals) == (5, 8)


# ----------------------------------------------------------------------------- the strings


def test_okx_and_bitget_strings() -> None:
    bids = [(33661, 7), (33660, 6)]  # scale 1: 3366.1, 3366.0
    asks = [(33668, 9), (33680, 8)]
    okx = ck.checksum_string(ck.RULES["okx"], bids, asks, (1, 0), (1, 0))
    assert okx == b"3366.1:7:3366.8:9:3366:6:3368:8"
    bitget = ck.checksum_string(ck.RULES["bitget"], bids[:1], asks, (1, 0), (4, 2))
    assert bitget == b"3366.1000:7.00:3366.8000:9.00:3368.0000:8.00"


def test_kraken_string() -> None:
    # Kraken's documentation example: price 0.05005, volume 0.00000500 → "5005" and "500".
    s = ck.checksum_string(ck.RULES["kraken"], [(5005, 500)], [(5006, 1500)], (5, 8), (5, 8))
    assert s == b"500615005005500"


# ----------------------------------------------------------------------------- hand-built files


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def okx_line(ts: float, action: str, asks, bids, checksum: int | None, seq=None, prev=None) -> str:
    data = {"asks": asks, "bids": bids, "ts": str(int(ts * 1000))}
    if checksum is not None:
        data["checksum"] = checksum
    if seq is not None:
        data["seqId"], data["prevSeqId"] = seq, prev
    msg = {"arg": {"channel": "books", "instId": "ABC-USDT"}, "action": action, "data": [data]}
    return f"{ts}: {json.dumps(msg, separators=(',', ':'))}"


def okx_crc(bids, asks) -> int:
    b = [(int(p.replace(".", "")), int(s)) for p, s, *_ in bids]
    a = [(int(p.replace(".", "")), int(s)) for p, s, *_ in asks]
    crc = ck.crc32(ck.checksum_string(ck.RULES["okx"], b, a, (1, 0), (1, 0)))
    return crc - (1 << 32) if crc >= 1 << 31 else crc  # OKX sends a signed int32


def test_okx_seq_gap_invalid_until_snapshot(tmp_path: Path) -> None:
    bids, asks = [["10.1", "5", "0", "1"]], [["10.3", "2", "0", "1"]]
    bids2 = [["10.1", "6", "0", "1"]]
    lines = [
        "wss://ws.okx.com:8443/ws/v5/public <-> 1700000000.0",
        okx_line(1700000000.1, "snapshot", asks, bids, okx_crc(bids, asks), 10, -1),
        okx_line(1700000000.2, "update", [], bids2, okx_crc(bids2, asks), 11, 10),
        okx_line(1700000000.3, "update", [], [], okx_crc(bids2, asks), 13, 12),  # 12 lost
        okx_line(1700000000.4, "snapshot", asks, bids, okx_crc(bids, asks), 20, -1),
        okx_line(1700000000.5, "update", [], [["10.2", "1", "0", "1"]], 0, 21, 20),  # retired
    ]
    rec = read_recording([write(tmp_path, "okx.txt", lines)])
    day = sequence(rec, "ABC-USDT")
    assert day.instrument.sequencing == "binance_futures"
    result, report = ck.replay_checked(day, 5)
    assert result.counters.gaps == 1
    assert result.snapshots["is_valid"].to_list() == [True, True, False, True, True]
    assert (report.compared, report.mismatched, report.messages_with_checksum) == (3, 0, 4)


def test_mismatch_located_and_recovered_by_snapshot(tmp_path: Path) -> None:
    bids, asks = [["10.1", "5", "0", "1"]], [["10.3", "2", "0", "1"]]
    good = okx_crc(bids, asks)
    lines = [
        okx_line(1700000000.1, "snapshot", asks, bids, good),
        okx_line(1700000000.2, "update", [], [["10.1", "6", "0", "1"]], good),  # wrong on purpose
        okx_line(1700000000.3, "update", [], [], good),
        okx_line(1700000000.4, "snapshot", asks, bids, good),
    ]
    path = write(tmp_path, "okx.txt", lines)
    day = sequence(read_recording([path], "okx"), "ABC-USDT")
    for engine in ("engine", "reference"):
        result, report = ck.replay_checked(day, 5, engine)
        assert result.snapshots["is_valid"].to_list() == [True, False, False, True]
        assert (report.compared, report.mismatched, report.not_compared_invalid) == (3, 1, 1)
        where = report.mismatches[0]
        assert (where["file"], where["line"], where["msg_id"]) == (str(path), 2, 1)
        assert where["ts_event"] == 1700000000200 * 1_000_000
        assert where["symbol"] == "ABC-USDT"
        gates = {g.check: g for g in checksum_results(result, report)}
        assert gates["checksum"].status == "fail" and gates["checksum"].first_failure_msg_id == 1


def kraken_line(ts: float, parts: list[dict], depth: int = 3) -> str:
    msg = [42, *parts, f"book-{depth}", "AB/CD"]
    return f"{ts}: {json.dumps(msg, separators=(',', ':'))}"


def test_kraken_truncates_to_subscribed_depth(tmp_path: Path) -> None:
    lvl = lambda p, v: [p, v, "1700000000.000100"]  # noqa: E731
    snap = {"as": [lvl("1.05", "1.0"), lvl("1.06", "1.0"), lvl("1.07", "1.0")],
            "bs": [lvl("1.03", "1.0"), lvl("1.02", "1.0"), lvl("1.01", "1.0")]}  # fmt: skip
    # An ask better than all: the book keeps 3 asks, 1.07 is cut; its later deletion of 1.04
    # must not bring 1.07 back (the venue no longer has it in the client's scope).
    lines = [
        kraken_line(1700000000.1, [snap]),
        kraken_line(1700000000.2, [{"a": [lvl("1.04", "2.0")]}]),
        kraken_line(1700000000.3, [{"a": [lvl("1.04", "0.0")]}]),
    ]
    rec = read_recording([write(tmp_path, "kraken.txt", lines)], "kraken")
    day = sequence(rec, "AB/CD")
    assert day.truncated == 1
    for engine in ("engine", "reference"):
        result, _ = ck.replay_checked(day, 5, engine)
        asks = result.snapshots.select("ask_price_1", "ask_price_2", "ask_price_3", "ask_price_4")
        as_text = [[None if v is None else str(v) for v in row] for row in asks.rows()]
        assert as_text == [
            ["1.05", "1.06", "1.07", None],
            ["1.04", "1.05", "1.06", None],
            ["1.05", "1.06", None, None],
        ]


def test_bad_lines_quarantined_with_file_and_line(tmp_path: Path) -> None:
    lines = [
        "wss://ws.okx.com:8443/ws/v5/public <-> 1700000000.0",
        okx_line(1700000000.1, "snapshot", [["10.3", "2"]], [["10.1", "5"]], None),
        "1700000000.2: {not json",
        "garbage without a time",
        okx_line(1700000000.3, "update", [["1e3", "2"]], [], None),
        okx_line(1700000000.4, "bogus", [], [], None),
        '1700000000.5: {"event":"subscribe","arg":{"channel":"books","instId":"ABC-USDT"}}',
        "",
    ]
    path = write(tmp_path, "okx.txt", lines)
    rec = read_recording([path])
    reasons = {q["line"]: q["reason"] for q in rec.quarantine}
    assert set(reasons) == {3, 4, 5, 6}
    assert "invalid JSON" in reasons[3] and "no receive time" in reasons[4]
    assert "'1e3' is not a plain decimal" in reasons[5] and "unknown action" in reasons[6]
    assert all(q["file"] == str(path) for q in rec.quarantine)
    acc = rec.accounting()
    assert acc["lines"] == 8 and acc["book_lines"] == 1 and acc["ignored_other_streams"] == 1
    assert acc["lines"] == sum(v for k, v in acc.items() if k != "lines")


def test_unknown_venue_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, "x.txt", ['1700000000.1: {"hello": 1}'])
    with pytest.raises(CaptureError, match="cannot tell the venue"):
        read_recording([path])


def test_engine_rows_sliced_to_requested_depth() -> None:
    rec = read_recording([recording_path("okx")])
    day = sequence(rec, "BTC-USDT")
    result, report = ck.replay_checked(day, 5)
    assert report.mismatched == 0 and report.compared == 98
    assert [c for c in result.snapshots.columns if c.startswith("bid_price")] == [
        f"bid_price_{i}" for i in range(1, 6)
    ]
    assert isinstance(result.snapshots, pl.DataFrame)

"""The streamed ingest equals the whole-file parse, batch edges included, and damage is
quarantined (never fatal, never silent)."""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from obpipeline.sources import ingest as I
from obpipeline.sources.binance import read_capture
from obpipeline_tests.conftest import BINANCE, CONTINUATIONS, FuturesStream, require_binance_data


def _whole_day(capture, day: date):
    """The reference: the whole-file parse restricted to one exchange day, msg_id from 0."""
    start, end = (pl.lit(x).cast(pl.Datetime("ns", "UTC")) for x in I.day_bounds_ns(day))

    def on_day(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter((pl.col("ts_event") >= start) & (pl.col("ts_event") < end))

    events = on_day(capture.events).with_columns(
        (pl.col("msg_id").rank("dense") - 1).cast(pl.Int64)
    )
    return {
        "raw_book_events": events,
        "golden_bbo": on_day(capture.golden_bbo),
        "golden_depth": on_day(capture.golden_depth),
        "trades": on_day(capture.trades),
    }


def _ingest(files: list[Path], tmp: Path, **kw) -> tuple[I.Ingest, dict]:
    staged = I.ingest(
        [I.Part.file(f) for f in files], lambda ds, d: tmp / ds / f"{d}.parquet", **kw
    )
    paths = {d: out.publish() for d, out in staged.days.items()}
    return staged, paths


@pytest.mark.parametrize("pair", CONTINUATIONS[1:3], ids=lambda p: p[0].split("/")[0])
def test_streamed_equals_whole_parse_across_batches_and_midnight(tmp_path, pair):
    require_binance_data()
    files = [BINANCE / f for f in pair]
    # 1 MB batches: dozens of batch edges, and both parse threads busy
    staged, paths = _ingest(files, tmp_path, batch_bytes=1 << 20)
    whole = read_capture(files)
    assert staged.instrument == whole.instrument
    assert len(staged.days) >= 2
    for day, out in staged.days.items():
        want = _whole_day(whole, day)
        for dataset, frame in want.items():
            assert pl.read_parquet(paths[day][dataset]).equals(frame), (day, dataset)
        assert out.message_table()["msg_id"].to_list() == list(range(out.next_msg_id))
        assert out.audit == dict.fromkeys(out.audit, 0)
    assert staged.stats["lines"] == whole.stats["lines"]
    assert staged.stats["level_updates"] == whole.events["side"].is_not_null().sum()
    assert staged.quarantine.rows == whole.quarantine.height == 0


def _capture_bytes(n: int = 400) -> bytes:
    s = FuturesStream()
    s.snapshot([("100.0", "1.000")], [("101.0", "1.000")])
    for k in range(n):
        s.diff(bids=[("100.0", f"{1 + k % 5}.000")], asks=[("101.0", "2.000")])
    return ("\n".join(s.lines) + "\n").encode()


def _lines(raw: bytes) -> int:
    return raw.count(b"\n")


def test_truncated_gzip_keeps_everything_before_the_damage(tmp_path):
    raw = _capture_bytes()
    packed = gzip.compress(raw)
    cut = tmp_path / "btcusdt_20240704.gz"
    cut.write_bytes(packed[: len(packed) * 2 // 3])
    staged, _ = _ingest([cut], tmp_path / "out", batch_bytes=4096)
    q = pl.read_parquet(staged.quarantine.publish())
    assert q.height == 1
    assert "truncated" in q["reason"][0] and "compressed byte" in q["reason"][0]
    assert q["file"][0] == str(cut)
    kept = staged.stats["messages"]
    assert 0 < kept < _lines(raw)
    # the damage entry sits on the line after the last complete one
    assert q["line"][0] == staged.stats["lines"]


def test_trailing_garbage_and_corrupt_block_are_one_entry_each(tmp_path):
    raw = _capture_bytes()
    garbage = tmp_path / "btcusdt_20240705.gz"
    garbage.write_bytes(gzip.compress(raw) + b"not gzip at all")
    staged, _ = _ingest([garbage], tmp_path / "g")
    q = pl.read_parquet(staged.quarantine.publish())
    assert staged.stats["messages"] == _lines(raw)  # every line of the good member
    assert q.height == 1 and "damaged" in q["reason"][0]

    packed = bytearray(gzip.compress(raw, compresslevel=1))
    for i in range(len(packed) // 2, len(packed) // 2 + 40):
        packed[i] ^= 0x5A
    corrupt = tmp_path / "btcusdt_20240706.gz"
    corrupt.write_bytes(bytes(packed))
    staged, _ = _ingest([corrupt], tmp_path / "c")
    q = pl.read_parquet(staged.quarantine.publish())
    assert q.height >= 1
    assert any("gzip" in r for r in q["reason"].to_list())


def test_invalid_utf8_quarantines_the_line_only(tmp_path):
    lines = _capture_bytes(50).split(b"\n")
    lines[10] = lines[10][:30] + b"\xff\xfe" + lines[10][30:]
    path = tmp_path / "btcusdt_20240707"
    path.write_bytes(b"\n".join(lines))
    staged, _ = _ingest([path], tmp_path / "o")
    q = pl.read_parquet(staged.quarantine.publish())
    assert q["line"].to_list() == [11]
    assert "UTF-8" in q["reason"][0]
    assert staged.stats["lines"] == 51


def test_over_long_line_is_counted_not_held(tmp_path):
    lines = _capture_bytes(50).split(b"\n")
    lines.insert(20, b"1720000000000000123 " + b"x" * 50_000)
    path = tmp_path / "btcusdt_20240708"
    path.write_bytes(b"\n".join(lines))
    staged, _ = _ingest([path], tmp_path / "o", max_line_bytes=10_000, batch_bytes=8192)
    q = pl.read_parquet(staged.quarantine.publish())
    assert q["line"].to_list() == [21]
    assert "longer than the 10000-byte limit" in q["reason"][0]
    assert len(q["record"][0]) <= I.RECORD_PREVIEW
    assert staged.stats["messages"] == 51  # every other line ingested
    assert staged.stats["lines"] == 52


def test_over_long_line_is_never_materialised_whole(tmp_path):
    """A 200 MB line arriving in 1 MB pieces, over a 4 MB limit: quarantined, while the
    allocations of the whole ingest stay a few pieces big (the line is counted, not joined)."""
    import tracemalloc

    lines = _capture_bytes(20).splitlines(keepends=True)  # a snapshot and 20 diffs
    piece = b"y" * (1 << 20)

    def pieces():
        yield b"".join(lines[:10]) + b"1720000000000000123 "
        for _ in range(200):
            yield piece
        yield b"\n" + b"".join(lines[10:])

    tracemalloc.start()
    try:
        staged = I.ingest(
            [I.Part("long", pieces)],
            lambda ds, d: tmp_path / ds / f"{d}.parquet",
            max_line_bytes=4 << 20,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    q = pl.read_parquet(staged.quarantine.publish())
    assert q["line"].to_list() == [11]
    assert (
        f"line of {200 * (1 << 20) + 20} bytes is longer than the 4194304-byte limit"
        in (q["reason"][0])
    )
    assert staged.stats["messages"] == 21 and staged.stats["lines"] == 22
    assert peak < 24 << 20, peak  # the limit and a few pieces, never the 200 MB line
    staged.discard()


def test_only_day_keeps_the_exchange_day_and_renumbers(tmp_path):
    require_binance_data()
    files = [BINANCE / f for f in CONTINUATIONS[1]]
    day = date(2024, 7, 19)
    staged = I.ingest(
        [I.Part.file(f) for f in files], lambda ds, d: tmp_path / ds / f"{d}.parquet", only_day=day
    )
    assert list(staged.days) == [day]
    events = pl.read_parquet(staged.days[day].publish()["raw_book_events"])
    assert events["ts_event"].dt.date().unique().to_list() == [day]
    assert events["msg_id"].min() == 0


def test_a_neighbours_edge_stops_reading_past_its_window(tmp_path):
    raw = _capture_bytes(2000)
    path = tmp_path / "btcusdt_20240709"
    path.write_bytes(raw)
    lines = raw.split(b"\n")
    hi = int(lines[100].split(b" ")[0])  # the edge ends at the 101st line's receive time
    staged = I.ingest(
        [
            I.Part(
                str(path), lambda: (raw[i : i + 4096] for i in range(0, len(raw), 4096)), hi_ns=hi
            )
        ],
        lambda ds, d: tmp_path / ds / f"{d}.parquet",
        batch_bytes=4096,
    )
    assert staged.stats["messages"] == 100
    assert staged.stats["lines"] < _lines(raw) // 2  # the rest of the file was never parsed
    staged.discard()


def test_a_previous_days_file_is_skipped_up_to_its_edge(tmp_path):
    raw = _capture_bytes(2000)
    lo = int(raw.split(b"\n")[1900].split(b" ")[0])  # the edge starts at the 1901st line
    staged = I.ingest(
        [I.Part("prev", lambda: (raw[i : i + 4096] for i in range(0, len(raw), 4096)), lo_ns=lo)],
        lambda ds, d: tmp_path / ds / f"{d}.parquet",
        batch_bytes=4096,
    )
    assert staged.stats["messages"] == _lines(raw) - 1900
    assert staged.stats["lines"] == _lines(raw)  # skipped batches are still counted
    staged.discard()

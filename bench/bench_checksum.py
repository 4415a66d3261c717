"""Checksum venues: the cost of recomputing the venue's CRC32 per message, and replay with the
ChecksumValidator against replay without it.

* ``crc/<venue>``: the compiled string builder + CRC over the top-of-book rows of the real
  recordings (tiled to ~200 k rows), µs per checksum, beside the Python + ``zlib.crc32``
  reference and the bmoscon/orderbook C extension's published figures (Kraken 1.9 µs, OKX
  4.6 µs per checksum, their README);
* ``replay/okx-like``: a simulated OKX day (400-level snapshot, 200 k updates of 1-6 levels)
  replayed by the engine at depth 20 without checksums, and with ``replay_checked`` (depth 25 +
  validation of every message); the ratio must stay ≤ 2. CPU seconds beside wall seconds.

    uv run python bench/bench_checksum.py
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
from _rss import peak_rss_mb

from obpipeline import book, schemas
from obpipeline.book import checksum as ck
from obpipeline.book.venue_day import VenueDay
from obpipeline.instruments import resolve_instrument
from obpipeline.sources.checksum_venues.recording import read_recording
from obpipeline.sources.checksum_venues.sequence import sequence

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "checksum"
FILES = {
    "okx": "okx/OKX.ws.1.0",
    "bitget": "bitget/BITGET.ws.1.0",
    "kraken": "kraken/KRAKEN.ws.50.0",
}
ANCHOR_US = {"okx": 4.6, "kraken": 1.9}  # bmoscon/orderbook C extension, per checksum
TILED_ROWS = 200_000


def _timed(fn, *args):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w0, time.process_time() - c0


def _best(fn, *args, repeat: int = 3):
    runs = [_timed(fn, *args) for _ in range(repeat)]
    out = runs[0][0]
    return out, min(r[1] for r in runs), min(r[2] for r in runs)


def _recordings() -> Iterator[tuple[str, Path]]:
    """(venue, file) of the recordings at hand; the bench measures what is there."""
    for venue, name in FILES.items():
        if (DATA / name).exists():
            yield venue, DATA / name


def crc_rows() -> list[dict]:
    rows = []
    for venue, path in _recordings():
        rec = read_recording([path])
        day = sequence(rec, max(rec.symbols, key=lambda s: len(rec.messages[s])))
        result = book.replay(day.events, day.instrument, ck.rule_for(venue).depth)
        levels = ck.levels_of(result.snapshots, ck.rule_for(venue).depth)
        reps = -(-TILED_ROWS // len(levels.n_bid))
        tiled = ck.ChecksumLevels(
            *(np.ascontiguousarray(np.tile(a, (reps, 1))) for a in (
                levels.bid_price, levels.bid_size, levels.ask_price, levels.ask_size)),
            np.tile(levels.n_bid, reps),
            np.tile(levels.n_ask, reps),
        )  # fmt: skip
        all_rows = np.arange(len(tiled.n_bid), dtype=np.int64)
        ck.row_crcs(day, tiled, all_rows[:10])  # compile (cached)
        _, wall, cpu = _best(ck.row_crcs, day, tiled, all_rows)
        few = all_rows[:5000]
        _, ref_wall, _ = _best(ck.row_crcs, day, tiled, few, "reference", repeat=1)
        row = {
            "section": "checksum",
            "case": f"crc/{venue} (top {ck.rule_for(venue).depth}, compiled)",
            "us_per_checksum": wall / len(all_rows) * 1e6,
            "cpu_us_per_checksum": cpu / len(all_rows) * 1e6,
            "python_zlib_us": ref_wall / len(few) * 1e6,
        }
        if venue in ANCHOR_US:
            row["orderbook_c_us"] = ANCHOR_US[venue]
        rows.append(row)
    return rows


def okx_like_day(updates: int = 200_000, seed: int = 1) -> VenueDay:
    """A simulated OKX instrument-day on a fixed mid (never crossed), checksums recomputed."""
    g = np.random.default_rng(seed)
    inst = resolve_instrument("okx", "spot", "SIM-USDT", ["30000.1"], ["0.00000001"])
    mid = 300_000
    per = g.integers(1, 7, updates)
    n_levels = 800 + int(per.sum())
    msg = np.concatenate([np.zeros(800, np.int64), np.repeat(np.arange(1, updates + 1), per)])
    side = np.empty(n_levels, np.int8)
    side[:400], side[400:800] = schemas.BID, schemas.ASK
    side[800:] = np.where(g.random(n_levels - 800) < 0.5, schemas.BID, schemas.ASK)
    offset = np.concatenate(
        [np.arange(1, 401), np.arange(1, 401), g.geometric(0.08, n_levels - 800)]
    )
    price = np.where(side == schemas.BID, mid - offset, mid + offset)
    size = g.integers(1, 10**9, n_levels)
    size[800:] *= g.random(n_levels - 800) < 0.7  # 30 % deletes
    n_msg = updates + 1
    ids = np.arange(n_msg, dtype=np.int64)
    ts = 1_700_000_000_000_000_000 + ids * 100_000_000
    events = (
        pl.DataFrame(
            {
                "ts_event": ts[msg],
                "ts_local": ts[msg] + 5_000_000,
                "msg_id": msg,
                "first_update_id": msg,
                "last_update_id": msg,
                "prev_update_id": np.where(msg == 0, -1, msg - 1),
                "is_snapshot": msg == 0,
                "side": side,
                "price": schemas.from_unscaled(price, inst.price_scale),
                "size": schemas.from_unscaled(size, inst.size_scale),
            }
        )
        .with_columns(
            pl.col("ts_event", "ts_local").cast(schemas.TS),
            pl.when(pl.col("is_snapshot"))
            .then(None)
            .otherwise(pl.col("prev_update_id"))
            .alias("prev_update_id"),
        )
        .cast(dict(schemas.raw_book_events(inst)))
    )
    day = VenueDay(
        "okx", "SIM-USDT", inst, events, np.zeros(n_msg, np.int64), ids == 0,
        np.zeros(n_msg, np.int32), ids + 1, ["simulated"], inst.price_scale, inst.size_scale,
    )  # fmt: skip
    result = book.replay(events, inst, 25)
    levels = ck.levels_of(result.snapshots, 25)
    day.checksum[:] = ck.row_crcs(day, levels, np.arange(n_msg, dtype=np.int64))
    return day


def replay_rows(updates: int = 200_000) -> list[dict]:
    day = okx_like_day(updates)
    ck.replay_checked(day, 20)  # warm
    (_, w_plain, c_plain) = _best(book.replay, day.events, day.instrument, 20)
    (_, w_25, c_25) = _best(book.replay, day.events, day.instrument, 25)
    (checked, w_ck, c_ck) = _best(ck.replay_checked, day, 20)
    result, report = checked
    assert report.compared == day.messages and report.mismatched == 0
    return [
        {
            "section": "checksum",
            "case": f"replay/okx-like {updates:,} msgs: engine depth 20",
            "seconds": w_plain,
            "cpu_s": c_plain,
        },
        {
            "section": "checksum",
            "case": "replay/okx-like: engine depth 25 (no checksum)",
            "seconds": w_25,
            "cpu_s": c_25,
        },
        {
            "section": "checksum",
            "case": "replay/okx-like: replay_checked depth 20 (+25, validate)",
            "seconds": w_ck,
            "cpu_s": c_ck,
            "ratio_vs_plain": w_ck / w_plain,
            "cpu_ratio_vs_plain": c_ck / c_plain,
            "compared": report.compared,
            "rss_mb": peak_rss_mb(),
        },
    ]


def _replay_all(days: list[VenueDay], depth: int) -> list:
    return [book.replay(d.events, d.instrument, depth) for d in days]


def _validate_all(results: list, days: list[VenueDay]) -> list:
    return [ck.validate(r, d) for r, d in zip(results, days, strict=True)]


def end_to_end_rows() -> list[dict]:
    """The real recordings from the file: read + sequence, replay, checksum validation."""
    rows = []
    for venue, path in _recordings():
        w0, c0 = time.perf_counter(), time.process_time()
        rec = read_recording([path])
        days = [sequence(rec, s) for s in rec.symbols]
        w_read, c_read = time.perf_counter() - w0, time.process_time() - c0
        depth = ck.rule_for(venue).depth
        results, w_replay, c_replay = _timed(_replay_all, days, depth)
        _, w_check, c_check = _timed(_validate_all, results, days)
        n = sum(d.messages for d in days)
        rows.append(
            {
                "section": "checksum",
                "case": f"file/{venue} ({n:,} msgs, {len(days)} instruments)",
                "read_s": w_read,
                "read_cpu_s": c_read,
                "replay_s": w_replay,
                "replay_cpu_s": c_replay,
                "validate_s": w_check,
                "validate_cpu_s": c_check,
                "ratio_with_vs_without": (w_read + w_replay + w_check) / (w_read + w_replay),
            }
        )
    return rows


def run() -> list[dict]:
    return crc_rows() + end_to_end_rows() + replay_rows()


if __name__ == "__main__":
    for r in run():
        print(json.dumps(r))

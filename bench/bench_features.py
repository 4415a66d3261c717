"""Throughput of obpipeline.features on a real-volume day of book_snapshots (target >= 2 M rows/s).

``run()`` returns one dict per case for the ``make bench`` runner; as a script it prints them.
Until the simulator (``obpipeline.sources.synthetic``) lands, the day is generated here: 1.8 M
messages x 20 levels of BTCUSDT USD-M (tick 0.1 around 60 000, lot 0.001), mostly 1-tick spreads,
lognormal sizes, 1 % of rows with a thin side, a few invalid stretches, ms exchange stamps with
ties, and ~0.9 M trades. The data are built with numpy (not timed); the timings are best-of-N
wall clock of the public API on an in-memory DataFrame (CPU seconds and the load average beside
them, as the box is shared), numba compiled beforehand (its cache makes that a one-off). Since
the simulator landed, the per-message set is also timed on its real-profile day replayed to
book_snapshots (made once under data/bench/, skipped when it cannot be built).

A day as the asset computes it, file to files: ``write_day_features`` (streamed in batches) and
the in-memory path it replaced (read the whole day, ``compute_features``, ``grid_features`` per
grid, write), each in its own subprocess so ``rss_mb`` (VmHWM) is its own peak; numba is warmed
on a small day first. Run on the simulator's real-profile day and on the synthetic day with its
trades (written once under data/bench/).

    uv run python bench/bench_features.py [--rows 1800000] [--repeat 3] [--no-simulator]
    uv run python bench/bench_features.py --day BOOK.parquet [--trades T.parquet] [--batch-rows N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from _rss import peak_rss_mb

from obpipeline import features, schemas
from obpipeline.instruments import get_instrument

INSTRUMENT = get_instrument("binance", "usdm", "BTCUSDT")
BENCH_DIR = Path(__file__).resolve().parents[1] / "data" / "bench"
ROWS = 1_800_000
DEPTH = 20
DAY0_NS = 1_717_200_000_000_000_000  # 2024-06-01T00:00:00Z


def make_book_snapshots(rows: int = ROWS, depth: int = DEPTH, seed: int = 7) -> pl.DataFrame:
    """A synthetic but realistic book_snapshots day (exact decimals via ``from_unscaled``)."""
    rng = np.random.default_rng(seed)
    assert INSTRUMENT is not None
    # exchange stamps: ~48 ms apart on average, ms resolution (ties happen), local = +2..20 ms
    gaps_ms = rng.exponential(86_400_000 / rows, rows)
    ts_event = DAY0_NS + (np.cumsum(gaps_ms).astype(np.int64) * 1_000_000)
    ts_local = ts_event + rng.integers(2_000_000, 20_000_000, rows)
    # best bid: random walk in ticks (0.1), 5 % of messages move it; spread 1 tick, sometimes more
    moves = rng.choice([-1, 0, 1], rows, p=[0.025, 0.95, 0.025])
    best_bid = 600_000 + np.cumsum(moves)
    spread = 1 + (rng.random(rows) < 0.03) * rng.integers(1, 5, rows)
    best_ask = best_bid + spread
    # level gaps (ticks): dense near the touch, sparser deeper
    level_gap = 1 + rng.geometric(0.55, (rows, depth - 1)) - 1
    level_gap += (rng.random((rows, depth - 1)) < 0.15) * rng.integers(1, 6, (rows, depth - 1))
    offsets = np.concatenate([np.zeros((rows, 1), np.int64), np.cumsum(level_gap, axis=1)], axis=1)
    cols: dict[str, pl.Series] = {
        "ts_event": pl.Series("ts_event", ts_event).cast(schemas.TS),
        "ts_local": pl.Series("ts_local", ts_local).cast(schemas.TS),
        "msg_id": pl.Series("msg_id", np.arange(rows, dtype=np.int64)),
        "last_update_id": pl.Series("last_update_id", 4_000_000_000 + np.arange(rows) * 7),
    }
    # thin books: 1 % of rows keep only 3..15 levels on one side
    thin_rows = rng.random(rows) < 0.01
    thin_levels = rng.integers(3, 16, rows)
    thin_side = rng.integers(0, 2, rows)
    bp, bs, ap, asz = schemas.level_names(depth)
    ps, ss = INSTRUMENT.price_scale, INSTRUMENT.size_scale
    for side, pnames, snames, base, sgn in ((0, bp, bs, best_bid, -1), (1, ap, asz, best_ask, 1)):
        # sizes in lots of 0.001 BTC: lognormal, median ~0.25 BTC, heavier at the touch
        lots = np.maximum(1, rng.lognormal(np.log(250), 1.3, (rows, depth)).astype(np.int64))
        lots[:, 0] += rng.integers(0, 3000, rows)
        for k in range(depth):
            present = ~(thin_rows & (thin_side == side) & (k >= thin_levels))
            price = base + sgn * offsets[:, k]
            cols[pnames[k]] = schemas.from_unscaled(price, ps, present, pnames[k])
            cols[snames[k]] = schemas.from_unscaled(lots[:, k], ss, present, snames[k])
    valid = np.ones(rows, dtype=bool)
    for start in rng.integers(0, rows - 2_000, 3):  # three out-of-sync stretches
        valid[start : start + rng.integers(50, 2_000)] = False
    cols["is_valid"] = pl.Series("is_valid", valid)
    cols["crossed_repaired"] = pl.Series("crossed_repaired", np.zeros(rows, dtype=bool))
    cols["resynced"] = pl.Series("resynced", np.zeros(rows, dtype=bool))
    frame = pl.DataFrame(cols)
    return schemas.conform(frame, schemas.book_snapshots(INSTRUMENT, depth), "book_snapshots")


def make_trades(book: pl.DataFrame, n: int = 1_000_000, seed: int = 8) -> pl.DataFrame:
    """Trades at the touch of random book rows; aggressor side random."""
    assert INSTRUMENT is not None
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.integers(0, book.height, n))
    sell = rng.random(n) < 0.5
    bid, _ = schemas.to_unscaled(book["bid_price_1"])
    ask, _ = schemas.to_unscaled(book["ask_price_1"])
    price = np.where(sell, bid[rows], ask[rows])
    size = np.maximum(1, rng.lognormal(np.log(20), 1.5, n).astype(np.int64))
    ts = book["ts_event"].dt.epoch("ns").to_numpy()[rows]
    frame = pl.DataFrame(
        {
            "ts_event": pl.Series(ts).cast(schemas.TS),
            "ts_local": pl.Series(ts + 5_000_000).cast(schemas.TS),
            "trade_id": pl.Series(np.arange(n, dtype=np.int64)),
            "price": schemas.from_unscaled(price, INSTRUMENT.price_scale),
            "size": schemas.from_unscaled(size, INSTRUMENT.size_scale),
            "is_buyer_maker": pl.Series(sell),
        }
    )
    return schemas.conform(frame, schemas.trades(INSTRUMENT), "trades")


def _best(fn, repeat: int) -> tuple[float, float, object]:
    """(best wall seconds, CPU seconds of that run, result) over ``repeat`` runs."""
    best, cpu, out = float("inf"), 0.0, None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = time.perf_counter() - t0
        if wall < best:
            best, cpu = wall, time.process_time() - c0
    return best, cpu, out


def simulator_book_snapshots() -> Path | None:
    """The simulator's real-profile day replayed to book_snapshots (made once, under data/bench),
    or None when the simulator or the engine is not importable here."""
    try:
        from obpipeline.book import parquet_stream
        from obpipeline.sources import synthetic
    except Exception:
        return None
    assert INSTRUMENT is not None
    events = Path(synthetic.real_volume_events_parquet(BENCH_DIR))
    out = BENCH_DIR / events.name.replace("raw_book_events", "book_snapshots")
    if not out.exists():
        parquet_stream.replay_parquet(events, out, INSTRUMENT)
    return out


def _record(case: str, n: int, timed: tuple[float, float, object]) -> dict:
    seconds, cpu, _ = timed
    return {
        "section": "features",
        "case": case,
        "rows": n,
        "seconds": round(seconds, 4),
        "rows_per_s": round(n / seconds),
        "cpu_seconds": round(cpu, 4),  # the box is shared: wall time alone can mislead
        "load_1m": round(os.getloadavg()[0], 2),
    }


def _synthetic_cases(rows: int, repeat: int, config: features.FeatureConfig) -> list[dict]:
    book = make_book_snapshots(rows)
    trades = make_trades(book, n=max(1, rows // 2))
    features.compute_features(book.head(1000), trades.head(100), config)  # compile / warm up
    out = []
    timed = _best(lambda: features.compute_features(book, None, config), repeat)
    out.append(_record("per_message_full", rows, timed))
    per_msg = timed[2]
    with_trades = _best(lambda: features.compute_features(book, trades, config), repeat)
    out.append(_record("per_message_full+trades", rows, with_trades))
    for every in config.grids:
        grid = _best(lambda e=every: features.grid_features(per_msg, trades, e, config), repeat)
        out.append(_record(f"grid_{every}_from_features", rows, grid))
    walk = _best(lambda: features.book_walk(book, config.walk_sizes), repeat)
    out.append(_record("book_walk_only", rows, walk))
    n_ref = min(rows, 200_000)
    ref = _best(lambda: features.reference_features(book.head(n_ref), config), 1)
    out.append(_record(f"reference_polars_{n_ref // 1000}k_rows", n_ref, ref))
    return out


def day_child(mode: str, book: Path, trades: Path | None, batch_rows: int) -> dict:
    """One day file to per-message and grid files, by ``mode`` (stream / in_memory), timed
    after a warm-up on a small day; VmHWM of this process."""
    from obpipeline.lake import write_parquet_atomic

    config = features.FeatureConfig()
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as tmp:
        out = Path(tmp)
        small = out / "small.parquet"
        make_book_snapshots(5_000).write_parquet(small)

        def stream(path: Path) -> dict:
            grids = {e: out / f"features_{e}.parquet" for e in config.grids}
            return features.write_day_features(
                path, trades, out / "features.parquet", grids, config,
                instrument=INSTRUMENT, batch_rows=batch_rows,
            )  # fmt: skip

        def in_memory(path: Path) -> dict:
            day = pl.read_parquet(path)
            tr = None if trades is None else pl.read_parquet(trades)
            per_msg = features.compute_features(day, tr, config, instrument=INSTRUMENT)
            write_parquet_atomic(per_msg, out / "features.parquet")
            summary = features.feature_summary(per_msg, config)
            for every in config.grids:
                grid = features.grid_features(per_msg, tr, every, config)
                write_parquet_atomic(grid, out / f"features_{every}.parquet")
                summary[f"rows_{every}"] = grid.height
            return summary

        fn = stream if mode == "stream" else in_memory
        fn(small)  # numba cache load / compile, imports
        t0, c0 = time.perf_counter(), time.process_time()
        summary = fn(book)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "rows": summary["rows"],
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rss_mb": peak_rss_mb(),
    }


def _day_case(mode: str, label: str, book: Path, trades: Path | None, batch_rows: int) -> dict:
    cmd = [sys.executable, __file__, "--day", str(book), "--mode", mode]
    cmd += ["--batch-rows", str(batch_rows)] + ([] if trades is None else ["--trades", str(trades)])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if proc.returncode:
        raise RuntimeError(f"features day child failed:\n{proc.stderr[-4000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "section": "features",
        "case": f"day_file_{mode}[{label}]",
        "rows": r["rows"],
        "seconds": round(r["seconds"], 3),
        "rows_per_s": round(r["rows"] / r["seconds"]),
        "cpu_seconds": round(r["cpu_seconds"], 3),
        "rss_mb": round(r["rss_mb"]),
        "load_1m": round(os.getloadavg()[0], 2),
    }


def _day_cases(files: list[tuple[str, Path, Path | None]]) -> list[dict]:
    out = []
    for label, book, trades in files:
        for mode in ("stream", "in_memory"):
            out.append(_day_case(mode, label, book, trades, features.BATCH_ROWS))
    return out


def run(rows: int = ROWS, repeat: int = 3, simulator: bool = True) -> list[dict]:
    """Time the per-message feature set and the grids on one synthetic real-volume day, and the
    per-message set on the simulator's real-profile day when it can be made here."""
    config = features.FeatureConfig()
    results = _synthetic_cases(rows, repeat, config)
    files = [(f"synthetic {rows // 1000}k + trades", *_synthetic_files(rows))]
    if simulator:
        path = simulator_book_snapshots()
        if path is not None:
            day = pl.read_parquet(path)
            features.compute_features(day.head(1000), None, config)
            timed = _best(lambda: features.compute_features(day, None, config), repeat)
            results.append(_record("per_message_full[simulator real day]", day.height, timed))
            del day
            files.append(("simulator real day", path, None))
    return results + _day_cases(files)


def _synthetic_files(rows: int) -> tuple[Path, Path]:
    """The synthetic day and its trades as parquet (made once under data/bench)."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    book, trades = (
        BENCH_DIR / f"features_book_{rows}.parquet",
        BENCH_DIR / f"features_trades_{rows}.parquet",
    )
    if not (book.exists() and trades.exists()):
        frame = make_book_snapshots(rows)
        make_trades(frame, n=max(1, rows // 2)).write_parquet(trades)
        frame.write_parquet(book)
    return book, trades


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-simulator", action="store_true", help="skip the simulator's day")
    parser.add_argument("--day", type=Path, help="time one book_snapshots file only")
    parser.add_argument("--trades", type=Path, help="with --day: its trades")
    parser.add_argument("--mode", choices=("stream", "in_memory", "both"), default="both")
    parser.add_argument("--batch-rows", type=int, default=features.BATCH_ROWS)
    args = parser.parse_args()
    if args.day is not None and args.mode != "both":
        print(json.dumps(day_child(args.mode, args.day, args.trades, args.batch_rows)))
        return
    if args.day is not None:
        for mode in ("stream", "in_memory"):
            print(
                json.dumps(_day_case(mode, args.day.name, args.day, args.trades, args.batch_rows))
            )
        return
    for r in run(args.rows, args.repeat, not args.no_simulator):
        print(json.dumps(r))


if __name__ == "__main__":
    main()

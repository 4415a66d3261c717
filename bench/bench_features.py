"""Throughput of obpipeline.features on a real-volume day of book_snapshots (target >= 2 M rows/s).

``run()`` returns one dict per case for the ``make bench`` runner; as a script it prints them.
Until the simulator (``obpipeline.sources.synthetic``) lands, the day is generated here: 1.8 M
messages x 20 levels of BTCUSDT USD-M (tick 0.1 around 60 000, lot 0.001), mostly 1-tick spreads,
lognormal sizes, 1 % of rows with a thin side, a few invalid stretches, ms exchange stamps with
ties, and ~1 M trades. The data are built with numpy (not timed); the timings are best-of-N wall
clock of the public API on an in-memory DataFrame, numba compiled beforehand (the cache makes that
a one-off in real runs).

    uv run python bench/bench_features.py [--rows 1800000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import polars as pl

from obpipeline import features, schemas
from obpipeline.instruments import get_instrument

INSTRUMENT = get_instrument("binance", "usdm", "BTCUSDT")
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


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(rows: int = ROWS, repeat: int = 3) -> list[dict]:
    """Time the per-message feature set and the grids on one synthetic real-volume day."""
    config = features.FeatureConfig()
    book = make_book_snapshots(rows)
    trades = make_trades(book, n=max(1, rows // 2))
    features.compute_features(book.head(1000), trades.head(100), config)  # compile / warm up

    results = []

    def record(case: str, n: int, seconds: float) -> None:
        results.append(
            {
                "section": "features",
                "case": case,
                "rows": n,
                "seconds": round(seconds, 4),
                "rows_per_s": round(n / seconds),
            }
        )

    s, per_msg = _best(lambda: features.compute_features(book, None, config), repeat)
    record("per_message_full", rows, s)
    s, _ = _best(lambda: features.compute_features(book, trades, config), repeat)
    record("per_message_full+trades", rows, s)
    for every in config.grids:
        s, _ = _best(lambda e=every: features.grid_features(per_msg, trades, e, config), repeat)
        record(f"grid_{every}_from_features", rows, s)
    s, _ = _best(lambda: features.book_walk(book, config.walk_sizes), repeat)
    record("book_walk_only", rows, s)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for r in run(args.rows, args.repeat):
        print(json.dumps(r))


if __name__ == "__main__":
    main()

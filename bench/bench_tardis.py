"""Tardis ``incremental_book_L2`` ingest: throughput (rows/s) and peak RSS on a real-volume day.

A real-volume day (≈1.8 M messages, ≈30 M level rows, like Binance USD-M BTCUSDT) is generated
once into ``data/bench/`` (git-ignored): an opening snapshot of 1 000 levels a side, then diffs
of geometric size (mean ≈ 16.7 rows) around a random-walk mid, tick 0.1 and lot 0.001 written as
Tardis does (``60012.3``, ``60012``, ``0.015``, ``0`` for a removal), µs stamps, gzip level 6.
A 3 M-row day (the size of the peer survey's measurements) is generated the same way.

Every case runs in its own subprocess, which reports its own ``ru_maxrss``, so the peak RSS is
that of the ingest alone (Python + polars + numpy ≈ 100 MB of it). Cases:

* ``read_tardis``: ``obpipeline.sources.tardis.read_tardis`` → raw_book_events (canonical frame:
  exact decimals, synthetic ids), with its quarantine checks; ``frame_mb`` is that frame's size.
* ``polars_parse``: ``pl.scan_csv`` of the same columns, numbers only (the peers' "polars parse"
  row: 2.7 M rows/s on a 3 M-row CSV.gz; hftbacktest ``tardis.convert`` 1.35 M rows/s, 1.3 GB).

    uv run python bench/bench_tardis.py [--rows 30000000] [--small 3000000] [--no-plain]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from _rss import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "data" / "bench"
HEADER = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"
DAY0_US = 1_717_200_000_000_000  # 2024-06-01T00:00:00Z
CHUNK_MESSAGES = 100_000


def _fmt_fixed(units: pl.Expr, decimals: int) -> pl.Expr:
    """Unscaled ints → Tardis-style decimals: no trailing zeros, no dot for whole numbers."""
    whole = (units // 10**decimals).cast(pl.String)
    frac = (units % 10**decimals).cast(pl.String).str.zfill(decimals).str.strip_chars_end("0")
    return pl.when(frac == "").then(whole).otherwise(pl.concat_str(whole, pl.lit("."), frac))


def make_day(path: Path, rows: int, seed: int = 11, compresslevel: int = 6) -> Path:
    """Write a synthetic Tardis incremental_book_L2 day of about ``rows`` rows (atomically)."""
    rng = np.random.default_rng(seed)
    mean_rows = 16.7
    messages = max(2, int(rows / mean_rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    mid = 600_000  # ticks of 0.1
    t_us = DAY0_US
    with open(tmp, "wb") as raw, gzip.GzipFile("", "wb", compresslevel, raw, mtime=0) as gz:
        gz.write((HEADER + "\n").encode())
        # opening snapshot: 1 000 levels a side
        levels = np.arange(1, 1001)
        snap = pl.DataFrame(
            {
                "timestamp": np.full(2000, t_us - 3000),
                "local_timestamp": np.full(2000, t_us),
                "is_snapshot": ["true"] * 2000,
                "side": ["bid"] * 1000 + ["ask"] * 1000,
                "price": np.concatenate([mid - levels + 1, mid + levels]),
                "amount": rng.integers(1, 20_000, 2000),
            }
        )
        _write_chunk(snap, gz)
        written = 2000
        while written < rows:
            k = int(min(CHUNK_MESSAGES, max(1, (rows - written) / mean_rows)))
            sizes = rng.geometric(1 / mean_rows, k)
            n = int(sizes.sum())
            msg_mid = mid + np.cumsum(rng.choice([-1, 0, 1], k, p=[0.02, 0.96, 0.02]))
            mid = int(msg_mid[-1])
            gaps = rng.exponential(86_400_000_000 / messages, k).astype(np.int64) + 1
            local = t_us + np.cumsum(gaps)
            t_us = int(local[-1])
            exch = (local - rng.integers(1_000, 20_000, k)) // 1000 * 1000
            is_bid = rng.random(n) < 0.5
            depth = rng.geometric(0.08, n)  # ticks from the mid, dense near the touch
            row_mid = np.repeat(msg_mid, sizes)
            price = np.where(is_bid, row_mid - depth + 1, row_mid + depth)
            amount = np.where(
                rng.random(n) < 0.12, 0, np.exp(rng.normal(3.0, 1.6, n)).astype(np.int64) + 1
            )
            chunk = pl.DataFrame(
                {
                    "timestamp": np.repeat(exch, sizes),
                    "local_timestamp": np.repeat(local, sizes),
                    "is_snapshot": pl.repeat("false", n, eager=True),
                    "side": np.where(is_bid, "bid", "ask"),
                    "price": price,
                    "amount": amount,
                }
            )
            _write_chunk(chunk, gz)
            written += n
    os.replace(tmp, path)
    return path


def _write_chunk(frame: pl.DataFrame, gz) -> None:
    frame.select(
        pl.lit("binance-futures").alias("exchange"),
        pl.lit("BTCUSDT").alias("symbol"),
        "timestamp",
        "local_timestamp",
        "is_snapshot",
        "side",
        _fmt_fixed(pl.col("price"), 1).alias("price"),
        _fmt_fixed(pl.col("amount"), 3).alias("amount"),
    ).write_csv(gz, include_header=False, quote_style="never")


def day_file(rows: int, plain: bool = False) -> Path:
    gz = BENCH_DIR / f"binance-futures_incremental_book_L2_synthetic-{rows}_BTCUSDT.csv.gz"
    if not gz.exists():
        started = time.perf_counter()
        make_day(gz, rows)
        print(f"# generated {gz.name} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    if not plain:
        return gz
    csv = gz.with_suffix("")
    if not csv.exists():
        tmp = csv.with_name(f".{csv.name}.tmp")
        with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
            while block := src.read(1 << 24):
                dst.write(block)
        os.replace(tmp, csv)
    return csv


# ----------------------------------------------------------------------------- measured cases


def _worker(case: str, path: str) -> dict:
    """Runs inside the subprocess: one ingest, its own wall time and peak RSS."""

    from obpipeline.sources.tardis import read_tardis  # imports are not ingest time

    started = time.perf_counter()
    if case == "read_tardis":
        capture = read_tardis([path])
        rows = capture.stats["rows"]
        extra = {
            "messages": capture.stats["messages"],
            "frame_mb": round(capture.events.estimated_size() / 2**20),
            "quarantined": capture.quarantine.height,
        }
    elif case == "polars_parse":
        schema = {
            "exchange": pl.String,
            "symbol": pl.String,
            "timestamp": pl.Int64,
            "local_timestamp": pl.Int64,
            "is_snapshot": pl.Boolean,
            "side": pl.String,
            "price": pl.Float64,
            "amount": pl.Float64,
        }
        frame = (
            pl.scan_csv(path, schema=schema)
            .select(
                "timestamp",
                "local_timestamp",
                "is_snapshot",
                pl.col("side") == "bid",
                "price",
                "amount",
            )
            .collect(engine="streaming")
        )
        rows = frame.height
        extra = {"frame_mb": round(frame.estimated_size() / 2**20)}
    else:
        raise ValueError(case)
    seconds = time.perf_counter() - started
    peak_mb = peak_rss_mb()
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "peak_rss_mb": round(peak_mb),
        **extra,
    }


def _measure(case: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", case, str(path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(rows: int = 30_000_000, small: int = 3_000_000, plain: bool = True) -> list[dict]:
    """Ingest cases on a ``small``-row and a ``rows``-row day (gzip, and plain for the big one)."""
    results = []
    files = []
    if small:
        files.append(("gz", small, day_file(small)))
    files.append(("gz", rows, day_file(rows)))
    if plain:
        files.append(("csv", rows, day_file(rows, plain=True)))
    for kind, n, path in files:
        for case in ("read_tardis", "polars_parse"):
            metrics = _measure(case, path)
            results.append(
                {
                    "section": "tardis",
                    "case": f"{case} {n / 1e6:g}M rows .{kind}",
                    **metrics,
                    "file_mb": round(path.stat().st_size / 2**20),
                }
            )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=30_000_000)
    parser.add_argument("--small", type=int, default=3_000_000, help="0 to skip")
    parser.add_argument("--no-plain", action="store_true", help="skip the uncompressed case")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(*args.worker)))
        return 0
    for row in run(args.rows, args.small, not args.no_plain):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Binance capture parsing alone: ``binance.parse_lines`` level updates per CPU-second.

The streaming ingest reads a capture in batches of ~0.5-1 M lines and parses each batch with
``parse_lines``; this measures that call on already-read lines (reading/inflating excluded), so
the compiled fast pass's own cost is visible. CPU seconds are the process's (all threads), wall
seconds are noisy on a shared machine. The JIT is warmed on a small slice first (not timed).

* default: the whole ``--file`` (plain or gzip capture) as one frame, ``--repeat`` runs (best);
* ``--batch N``: the file in slices of N lines, parsed one after the other (the ingest's pattern),
  summed over the slices; ``--threads 2`` parses two slices at once.

    uv run python bench/bench_parse.py --file /work/rv_1m.txt [--repeat 3] [--batch 500000]

In ``make bench`` (``run``): the peer capture (``bench_capture``), parsed alone in the ingest's
batches on two threads, and streamed whole through ``ingest.ingest`` (inflate, batches, parse,
parquet): level updates per wall and per CPU second.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
from _rss import peak_rss_mb

from obpipeline.sources import binance


def _timed(fn, *args) -> tuple[object, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w0, time.process_time() - c0


def run() -> list[dict]:
    """``make bench``: parse rate on the peer capture, parse alone and the whole ingest."""
    import tempfile

    from bench_capture import ensure_peer_capture

    from obpipeline.sources import ingest

    path = ensure_peer_capture()
    lines = binance.read_lines(path)
    binance.parse_lines(lines.head(20_000))  # JIT warm-up (numba cache load), not timed
    batch = 50_000  # ~ the ingest's 16 MB batches
    slices = [lines.slice(o, batch) for o in range(0, lines.height, batch)]
    with ThreadPoolExecutor(2) as pool:
        caps, wall, cpu = _timed(lambda: list(pool.map(binance.parse_lines, slices)))
    updates = sum(c.stats["level_updates"] for c in caps)
    rows = [{"case": "peer 3M parse_lines (2 threads)", "updates": updates, "seconds": wall,
             "cpu_s": cpu}]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        staged, wall, cpu = _timed(
            ingest.ingest, [ingest.Part.file(path)], lambda ds, d: Path(tmp) / ds / f"{d}.parquet"
        )
        staged.discard()
    rows.append({"case": "peer 3M ingest (file → staged parquet)",
                 "updates": staged.stats["level_updates"], "seconds": wall, "cpu_s": cpu})  # fmt: skip
    for r in rows:
        r.update(section="parse", upd_per_s=r["updates"] / r["seconds"],
                 upd_per_cpu_s=r["updates"] / r["cpu_s"])  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=0, help="lines per parse_lines call (0: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--polars", action="store_true", help="the Polars path (FAST_PATH off)")
    args = ap.parse_args()

    lines, read_wall, read_cpu = _timed(binance.read_lines, args.file)
    assert isinstance(lines, pl.DataFrame)
    binance.FAST_PATH = not args.polars
    binance.parse_lines(lines.head(20_000))  # JIT warm-up (numba cache load), not timed
    slices = (
        [lines.slice(o, args.batch) for o in range(0, lines.height, args.batch)]
        if args.batch
        else [lines]
    )

    def run() -> tuple[int, bool]:
        if args.threads > 1:
            with ThreadPoolExecutor(args.threads) as pool:
                caps = list(pool.map(binance.parse_lines, slices))
        else:
            caps = [binance.parse_lines(s) for s in slices]
        return sum(c.stats["level_updates"] for c in caps), len(caps)

    best = None
    for _ in range(args.repeat):
        (updates, calls), wall, cpu = _timed(run)
        if best is None or cpu < best["cpu_s"]:
            best = {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3)}
    fast = binance._parse_fast(lines.head(20_000), None, None, 20) is not None
    print(
        json.dumps(
            {
                "file": str(args.file),
                "lines": lines.height,
                "level_updates": updates,
                "calls": calls,
                "threads": args.threads,
                "fast_path_taken": fast and not args.polars,
                "read_lines_wall_s": round(read_wall, 2),
                "read_lines_cpu_s": round(read_cpu, 2),
                **best,
                "M_updates_per_cpu_s": round(updates / best["cpu_s"] / 1e6, 2),
                "M_updates_per_wall_s": round(updates / best["wall_s"] / 1e6, 2),
                "M_lines_per_cpu_s": round(lines.height / best["cpu_s"] / 1e6, 2),
                "peak_rss_mb": round(peak_rss_mb()),
            }
        )
    )


if __name__ == "__main__":
    main()

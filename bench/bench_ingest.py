"""Binance capture ingest: ``obpipeline.sources.binance.read_capture`` level updates/s.

(d) of issue 4: the largest real capture in ``../shared/data/binance`` (gzip text, one record a
line: depth diffs, REST snapshot, bookTickers, trades), read into the canonical frames
(raw_book_events, golden_bbo, golden_depth, trades, quarantine). Cases:

* ``read_capture``: the default path (the compiled fast pass for clean captures);
* ``read_capture (polars path)``: the same with ``binance.FAST_PATH = False`` (the columnar
  path that defines the results, and what ran before the fast pass), for the ratio.

Each case runs in its own subprocess (peak RSS its own), JIT warmed on the file once and not
timed; medians of ``--repeat`` runs. Level updates are the events' level rows (diffs and
snapshot levels: ``Capture.stats["level_updates"]``).

    uv run python bench/bench_ingest.py [--repeat 5] [--file usdm/btcusdt_20240808.gz]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _rss import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
BINANCE = ROOT.parent / "shared" / "data" / "binance"


def largest_capture() -> Path | None:
    files = sorted(BINANCE.glob("*/*"), key=lambda p: p.stat().st_size) if BINANCE.is_dir() else []
    return files[-1] if files else None


def child(path: Path, fast: bool, repeat: int) -> dict:
    from obpipeline.sources import binance

    binance.FAST_PATH = fast
    capture = binance.read_capture([path])  # JIT (numba cache load) and file cache warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        capture = binance.read_capture([path])
        times.append(time.perf_counter() - t)
    return {
        "updates": capture.stats["level_updates"],
        "lines": capture.stats["lines"],
        "quarantined": capture.stats["quarantined"],
        "seconds": times,
        "rss_mb": peak_rss_mb(),
    }


def _child(path: Path, fast: bool, repeat: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(path), str(int(fast)), str(repeat)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ,
    )
    if proc.returncode:
        raise RuntimeError(f"ingest bench child failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(repeat: int = 5, path: Path | None = None) -> list[dict]:
    path = path or largest_capture()
    if path is None:
        print(f"# ingest: no captures at {BINANCE}; skipped", file=sys.stderr)
        return []
    rows = []
    fast = _child(path, True, repeat)
    slow = _child(path, False, max(3, repeat // 2))
    t_fast = statistics.median(fast["seconds"])
    t_slow = statistics.median(slow["seconds"])
    name = f"{path.parent.name}/{path.name}"
    rows.append(
        {
            "section": "ingest",
            "case": f"read_capture {name}",
            "upd_per_s": fast["updates"] / t_fast,
            "seconds": t_fast,
            "lines_per_s": fast["lines"] / t_fast,
            "rss_mb": fast["rss_mb"],
            "vs_polars_x": t_slow / t_fast,
        }
    )
    rows.append(
        {
            "section": "ingest",
            "case": f"read_capture {name} (polars path)",
            "upd_per_s": slow["updates"] / t_slow,
            "seconds": t_slow,
            "lines_per_s": slow["lines"] / t_slow,
            "rss_mb": slow["rss_mb"],
        }
    )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--file", help="capture under ../shared/data/binance (default: the largest)")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        path, fast, repeat = a.child
        print(json.dumps(child(Path(path), bool(int(fast)), int(repeat))))
        return
    for row in run(a.repeat, BINANCE / a.file if a.file else None):
        print(json.dumps(row))


if __name__ == "__main__":
    main()

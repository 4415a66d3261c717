"""Simulated exchange: generation time of a demo day and of a real-volume day.

Cases (``run()`` returns one dict per case for ``make bench``; as a script it prints them):

* ``demo`` / ``real``: ``simulate_s`` (order flow, messages, truth arrays, timestamps: the
  compiled engine), ``capture_s`` (rendering every line and gzip-writing the day file, rendering
  and compression overlapped), ``truth_s`` (the truth book_snapshots parquet), ``total_s`` (the
  sum: what ``obpipeline simulate`` spends per day), plus the day's volume (messages, level
  updates, lines, bytes) and peak RSS. ``*_cpu_s`` are process CPU seconds (all threads) and
  ``load_avg`` the box's 1-min load: on the shared 2-core box, wall time beyond CPU time is
  other jobs' contention. ``jit_s`` is the first call of the process (loading
  numba's cache; a compile when the cache is cold), excluded from the timings.

The target is a real-volume day (~1.8 M messages, ~30 M level updates) in under 2 minutes on the
2-core box. Numbers on the shared box vary with the other jobs: compare within one run.

    uv run python bench/bench_simulator.py [--profile demo|real|both]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from _rss import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DAY = date(2024, 3, 1)


def _jit() -> float:
    from obpipeline.sources import synthetic as S

    started = time.perf_counter()
    sim = S.simulate_day(DAY, event_rate=1.0, msg_ms=60_000, d20_ms=60_000, warmup_events=2_000)
    for _ in sim.iter_chunks():
        pass
    return time.perf_counter() - started


def bench_day(profile: str, truth: bool = True) -> dict:
    from obpipeline.lake import write_parquet_atomic
    from obpipeline.sources import synthetic as S

    c0, t0 = time.process_time(), time.perf_counter()
    sim = S.simulate_day(DAY, profile=profile)
    c1, t1 = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        paths = S.write_day(sim, tmp, truth=False)
        c2, t2 = time.process_time(), time.perf_counter()
        gz_bytes = paths["capture"].stat().st_size
        text_bytes = sum(len(c) for c in sim.iter_chunks()) if profile == "demo" else 0
        c2b, t2b = time.process_time(), time.perf_counter()
        if truth:
            write_parquet_atomic(sim.truth, Path(tmp) / "truth.parquet")
        c3, t3 = time.process_time(), time.perf_counter()
    stats = sim.stats()
    return {
        "section": "simulator",
        "case": f"{profile} day",
        "simulate_s": round(t1 - t0, 2),
        "capture_s": round(t2 - t1, 2),
        "truth_s": round(t3 - t2b, 2) if truth else 0.0,
        "total_s": round(t3 - t0 - (t2b - t2), 2),
        "seconds": round(t3 - t0 - (t2b - t2), 2),
        # CPU seconds of the process (all threads): what the phases cost without contention
        "simulate_cpu_s": round(c1 - c0, 2),
        "capture_cpu_s": round(c2 - c1, 2),
        "truth_cpu_s": round(c3 - c2b, 2),
        "load_avg": round(os.getloadavg()[0], 1),
        "messages": stats["messages"],
        "level_updates": stats["level_updates"],
        "lines": stats["lines"],
        "gz_mb": round(gz_bytes / 1e6, 1),
        **({"text_mb": round(text_bytes / 1e6, 1)} if text_bytes else {}),
        "rss_mb": round(peak_rss_mb()),
    }


def run(profiles: tuple[str, ...] = ("demo", "real")) -> list[dict]:
    jit = _jit()
    rows = []
    for p in profiles:
        row = bench_day(p)
        row["jit_s"] = round(jit, 2)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=("demo", "real", "both"), default="both")
    args = ap.parse_args()
    profiles = ("demo", "real") if args.profile == "both" else (args.profile,)
    for row in run(profiles):
        print("  ".join(f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()

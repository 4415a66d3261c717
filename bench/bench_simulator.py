"""Simulated exchange: generation time and peak memory of a demo day and a real-volume day.

Cases (``run()`` returns one dict per case for ``make bench``; as a script it prints them), each
in its own process so ``rss_mb`` (VmHWM) is that case's peak:

* ``demo day``: the in-memory build (``simulate_day``): ``simulate_s`` (order flow, messages,
  truth arrays, timestamps), ``capture_s`` (rendering every line and gzip-writing the day
  file), ``truth_s`` (the truth parquet), ``total_s`` (their sum).
* ``real day streamed``: what ``obpipeline simulate --profile real`` does per day
  (``write_day_streaming``: the order flow runs twice, to count then to publish, and the
  capture and truth are written batch by batch); ``total_s`` only, the phases interleave.
  ``truth`` in the case name when the truth parquet is written too.

``*_cpu_s`` are process CPU seconds (all threads) and ``load_avg`` the box's 1-min load: on the
shared 2-core box, wall time beyond CPU time is other jobs' contention. ``jit_s`` is the first
call of the process (loading numba's cache; a compile when the cache is cold), excluded.

Targets: a real-volume day (~1.8 M messages, ~27 M level updates) in bounded memory (well
under 1.5 GB, the same for any number of days) and a few minutes on the 2-core box.

    uv run python bench/bench_simulator.py [--case demo|real|real-truth|all]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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
CASES = ("demo", "real", "real-truth")


def _jit() -> float:
    from obpipeline.sources import synthetic as S

    started = time.perf_counter()
    light = {"event_rate": 1.0, "msg_ms": 60_000, "d20_ms": 60_000, "warmup_events": 2_000}
    for _ in S.iter_capture_chunks(DAY, **light):
        pass
    return time.perf_counter() - started


def bench_demo() -> dict:
    from obpipeline.lake import write_parquet_atomic
    from obpipeline.sources import synthetic as S

    c0, t0 = time.process_time(), time.perf_counter()
    sim = S.simulate_day(DAY, profile="demo")
    c1, t1 = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        paths = S.write_day(sim, tmp, truth=False)
        c2, t2 = time.process_time(), time.perf_counter()
        gz_bytes = paths["capture"].stat().st_size
        write_parquet_atomic(sim.truth, Path(tmp) / "truth.parquet")
        c3, t3 = time.process_time(), time.perf_counter()
    stats = sim.stats()
    return {
        "section": "simulator",
        "case": "demo day",
        "simulate_s": round(t1 - t0, 2),
        "capture_s": round(t2 - t1, 2),
        "truth_s": round(t3 - t2, 2),
        "total_s": round(t3 - t0, 2),
        "seconds": round(t3 - t0, 2),
        "simulate_cpu_s": round(c1 - c0, 2),
        "capture_cpu_s": round(c2 - c1, 2),
        "truth_cpu_s": round(c3 - c2, 2),
        "total_cpu_s": round(c3 - c0, 2),
        "messages": stats["messages"],
        "level_updates": stats["level_updates"],
        "lines": stats["lines"],
        "gz_mb": round(gz_bytes / 1e6, 1),
    }


def bench_real(truth: bool) -> dict:
    from obpipeline.sources import synthetic as S

    c0, t0 = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory(dir=ROOT / "data") as tmp:
        paths, stats = S.write_day_streaming(DAY, tmp, profile="real", truth=truth)
        c1, t1 = time.process_time(), time.perf_counter()
        gz_bytes = paths["capture"].stat().st_size
    return {
        "section": "simulator",
        "case": "real day streamed" + (" + truth" if truth else ""),
        "total_s": round(t1 - t0, 2),
        "seconds": round(t1 - t0, 2),
        "total_cpu_s": round(c1 - c0, 2),
        "messages": stats["messages"],
        "level_updates": stats["level_updates"],
        "lines": stats["lines"],
        "gz_mb": round(gz_bytes / 1e6, 1),
    }


def one_case(case: str) -> dict:
    """Run one case in this process; its peak RSS is this process's."""
    jit = _jit()
    row = bench_demo() if case == "demo" else bench_real(truth=case == "real-truth")
    row.update(
        jit_s=round(jit, 2), load_avg=round(os.getloadavg()[0], 1), rss_mb=round(peak_rss_mb())
    )
    return row


def run(cases: tuple[str, ...] = ("demo", "real-truth")) -> list[dict]:
    rows = []
    for case in cases:
        argv = [sys.executable, __file__, "--case", case, "--json"]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=(*CASES, "all"), default="all")
    ap.add_argument("--json", action="store_true", help="one case in this process, as JSON")
    args = ap.parse_args()
    if args.json:
        print(json.dumps(one_case(args.case)))
        return
    for row in run(CASES if args.case == "all" else (args.case,)):
        print("  ".join(f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()

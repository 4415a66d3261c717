"""``obpipeline simulate``: write simulated Binance USD-M capture days, their truth and fault reports."""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    help_ = "simulate exchange days in Binance capture format (+ true books, + injected faults)"
    p = sub.add_parser("simulate", help=help_, description=help_)
    p.add_argument(
        "--date", required=True, type=date.fromisoformat, help="first UTC day, YYYY-MM-DD"
    )
    p.add_argument("--days", type=int, default=1, help="consecutive days (chained)")
    p.add_argument(
        "--profile", default="demo", help="demo (~29k msgs/day) or real (~1.8M msgs/day)"
    )
    p.add_argument("--symbol", default="BTCUSDT")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--faults",
        help="fault spec, e.g. 'drop=0.01,scale_size=0.01:1.001,stale_snapshot=1' or 'all=0.01'",
    )
    p.add_argument("--fault-seed", type=int, default=0)
    p.add_argument(
        "--snapshot-every",
        default="profile",
        help="minutes between intraday REST snapshots, or 'none': then only the first day opens "
        "with a snapshot and later days must chain from the previous day's checkpoint",
    )
    p.add_argument("--no-truth", action="store_true", help="skip the truth parquet")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="profile/model override, e.g. --set event_rate=30 --set msg_ms=1000 (repeatable)",
    )
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=run)


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return None if text.lower() == "none" else text


def run(args: argparse.Namespace) -> int:
    from obpipeline.sources import faults as F
    from obpipeline.sources import synthetic as S

    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key.strip()] = _value(value.strip())
    every = args.snapshot_every
    none = str(every).lower() == "none"
    spec = F.FaultSpec.parse(args.faults) if args.faults else None
    for k, day in enumerate(S.day_range(args.date, args.days)):
        started = time.perf_counter()
        options = dict(
            symbol=args.symbol,
            profile=args.profile,
            seed=args.seed,
            opening_snapshot=(k == 0) or not none,
            snapshot_every=None if none else every,
            **overrides,
        )
        report = None
        if spec is None:  # streamed: memory does not grow with the day
            paths, stats = S.write_day_streaming(day, args.out, truth=not args.no_truth, **options)
            phases = {}
        else:  # fault injection works on the day's lines in memory
            sim = S.simulate_day(day, **options)
            simulated = time.perf_counter()
            lines, rep = F.inject(sim.lines(), spec, seed=args.fault_seed + k)
            report = rep.to_dict()
            paths = S.write_day(sim, args.out, lines=lines, report=report, truth=not args.no_truth)
            stats = sim.stats()
            phases = {"simulate_seconds": round(simulated - started, 3)}
        done = time.perf_counter()
        summary = {
            "date": str(day),
            **stats,
            "seconds": round(done - started, 3),
            **phases,
            **({"faults": report["counts"]} if report else {}),
            "outputs": {k: str(v) for k, v in paths.items()},
        }
        print(json.dumps(summary))
    return 0

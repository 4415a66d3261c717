"""``obpipeline fidelity-report``: the static HTML fidelity report over every day of a lake."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    help_ = "write the self-contained HTML fidelity report (Gates A, B, C) over a lake"
    p = sub.add_parser("fidelity-report", help=help_, description=help_)
    p.add_argument("--lake", type=Path, help="lake root (default: $OBPIPELINE_LAKE or data/lake)")
    p.add_argument("--out", type=Path, required=True, help="HTML file to write")
    p.add_argument("--venue", help="only this venue id (e.g. binance-usdm)")
    p.add_argument("--symbol", help="only this symbol")
    p.add_argument(
        "--mutation",
        type=Path,
        help="mutation-test JSON to include (default: <lake>/_fidelity/mutation.json if present)",
    )
    p.add_argument(
        "--no-compute",
        action="store_true",
        help="only use stored fidelity_metrics (do not evaluate days that lack them)",
    )
    p.add_argument(
        "--write-metrics",
        action="store_true",
        help="evaluate (Gates A and C) and store fidelity_metrics for days that lack them",
    )
    p.add_argument(
        "--recompute",
        action="store_true",
        help="evaluate and store fidelity_metrics for every day, replacing stored ones",
    )
    p.add_argument("--realism-days", type=int, default=30, help="days in the Gate C window")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from obpipeline import lake
    from obpipeline.fidelity import lakeio
    from obpipeline.fidelity.report import build_report

    root = args.lake or lake.lake_root()
    if args.write_metrics or args.recompute:
        from obpipeline.fidelity.assets import fidelity_day

        for venue, symbol in lakeio.instruments_in_lake(root):
            if (args.venue and venue != args.venue) or (args.symbol and symbol != args.symbol):
                continue
            for day in lakeio.lake_days(root, "book_snapshots", venue, symbol):
                stored = lake.partition_path(lakeio.METRICS, venue, symbol, day, root)
                if stored.exists() and not args.recompute:
                    continue
                result = fidelity_day(root, venue, symbol, day)
                lake.write_partition(result.metrics, lakeio.METRICS, venue, symbol, day, root)
                print(
                    f"{venue} {symbol} {day}: gate A {'pass' if result.metadata['gate_a_passed'] else 'FAIL'}"
                )
    out = build_report(
        root,
        args.out,
        venue=args.venue,
        symbol=args.symbol,
        mutation=args.mutation,
        compute_missing=not args.no_compute,
        realism_days=args.realism_days,
    )
    print(out)
    return 0

"""``obpipeline features BOOK_DIR --out DIR``: microstructure features from book_snapshots files.

Reads every ``*.parquet`` under BOOK_DIR (recursively, in path order, so hive ``date=`` folders
come in date order; rows keep their order within a file, which is the message order OFI needs),
writes ``features.parquet`` (one row per message) and ``features_<grid>.parquet`` per grid to DIR,
each atomically, and prints a one-line JSON summary last. The files are streamed in batches
(``features.write_day_features``): memory does not grow with the input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from obpipeline.instruments import get_instrument


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "features",
        help="microstructure features (per message and per time grid) from book_snapshots",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("book_dir", type=Path, metavar="BOOK_DIR", help="book_snapshots parquet")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument(
        "--grid",
        help="comma-separated grid steps (default: FeatureConfig's, 1s,100ms)",
    )
    parser.add_argument("--trades", type=Path, help="trades parquet file or folder (optional)")
    parser.add_argument(
        "--instrument",
        metavar="VENUE/MARKET/SYMBOL",
        help="e.g. binance/usdm/BTCUSDT: its tick for spread_ticks (default: one price unit)",
    )
    parser.set_defaults(func=run)


def _parquet_files(path: Path, exclude: Path | None = None) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*.parquet") if p.is_file())
    if exclude is not None:
        files = [p for p in files if exclude.resolve() not in p.resolve().parents]
    return files


def run(args: argparse.Namespace) -> int:
    from obpipeline import features

    started = time.perf_counter()
    files = _parquet_files(args.book_dir, exclude=args.out)
    if not files:
        print(f"features: no *.parquet under {args.book_dir}", file=sys.stderr)
        return 2
    grids = (
        tuple(g.strip() for g in args.grid.split(",") if g.strip())
        if args.grid is not None
        else features.FeatureConfig().grids
    )
    try:
        config = features.FeatureConfig(grids=grids)
        instrument = None
        if args.instrument:
            venue, market, symbol = args.instrument.split("/")
            instrument = get_instrument(venue, market, symbol)
            if instrument is None:
                raise ValueError(f"unknown instrument {args.instrument}")
    except ValueError as e:
        print(f"features: {e}", file=sys.stderr)
        return 2

    trade_files = None
    if args.trades is not None:
        trade_files = _parquet_files(args.trades)
        if not trade_files:
            print(f"features: no trades parquet at {args.trades}", file=sys.stderr)
            return 2
    grid_paths = {every: args.out / f"features_{every}.parquet" for every in grids}
    try:
        summary = features.write_day_features(
            files, trade_files, args.out / "features.parquet", grid_paths, config,
            instrument=instrument,
        )  # fmt: skip
    except (ValueError, OSError) as e:
        print(f"features: {e}", file=sys.stderr)
        return 2
    summary["grid_rows"] = {every: summary.pop(f"rows_{every}") for every in grids}
    summary |= {
        "files": len(files),
        "out": str(args.out),
        "seconds": round(time.perf_counter() - started, 3),
    }
    print(json.dumps(summary))
    return 0

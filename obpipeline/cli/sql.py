"""``obpipeline sql FILE``: run a DuckDB query of ``sql/`` over the lake and print the result."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    help_ = "run a DuckDB query file (sql/*.sql) over the lake's parquet and print the result"
    p = sub.add_parser("sql", help=help_, description=help_)
    p.add_argument(
        "file", help="query file, or the name of one in sql/ (e.g. golden_bbo_comparison)"
    )
    p.add_argument("--lake", type=Path, help="lake root (default: $OBPIPELINE_LAKE or data/lake)")
    p.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a DuckDB variable the query reads with getvariable() (repeatable): "
        "venue, symbol, date_from, date_to",
    )
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import polars as pl

    from obpipeline import lake
    from obpipeline.fidelity.sql import run_sql

    variables = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--var expects NAME=VALUE, got {item!r}")
        variables[name] = value
    frame = run_sql(args.file, args.lake or lake.lake_root(), variables)
    if args.format == "csv":
        frame.write_csv(sys.stdout)
    elif args.format == "json":
        print(frame.write_json())
    else:
        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=80):
            print(frame)
    return 0

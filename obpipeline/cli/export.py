"""``obpipeline export --format tardis``: a Binance capture (real or simulated) → Tardis CSV.gz files.

Writes ``incremental_book_L2``, ``book_snapshot_<depth>``, ``quotes``, ``book_ticker`` and
``trades`` as ``<exchange>_<type>_<date>_<symbol>.csv.gz``, so Tardis files whose every book
state is known exist for tests (see ``obpipeline/export/tardis.py``). Prints a JSON
summary. For a continuation capture pass the previous file's ``--checkpoint-out`` as
``--checkpoint-in``: the Tardis file then opens with that book as its snapshot.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from obpipeline import book
from obpipeline.instruments import MARKETS


def register(sub: argparse._SubParsersAction) -> None:
    help_ = "replay a Binance capture and write it as Tardis.dev CSV.gz files"
    p = sub.add_parser("export", help=help_, description=help_)
    p.add_argument("files", nargs="+", type=Path, help="capture files of one stream, in time order")
    p.add_argument("--format", choices=("tardis",), default="tardis", help="output format")
    p.add_argument("--out", type=Path, required=True, help="folder to write the files into")
    p.add_argument("--depth", type=int, default=25, help="levels of book_snapshot_<depth>")
    p.add_argument("--checkpoint-in", type=Path, help="book_checkpoint to start from")
    p.add_argument("--checkpoint-out", type=Path, help="write the final full book here")
    p.add_argument("--market", choices=MARKETS, help="default: detected from the messages")
    p.add_argument("--symbol", help="default: detected from the stream names")
    p.add_argument("--engine", choices=book.ENGINES, default=book.DEFAULT_ENGINE)
    p.add_argument("--compresslevel", type=int, default=6, choices=range(1, 10), metavar="1-9")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from obpipeline.book import checkpoint as ckpt
    from obpipeline.export.tardis import export_capture

    started = time.perf_counter()
    start = ckpt.read(args.checkpoint_in) if args.checkpoint_in else None
    result = export_capture(
        args.files,
        args.out,
        checkpoint=start,
        depth=args.depth,
        market=args.market,
        symbol=args.symbol,
        engine=args.engine,
        compresslevel=args.compresslevel,
    )
    outputs = {kind: str(path) for kind, path in result.files.items()}
    if args.checkpoint_out:
        outputs["checkpoint"] = str(
            ckpt.write(result.replay.checkpoint, result.instrument, args.checkpoint_out)
        )
    summary = {
        "format": args.format,
        "exchange": result.exchange,
        "symbol": result.symbol,
        **result.stats,
        "replay": result.replay.counters.to_dict(),
        "seconds": round(time.perf_counter() - started, 3),
        "outputs": outputs,
    }
    print(json.dumps(summary))
    return 0

"""``obpipeline replay`` and ``obpipeline verify``: capture files → book_snapshots, checked against golden records."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import polars as pl

from obpipeline import book, lake
from obpipeline.book import checkpoint as ckpt
from obpipeline.fidelity import exact, golden
from obpipeline.instruments import MARKETS
from obpipeline.schemas import DEFAULT_DEPTH


def register(sub: argparse._SubParsersAction) -> None:
    for name, func, help_ in (
        (
            "replay",
            run_replay,
            "rebuild the book after every message and write book_snapshots parquet",
        ),
        (
            "verify",
            run_verify,
            "replay and compare with every golden record; exit 1 on a mismatch or unhandled gap",
        ),
    ):
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument(
            "files",
            nargs="+",
            type=Path,
            help="capture files of one market and symbol, in time order",
        )
        p.add_argument(
            "--out",
            type=Path,
            required=name == "replay",
            help="lake root to write book_snapshots under",
        )
        p.add_argument(
            "--depth", type=int, default=DEFAULT_DEPTH, help="levels per side in book_snapshots"
        )
        p.add_argument(
            "--checkpoint-in", type=Path, help="book_checkpoint to start from (previous day)"
        )
        p.add_argument("--checkpoint-out", type=Path, help="write the final full book here")
        p.add_argument("--market", choices=MARKETS, help="default: detected from the messages")
        p.add_argument("--symbol", help="default: detected from the stream names")
        p.add_argument(
            "--format", choices=("binance", "tardis"), default="binance", help="capture format"
        )
        p.add_argument(
            "--golden",
            type=Path,
            action="append",
            default=[],
            help="tardis: book_snapshot_N / quotes file to compare with (repeatable)",
        )
        p.add_argument("--engine", choices=book.ENGINES, default=book.DEFAULT_ENGINE)
        p.set_defaults(func=func)


def replay_files(args: argparse.Namespace) -> dict:
    """Parse, replay and compare; returns the summary and writes outputs when asked."""
    from obpipeline.sources.binance import read_capture

    start = ckpt.read(args.checkpoint_in) if args.checkpoint_in else None
    started = time.perf_counter()
    if args.format == "tardis":
        from obpipeline.sources.tardis import read_tardis

        first_id = start.last_update_id if start else 0
        paths = [*args.files, *args.golden]
        capture = read_tardis(paths, args.symbol, args.depth, start_update_id=first_id)
    elif args.golden:
        raise SystemExit(
            "--golden is for --format tardis (Binance golden streams are in the capture)"
        )
    else:
        capture = read_capture(args.files, market=args.market, symbol=args.symbol, depth=args.depth)
    parsed = time.perf_counter()
    result = book.replay(capture.events, capture.instrument, args.depth, start, engine=args.engine)
    replayed = time.perf_counter()
    if args.format == "tardis":  # no update ids: aligned by time, within ±1 message
        from obpipeline.fidelity import tardis_golden

        comparisons = [tardis_golden.compare_bbo(result.snapshots, capture.golden_bbo)]
        if capture.golden_depth.height:
            comparisons.append(tardis_golden.compare_depth(result.snapshots, capture.golden_depth))
    else:  # aligned by update id; exchange times checked where the record carries one
        comparisons = [exact.compare_bbo(result.snapshots, capture.golden_bbo, capture.events)]
        if capture.golden_depth.height:
            comparisons.append(
                exact.compare_depth(result.snapshots, capture.golden_depth, capture.events)
            )
    inst = capture.instrument
    outputs: list[str] = []
    if args.out:
        snapshots = result.snapshots.with_columns(pl.col("ts_event").dt.date().alias("_day"))
        for (day,), part in snapshots.group_by("_day", maintain_order=True):
            path = lake.write_partition(
                part.drop("_day"), "book_snapshots", inst.venue_id, inst.symbol, day, args.out
            )
            outputs.append(str(path))
        if capture.quarantine.height:  # kept whole, under the first day of the replay
            first_day = snapshots["_day"].min() or "unknown"
            path = lake.write_partition(
                capture.quarantine, "quarantine", inst.venue_id, inst.symbol, first_day, args.out
            )
            outputs.append(str(path))
    if args.checkpoint_out:
        outputs.append(str(ckpt.write(result.checkpoint, inst, args.checkpoint_out)))
    for q in capture.quarantine.head(20).iter_rows(named=True):
        print(f"quarantined {q['file']}:{q['line']}: {q['reason']}")
    summary = {
        "venue": inst.venue_id,
        "symbol": inst.symbol,
        "engine": args.engine,
        **result.counters.to_dict(),
        "quarantined": capture.quarantine.height,
        **golden.summary(comparisons),
        "parse_seconds": round(parsed - started, 3),
        "replay_seconds": round(replayed - parsed, 3),
        "level_updates_per_s": round(result.counters.level_updates / max(replayed - parsed, 1e-9)),
        "outputs": outputs,
    }
    return summary


def run_replay(args: argparse.Namespace) -> int:
    print(json.dumps(replay_files(args)))
    return 0


def verify_failures(summary: dict) -> list[str]:
    failures = []
    if summary["golden_mismatched"]:
        failures.append(f"{summary['golden_mismatched']} golden records differ from the book")
    if summary["golden_time_mismatched"]:
        failures.append(
            f"{summary['golden_time_mismatched']} golden records carry another exchange time "
            "than the depth message with the same update id"
        )
    if summary["snapshot_mismatches"]:
        failures.append(f"{summary['snapshot_mismatches']} REST snapshots differ from the book")
    if summary["crossed"]:
        failures.append(f"{summary['crossed']} crossed books while in sync")
    if summary["gaps"] > summary["resyncs"] or summary["unsynced_at_end"]:
        failures.append(
            f"unhandled sequence gap: {summary['gaps']} gaps, {summary['resyncs']} resyncs, "
            f"out of sync at end: {bool(summary['unsynced_at_end'])}"
        )
    return failures


def run_verify(args: argparse.Namespace) -> int:
    summary = replay_files(args)
    failures = verify_failures(summary)
    summary["verdict"] = "fail" if failures else "pass"
    summary["failures"] = failures
    print(json.dumps(summary))
    return 1 if failures else 0

"""``obpipeline replay`` and ``obpipeline verify``: capture files → book_snapshots, checked against golden records."""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from obpipeline import book
from obpipeline.instruments import CHECKSUM_VENUES, MARKETS

if TYPE_CHECKING:  # the heavy modules load in the commands, so ``--help`` stays instant
    from obpipeline.book.stream import Book, ReplayCounters
    from obpipeline.sources.ingest import Ingest


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
            "--depth",
            type=int,
            default=book.DEFAULT_DEPTH,
            help="levels per side in book_snapshots",
        )
        p.add_argument(
            "--checkpoint-in", type=Path, help="book_checkpoint to start from (previous day)"
        )
        p.add_argument("--checkpoint-out", type=Path, help="write the final full book here")
        p.add_argument("--market", choices=MARKETS, help="default: detected from the messages")
        p.add_argument(
            "--venue",
            choices=("binance", *CHECKSUM_VENUES),
            help="default: detected from the file (OKX/Bitget/Kraken recordings are checksummed)",
        )
        p.add_argument(
            "--symbol",
            help="default: detected from the stream names; in the venue's spelling (XBT/CHF)",
        )
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


ACCOUNTING = ("lines", "blank_lines", "ignored_other_streams", "messages", "golden_bbo",
              "golden_depth", "trades", "quarantined")  # fmt: skip


def replay_files(args: argparse.Namespace, compare: bool = True) -> dict:
    """Ingest, replay and (``compare``) judge, day by day in bounded memory; the summary.

    ``replay`` builds books and leaves the golden comparison to ``verify`` (it is the proof,
    and a third of the work on a real day): its summary counts the golden records only.

    The capture is streamed into per-UTC-day raw_book_events in a scratch folder, then each
    day is replayed from the previous day's book (the first from ``--checkpoint-in``), written
    as book_snapshots and compared with that day's golden records. Memory is that of one day's
    replay, whatever the number of files or days.
    """

    from obpipeline.cli import checksum_venue

    if checksum_venue.wanted(args):
        return checksum_venue.replay_venue_files(args, compare)
    from obpipeline import lake
    from obpipeline.book import checkpoint as ckpt
    from obpipeline.book.stream import ReplayCounters
    from obpipeline.procstat import peak_rss_mb
    from obpipeline.sources import ingest  # noqa: F401 - loaded before the freeze below

    # what is loaded now lives as long as the process: the collections of release_memory skip it
    gc.freeze()
    carried = ckpt.read(args.checkpoint_in) if args.checkpoint_in else None
    started = time.perf_counter()
    # the per-day raw files live in a scratch folder ($TMPDIR): nothing is written under --out
    # before the input has proved usable
    with tempfile.TemporaryDirectory(prefix="obpipeline-replay-") as tmp:
        scratch = Path(tmp)

        def path_for(dataset: str, day) -> Path:
            return scratch / dataset / f"{day}.parquet"

        staged = _stage(args, carried, path_for)
        inst = staged.instrument
        if args.checkpoint_in:  # now that the instrument is known: it must be its book
            carried = ckpt.read(args.checkpoint_in, expect_instrument=inst)
        continuation: list[str] = []
        for day_out in staged.days.values():
            day_out.publish()
        parsed = time.perf_counter()
        release_memory()
        outputs: list[str] = []
        judged: Counter[str] = Counter()  # each day's golden totals, added up as days end
        total = ReplayCounters()
        golden_records = 0
        replay_seconds = 0.0
        for day in sorted(staged.days):
            snapshots = (
                lake.partition_path("book_snapshots", inst.venue_id, inst.symbol, day, args.out)
                if args.out
                else path_for("book_snapshots", day)
            )
            t0 = time.perf_counter()
            start = carried
            carried, counters = _replay_day(args, path_for("raw_book_events", day), snapshots,
                                            inst, start)  # fmt: skip
            continuation += [f"{day}: {f}" for f in ckpt.continuation_failures(
                counters.to_dict(), start)]  # fmt: skip
            replay_seconds += time.perf_counter() - t0
            _accumulate(total, counters)
            release_memory()
            if compare:
                # only the day's totals stay: its comparisons hold ~1 M aligned pairs
                judged.update(
                    _judged(_compare_day(args, snapshots, staged.days[day], path_for, day))
                )
            golden_records += sum(staged.days[day].rows(g) for g in ("golden_bbo", "golden_depth"))
            staged.days[day].messages.remove()  # the day is judged: nothing of it stays
            release_memory()
            if args.out:
                outputs.append(str(snapshots))
        if args.out and staged.quarantine.rows and staged.days:  # whole, under the first day
            first_day = min(staged.days)
            path = lake.partition_path(
                "quarantine", inst.venue_id, inst.symbol, first_day, args.out
            )
            staged.publish_quarantine(path)
            outputs.append(str(path))
        else:
            staged.quarantine.discard()
    if args.checkpoint_out and carried is not None:
        last_day = max(staged.days)
        outputs.append(str(ckpt.write(carried, inst, args.checkpoint_out, day=last_day)))
    for q in staged.quarantine_sample.iter_rows(named=True):
        print(f"quarantined {q['file']}:{q['line']}: {q['reason']}")
    total.unsynced_at_end = int(carried is not None and not carried.is_valid)
    summary = {
        "venue": inst.venue_id,
        "symbol": inst.symbol,
        "engine": args.engine,
        **total.to_dict(),
        # line accounting: lines = blank + ignored + messages + golden + trades + quarantined
        **{k: staged.stats.get(k, 0) for k in ACCOUNTING},
        "damaged_files": staged.stats.get("damaged_files", 0),
        "continuation_failures": continuation,
        **({**_judged([]), **judged} if compare else {"golden_records": golden_records}),
        "parse_seconds": round(parsed - started, 3),
        "replay_seconds": round(replay_seconds, 3),
        "level_updates_per_s": round(total.level_updates / max(replay_seconds, 1e-9)),
        "peak_rss_mb": round(peak_rss_mb()),
        "outputs": outputs,
    }
    return summary


def _judged(comparisons: list) -> dict:
    """The golden comparisons' summary (``fidelity.exact`` loads SciPy: ``verify`` only)."""
    from obpipeline.fidelity import exact

    return exact.summary(comparisons)


def release_memory() -> None:
    """Hand the memory freed by a finished stage back to the system before the next one.

    glibc keeps freed blocks of the parse threads' arenas, and Arrow's pool its pages: without
    this the next stage's peak lands on top of the last one's leftovers (~150-250 MB on a real
    day, measured), and a process's peak depends on what ran before rather than on one day.
    """
    import contextlib
    import ctypes
    import ctypes.util

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    libc = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        if libc:
            ctypes.CDLL(libc).malloc_trim(0)


def _stage(args: argparse.Namespace, start: Book | None, path_for) -> Ingest:
    """The capture files staged per UTC day (Binance streamed; Tardis read, then staged)."""
    from obpipeline.errors import CaptureError
    from obpipeline.sources import ingest as ing

    if args.format == "tardis":
        from obpipeline.sources.tardis import read_tardis

        first_id = start.last_update_id if start else 0
        paths = [*args.files, *args.golden]
        capture = read_tardis(paths, args.symbol, args.depth, start_update_id=first_id)
        return ing.stage_capture(capture, path_for, args.depth)
    if args.golden:
        raise SystemExit(
            "--golden is for --format tardis (Binance golden streams are in the capture)"
        )
    staged = ing.ingest(
        [ing.Part.file(f) for f in args.files],
        path_for,
        market=args.market,
        symbol=args.symbol,
        depth=args.depth,
    )
    if staged.instrument is None:
        staged.discard()
        raise CaptureError(
            f"no usable depth message in {', '.join(map(str, args.files))} "
            f"({staged.quarantine.rows} line(s) quarantined)"
        )
    return staged


# golden records compared per batch: the comparison is verify's memory peak, and 16 k rows
# halve it against exact's default of 64 k (a 1.5 M-line real-volume slice: 0.83 GB peak, was
# 1.53 GB) for the same CPU
COMPARE_BATCH_ROWS = 1 << 14


def _compare_day(args, snapshots: Path, day_out, path_for, day) -> list:
    """The day's golden comparisons (``fidelity.exact``), reading only the rows they need.

    Binance records align by update id (exchange times checked against the depth message's);
    Tardis records carry none and align by time, within ±1 message.
    """
    from obpipeline.fidelity import exact

    return exact.day_comparisons(
        snapshots,
        day_out.message_table() if args.format != "tardis" else None,
        path_for("golden_bbo", day),
        path_for("golden_depth", day),
        aligned_by="time" if args.format == "tardis" else "update_id",
        rest=False,
        batch_rows=COMPARE_BATCH_ROWS,
    )


def _replay_day(args, events: Path, snapshots: Path, inst, start: Book | None):
    """The compiled engine streams parquet to parquet; the reference oracle replays in memory."""
    import polars as pl

    from obpipeline import lake

    if args.engine == "reference":
        result = book.replay(pl.read_parquet(events), inst, args.depth, start, engine="reference")
        lake.write_parquet_atomic(result.snapshots, snapshots)
        return result.checkpoint, result.counters
    from obpipeline.book.parquet_stream import replay_parquet

    return replay_parquet(events, snapshots, inst, args.depth, start)


def _accumulate(total: ReplayCounters, day: ReplayCounters) -> None:
    for k, v in day.to_dict().items():
        setattr(total, k, getattr(total, k) + v)


def run_replay(args: argparse.Namespace) -> int:
    print(json.dumps(replay_files(args, compare=False)))
    return 0


def verify_failures(summary: dict) -> list[str]:
    """Why ``verify`` fails: the capture's counts judged by Gate A0's counted checks with the
    venue's thresholds (``integrity.counted_failures``, the rule gate_a and the report apply),
    plus what only a capture shows (damaged files, continuation, golden records, checksums)."""
    from obpipeline.cli import checksum_venue
    from obpipeline.fidelity.config import thresholds_for
    from obpipeline.fidelity.integrity import counted_failures

    failures = list(summary["continuation_failures"]) + checksum_venue.failures(summary)
    if summary["damaged_files"]:
        failures.append(
            f"{summary['damaged_files']} damaged file(s): their unreadable rest is quarantined"
        )
    if summary["golden_mismatched"]:
        failures.append(f"{summary['golden_mismatched']} golden records differ from the book")
    if summary["golden_time_mismatched"]:
        failures.append(
            f"{summary['golden_time_mismatched']} golden records carry another exchange time "
            "than the depth message with the same update id"
        )
    return failures + counted_failures(summary, thresholds_for(summary["venue"]))


def run_verify(args: argparse.Namespace) -> int:
    summary = replay_files(args)
    failures = verify_failures(summary)
    summary["verdict"] = "fail" if failures else "pass"
    summary["failures"] = failures
    print(json.dumps(summary))
    return 1 if failures else 0

"""``replay`` / ``verify`` on checksum-venue recordings (OKX, Bitget, Kraken).

Reached from ``cli/replay.py`` when ``--venue okx|bitget|kraken`` is given or the files are
detected as such. The recording is read whole (these venues' recordings are small; the Binance
path is the streamed one), one instrument is selected (``--symbol`` in the venue's spelling,
required when there are several), replayed by the chosen engine and every message's checksum
validated (``book/checksum.py``). book_snapshots are written per UTC day of exchange time
under the symbol's safe form (``XBT/CHF`` → ``symbol=XBT-CHF``).
"""

from __future__ import annotations

import argparse
import time

from obpipeline.instruments import CHECKSUM_VENUES

LOCATED_IN_SUMMARY = 10  # mismatches listed in the JSON summary (all are counted)


def wanted(args: argparse.Namespace) -> bool:
    """Do these arguments name (or these files hold) a checksum venue recording?"""
    if args.venue is not None:
        return args.venue in CHECKSUM_VENUES
    if args.format != "binance":
        return False
    from obpipeline.sources.checksum_venues.recording import detect_venue

    return any(f.is_file() and detect_venue(f) is not None for f in args.files)


def replay_venue_files(args: argparse.Namespace, compare: bool = True) -> dict:
    """Read, replay, validate checksums and write; the JSON summary of ``replay``/``verify``."""
    import polars as pl

    from obpipeline import lake, schemas
    from obpipeline.book import checkpoint as ckpt
    from obpipeline.book import checksum as ck
    from obpipeline.fidelity.checksum_gate import checksum_results
    from obpipeline.procstat import peak_rss_mb
    from obpipeline.sources.checksum_venues.recording import read_recording
    from obpipeline.sources.checksum_venues.sequence import sequence

    started = time.perf_counter()
    if args.golden:
        raise SystemExit("--golden is for --format tardis (checksum venues prove every message)")
    rec = read_recording(args.files, args.venue)
    symbol = rec.select(args.symbol)
    carried = ckpt.read(args.checkpoint_in) if args.checkpoint_in else None
    day = sequence(rec, symbol, carried)
    inst = day.instrument
    if args.checkpoint_in:
        carried = ckpt.read(args.checkpoint_in, expect_instrument=inst)
    parsed = time.perf_counter()
    result, report = ck.replay_checked(day, args.depth, args.engine, carried)
    replayed = time.perf_counter()
    counters = result.counters
    counters.unsynced_at_end = int(not result.checkpoint.is_valid)
    outputs: list[str] = []
    snaps = result.snapshots
    days = snaps["ts_event"].dt.date()
    if args.out:
        for d in days.unique(maintain_order=True).to_list():
            path = lake.partition_path("book_snapshots", inst.venue_id, inst.symbol, d, args.out)
            outputs.append(str(lake.write_parquet_atomic(snaps.filter(days == d), path)))
        if rec.quarantine and len(snaps):
            path = lake.partition_path("quarantine", inst.venue_id, inst.symbol, days[0], args.out)
            frame = pl.DataFrame(rec.quarantine, schema=schemas.quarantine())
            outputs.append(str(lake.write_parquet_atomic(frame, path)))
    if args.checkpoint_out:
        last = days[-1] if len(snaps) else None
        outputs.append(str(ckpt.write(result.checkpoint, inst, args.checkpoint_out, day=last)))
    for q in rec.quarantine[:20]:
        print(f"quarantined {q['file']}:{q['line']}: {q['reason']}")
    for m in report.mismatches[:LOCATED_IN_SUMMARY]:
        print(
            f"checksum mismatch {m['symbol']} {m['file']}:{m['line']} msg {m['msg_id']} "
            f"ts_event {m['ts_event']}: expected {m['expected']}, computed {m['computed']}"
        )
    gates = checksum_results(result, report)
    checks = report.to_dict()
    checks["checksum_mismatches"] = checks["checksum_mismatches"][:LOCATED_IN_SUMMARY]
    return {
        "venue": inst.venue_id,
        "symbol": inst.symbol,
        "venue_symbol": symbol,
        "symbols_in_files": rec.symbols,
        "engine": args.engine,
        **counters.to_dict(),
        **rec.accounting(),
        "truncated_levels": day.truncated,
        "damaged_files": 0,
        "continuation_failures": ckpt.continuation_failures(counters.to_dict(), carried),
        **checks,
        # no golden records on these venues: the checksum is the golden sample of every message
        "golden_records": 0,
        "golden_mismatched": 0,
        "golden_time_mismatched": 0,
        "gates": [
            {k: g.to_dict()[k] for k in ("gate", "check", "status", "value", "detail", "metrics")}
            for g in gates
        ],
        "parse_seconds": round(parsed - started, 3),
        "replay_seconds": round(replayed - parsed, 3),
        "peak_rss_mb": round(peak_rss_mb()),
        "outputs": outputs,
    }


def failures(summary: dict) -> list[str]:
    """What makes ``verify`` fail on a checksum venue beyond the shared rules."""
    out = []
    if summary.get("checksum_mismatched"):
        first = summary["checksum_mismatches"][0]
        out.append(
            f"{summary['checksum_mismatched']} of {summary['checksum_compared']} checksums differ "
            f"from the book (first: {first['file']}:{first['line']}, {first['symbol']})"
        )
    return out

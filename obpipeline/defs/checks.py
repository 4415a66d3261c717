"""Invariant checks as pure functions over the frames an asset is about to write.

Each returns ``Verdict``s; the assets run them *before* writing (a blocking ERROR means the day
is not written and the run fails) and emit them as partitioned asset-check evaluations. The hard
invariants are Polars expressions (~0.1 s a day); the declarative Great Expectations suites are in
``obpipeline.defs.expectations`` and run as separate check steps over the written files.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl

from obpipeline import schemas
from obpipeline.book.checkpoint import continuation_failures
from obpipeline.book.stream import Book, ReplayCounters
from obpipeline.fidelity.config import Thresholds
from obpipeline.fidelity.exact import ExactComparison
from obpipeline.fidelity.gates import golden_counts
from obpipeline.fidelity.integrity import counted_checks
from obpipeline.instruments import Instrument
from obpipeline.sources.ingest import DayOut, Ingest
from obpipeline.verdict import Severity, Verdict

ERROR, WARN = Severity.ERROR, Severity.WARN


# Check names, the severity of their failure and what they guard, per asset (the specs are built
# from these). raw_id_chain fails as WARN when every gap was resynced (see ``raw_id_chain``).
RAW_CHECKS = {
    "raw_schema": (ERROR, "canonical schema of every frame; prices > 0, sizes >= 0, sides, id order"),
    "raw_id_chain": (ERROR, "update-id chain (pu / U) per venue rule: every gap must be followed "
                     "by a snapshot (resynced gaps and duplicates fail as a warning)"),
    "raw_quarantine": (WARN, "no capture line quarantined (warning: quarantined lines are kept aside)"),
}  # fmt: skip
CHECKPOINT_CHECKS = {
    "checkpoint_consistent": (ERROR, "end-of-day book sorted, positive, not crossed; carried book agreed"),
    "checkpoint_in_sync": (WARN, "the day ended in sync (warning: D+1 then needs a snapshot)"),
}  # fmt: skip
SNAPSHOT_CHECKS = {
    "snapshots_schema": (ERROR, "book_snapshots schema, one row per processed message, ids in order"),
    "no_crossed_book": (ERROR, "no crossed or locked book while in sync (before or after repair)"),
    "no_unhandled_gap": (ERROR, "every sequence gap resynced by a snapshot; in sync at the end of day"),
    "opening_book_agrees": (ERROR, "REST snapshots aligned with the carried book are equal to it"),
    "golden_exact": (ERROR, "every golden record aligned by update id equals the book (Gate A1); "
                     "fails as a warning when no record aligned (nothing proven)"),
}  # fmt: skip


def _sample(frame: pl.DataFrame, n: int = 5) -> list[dict[str, Any]]:
    return [{k: str(v) for k, v in row.items()} for row in frame.head(n).iter_rows(named=True)]


# ----------------------------------------------------------------------------- raw_book_events


def raw_checks(staged: Ingest, day: date, accept_damaged: bool = False) -> list[Verdict]:
    """The checks of one staged ingest day (counts gathered while streaming, message table).

    ``accept_damaged``: the operator accepted the day's damaged files (``accept_damaged_days``).
    """
    out = staged.days.get(day)
    if out is None:
        return [
            Verdict(
                "raw_schema",
                False,
                ERROR,
                f"no depth message with an exchange time on {day} in the source",
                {"rows": 0},
            ),
            raw_quarantine(staged),
        ]
    assert staged.instrument is not None
    return [
        raw_schema(out, staged.stats.get("damaged_files", 0), accept_damaged),
        raw_id_chain(out.message_table(), staged.instrument),
        raw_quarantine(staged),
    ]


def raw_schema(out: DayOut, damaged_files: int = 0, accept_damaged: bool = False) -> Verdict:
    """Value rules of every raw_book_events row (the schema itself is fixed by the writers),
    and readable input: a damaged file's unreadable rest is quarantined, and the day fails
    unless the operator accepted it."""
    counts = {**out.audit, "damaged_files": damaged_files}
    problems = [f"{k}: {v}" for k, v in counts.items() if v]
    if accept_damaged and damaged_files:
        problems.remove(f"damaged_files: {damaged_files}")
        counts["damaged_files_accepted"] = damaged_files
    rows = out.rows("raw_book_events")
    if rows == 0:
        problems.append("no depth message on the day")
    return Verdict(
        "raw_schema",
        not problems,
        ERROR,
        "; ".join(problems)[:500] or "schema and value ranges ok",
        {"rows": rows, "problems": len(problems), **counts},
    )


def raw_id_chain(messages: pl.DataFrame, instrument: Instrument) -> Verdict:
    """Classify every break of the update-id chain between consecutive diff messages.

    Futures: ``pu`` must equal the previous ``u``; spot: ``U`` must be the previous ``u`` + 1
    (venues with synthetic ids chain by ``pu``). A break whose ``u`` is not newer than what was
    already seen is a duplicate/stale message (the replayer drops and counts it); otherwise it is
    a gap, *handled* when a REST snapshot follows later in the day. Unhandled gaps fail (ERROR);
    handled gaps and duplicates only warn.
    """
    msgs = messages.with_row_index("pos")
    snaps = msgs.filter(pl.col("is_snapshot"))
    last_snapshot_pos = int(snaps["pos"].max()) if snaps.height else -1
    diffs = msgs.filter(~pl.col("is_snapshot")).with_columns(
        pl.col("last_update_id").cum_max().shift(1).alias("prev_max")
    )
    by_pu = instrument.sequencing != "binance_spot" and diffs["prev_update_id"].is_not_null().any()
    chained = (
        pl.col("prev_update_id") == pl.col("prev_max")
        if by_pu
        else pl.col("first_update_id") == pl.col("prev_max") + 1
    )
    breaks = diffs.filter(pl.col("prev_max").is_not_null() & ~chained.fill_null(False))
    stale = breaks.filter(pl.col("last_update_id") <= pl.col("prev_max"))
    gaps = breaks.filter(pl.col("last_update_id") > pl.col("prev_max"))
    unhandled = gaps.filter(pl.col("pos") > last_snapshot_pos)
    meta = {
        "messages": msgs.height,
        "diff_messages": diffs.height,
        "snapshots": snaps.height,
        "gaps": gaps.height,
        "unhandled_gaps": unhandled.height,
        "duplicates_or_stale": stale.height,
        "rule": "pu == previous u" if by_pu else "U == previous u + 1",
    }
    if unhandled.height:
        meta["first_unhandled"] = _sample(
            unhandled.select("msg_id", "ts_event", "first_update_id", "prev_update_id", "prev_max")
        )
        return Verdict(
            "raw_id_chain",
            False,
            ERROR,
            f"{unhandled.height} sequence gap(s) with no snapshot after them: the book stays "
            "out of sync to the end of the day",
            meta,
        )
    if gaps.height or stale.height:
        return Verdict(
            "raw_id_chain",
            False,
            WARN,
            f"{gaps.height} gap(s) resynced by a later snapshot, "
            f"{stale.height} duplicate or stale message(s) (dropped and counted by the replay)",
            meta,
        )
    return Verdict("raw_id_chain", True, ERROR, "update-id chain complete", meta)


def raw_quarantine(staged: Ingest) -> Verdict:
    n = staged.quarantine.rows
    meta: dict[str, Any] = {"quarantined": n}
    if n:
        top = sorted(staged.reasons.items(), key=lambda kv: -kv[1])[:5]
        meta["top_reasons"] = [{"reason": r, "lines": k} for r, k in top]
        meta["first_lines"] = _sample(staged.quarantine_sample.select("file", "line", "reason"))
    return Verdict(
        "raw_quarantine",
        n == 0,
        WARN,
        f"{n} line(s) quarantined" if n else "nothing quarantined",
        meta,
    )


# ----------------------------------------------------------------------------- book_checkpoint


def checkpoint_checks(
    book: Book, counters: ReplayCounters, t: Thresholds, started_from: Book | None = None
) -> list[Verdict]:
    """The end-of-day book's checks; crossed books and snapshot mismatches are judged by Gate
    A0's counted rule with the venue's thresholds ``t`` (``integrity.counted_checks``)."""
    import numpy as np

    # a day that applied nothing, or only messages older than its D-1 book, is not that day
    problems = continuation_failures(counters.to_dict(), started_from)
    if np.any(np.diff(book.bid_price) >= 0):
        problems.append("bid prices not strictly descending")
    if np.any(np.diff(book.ask_price) <= 0):
        problems.append("ask prices not strictly ascending")
    if np.any(book.bid_size <= 0) or np.any(book.ask_size <= 0):
        problems.append("non-positive size in the book")
    crossed_end = bool(
        book.is_valid
        and len(book.bid_price)
        and len(book.ask_price)
        and book.bid_price[0] >= book.ask_price[0]
    )
    if crossed_end:
        problems.append("book crossed at the end of the day")
    counted = counted_checks(counters, t, ("crossed", "snapshot_mismatches"))
    problems += [x.line() for x in counted.values() if x.failed]
    meta = {
        "bid_levels": len(book.bid_price),
        "ask_levels": len(book.ask_price),
        "last_update_id": int(book.last_update_id),
        "crossed": counters.crossed,
        "snapshot_checks": counters.snapshot_checks,
        "snapshot_mismatches": counters.snapshot_mismatches,
    }
    return [
        Verdict(
            "checkpoint_consistent",
            not problems,
            ERROR,
            "; ".join(problems) or "end-of-day book consistent",
            meta,
        ),
        Verdict(
            "checkpoint_in_sync",
            bool(book.is_valid),
            WARN,
            "in sync at the end of the day"
            if book.is_valid
            else "out of sync at the end of the day: D+1 starts invalid until its snapshot",
            {"is_valid": bool(book.is_valid), "gaps": counters.gaps, "resyncs": counters.resyncs},
        ),
    ]


# ----------------------------------------------------------------------------- book_snapshots


def snapshot_checks(
    snapshots: pl.LazyFrame,
    counters: ReplayCounters,
    instrument: Instrument,
    depth: int,
    comparisons: list[ExactComparison],
    t: Thresholds,
) -> list[Verdict]:
    """Checks of a staged book_snapshots file, read lazily (a few columns, never the day).

    Crossed books, unhandled gaps and snapshot mismatches are judged by Gate A0's counted rule
    with the venue's thresholds ``t`` (``integrity.counted_checks``), as ``verify`` and
    ``gate_a`` judge them; a crossed row left in the output fails always (A0
    ``crossed_in_output``).
    """
    out = []
    want = schemas.book_snapshots(instrument, depth)
    got = snapshots.collect_schema()
    problems = []
    if list(got.names()) != list(want.names()) or any(got[c] != t for c, t in want.items()):
        problems.append(f"snapshots: schema differs from book_snapshots ({dict(got)})"[:300])
    # Rows are in processing order (buffered diffs replay after a resync), so msg_id may repeat
    # or step back; the in-sync book's update id may not.
    row = (
        snapshots.select(
            pl.len().alias("rows"),
            (pl.col("last_update_id").filter(pl.col("is_valid")).diff() < 0)
            .sum()
            .alias("backwards"),
            (pl.col("is_valid") & (pl.col("bid_price_1") >= pl.col("ask_price_1")))
            .sum()
            .alias("crossed"),
        )
        .collect(engine="streaming")
        .row(0, named=True)
    )
    rows, crossed = int(row["rows"]), int(row["crossed"] or 0)
    if rows != counters.rows:
        problems.append(f"{rows} rows but the replay reports {counters.rows}")
    if row["backwards"]:
        problems.append("last_update_id goes backwards on in-sync rows")
    out.append(
        Verdict(
            "snapshots_schema",
            not problems,
            ERROR,
            "; ".join(problems)[:500] or "schema ok",
            {"rows": rows, "problems": len(problems)},
        )
    )

    first_crossed = (
        snapshots.filter(pl.col("is_valid") & (pl.col("bid_price_1") >= pl.col("ask_price_1")))
        .select("msg_id", "last_update_id")
        .head(5)
        .collect()
        if crossed
        else None
    )
    counted = counted_checks(counters, t, ("crossed", "unhandled_gaps", "snapshot_mismatches"))
    out.append(
        Verdict(
            "no_crossed_book",
            crossed == 0 and not counted["crossed"].failed,
            ERROR,
            f"{crossed} crossed valid row(s) in the output, {counters.crossed} valid book(s) "
            f"crossed before repair (at most {counted['crossed'].limit:g})"
            if crossed or counters.crossed
            else "never crossed while in sync",
            {
                "crossed_valid_rows": crossed,
                "crossed": counters.crossed,
                "max_crossed": counted["crossed"].limit,
                **({"first_crossed": _sample(first_crossed)} if first_crossed is not None else {}),
            },
        )
    )

    unhandled = counted["unhandled_gaps"]
    out.append(
        Verdict(
            "no_unhandled_gap",
            not unhandled.failed,
            ERROR,
            (
                f"{int(unhandled.value)} unhandled gap(s) (at most {unhandled.limit:g}): "
                f"{counters.gaps} gap(s), {counters.resyncs} resync(s), "
                f"{counters.snapshot_mismatches} snapshot mismatch(es), "
                f"out of sync at end: {bool(counters.unsynced_at_end)}"
            ),
            {
                "unhandled_gaps": int(unhandled.value),
                "max_unhandled_gaps": unhandled.limit,
                "gaps": counters.gaps,
                "resyncs": counters.resyncs,
                "unsynced_at_end": counters.unsynced_at_end,
                "invalid_rows": counters.invalid_rows,
            },
        )
    )

    mismatches = counted["snapshot_mismatches"]
    out.append(
        Verdict(
            "opening_book_agrees",
            not mismatches.failed,
            ERROR,
            f"{counters.snapshot_mismatches} of {counters.snapshot_checks} aligned REST "
            f"snapshots differ from the carried book (at most {mismatches.limit:g})",
            {
                "snapshot_checks": counters.snapshot_checks,
                "snapshot_mismatches": counters.snapshot_mismatches,
                "max_snapshot_mismatches": mismatches.limit,
            },
        )
    )

    meta: dict[str, Any] = golden_counts(comparisons)
    records, compared = meta["golden_records"], meta["golden_compared"]
    mismatched = meta["golden_mismatched"]
    for c in comparisons:
        meta[f"{c.kind}_compared"] = c.compared
        meta[f"{c.kind}_mismatched"] = c.mismatched
        if c.mismatched:
            meta[f"{c.kind}_first_mismatch"] = _sample(c.mismatches, 3)
    if mismatched:
        golden = Verdict(
            "golden_exact",
            False,
            ERROR,
            f"{mismatched} of {compared} aligned golden records differ",
            meta,
        )
    elif records and not compared:
        golden = Verdict(
            "golden_exact",
            False,
            WARN,
            f"none of {records} golden records aligned with a valid book row: nothing proven",
            meta,
        )
    else:
        golden = Verdict(
            "golden_exact", True, ERROR, f"{compared} aligned golden records all equal", meta
        )
    out.append(golden)
    return out

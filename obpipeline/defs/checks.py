"""Invariant checks as pure functions over the frames an asset is about to write.

Each returns ``Outcome``s; the assets run them *before* writing (a blocking ERROR means the day
is not written and the run fails) and emit them as partitioned asset-check evaluations. The hard
invariants are Polars expressions (~0.1 s a day); the declarative Great Expectations suites are in
``obpipeline.defs.expectations`` and run as separate check steps over the written files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from obpipeline import schemas
from obpipeline.book.stream import Book, ReplayCounters
from obpipeline.fidelity.golden import GoldenComparison
from obpipeline.instruments import Instrument
from obpipeline.sources.binance import Capture

ERROR = "ERROR"
WARN = "WARN"


@dataclass
class Outcome:
    name: str
    passed: bool
    severity: str = ERROR
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def blocks(self) -> bool:
        """A failed ERROR check stops the day: its data is not written, downstream does not run."""
        return not self.passed and self.severity == ERROR


# Check names and what they guard, per asset (the specs are built from these).
RAW_CHECKS = {
    "raw_schema": "canonical schema of every frame; prices > 0, sizes >= 0, sides, id order",
    "raw_id_chain": "update-id chain (pu / U) per venue rule: gaps must be followed by a snapshot",
    "raw_quarantine": "no capture line quarantined (warning: quarantined lines are kept aside)",
}
CHECKPOINT_CHECKS = {
    "checkpoint_consistent": "end-of-day book sorted, positive, not crossed; carried book agreed",
    "checkpoint_in_sync": "the day ended in sync (warning: D+1 then needs a snapshot)",
}
SNAPSHOT_CHECKS = {
    "snapshots_schema": "book_snapshots schema, one row per processed message, ids in order",
    "no_crossed_book": "no crossed or locked book while in sync (before or after repair)",
    "no_unhandled_gap": "every sequence gap resynced by a snapshot; in sync at the end of day",
    "opening_book_agrees": "REST snapshots aligned with the carried book are equal to it",
    "golden_exact": "every golden record aligned by update id equals the book (Gate A1)",
}


def _sample(frame: pl.DataFrame, n: int = 5) -> list[dict[str, Any]]:
    return [{k: str(v) for k, v in row.items()} for row in frame.head(n).iter_rows(named=True)]


def _schema_problems(frame: pl.DataFrame, schema: pl.Schema, name: str) -> list[str]:
    try:
        schemas.conform(frame, schema, name)
    except ValueError as exc:
        return [str(exc)]
    extra = [c for c in frame.columns if c not in schema.names()]
    return [f"{name}: unexpected columns {extra}"] if extra else []


# ----------------------------------------------------------------------------- raw_book_events


def raw_checks(capture: Capture, depth: int) -> list[Outcome]:
    inst = capture.instrument
    return [
        raw_schema(capture, depth),
        raw_id_chain(capture.events, inst),
        raw_quarantine(capture.quarantine),
    ]


def raw_schema(capture: Capture, depth: int) -> Outcome:
    inst = capture.instrument
    problems = [
        *_schema_problems(capture.events, schemas.raw_book_events(inst), "raw_book_events"),
        *_schema_problems(capture.golden_bbo, schemas.golden_bbo(inst), "golden_bbo"),
        *_schema_problems(capture.golden_depth, schemas.golden_depth(inst, depth), "golden_depth"),
        *_schema_problems(capture.trades, schemas.trades(inst), "trades"),
        *_schema_problems(capture.quarantine, schemas.quarantine(), "quarantine"),
    ]
    counts: dict[str, int] = {}
    if not problems:
        ev = capture.events
        level = pl.col("side").is_not_null()
        row = ev.select(
            (
                pl.any_horizontal(
                    pl.col(c).is_null()
                    for c in (
                        "ts_event",
                        "ts_local",
                        "msg_id",
                        "first_update_id",
                        "last_update_id",
                        "is_snapshot",
                    )
                )
            )
            .sum()
            .alias("null_keys"),
            (level & ~pl.col("side").is_in([schemas.BID, schemas.ASK])).sum().alias("bad_side"),
            (level & (pl.col("price").is_null() | (pl.col("price") <= 0))).sum().alias("bad_price"),
            (level & (pl.col("size").is_null() | (pl.col("size") < 0))).sum().alias("bad_size"),
            (pl.col("first_update_id") > pl.col("last_update_id")).sum().alias("u_before_U"),
            (pl.col("msg_id").diff() < 0).sum().alias("msg_id_backwards"),
            (pl.col("msg_id").diff() > 1).sum().alias("msg_id_holes"),
        ).row(0, named=True)
        counts = {k: int(v or 0) for k, v in row.items()}
        if ev.height and int(ev["msg_id"].min()) != 0:
            counts["msg_id_not_from_0"] = 1
        problems = [f"{k}: {v}" for k, v in counts.items() if v]
    return Outcome(
        "raw_schema",
        not problems,
        ERROR,
        "; ".join(problems)[:500] or "schema and value ranges ok",
        {"rows": capture.events.height, "problems": len(problems), **counts},
    )


def message_table(events: pl.DataFrame) -> pl.DataFrame:
    """One row per message (its first row): msg_id, U, u, pu, is_snapshot, ts."""
    return events.unique("msg_id", keep="first", maintain_order=True).select(
        "msg_id",
        "ts_event",
        "first_update_id",
        "last_update_id",
        "prev_update_id",
        "is_snapshot",
    )


def raw_id_chain(events: pl.DataFrame, instrument: Instrument) -> Outcome:
    """Classify every break of the update-id chain between consecutive diff messages.

    Futures: ``pu`` must equal the previous ``u``; spot: ``U`` must be the previous ``u`` + 1
    (venues with synthetic ids chain by ``pu``). A break whose ``u`` is not newer than what was
    already seen is a duplicate/stale message (the replayer drops and counts it); otherwise it is
    a gap, *handled* when a REST snapshot follows later in the day. Unhandled gaps fail (ERROR);
    handled gaps and duplicates only warn.
    """
    msgs = message_table(events).with_row_index("pos")
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
        return Outcome(
            "raw_id_chain",
            False,
            ERROR,
            f"{unhandled.height} sequence gap(s) with no snapshot after them: the book stays "
            "out of sync to the end of the day",
            meta,
        )
    if gaps.height or stale.height:
        return Outcome(
            "raw_id_chain",
            False,
            WARN,
            f"{gaps.height} gap(s) resynced by a later snapshot, "
            f"{stale.height} duplicate or stale message(s) (dropped and counted by the replay)",
            meta,
        )
    return Outcome("raw_id_chain", True, ERROR, "update-id chain complete", meta)


def raw_quarantine(quarantine: pl.DataFrame) -> Outcome:
    meta: dict[str, Any] = {"quarantined": quarantine.height}
    if quarantine.height:
        reasons = (
            quarantine.group_by("reason")
            .len()
            .sort("len", descending=True)
            .head(5)
            .iter_rows(named=True)
        )
        meta["top_reasons"] = [{"reason": r["reason"][:120], "lines": r["len"]} for r in reasons]
    return Outcome(
        "raw_quarantine",
        quarantine.height == 0,
        WARN,
        f"{quarantine.height} line(s) quarantined" if quarantine.height else "nothing quarantined",
        meta,
    )


# ----------------------------------------------------------------------------- book_checkpoint


def checkpoint_checks(book: Book, counters: ReplayCounters) -> list[Outcome]:
    import numpy as np

    problems = []
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
    if counters.crossed:
        problems.append(f"{counters.crossed} crossed book(s) while in sync")
    if counters.snapshot_mismatches:
        problems.append(f"{counters.snapshot_mismatches} REST snapshot(s) differ from the book")
    meta = {
        "bid_levels": len(book.bid_price),
        "ask_levels": len(book.ask_price),
        "last_update_id": int(book.last_update_id),
        "crossed": counters.crossed,
        "snapshot_checks": counters.snapshot_checks,
        "snapshot_mismatches": counters.snapshot_mismatches,
    }
    return [
        Outcome(
            "checkpoint_consistent",
            not problems,
            ERROR,
            "; ".join(problems) or "end-of-day book consistent",
            meta,
        ),
        Outcome(
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
    snapshots: pl.DataFrame,
    counters: ReplayCounters,
    instrument: Instrument,
    depth: int,
    comparisons: list[GoldenComparison],
) -> list[Outcome]:
    out = []
    problems = _schema_problems(snapshots, schemas.book_snapshots(instrument, depth), "snapshots")
    if snapshots.height != counters.rows:
        problems.append(f"{snapshots.height} rows but the replay reports {counters.rows}")
    # Rows are in processing order (buffered diffs replay after a resync), so msg_id may repeat
    # or step back; the in-sync book's update id may not.
    valid_ids = snapshots.filter(pl.col("is_valid"))["last_update_id"]
    if valid_ids.len() and (valid_ids.diff() < 0).any():
        problems.append("last_update_id goes backwards on in-sync rows")
    out.append(
        Outcome(
            "snapshots_schema",
            not problems,
            ERROR,
            "; ".join(problems)[:500] or "schema ok",
            {"rows": snapshots.height, "problems": len(problems)},
        )
    )

    crossed_rows = snapshots.filter(
        pl.col("is_valid") & (pl.col("bid_price_1") >= pl.col("ask_price_1"))
    )
    out.append(
        Outcome(
            "no_crossed_book",
            crossed_rows.height == 0 and counters.crossed == 0,
            ERROR,
            f"{crossed_rows.height} crossed valid row(s), {counters.crossed} uncross repair(s)"
            if crossed_rows.height or counters.crossed
            else "never crossed while in sync",
            {
                "crossed_valid_rows": crossed_rows.height,
                "uncross_repairs": counters.crossed,
                **(
                    {"first_crossed": _sample(crossed_rows.select("msg_id", "last_update_id"))}
                    if crossed_rows.height
                    else {}
                ),
            },
        )
    )

    unhandled = counters.gaps > counters.resyncs or counters.unsynced_at_end > 0
    out.append(
        Outcome(
            "no_unhandled_gap",
            not unhandled,
            ERROR,
            (
                f"{counters.gaps} gap(s), {counters.resyncs} resync(s), "
                f"out of sync at end: {bool(counters.unsynced_at_end)}"
            ),
            {
                "gaps": counters.gaps,
                "resyncs": counters.resyncs,
                "unsynced_at_end": counters.unsynced_at_end,
                "invalid_rows": counters.invalid_rows,
            },
        )
    )

    out.append(
        Outcome(
            "opening_book_agrees",
            counters.snapshot_mismatches == 0,
            ERROR,
            f"{counters.snapshot_mismatches} of {counters.snapshot_checks} aligned REST "
            "snapshots differ from the carried book",
            {
                "snapshot_checks": counters.snapshot_checks,
                "snapshot_mismatches": counters.snapshot_mismatches,
            },
        )
    )

    records = sum(c.records for c in comparisons)
    compared = sum(c.compared for c in comparisons)
    mismatched = sum(c.mismatched for c in comparisons)
    meta: dict[str, Any] = {
        "golden_records": records,
        "golden_compared": compared,
        "golden_mismatched": mismatched,
        "golden_match_rate": (compared - mismatched) / compared if compared else 0.0,
    }
    for c in comparisons:
        meta[f"{c.kind}_compared"] = c.compared
        meta[f"{c.kind}_mismatched"] = c.mismatched
        if c.mismatched:
            meta[f"{c.kind}_first_mismatch"] = _sample(c.mismatches, 3)
    if mismatched:
        golden = Outcome(
            "golden_exact",
            False,
            ERROR,
            f"{mismatched} of {compared} aligned golden records differ",
            meta,
        )
    elif records and not compared:
        golden = Outcome(
            "golden_exact",
            False,
            WARN,
            f"none of {records} golden records aligned with a valid book row: nothing proven",
            meta,
        )
    else:
        golden = Outcome(
            "golden_exact", True, ERROR, f"{compared} aligned golden records all equal", meta
        )
    out.append(golden)
    return out

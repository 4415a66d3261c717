"""Gate A0: integrity figures of one replayed day, with no reference needed.

What is measured (FIDELITY.md, Gate A0), and why each is a detector:

* **sequence gaps** and **unhandled gaps** (a gap not followed by a resync: ``unhandled_gaps``,
  the one rule the CLI and the Dagster checks use too), with every invalid interval logged: a lost message always breaks Binance's ``pu``/``U`` chain;
* **invalid seconds**: exchange time spent with an invalid book after the first sync (the
  buffering before a day's opening snapshot is reported separately: it is how Binance sync works);
* **crossed/locked before repair** (valid rows) and **uncross repairs** (all rows): each firing of
  the uncross rule means the book was wrong (0 on faithful data, hundreds per million events
  under 1 % drops in the research simulation); plus crossed rows left in the output (must be 0);
* **grid conformity** of every price and size in raw_book_events and book_snapshots, **no
  negative / zero-size / null-price levels**, levels strictly ordered away from the touch;
* **duplicates** dropped by the replayer and **quarantined** records (a corrupted value that is
  not exact on the grid is quarantined by the parser, which also breaks the chain);
* **REST snapshot checks** (the replayer's aligned full-depth comparison) and the **carried
  book**: when day D starts from the D-1 checkpoint and also has its own REST snapshot, the
  checkpoint replayed up to the snapshot's ``lastUpdateId`` must equal it, level for level
  (within the snapshot's depth: deeper levels were never published).

Inputs: the replay's own ``ReplayCounters`` when available; otherwise (reading the lake) the same
figures are derived from book_snapshots' ``is_valid`` / ``crossed_repaired`` / ``resynced`` flags.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from obpipeline import schemas
from obpipeline.book.stream import Book, ReplayCounters
from obpipeline.fidelity.config import Thresholds
from obpipeline.fidelity.frames import Events, Frame, Table, events_of, table_of
from obpipeline.fidelity.gates import FAIL, PASS, SKIPPED, GateResult
from obpipeline.instruments import Instrument

NS = 1_000_000_000


@dataclass
class CarriedBookCheck:
    """The D-1 checkpoint carried to the first REST snapshot of D, compared at full depth."""

    status: str  # "compared", "no_checkpoint", "no_snapshot", "not_aligned"
    snapshot_update_id: int | None = None
    levels_compared: int = 0
    levels_mismatched: int = 0
    detail: str = ""
    ts_ns: int | None = None
    msg_id: int | None = None


#: The A0 checks decided by counting alone (the replay's counters, the ingest's quarantine): the
#: figure, its threshold field and what a failure says. Gate A0 judges them (``results``) for
#: ``gate_a`` and the report, and ``obpipeline verify``, which has no lake to read the other
#: figures from, judges a capture's summary with them (``counted_failures``), and so do the
#: Dagster checks of book_snapshots and book_checkpoint (``counted_checks``): one rule, one
#: verdict. A repair that fired (a resynced gap, a dropped duplicate diff) still fails the day:
#: the book may be right, but the capture is not what the exchange published (FIDELITY.md, Gate
#: A0; Gate B's duplicate and drop mutants must fail Gate A). Raise the threshold where a
#: venue or recorder is known to do it.
COUNTED: dict[str, tuple[str, str]] = {
    "gaps": ("max_gaps", "sequence gap(s)"),
    "unhandled_gaps": (
        "max_unhandled_gaps",
        "unhandled sequence gap(s) (not resynced, or out of sync at the end of the day)",
    ),
    "crossed": ("max_crossed", "crossed/locked valid book(s)"),
    "duplicates": ("max_duplicates", "duplicate diff(s) dropped"),
    "quarantined": ("max_quarantined", "record(s) quarantined by the parser"),
    "snapshot_mismatches": (
        "max_snapshot_mismatches",
        "aligned REST snapshot(s) differ from the book",
    ),
}


@dataclass(frozen=True)
class Counted:
    """One ``COUNTED`` check judged: the figure, its limit and what a failure says."""

    name: str
    value: float
    limit: float
    what: str

    @property
    def failed(self) -> bool:
        return self.value > self.limit

    def line(self) -> str:
        return f"A0 {self.name}: {self.what} (at most {self.limit:g})"


def _counted(figures: Mapping[str, float], name: str, t: Thresholds) -> Counted:
    limit_field, what = COUNTED[name]
    value = figures[name]
    return Counted(name, value, getattr(t, limit_field), f"{int(value)} {what}")


def counted_checks(
    counts: ReplayCounters | Mapping[str, float],
    t: Thresholds,
    names: Iterable[str] = tuple(COUNTED),
) -> dict[str, Counted]:
    """The ``COUNTED`` checks ``names`` judged on a day's (or a capture's summed) counts.

    Every judge of a day decides these the same way with the venue's thresholds: Gate A0,
    ``verify`` (``counted_failures``) and the Dagster checks of book_snapshots and
    book_checkpoint, so that an override changes every verdict alike.
    """
    c = counts.to_dict() if isinstance(counts, ReplayCounters) else counts
    figures = {**c, "unhandled_gaps": unhandled_gaps(c)}
    return {name: _counted(figures, name, t) for name in names}


def counted_failures(counts: ReplayCounters | Mapping[str, float], t: Thresholds) -> list[str]:
    """The ``COUNTED`` checks a day's (or a capture's summed) counts fail, one line each.

    ``counts``: replay counters plus ``quarantined`` (a ``verify`` summary carries both).
    """
    return [x.line() for x in counted_checks(counts, t).values() if x.failed]


@dataclass
class IntegrityReport:
    """A0 figures of one day; ``results`` turns them into verdicts."""

    figures: dict[str, float]
    invalid_intervals: pl.DataFrame  # start_ns, end_ns, seconds, rows, kind (startup | gap)
    carried: CarriedBookCheck
    first: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)

    def results(self, t: Thresholds) -> list[GateResult]:
        f = self.figures

        def check(name: str, value: float, limit: float, detail: str = "") -> GateResult:
            bad = value > limit
            ts, msg = self.first.get(name, (None, None))
            return GateResult(
                "A0",
                name,
                FAIL if bad else PASS,
                value,
                limit,
                detail if bad else "",
                first_failure_ns=ts if bad else None,
                first_failure_msg_id=msg if bad else None,
            )

        def counted(name: str) -> GateResult:
            x = _counted(f, name, t)
            return check(name, x.value, x.limit, x.what)

        out = [
            counted("gaps"),
            counted("unhandled_gaps"),
            check(
                "gap_invalid_fraction",
                f["gap_invalid_fraction"],
                t.max_gap_invalid_fraction,
                f"{f['gap_invalid_seconds']:.1f} s invalid after the first sync",
            ),
            counted("crossed"),
            check(
                "uncross_repairs",
                f["uncross_repairs"],
                t.max_uncross_repairs,
                "uncross repairs fired",
            ),
            check(
                "crossed_in_output",
                f["crossed_in_output"],
                0,
                "valid output rows still crossed or locked",
            ),
            check("off_grid", f["off_grid"], t.max_off_grid, "prices/sizes off the tick/lot grid"),
            check(
                "negative_or_nan",
                f["negative_or_nan"],
                t.max_negative_or_nan,
                "negative, zero-size, null or unordered levels",
            ),
            counted("duplicates"),
            counted("quarantined"),
            counted("snapshot_mismatches"),
            check(
                "snapshot_consistency",
                f["snapshot_inconsistent_levels"],
                t.max_snapshot_inconsistencies,
                "REST snapshot levels disagree with the diffs up to its lastUpdateId",
            ),
        ]
        out[-1].metrics = {"levels_checked": f["snapshot_levels_checked"]}
        c = self.carried
        if c.status == "compared":
            bad = c.levels_mismatched > t.max_carried_book_mismatches
            out.append(
                GateResult(
                    "A0",
                    "carried_book",
                    FAIL if bad else PASS,
                    c.levels_mismatched,
                    t.max_carried_book_mismatches,
                    f"{c.levels_mismatched} of {c.levels_compared} levels differ" if bad else "",
                    first_failure_ns=c.ts_ns if bad else None,
                    first_failure_msg_id=c.msg_id if bad else None,
                    metrics={"levels_compared": c.levels_compared},
                )
            )
        else:
            out.append(GateResult("A0", "carried_book", SKIPPED, detail=c.detail or c.status))
        out.append(
            GateResult("A0", "checksum", SKIPPED, detail="the venue publishes no book checksum")
        )
        # the figures that are reported, not judged, ride on the gaps check
        out[0].metrics = {
            k: v
            for k, v in f.items()
            if k
            in (
                "messages",
                "rows",
                "resyncs",
                "stale",
                "invalid_rows",
                "startup_invalid_seconds",
                "gap_invalid_seconds",
                "span_seconds",
                "snapshot_checks",
                "unsynced_at_end",
                "values_checked",
            )
        }
        return out


# --------------------------------------------------------------------------------------------
# figures from book_snapshots


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, stop) indices of runs of True."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def invalid_intervals(snapshots: pl.DataFrame, day_end_ns: int | None = None) -> pl.DataFrame:
    """Runs of invalid rows as intervals of exchange time (from the first invalid row to the next
    valid row, or the day's end); ``kind`` is ``startup`` before the first valid row, else ``gap``.
    """
    schema = {
        "start_ns": pl.Int64,
        "end_ns": pl.Int64,
        "seconds": pl.Float64,
        "rows": pl.Int64,
        "first_msg_id": pl.Int64,
        "kind": pl.String,
    }
    n = snapshots.height
    if n == 0:
        return pl.DataFrame(schema=schema)
    valid = snapshots["is_valid"].fill_null(False).to_numpy()
    t = np.maximum.accumulate(snapshots["ts_event"].dt.epoch("ns").to_numpy())
    msg = snapshots["msg_id"].to_numpy()
    starts, stops = _runs(~valid)
    end_of_day = int(t[-1]) if day_end_ns is None else max(int(day_end_ns), int(t[-1]))
    first_valid = int(np.argmax(valid)) if valid.any() else n
    rows = []
    for a, b in zip(starts, stops, strict=True):
        end = int(t[b]) if b < n else end_of_day
        rows.append(
            {
                "start_ns": int(t[a]),
                "end_ns": end,
                "seconds": (end - int(t[a])) / NS,
                "rows": int(b - a),
                "first_msg_id": int(msg[a]),
                "kind": "startup" if a < first_valid else "gap",
            }
        )
    return pl.DataFrame(rows, schema=schema)


def unhandled_gaps(counters: ReplayCounters | Mapping[str, int]) -> int:
    """Sequence gaps a replay did not recover from: the one rule, for every judge of a day.

    Every gap takes a synced book out of sync, and only a REST snapshot brings it back (a
    *resync*). But a snapshot that disagrees with a synced book (a *snapshot mismatch*) also
    resyncs, at once, without any gap: that resync recovered no gap, so it must not pay for one
    (``gaps > resyncs`` would let a mismatch hide an unrecovered gap). Hence
    ``gaps - (resyncs - snapshot_mismatches)``; and a book out of sync at the end of the day
    (which the next day would start from) is at least one unhandled gap, also when no gap was
    counted because the book never synced. Counters summed over consecutive days obey the
    same rule, with ``unsynced_at_end`` of the last day.
    """
    c = counters.to_dict() if isinstance(counters, ReplayCounters) else counters
    gap_resyncs = max(0, int(c["resyncs"]) - int(c["snapshot_mismatches"]))
    unhandled = max(0, int(c["gaps"]) - gap_resyncs)
    return max(unhandled, 1) if c["unsynced_at_end"] else unhandled


def _derived_counters(snapshots: pl.DataFrame) -> dict[str, int]:
    """Replay counters recovered from book_snapshots flags (when the replay's are not at hand)."""
    valid = snapshots["is_valid"].fill_null(False).to_numpy()
    crossed = snapshots["crossed_repaired"].fill_null(False).to_numpy()
    resynced = snapshots["resynced"].fill_null(False).to_numpy()
    ever = np.maximum.accumulate(valid) if valid.size else valid
    prev_valid = np.concatenate(([False], valid[:-1])) if valid.size else valid
    # a gap: a valid book followed by an invalid row
    gaps = int((~valid & prev_valid).sum())
    # a resync: a snapshot row that brings the book back after it was valid once
    prev_ever = np.concatenate(([False], ever[:-1])) if ever.size else ever
    resyncs = int((resynced & prev_ever & ~prev_valid).sum()) if valid.size else 0
    return {
        "messages": snapshots.height,
        "rows": snapshots.height,
        "gaps": gaps,
        "resyncs": resyncs,
        "crossed": int((crossed & valid).sum()),
        "duplicates": 0,
        "stale": 0,
        "invalid_rows": int((~valid).sum()),
        "snapshot_checks": 0,
        "snapshot_mismatches": 0,
        "unsynced_at_end": int(valid.size > 0 and not valid[-1]),
    }


def _first(snapshots: pl.DataFrame, mask: pl.Expr) -> tuple[int | None, int | None]:
    hit = snapshots.filter(mask).head(1)
    if hit.height == 0:
        return None, None
    return int(hit["ts_event"].dt.epoch("ns")[0]), int(hit["msg_id"][0])


# --------------------------------------------------------------------------------------------
# grid conformity and value sanity


def _grid_violations(
    frame: pl.DataFrame, price_cols: list[str], size_cols: list[str], inst: Instrument
) -> tuple[int, int, pl.Expr]:
    """(off-grid values, values checked, row mask of violations) over the given Decimal columns."""
    tick, lot = inst.tick_units, inst.lot_units
    ps, ss = inst.price_scale, inst.size_scale
    bad_exprs = []
    off = 0
    checked = 0
    for cols, unit, scale in ((price_cols, tick, ps), (size_cols, lot, ss)):
        for c in cols:
            dtype = frame.schema[c]
            if not isinstance(dtype, pl.Decimal):
                raise TypeError(f"{c}: expected Decimal, got {dtype}")
            # rescale to the instrument's scale, then test the multiple of the tick / lot
            raw = pl.col(c).to_physical().cast(pl.Int64)
            if dtype.scale != scale:
                factor = 10 ** abs(dtype.scale - scale)
                exact = raw % factor == 0 if dtype.scale > scale else pl.lit(True)
                raw = raw // factor if dtype.scale > scale else raw * factor
            else:
                exact = pl.lit(True)
            bad = pl.col(c).is_not_null() & (~exact | (raw % unit != 0))
            bad_exprs.append(bad)
    if not bad_exprs:
        return 0, 0, pl.lit(False)
    counts = frame.select(
        pl.sum_horizontal([e.cast(pl.Int64).sum() for e in bad_exprs]).alias("off"),
        pl.sum_horizontal([pl.col(c).is_not_null().sum() for c in price_cols + size_cols]).alias(
            "n"
        ),
    ).row(0)
    off, checked = int(counts[0] or 0), int(counts[1] or 0)
    return off, checked, pl.any_horizontal(bad_exprs)


def _book_sanity(snapshots: pl.DataFrame) -> tuple[int, pl.Expr]:
    """Negative or zero sizes of present levels, null prices with sizes, non-positive prices,
    and levels not strictly ordered away from the touch (in valid rows)."""
    depth = schemas.depth_of(snapshots)
    bp, bs, ap, asz = schemas.level_names(depth)
    bad = []
    for p, s in zip(bp + ap, bs + asz, strict=True):
        bad.append(pl.col(p).is_not_null() & (pl.col(s).is_null() | (pl.col(s) <= 0)))
        bad.append(pl.col(p).is_null() & pl.col(s).is_not_null())
        bad.append(pl.col(p) <= 0)
    for i in range(1, depth):
        bad.append(pl.col(bp[i]) >= pl.col(bp[i - 1]))
        bad.append(pl.col(ap[i]) <= pl.col(ap[i - 1]))
    mask = pl.col("is_valid") & pl.any_horizontal([b.fill_null(False) for b in bad])
    return int(snapshots.select(mask.sum()).item() or 0), mask


def _event_sanity(events: pl.DataFrame) -> tuple[int, pl.Expr]:
    """Negative sizes, non-positive prices, a size without a price (raw_book_events)."""
    mask = (
        (pl.col("size") < 0)
        | (pl.col("price") <= 0)
        | (pl.col("price").is_null() & pl.col("size").is_not_null())
        | (pl.col("price").is_not_null() & pl.col("side").is_null())
    ).fill_null(False)
    return int(events.select(mask.sum()).item() or 0), mask


# --------------------------------------------------------------------------------------------
# carried book vs the opening snapshot


def carried_book_check(
    checkpoint: Book | None,
    events: Frame | Events | None,
    instrument: Instrument,
    depth: int = schemas.DEFAULT_DEPTH,
    engine: str | None = None,
) -> CarriedBookCheck:
    """Replay the checkpoint up to the day's first REST snapshot and compare at full depth.

    Only the diffs that arrive before the snapshot and end at or before its ``lastUpdateId`` are
    replayed; when the chain does not end exactly at that id (the id falls inside a message, or
    the checkpoint is newer than the snapshot) the books cannot be compared and say so.
    """
    from obpipeline import book as replay_mod

    ev = events_of(events)
    if checkpoint is None:
        return CarriedBookCheck("no_checkpoint", detail="day did not start from a checkpoint")
    if ev is None or ev.height == 0:
        return CarriedBookCheck("no_snapshot", detail="no events")
    snaps = ev.heads.filter(pl.col("is_snapshot"))
    if snaps.height == 0:
        return CarriedBookCheck("no_snapshot", detail="the day has no REST snapshot of its own")
    snap_msg = int(snaps["msg_id"][0])
    L = int(snaps["last_update_id"][0])
    ts_ns = int(snaps["ts_event"].dt.epoch("ns")[0])
    if not checkpoint.is_valid:
        return CarriedBookCheck("not_aligned", L, detail="the carried checkpoint is not valid")
    if checkpoint.last_update_id > L:
        return CarriedBookCheck(
            "not_aligned", L, detail="the snapshot is older than the carried book"
        )
    prefix = ev.rows(
        (pl.col("msg_id") < snap_msg) & ~pl.col("is_snapshot") & (pl.col("last_update_id") <= L)
    )
    if prefix.height:
        kwargs = {"engine": engine} if engine else {}
        result = replay_mod.replay(prefix, instrument, depth, checkpoint, **kwargs)
        carried = result.checkpoint
    else:
        carried = checkpoint
    del prefix
    if not carried.is_valid or carried.last_update_id != L:
        return CarriedBookCheck(
            "not_aligned",
            L,
            detail=f"carried book ends at id {carried.last_update_id}, snapshot is at {L}",
        )
    snap = ev.rows((pl.col("msg_id") == snap_msg) & pl.col("side").is_not_null())
    price, _ = schemas.to_unscaled(snap["price"])
    size, _ = schemas.to_unscaled(snap["size"])
    side = snap["side"].to_numpy()
    keep = size > 0
    sb = dict(
        zip(
            price[keep & (side == schemas.BID)].tolist(),
            size[keep & (side == schemas.BID)].tolist(),
            strict=True,
        )
    )
    sa = dict(
        zip(
            price[keep & (side == schemas.ASK)].tolist(),
            size[keep & (side == schemas.ASK)].tolist(),
            strict=True,
        )
    )
    cb = dict(zip(carried.bid_price.tolist(), carried.bid_size.tolist(), strict=True))
    ca = dict(zip(carried.ask_price.tolist(), carried.ask_size.tolist(), strict=True))
    # only the price range the snapshot covers: deeper levels were never published
    if sb:
        lo = min(sb)
        cb = {p: q for p, q in cb.items() if p >= lo}
    if sa:
        hi = max(sa)
        ca = {p: q for p, q in ca.items() if p <= hi}
    compared = len(set(sb) | set(cb)) + len(set(sa) | set(ca))
    bad = sum(1 for p in set(sb) | set(cb) if sb.get(p) != cb.get(p)) + sum(
        1 for p in set(sa) | set(ca) if sa.get(p) != ca.get(p)
    )
    return CarriedBookCheck("compared", L, compared, bad, "", ts_ns, snap_msg)


# --------------------------------------------------------------------------------------------
# REST snapshots against the diffs they claim to include


@dataclass
class SnapshotConsistency:
    """REST snapshots vs the absolute sizes the diff stream published up to their id."""

    snapshots: int = 0  # snapshots with at least one comparable level
    levels_compared: int = 0
    levels_mismatched: int = 0
    first_ns: int | None = None
    first_msg_id: int | None = None


def snapshot_consistency(
    events: Frame | Events | None, rule: str, window_messages: int = 20_000
) -> SnapshotConsistency:
    """Does each REST snapshot agree with the diff stream at the levels the diffs set?

    Diff sizes are absolute: the last size a diff with ``u <= L`` gave a level is that level's
    size in the book at ``L``, unless a later message touched it. So for a snapshot claiming
    ``lastUpdateId = L``, every level set by the diffs of the unbroken chain ending at ``L``
    (within the snapshot's price range, and not touched by a message straddling ``L``) must have
    that size in the snapshot (0 = absent). This needs no book and no other reference, and it
    sees the one fault that leaves the replayed book consistent with itself: a snapshot whose
    content is older than the id it claims (the diffs between the two ids are then dropped as
    stale by the sync procedure, and a real day-1 capture has no other snapshot to compare).
    """
    out = SnapshotConsistency()
    ev = events_of(events)
    if ev is None or not ev.has_snapshots:
        return out
    heads = ev.heads.select(
        "msg_id",
        pl.col("first_update_id").alias("U"),
        pl.col("last_update_id").alias("u"),
        pl.col("prev_update_id").alias("pu"),
        "is_snapshot",
        pl.col("ts_event").dt.epoch("ns").alias("ts_ns"),
    ).with_row_index("arrival")
    diffs = heads.filter(~pl.col("is_snapshot")).sort("u", "arrival")
    if diffs.height == 0:
        return out
    if rule == "binance_futures":
        chained = pl.col("pu") == pl.col("u").shift(1)
    else:
        chained = pl.col("U") == pl.col("u").shift(1) + 1
    diffs = diffs.with_columns(
        (~chained.fill_null(False)).cum_sum().alias("segment"),
        pl.int_range(pl.len()).alias("pos"),
    )
    u_arr = diffs["u"].to_numpy()
    seg = diffs["segment"].to_numpy()
    is_level = ~pl.col("is_snapshot") & pl.col("side").is_not_null()
    level_cols = ["msg_id", "side", "price", "size"]
    for snap in heads.filter(pl.col("is_snapshot")).iter_rows(named=True):
        L = int(snap["u"])
        last = int(np.searchsorted(u_arr, L, side="right")) - 1  # last diff with u <= L
        if last < 0:
            continue
        straddle: set[int] = set()
        if u_arr[last] != L:
            nxt = last + 1
            if nxt >= len(u_arr) or seg[nxt] != seg[last]:
                continue  # a gap around L: the sizes at L are not known from the diffs
            straddle = {int(diffs["msg_id"][nxt])}
        first = max(int(np.searchsorted(seg, seg[last], side="left")), last - window_messages + 1)
        window = diffs.slice(first, last - first + 1).select("msg_id", "pos")
        # only the window's messages are read (a msg_id range pushed into the scan)
        lo, hi = window["msg_id"].min(), window["msg_id"].max()
        levels = ev.rows(is_level & pl.col("msg_id").is_between(lo, hi), level_cols)
        latest = (
            levels.join(window, on="msg_id", how="inner", maintain_order="left")
            .with_row_index("row")
            .sort("pos", "row")
            .unique(["side", "price"], keep="last")
            .select("side", "price", pl.col("size").alias("diff_size"))
        )
        if straddle:
            touched = ev.rows(is_level & pl.col("msg_id").is_in(list(straddle)), ["side", "price"])
            latest = latest.join(touched, on=["side", "price"], how="anti")
        book = ev.rows(
            (pl.col("msg_id") == snap["msg_id"]) & pl.col("side").is_not_null(),
            ["side", "price", "size"],
        ).rename({"size": "snap_size"})
        if book.height == 0 or latest.height == 0:
            continue
        lo_bid = book.filter(pl.col("side") == schemas.BID)["price"].min()
        hi_ask = book.filter(pl.col("side") == schemas.ASK)["price"].max()
        in_range = ((pl.col("side") == schemas.BID) & (pl.col("price") >= lo_bid)) | (
            (pl.col("side") == schemas.ASK) & (pl.col("price") <= hi_ask)
        )
        cmp = latest.filter(in_range.fill_null(False)).join(book, on=["side", "price"], how="left")
        zero = pl.lit(0).cast(cmp.schema["diff_size"])
        bad = cmp.filter(pl.col("snap_size").fill_null(zero) != pl.col("diff_size"))
        if cmp.height:
            out.snapshots += 1
            out.levels_compared += cmp.height
            out.levels_mismatched += bad.height
            if bad.height and out.first_ns is None:
                out.first_ns = int(snap["ts_ns"])
                out.first_msg_id = int(snap["msg_id"])
    return out


# --------------------------------------------------------------------------------------------
# the day


BOOK_FLAGS = ["ts_event", "is_valid", "msg_id", "crossed_repaired", "resynced"]


@dataclass
class ValueChecks:
    """Grid conformity and value sanity of one dataset, summed batch by batch."""

    off_grid: int = 0
    checked: int = 0
    insane: int = 0
    first_off_grid: tuple[int | None, int | None] = (None, None)
    first_insane: tuple[int | None, int | None] = (None, None)

    def add(self, frame: pl.DataFrame, off: int, n: int, grid_mask: pl.Expr, insane: int,
            insane_mask: pl.Expr) -> None:  # fmt: skip
        self.off_grid, self.checked, self.insane = (
            self.off_grid + off, self.checked + n, self.insane + insane
        )  # fmt: skip
        if off and self.first_off_grid[0] is None:
            self.first_off_grid = _first(frame, grid_mask)
        if insane and self.first_insane[0] is None:
            self.first_insane = _first(frame, insane_mask)


def book_value_checks(book: Table, instrument: Instrument) -> ValueChecks:
    """Every level of book_snapshots on the grid and sane, one batch of rows at a time."""
    depth = schemas.depth_of(book.schema)
    bp, bs, ap, asz = schemas.level_names(depth)
    out = ValueChecks()
    for b in book.batches(["ts_event", "msg_id", "is_valid", *bp, *bs, *ap, *asz]):
        off, n, grid_mask = _grid_violations(b, bp + ap, bs + asz, instrument)
        insane, insane_mask = _book_sanity(b)
        out.add(b, off, n, grid_mask, insane, insane_mask)
    return out


def event_value_checks(events: Events, instrument: Instrument) -> ValueChecks:
    """Every price and size of raw_book_events on the grid and sane, batch by batch."""
    out = ValueChecks()
    for b in events.batches(["ts_event", "msg_id", "side", "price", "size"]):
        off, n, grid_mask = _grid_violations(b, ["price"], ["size"], instrument)
        insane, insane_mask = _event_sanity(b)
        out.add(b, off, n, grid_mask, insane, insane_mask)
    return out


def integrity(
    snapshots: Frame | Table,
    instrument: Instrument,
    events: Frame | Events | None = None,
    counters: ReplayCounters | dict | None = None,
    checkpoint_in: Book | None = None,
    quarantined: int = 0,
    day_end_ns: int | None = None,
) -> IntegrityReport:
    """A0 figures for one day's replay (see the module docstring).

    Frames or parquet paths: every row is needed only for the flags, times and L1 prices; the
    level columns are checked batch by batch (``book_value_checks``), so memory stays bounded.
    """
    book = table_of(snapshots)
    ev = events_of(events)
    small = book.rows(None, [*BOOK_FLAGS, "bid_price_1", "ask_price_1"])
    c = counters.to_dict() if isinstance(counters, ReplayCounters) else counters
    derived = _derived_counters(small)
    c = {**derived, **(c or {})}
    intervals = invalid_intervals(small, day_end_ns)
    startup = float(intervals.filter(pl.col("kind") == "startup")["seconds"].sum())
    gap_secs = float(intervals.filter(pl.col("kind") == "gap")["seconds"].sum())
    if small.height:
        t = small["ts_event"].dt.epoch("ns")
        span = (max(int(t.max()), day_end_ns or 0) - int(t.min())) / NS
    else:
        span = 0.0
    unhandled = unhandled_gaps(c)

    depth = schemas.depth_of(book.schema)
    values_b = book_value_checks(book, instrument)
    bid1, ask1 = pl.col("bid_price_1"), pl.col("ask_price_1")
    crossed_out_mask = pl.col("is_valid") & (bid1 >= ask1).fill_null(False)
    crossed_out = int(small.select(crossed_out_mask.sum()).item() or 0)
    values_e = ValueChecks()
    first: dict[str, tuple[int | None, int | None]] = {}
    if ev is not None and ev.height:
        values_e = event_value_checks(ev, instrument)
        first["off_grid"] = values_e.first_off_grid
        first["negative_or_nan"] = values_e.first_insane
    if "off_grid" not in first or first["off_grid"][0] is None:
        first["off_grid"] = values_b.first_off_grid
    if "negative_or_nan" not in first or first["negative_or_nan"][0] is None:
        first["negative_or_nan"] = values_b.first_insane

    valid = pl.col("is_valid")
    prev_valid = pl.col("is_valid").shift(1).fill_null(False)
    first["gaps"] = _first(small, ~valid & prev_valid)
    first["unhandled_gaps"] = first["gaps"]
    first["gap_invalid_fraction"] = first["gaps"]
    first["crossed"] = _first(small, valid & pl.col("crossed_repaired"))
    first["uncross_repairs"] = _first(small, pl.col("crossed_repaired"))
    first["crossed_in_output"] = _first(small, crossed_out_mask)
    first["snapshot_mismatches"] = _first(small, pl.col("resynced") & prev_valid)
    if ev is not None and c.get("duplicates"):
        first["duplicates"] = _first_duplicate(ev)

    figures: dict[str, float] = {
        "messages": c["messages"],
        "rows": c["rows"],
        "gaps": c["gaps"],
        "resyncs": c["resyncs"],
        "unhandled_gaps": unhandled,
        "unsynced_at_end": c["unsynced_at_end"],
        "invalid_rows": c["invalid_rows"],
        "startup_invalid_seconds": startup,
        "gap_invalid_seconds": gap_secs,
        "span_seconds": span,
        "gap_invalid_fraction": gap_secs / span if span > 0 else 0.0,
        "crossed": c["crossed"],
        "uncross_repairs": int(small["crossed_repaired"].fill_null(False).sum()),
        "crossed_in_output": crossed_out,
        "off_grid": values_b.off_grid + values_e.off_grid,
        "values_checked": values_b.checked + values_e.checked,
        "negative_or_nan": values_b.insane + values_e.insane,
        "duplicates": c["duplicates"],
        "stale": c["stale"],
        "quarantined": quarantined,
        "snapshot_checks": c["snapshot_checks"],
        "snapshot_mismatches": c["snapshot_mismatches"],
    }
    consistency = snapshot_consistency(ev, instrument.sequencing)
    figures["snapshot_levels_checked"] = consistency.levels_compared
    figures["snapshot_inconsistent_levels"] = consistency.levels_mismatched
    first["snapshot_consistency"] = (consistency.first_ns, consistency.first_msg_id)
    carried = carried_book_check(checkpoint_in, ev, instrument, depth)
    return IntegrityReport(figures, intervals, carried, first)


def _first_duplicate(events: Events) -> tuple[int | None, int | None]:
    """The first diff whose ``u`` is not above the running maximum before it (a re-sent diff)."""
    msgs = events.heads.filter(~pl.col("is_snapshot")).select(
        "msg_id", "last_update_id", "ts_event"
    )
    dup = msgs.filter(
        pl.col("last_update_id") <= pl.col("last_update_id").cum_max().shift(1).fill_null(-1)
    ).head(1)
    if dup.height == 0:
        return None, None
    return int(dup["ts_event"].dt.epoch("ns")[0]), int(dup["msg_id"][0])


def integrity_results(report: IntegrityReport, thresholds: Thresholds) -> list[GateResult]:
    return report.results(thresholds)

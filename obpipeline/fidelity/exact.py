"""Gate A1: exact, update-id-aligned comparison with every golden record the exchange published.

A golden record stamped ``u`` is compared with the valid book_snapshots row whose
``last_update_id`` is ``u`` (the book after that message), at every level the record covers, price
and size, exactly (Decimal against Decimal). The same rule as ``golden.py``, extended with what
the gate needs: per-level accuracy, the aligned fraction and why records did not align, incidents
(runs of consecutive mismatching records, in update-id order), the Clopper–Pearson bound on
incidents, the first failure (for detection latency), and the aligned pairs themselves (Gate A2
computes its paired feature deltas on them).

Golden kinds and their scope (which FIDELITY.md threshold applies):

* ``bookTicker`` — best bid/ask: the touch (< 0.01 %). Where the record carries the exchange's
  transaction time (USD-M/COIN-M ``T``) it must also equal the time of the depth message with the
  same update id: the only detector of a shifted exchange timestamp, which changes no book.
* ``depth`` — partial-book streams depth5/10/20: top-N (< 0.1 %).
* ``rest`` — REST snapshots that arrive while the book is valid, compared with the book row at
  their ``lastUpdateId`` before they are applied (top-N here; the replayer's own full-depth check
  is the A0 ``snapshot_mismatches`` figure).
* Tardis ``book_snapshot_N`` / ``quotes`` — time-stamped, no update id: compared within ±1
  message (see ``compare_windowed``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from obpipeline import schemas
from obpipeline.fidelity import stats
from obpipeline.fidelity.config import Thresholds
from obpipeline.fidelity.gates import FAIL, INSUFFICIENT, PASS, SKIPPED, GateResult

TOUCH, TOP = "touch", "top"


@dataclass
class ExactComparison:
    """One golden kind against the book: counts, per-level accuracy and the aligned pairs."""

    kind: str
    scope: str  # TOUCH or TOP
    records: int  # golden records of this kind in the input
    aligned: int  # compared with a valid book row
    matched: int
    incidents: int
    levels: int  # the deepest level any record covers
    per_level: pl.DataFrame  # level, compared, matched, accuracy
    pairs: pl.DataFrame  # one row per aligned record: update_id, ts_event, msg_id, mismatch, ...
    ref: pl.DataFrame  # the golden side of the pairs, book_snapshots-shaped
    rec: pl.DataFrame  # our side of the pairs, same rows and columns as ``ref``
    not_aligned: dict[str, int] = field(default_factory=dict)  # reason → records
    time_checked: int = 0  # records whose exchange time was compared with the depth message's
    time_mismatched: int = 0
    first_time_mismatch_ns: int | None = None
    first_time_mismatch_msg_id: int | None = None

    @property
    def mismatched(self) -> int:
        return self.aligned - self.matched

    @property
    def compared(self) -> int:
        return self.aligned

    @property
    def aligned_fraction(self) -> float:
        return self.aligned / self.records if self.records else float("nan")

    def upper_bound(self, confidence: float = 0.95, incidents: bool = True) -> float:
        """One-sided Clopper–Pearson bound of the mismatch rate (on incidents by default)."""
        x = self.incidents if incidents else self.mismatched
        return stats.clopper_pearson_upper(x, self.aligned, confidence)

    def first_mismatch(self) -> tuple[int | None, int | None]:
        """(exchange time ns, msg_id) of the first mismatching record in update-id order."""
        bad = self.pairs.filter(pl.col("mismatch"))
        if bad.height == 0:
            return None, None
        row = bad.row(0, named=True)
        return int(row["ts_ns"]), int(row["msg_id"])

    def summary(self) -> dict[str, float]:
        return {
            "records": self.records,
            "aligned": self.aligned,
            "matched": self.matched,
            "mismatched": self.mismatched,
            "incidents": self.incidents,
            "aligned_fraction": self.aligned_fraction,
            "levels": self.levels,
            **{f"not_aligned_{k}": v for k, v in self.not_aligned.items()},
            "time_checked": self.time_checked,
            "time_mismatched": self.time_mismatched,
        }


# --------------------------------------------------------------------------------------------
# the book side


def valid_book_rows(snapshots: pl.DataFrame) -> pl.DataFrame:
    """Valid rows, one per ``last_update_id`` (the last one: the book after that id)."""
    return snapshots.filter(pl.col("is_valid")).unique(
        "last_update_id", keep="last", maintain_order=True
    )


def diff_messages(events: pl.DataFrame) -> pl.DataFrame:
    """One row per diff message (no REST snapshots): msg_id, U, u, exchange and local time."""
    return (
        events.filter(~pl.col("is_snapshot"))
        .group_by("msg_id", maintain_order=True)
        .agg(
            pl.col("first_update_id").first(),
            pl.col("last_update_id").first(),
            pl.col("ts_event").first(),
            pl.col("ts_local").first(),
        )
    )


def _not_aligned_reasons(
    ids: np.ndarray, messages: pl.DataFrame | None, book_ids: np.ndarray
) -> dict[str, int]:
    """Why golden records did not align: inside a message's id range, on an invalid row, other."""
    missing = ids[~np.isin(ids, book_ids)]
    if missing.size == 0:
        return {}
    if messages is None or messages.height == 0:
        return {"no_book_row": int(missing.size)}
    last = messages["last_update_id"].to_numpy()
    first = messages["first_update_id"].to_numpy()
    order = np.argsort(last, kind="stable")
    last, first = last[order], first[order]
    pos = np.searchsorted(last, missing, side="left")
    inside = np.zeros(missing.size, bool)
    on_boundary = np.zeros(missing.size, bool)
    ok = pos < last.size
    on_boundary[ok] = last[pos[ok]] == missing[ok]
    inside[ok] = ~on_boundary[ok] & (first[pos[ok]] <= missing[ok])
    out = {
        "inside_message": int(inside.sum()),  # no book state exists at that id: not alignable
        "invalid_book": int(on_boundary.sum()),  # a message ends there but the book was invalid
        "outside_stream": int((~inside & ~on_boundary).sum()),
    }
    return {k: v for k, v in out.items() if v}


# --------------------------------------------------------------------------------------------
# the comparison core


def _compare(
    kind: str,
    scope: str,
    ref: pl.DataFrame,
    snapshots: pl.DataFrame,
    depth: int,
    messages: pl.DataFrame | None,
) -> ExactComparison:
    """``ref``: update_id, ts_event, ts_local, levels, and level columns 1..depth (book naming)."""
    names = [n for group in schemas.level_names(depth) for n in group]
    # the book row's exchange time locates a failure (a golden record's own stamp may be a
    # receive time on a lagging clock: spot bookTicker)
    book_ts = pl.col("ts_event").dt.epoch("ns") if "ts_event" in snapshots.columns else pl.lit(None)
    book = valid_book_rows(snapshots).select(
        "last_update_id", "msg_id", *names, book_ts.cast(pl.Int64).alias("_book_ts")
    )
    ref = ref.with_row_index("_order")
    joined = (
        ref.join(book, left_on="update_id", right_on="last_update_id", how="inner", suffix="_book")
        .sort("update_id", "_order", maintain_order=True)
        .with_columns(
            pl.coalesce(pl.col("_book_ts"), pl.col("ts_event").dt.epoch("ns")).alias("ts_ns")
        )
    )
    bp, bs, ap, asz = schemas.level_names(depth)
    level_eq = []
    for i in range(depth):
        covered = pl.col("levels") >= (i + 1)
        eq = (
            pl.col(bp[i]).eq_missing(pl.col(bp[i] + "_book"))
            & pl.col(bs[i]).eq_missing(pl.col(bs[i] + "_book"))
            & pl.col(ap[i]).eq_missing(pl.col(ap[i] + "_book"))
            & pl.col(asz[i]).eq_missing(pl.col(asz[i] + "_book"))
        )
        level_eq.append((eq | ~covered).alias(f"_eq_{i + 1}"))
    joined = joined.with_columns(level_eq)
    eq_cols = [f"_eq_{i + 1}" for i in range(depth)]
    joined = joined.with_columns(
        (~pl.all_horizontal(eq_cols)).alias("mismatch"), (~pl.col("_eq_1")).alias("touch_mismatch")
    )
    mismatch = joined["mismatch"].to_numpy() if joined.height else np.zeros(0, bool)
    per_level = pl.DataFrame(
        {
            "level": np.arange(1, depth + 1, dtype=np.int64),
            "compared": [
                int((joined["levels"] >= i + 1).sum()) if joined.height else 0 for i in range(depth)
            ],
            "matched": [
                int(((joined["levels"] >= i + 1) & joined[f"_eq_{i + 1}"]).sum())
                if joined.height
                else 0
                for i in range(depth)
            ],
        }
    ).with_columns((pl.col("matched") / pl.col("compared")).fill_nan(None).alias("accuracy"))
    state_ts = pl.col("ts_ns").cast(schemas.TS).alias("ts_event")  # the book state's time
    ref_side = joined.select(
        pl.col("update_id").alias("last_update_id"),
        state_ts,
        pl.lit(True).alias("is_valid"),
        "levels",
        *names,
    )
    rec_side = joined.select(
        pl.col("update_id").alias("last_update_id"),
        state_ts,
        pl.lit(True).alias("is_valid"),
        "levels",
        *[pl.col(n + "_book").alias(n) for n in names],
    )
    # levels a record does not cover are hidden on both sides, so paired features see the same
    cover = {n: int(n.rsplit("_", 1)[1]) for n in names}
    hide = [
        pl.when(pl.col("levels") >= cover[n]).then(pl.col(n)).otherwise(None).alias(n)
        for n in names
    ]
    ref_side, rec_side = ref_side.with_columns(hide), rec_side.with_columns(hide)
    pairs = joined.select(
        "update_id", "ts_event", "ts_ns", "msg_id", "levels", "mismatch", "touch_mismatch"
    )
    book_ids = book["last_update_id"].to_numpy()
    return ExactComparison(
        kind=kind,
        scope=scope,
        records=ref.height,
        aligned=joined.height,
        matched=int(joined.height - mismatch.sum()),
        incidents=stats.count_incidents(mismatch),
        levels=int(ref["levels"].max() or 0) if ref.height else 0,
        per_level=per_level,
        pairs=pairs,
        ref=ref_side,
        rec=rec_side,
        not_aligned=_not_aligned_reasons(ref["update_id"].to_numpy(), messages, book_ids),
    )


def _check_times(
    cmp: ExactComparison, golden: pl.DataFrame, messages: pl.DataFrame | None
) -> ExactComparison:
    """Exchange time of each golden record that carries one vs its depth message's (same u).

    A record carries an exchange time when ``ts_event != ts_local`` (the parser falls back to the
    receive time only where the venue sends none: spot bookTicker).
    """
    if messages is None or messages.height == 0 or golden.height == 0:
        return cmp
    timed = golden.filter(pl.col("ts_event") != pl.col("ts_local")).select(
        "update_id", pl.col("ts_event").alias("ts_golden")
    )
    if timed.height == 0:
        return cmp
    msgs = messages.select(
        pl.col("last_update_id").alias("update_id"),
        pl.col("ts_event").alias("ts_message"),
        "msg_id",
    ).unique("update_id", keep="first", maintain_order=True)
    both = timed.join(msgs, on="update_id", how="inner").sort("update_id", maintain_order=True)
    bad = both.filter(pl.col("ts_golden") != pl.col("ts_message"))
    cmp.time_checked = both.height
    cmp.time_mismatched = bad.height
    if bad.height:
        cmp.first_time_mismatch_ns = int(bad["ts_message"].dt.epoch("ns")[0])
        cmp.first_time_mismatch_msg_id = int(bad["msg_id"][0])
    return cmp


def compare_bbo(
    snapshots: pl.DataFrame, golden_bbo: pl.DataFrame, events: pl.DataFrame | None = None
) -> ExactComparison:
    """bookTicker against level 1 of the book at the same update id (plus exchange times)."""
    ref = golden_bbo.select(
        "update_id",
        "ts_event",
        "ts_local",
        pl.lit(1, pl.Int16).alias("levels"),
        pl.col("bid_price").alias("bid_price_1"),
        pl.col("bid_size").alias("bid_size_1"),
        pl.col("ask_price").alias("ask_price_1"),
        pl.col("ask_size").alias("ask_size_1"),
    )
    messages = diff_messages(events) if events is not None else None
    cmp = _compare("bookTicker", TOUCH, ref, snapshots, 1, messages)
    return _check_times(cmp, golden_bbo, messages)


def compare_depth(
    snapshots: pl.DataFrame, golden_depth: pl.DataFrame, events: pl.DataFrame | None = None
) -> ExactComparison:
    """Partial-book records (depth5/10/20) against the same levels of the book at the same id."""
    depth = min(schemas.depth_of(snapshots), schemas.depth_of(golden_depth))
    names = [n for group in schemas.level_names(depth) for n in group]
    ref = golden_depth.select(
        "update_id",
        "ts_event",
        "ts_local",
        pl.col("levels").clip(upper_bound=depth).cast(pl.Int16),
        *names,
    )
    messages = diff_messages(events) if events is not None else None
    cmp = _compare("depth", TOP, ref, snapshots, depth, messages)
    return _check_times(cmp, golden_depth, messages)


def rest_snapshot_records(events: pl.DataFrame, depth: int) -> pl.DataFrame:
    """REST snapshots in raw_book_events as top-``depth`` wide records (golden_depth-shaped)."""
    snaps = events.filter(pl.col("is_snapshot") & pl.col("side").is_not_null())
    snaps = snaps.filter(pl.col("size") > 0)
    bp, bs, ap, asz = schemas.level_names(depth)
    heads = (
        events.filter(pl.col("is_snapshot"))
        .group_by("msg_id", maintain_order=True)
        .agg(
            pl.col("last_update_id").first().alias("update_id"),
            pl.col("ts_event").first(),
            pl.col("ts_local").first(),
        )
    )
    if heads.height == 0:
        p = events.schema["price"]
        s = events.schema["size"]
        cols = {n: p for n in bp + ap} | {n: s for n in bs + asz}
        return pl.DataFrame(
            schema={
                "msg_id": pl.Int64,
                "update_id": pl.Int64,
                "ts_event": schemas.TS,
                "ts_local": schemas.TS,
                "levels": pl.Int16,
                **cols,
            }
        )
    ranked = snaps.with_columns(
        pl.when(pl.col("side") == schemas.BID)
        .then(pl.col("price").rank("ordinal", descending=True).over("msg_id", "side"))
        .otherwise(pl.col("price").rank("ordinal").over("msg_id", "side"))
        .alias("rank")
    ).filter(pl.col("rank") <= depth)
    wide = heads
    for side, pnames, snames in ((schemas.BID, bp, bs), (schemas.ASK, ap, asz)):
        part = ranked.filter(pl.col("side") == side)
        for i in range(depth):
            lvl = part.filter(pl.col("rank") == i + 1).select(
                "msg_id", pl.col("price").alias(pnames[i]), pl.col("size").alias(snames[i])
            )
            wide = wide.join(lvl, on="msg_id", how="left")
    return wide.with_columns(pl.lit(depth, pl.Int16).alias("levels")).select(
        "msg_id", "update_id", "ts_event", "ts_local", "levels", *bp, *bs, *ap, *asz
    )


def compare_rest(
    snapshots: pl.DataFrame, events: pl.DataFrame, depth: int | None = None
) -> ExactComparison:
    """REST snapshots against the valid book at their ``lastUpdateId``, independent of them.

    The book row used is a valid row at the snapshot's id that does not derive from the
    snapshot: any such row except the snapshot's own when the snapshot did not sync the book (it
    arrived while the book was valid, before or after the message at its id), and only rows
    emitted before it when it (re)synced the book (everything after comes from it). The nearest
    such row in output order wins. A snapshot that synced an invalid book has none: not compared.
    """
    depth = depth or schemas.depth_of(snapshots)
    recs = rest_snapshot_records(events, depth)
    names = [n for group in schemas.level_names(depth) for n in group]
    rows = snapshots.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))
    own = (
        rows.filter(pl.col("msg_id").is_in(recs["msg_id"].implode()))
        .select(
            pl.col("msg_id"), pl.col("_row").alias("_own_row"), pl.col("resynced").alias("_synced")
        )
        .unique("msg_id", keep="last")
    )
    valid = rows.filter(pl.col("is_valid")).select(
        pl.col("_row"), pl.col("msg_id").alias("_book_msg"), "last_update_id", *names
    )
    joined = (
        recs.join(own, on="msg_id", how="inner")
        .join(valid, left_on="update_id", right_on="last_update_id", how="inner", suffix="_book")
        .filter(
            (pl.col("_row") != pl.col("_own_row"))
            & (~pl.col("_synced") | (pl.col("_row") < pl.col("_own_row")))
        )
        .with_columns((pl.col("_row") - pl.col("_own_row")).abs().alias("_dist"))
    )
    chosen = joined.sort("msg_id", "_dist").unique("msg_id", keep="first", maintain_order=True)
    ref = chosen.select("update_id", "ts_event", "ts_local", "levels", *names)
    book_rows = chosen.select(
        pl.col("update_id").alias("last_update_id"),
        pl.col("_book_msg").alias("msg_id"),
        pl.lit(True).alias("is_valid"),
        *[pl.col(f"{n}_book").alias(n) for n in names],
    )
    cmp = _compare("rest", TOP, ref, book_rows, depth, None)
    cmp.records = recs.height
    cmp.not_aligned = (
        {"no_independent_valid_book": recs.height - chosen.height}
        if recs.height > chosen.height
        else {}
    )
    return cmp


# --------------------------------------------------------------------------------------------
# window matching (time-stamped references: Tardis)


def compare_windowed(
    kind: str, scope: str, snapshots: pl.DataFrame, reference: pl.DataFrame
) -> ExactComparison:
    """References without update ids (Tardis ``book_snapshot_N``, ``quotes``), within ±1 message.

    Alignment and matching are ``tardis_golden.align``'s (the last book row received at or before
    the record's local time, matching the valid book after that message or its neighbours);
    this wraps them in the gate's figures. A record that matches no neighbour is compared with
    the nearest valid one of the three rows, so its per-level errors are reported.
    """
    from obpipeline.fidelity import tardis_golden

    if "levels" in reference.columns:
        depth = min(schemas.depth_of(snapshots), schemas.depth_of(reference))
        names = [n for g in schemas.level_names(depth) for n in g]
        pairs = [(n, n, int(n.rsplit("_", 1)[1])) for n in names]
        ref_wide = reference.select(
            "ts_event", "ts_local", pl.col("levels").clip(upper_bound=depth).cast(pl.Int16), *names
        )
    else:
        depth = 1
        names = [n for g in schemas.level_names(1) for n in g]
        pairs = [
            ("bid_price", "bid_price_1", 1),
            ("bid_size", "bid_size_1", 1),
            ("ask_price", "ask_price_1", 1),
            ("ask_size", "ask_size_1", 1),
        ]
        ref_wide = reference.select(
            "ts_event",
            "ts_local",
            pl.lit(1, pl.Int16).alias("levels"),
            *[pl.col(r).alias(b) for r, b, _ in pairs],
        )
    a = (
        tardis_golden.align(snapshots, reference, pairs)
        if reference.height
        else pl.DataFrame(schema={"pos": pl.Int64, "aligned": pl.Boolean, "offset": pl.Int8})
    )
    valid = snapshots["is_valid"].fill_null(False).to_numpy()
    n_book = snapshots.height

    def valid_at(p: np.ndarray) -> np.ndarray:
        ok = (p >= 0) & (p < n_book)
        out = np.zeros(p.size, bool)
        out[ok] = valid[p[ok]]
        return out

    pos = a["pos"].fill_null(-1).to_numpy().astype(np.int64)
    matched = a["offset"].is_not_null().to_numpy()
    off_filled = a["offset"].fill_null(0).cast(pl.Int64).to_numpy()
    chosen = np.full(pos.size, -1, np.int64)
    chosen[matched] = pos[matched] + off_filled[matched]
    for o in (0, -1, 1):  # mismatches: the nearest valid neighbour
        cand = pos + o
        take = (chosen < 0) & valid_at(cand)
        chosen[take] = cand[take]
    aligned = a["aligned"].to_numpy() & (chosen >= 0)
    idx = np.flatnonzero(aligned)
    ref_frame = ref_wide[idx.tolist()].with_columns(pl.Series("update_id", idx.astype(np.int64)))
    rows = snapshots[chosen[idx].tolist()] if idx.size else snapshots.head(0)
    rec_frame = rows.select(
        pl.Series("last_update_id", idx.astype(np.int64)), "msg_id", "is_valid", *names
    )
    cmp = _compare(
        kind,
        scope,
        ref_frame.select("update_id", "ts_event", "ts_local", "levels", *names),
        rec_frame,
        depth,
        None,
    )
    cmp.records = reference.height
    cmp.not_aligned = (
        {"no_valid_book_near": reference.height - int(aligned.sum())}
        if reference.height > aligned.sum()
        else {}
    )
    return cmp


# --------------------------------------------------------------------------------------------
# verdicts


@dataclass
class PooledEvidence:
    """One scope's evidence over every golden kind of a day (FIDELITY.md's two A1 limits)."""

    scope: str
    kinds: list[str]
    aligned: int
    mismatched: int
    incidents: int
    first_ns: int | None
    first_msg_id: int | None


def pooled_evidence(comparisons: list[ExactComparison], scope: str) -> PooledEvidence:
    """The touch (level 1 of every kind) or top-N (all covered levels of top-N kinds) evidence.

    Records of different kinds at the same update id compare the same book state: they count
    once (a mismatch if any of them differs), so pooling never double-counts a state. Kinds
    aligned by time (Tardis) have no update id and are added as they are.
    """
    col = "touch_mismatch" if scope == TOUCH else "mismatch"
    use = [c for c in comparisons if c.aligned and (scope == TOUCH or c.scope == TOP)]
    by_id = [c.pairs.select("update_id", "ts_ns", "msg_id", col) for c in use if c.kind not in
             WINDOWED_KINDS]  # fmt: skip
    frames = []
    if by_id:
        frames.append(
            pl.concat(by_id)
            .group_by("update_id")
            .agg(pl.col("ts_ns").min(), pl.col("msg_id").min(), pl.col(col).any())
            .sort("update_id")
            .select("ts_ns", "msg_id", pl.col(col).alias("bad"))
        )
    for c in use:
        if c.kind in WINDOWED_KINDS:
            frames.append(c.pairs.select("ts_ns", "msg_id", pl.col(col).alias("bad")))
    if not frames:
        return PooledEvidence(scope, [], 0, 0, 0, None, None)
    all_pairs = pl.concat(frames)
    bad = all_pairs["bad"].to_numpy()
    first = all_pairs.filter(pl.col("bad")).sort("ts_ns").head(1)
    return PooledEvidence(
        scope,
        [c.kind for c in use],
        all_pairs.height,
        int(bad.sum()),
        sum(stats.count_incidents(f["bad"].to_numpy()) for f in frames),
        int(first["ts_ns"][0]) if first.height else None,
        int(first["msg_id"][0]) if first.height else None,
    )


WINDOWED_KINDS = ("book_snapshot", "quotes")


def _status(x: int, n: int, records: int, limit: float, conf: float) -> tuple[str, float]:
    ub = stats.clopper_pearson_upper(x, n, conf)
    if records == 0:
        return SKIPPED, ub
    if n == 0:
        return INSUFFICIENT, ub
    if ub < limit:
        return PASS, ub
    return (FAIL if x > 0 else INSUFFICIENT), ub


def exact_results(comparisons: list[ExactComparison], thresholds: Thresholds) -> list[GateResult]:
    """One A1 GateResult per golden kind (and per kind whose exchange times were checked), then
    the two FIDELITY.md limits on the day's pooled evidence: ``touch`` and ``top``."""
    out: list[GateResult] = []
    conf = thresholds.confidence
    for c in comparisons:
        limit = (
            thresholds.max_mismatch_rate_touch
            if c.scope == TOUCH
            else thresholds.max_mismatch_rate_top
        )
        x = c.incidents if thresholds.incidents_not_records else c.mismatched
        ub = stats.clopper_pearson_upper(x, c.aligned, conf)
        needed = stats.records_to_certify(limit, conf)
        if c.records == 0:
            status, detail = SKIPPED, "no golden records of this kind"
        elif c.aligned == 0 and c.kind == "rest":
            status, detail = SKIPPED, "every REST snapshot synced the book: none to compare"
        elif c.aligned == 0:
            status, detail = INSUFFICIENT, f"none of {c.records} records aligned with a valid book"
        elif ub < limit:
            status, detail = PASS, ""
        elif x > 0:
            status = FAIL
            detail = f"{c.mismatched} mismatching records in {c.incidents} incident(s)"
        else:
            status = INSUFFICIENT
            detail = f"0 mismatches in {c.aligned} aligned; {needed} needed to certify"
        t_ns, msg = c.first_mismatch()
        metrics = {
            **c.summary(),
            "upper_bound_records": stats.clopper_pearson_upper(c.mismatched, c.aligned, conf),
            "records_to_certify": needed,
        }
        for row in c.per_level.iter_rows(named=True):
            if row["compared"]:
                metrics[f"accuracy_L{row['level']}"] = row["accuracy"]
        out.append(
            GateResult(
                "A1",
                c.kind,
                status,
                ub,
                limit,
                detail,
                first_failure_ns=t_ns if status == FAIL else None,
                first_failure_msg_id=msg if status == FAIL else None,
                metrics=metrics,
            )
        )
        if c.time_checked:
            bad = c.time_mismatched > thresholds.max_timestamp_mismatches
            out.append(
                GateResult(
                    "A1",
                    f"{c.kind}_time",
                    FAIL if bad else PASS,
                    c.time_mismatched,
                    thresholds.max_timestamp_mismatches,
                    f"{c.time_mismatched} of {c.time_checked} records disagree with the depth "
                    "message's exchange time"
                    if bad
                    else "",
                    first_failure_ns=c.first_time_mismatch_ns if bad else None,
                    first_failure_msg_id=c.first_time_mismatch_msg_id if bad else None,
                    metrics={"checked": c.time_checked, "mismatched": c.time_mismatched},
                )
            )
    conf = thresholds.confidence
    for scope, limit in (
        (TOUCH, thresholds.max_mismatch_rate_touch),
        (TOP, thresholds.max_mismatch_rate_top),
    ):
        ev = pooled_evidence(comparisons, scope)
        records = sum(c.records for c in comparisons if scope == TOUCH or c.scope == TOP)
        x = ev.incidents if thresholds.incidents_not_records else ev.mismatched
        status, ub = _status(x, ev.aligned, records, limit, conf)
        needed = stats.records_to_certify(limit, conf)
        detail = {
            FAIL: f"{ev.mismatched} differing states in {ev.incidents} incident(s)",
            INSUFFICIENT: f"0 differences in {ev.aligned} states; {needed} needed to certify",
        }.get(status, "")
        out.append(
            GateResult(
                "A1",
                scope,
                status,
                ub,
                limit,
                detail,
                first_failure_ns=ev.first_ns if status == FAIL else None,
                first_failure_msg_id=ev.first_msg_id if status == FAIL else None,
                metrics={
                    "aligned": ev.aligned,
                    "mismatched": ev.mismatched,
                    "incidents": ev.incidents,
                    "kinds": len(ev.kinds),
                    "records_to_certify": needed,
                },
            )
        )
    return out

"""Gate A1: the one exact comparison with every golden record the exchange published.

A golden record stamped ``u`` is compared with the valid book_snapshots row whose
``last_update_id`` is ``u`` (the book after that message), at every level the record covers, price
and size, exactly (Decimal against Decimal); records without update ids (Tardis) align by time,
within ±1 message (``compare_windowed``). With what the gate needs: per-level accuracy, the aligned fraction and why records did not align, incidents
(runs of consecutive mismatching records, in update-id order), the Clopper–Pearson bound on
incidents, the first failure (for detection latency), and the aligned pairs, handed batch by
batch to a ``PairsSink`` (Gate A2 computes its paired feature deltas on them).

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

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import polars as pl

from obpipeline import schemas
from obpipeline.fidelity import stats
from obpipeline.fidelity.config import Thresholds
from obpipeline.fidelity.frames import (
    Events,
    Frame,
    Table,
    batches,
    collect,
    events_of,
    lazy,
    table_of,
)
from obpipeline.fidelity.gates import FAIL, INSUFFICIENT, PASS, SKIPPED, GateResult

TOUCH, TOP = "touch", "top"


#: mismatching records kept side by side with the book; the counts are always exact
MISMATCH_SAMPLE = 100
#: golden records compared at once (depth20: 80 Decimal columns on each side of the join)
GOLDEN_BATCH = 1 << 16


class PairsSink(Protocol):
    """Receives the aligned pairs batch by batch (Gate A2 accumulates its features on them)."""

    def start(self, records: int) -> None:
        """Called once, before any pairs, with the day's golden records of every kind."""

    def add(self, kind: str, levels: int, ref: pl.DataFrame, rec: pl.DataFrame) -> None:
        """One batch of a kind's pairs, in update-id order, continuing the previous batch."""


@dataclass
class ExactComparison:
    """One golden kind against the book: counts, per-level accuracy, the aligned pairs' verdicts.

    The level columns of the pairs are not kept (a day has ~1 M of them): they go batch by
    batch to a ``PairsSink``; the first ``MISMATCH_SAMPLE`` mismatching records are kept whole.
    """

    kind: str
    scope: str  # TOUCH or TOP
    records: int  # golden records of this kind in the input
    aligned: int  # compared with a valid book row
    matched: int
    incidents: int
    levels: int  # the deepest level any record covers
    per_level: pl.DataFrame  # level, compared, matched, accuracy
    pairs: pl.DataFrame  # one row per aligned record: update_id, ts_event, msg_id, mismatch, ...
    mismatch_sample: pl.DataFrame  # the first mismatching records (see ``mismatches``)
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

    @property
    def mismatches(self) -> pl.DataFrame:
        """The first ``MISMATCH_SAMPLE`` mismatching records in update-id order, golden side by
        side with the book (``<column>_book``); ``mismatched`` counts them all."""
        return self.mismatch_sample

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


def valid_book_rows(snapshots: Frame | Table, ids: pl.Series | None = None) -> pl.DataFrame:
    """Valid rows, one per ``last_update_id`` (the last one: the book after that id).

    With ``ids``, only the rows at those ids are read (a semi-join pushed into the scan, with
    the ids' range so row groups outside it are skipped by their statistics): the same rows as
    filtering the whole day's result afterwards.
    """
    book = table_of(snapshots)
    keep = pl.col("is_valid")
    if ids is not None:
        ids = ids.drop_nulls()
        if ids.len():
            keep = keep & pl.col("last_update_id").is_between(ids.min(), ids.max())
        keep = keep & pl.col("last_update_id").is_in(ids.implode())
    return book.rows(keep).unique("last_update_id", keep="last", maintain_order=True)


def diff_messages(events: Frame | Events) -> pl.DataFrame:
    """One row per diff message (no REST snapshots): msg_id, U, u, exchange and local time."""
    ev = events_of(events)
    assert ev is not None
    return ev.heads.filter(~pl.col("is_snapshot")).select(
        "msg_id", "first_update_id", "last_update_id", "ts_event", "ts_local"
    )


class Messages:
    """A day's diff messages, indexed once for every batch of golden records: why a record did
    not align, and the exchange time of the message ending at a record's id."""

    def __init__(self, messages: pl.DataFrame) -> None:
        last = messages["last_update_id"].to_numpy()
        first = messages["first_update_id"].to_numpy()
        order = np.argsort(last, kind="stable")
        self.last, self.first = last[order], first[order]
        self.at_id = (
            messages.select(
                pl.col("last_update_id").alias("update_id"),
                pl.col("ts_event").alias("ts_message"),
                "msg_id",
            )
            .unique("update_id", keep="first", maintain_order=True)
            .sort("update_id")
        )
        self._at_ids = self.at_id["update_id"].to_numpy()

    @property
    def empty(self) -> bool:
        return self.last.size == 0

    def between(self, lo: int, hi: int) -> pl.DataFrame:
        """``at_id`` rows with lo <= update_id <= hi."""
        a, b = (
            np.searchsorted(self._at_ids, [lo, hi], side="left")[0],
            np.searchsorted(self._at_ids, hi, side="right"),
        )
        return self.at_id.slice(int(a), int(b - a))

    def not_aligned(self, missing: np.ndarray) -> dict[str, int]:
        """Why records at ``missing`` ids did not align: inside a message's id range, on an
        invalid row, other."""
        if missing.size == 0:
            return {}
        if self.empty:
            return {"no_book_row": int(missing.size)}
        last, first = self.last, self.first
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


def messages_of(events: Frame | Events | Messages | None) -> Messages | None:
    if events is None or isinstance(events, Messages):
        return events
    return Messages(diff_messages(events))


# --------------------------------------------------------------------------------------------
# the comparison core: batches of records in update-id order, accumulated


class _Accumulator:
    """One kind's comparison, fed batches of records (in update-id order across batches).

    Counts, per-level figures and reasons add up; the compact per-pair verdicts are kept (8
    scalars a record: pooling and incidents need them); the level columns go to ``sink`` and
    are dropped; the first mismatching records are kept whole.
    """

    def __init__(
        self,
        kind: str,
        scope: str,
        depth: int,
        levels: int,
        messages: Messages | None,
        sink: PairsSink | None,
        check_times: bool,
    ) -> None:
        self.kind, self.scope, self.depth, self.levels = kind, scope, depth, levels
        self.messages, self.sink, self.check_times = messages, sink, check_times
        self.names = [n for group in schemas.level_names(depth) for n in group]
        self.records = 0
        self.compared = np.zeros(depth, np.int64)
        self.matched = np.zeros(depth, np.int64)
        self.pairs: list[pl.DataFrame] = []
        self.sample: list[pl.DataFrame] = []
        self.sampled = 0
        self.not_aligned: dict[str, int] = {}
        self.time_checked = self.time_mismatched = 0
        self.first_time: tuple[int, int] | None = None

    def add(self, ref: pl.DataFrame, book: pl.DataFrame) -> None:
        """``ref``: update_id, ts_event, ts_local, levels, level columns 1..depth, ``_order``
        (the record's position in its file); ``book``: last_update_id, msg_id, the level
        columns and ``_book_ts`` of the valid rows at the batch's ids."""
        depth, names = self.depth, self.names
        self.records += ref.height
        joined = (
            ref.join(
                book, left_on="update_id", right_on="last_update_id", how="inner", suffix="_book"
            )
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
            (~pl.all_horizontal(eq_cols)).alias("mismatch"),
            (~pl.col("_eq_1")).alias("touch_mismatch"),
        )
        if joined.height:
            counts = joined.select(
                *[(pl.col("levels") >= i + 1).sum().alias(f"c{i}") for i in range(depth)],
                *[
                    ((pl.col("levels") >= i + 1) & pl.col(f"_eq_{i + 1}")).sum().alias(f"m{i}")
                    for i in range(depth)
                ],
            ).row(0)
            self.compared += np.asarray(counts[:depth], np.int64)
            self.matched += np.asarray(counts[depth:], np.int64)
        state_ts = pl.col("ts_ns").cast(schemas.TS).alias("ts_event")  # the book state's time
        head = [
            pl.col("update_id").alias("last_update_id"),
            state_ts,
            pl.lit(True).alias("is_valid"),
        ]
        # levels a record does not cover are hidden on both sides, so paired features see the same
        cover = {n: int(n.rsplit("_", 1)[1]) for n in names}
        hide = [
            pl.when(pl.col("levels") >= cover[n]).then(pl.col(n)).otherwise(None).alias(n)
            for n in names
        ]
        ref_side = joined.select(*head, "levels", *names).with_columns(hide)
        rec_side = joined.select(
            *head, "levels", *[pl.col(n + "_book").alias(n) for n in names]
        ).with_columns(hide)
        pairs = joined.select(
            "update_id", "ts_event", "ts_local", "ts_ns", "msg_id", "levels", "mismatch",
            "touch_mismatch",
        )  # fmt: skip
        self.pairs.append(pairs)
        if self.sampled < MISMATCH_SAMPLE:
            bad = pairs["mismatch"]
            part = pl.concat(
                [
                    pairs.filter(bad).select("ts_local", "msg_id"),  # the record's receive time
                    ref_side.filter(bad),
                    rec_side.filter(bad).select(pl.all().name.suffix("_book")),
                ],
                how="horizontal",
            ).head(MISMATCH_SAMPLE - self.sampled)
            self.sample.append(part)
            self.sampled += part.height
        if self.sink is not None and joined.height:
            self.sink.add(self.kind, self.levels, ref_side, rec_side)
        missing = ref["update_id"].to_numpy()
        missing = missing[~np.isin(missing, book["last_update_id"].to_numpy())]
        if self.messages is not None or missing.size:
            reasons = (
                self.messages.not_aligned(missing)
                if self.messages is not None
                else {"no_book_row": int(missing.size)}
            )
            for k, v in reasons.items():
                self.not_aligned[k] = self.not_aligned.get(k, 0) + v
        if self.check_times:
            self._times(ref)

    def _times(self, golden: pl.DataFrame) -> None:
        """Exchange time of each record that carries one vs its depth message's (same u).

        A record carries an exchange time when ``ts_event != ts_local`` (the parser falls back
        to the receive time only where the venue sends none: spot bookTicker).
        """
        if self.messages is None or self.messages.empty or golden.height == 0:
            return
        timed = golden.filter(pl.col("ts_event") != pl.col("ts_local")).select(
            "update_id", pl.col("ts_event").alias("ts_golden")
        )
        if timed.height == 0:
            return
        ids = timed["update_id"]
        msgs = self.messages.between(int(ids.min()), int(ids.max()))  # type: ignore[arg-type]
        both = timed.join(msgs, on="update_id", how="inner").sort("update_id", maintain_order=True)
        bad = both.filter(pl.col("ts_golden") != pl.col("ts_message"))
        self.time_checked += both.height
        self.time_mismatched += bad.height
        if bad.height and self.first_time is None:
            self.first_time = (int(bad["ts_message"].dt.epoch("ns")[0]), int(bad["msg_id"][0]))

    def result(self) -> ExactComparison:
        pairs = pl.concat(self.pairs)
        mismatch = pairs["mismatch"].to_numpy() if pairs.height else np.zeros(0, bool)
        per_level = pl.DataFrame(
            {
                "level": np.arange(1, self.depth + 1, dtype=np.int64),
                "compared": self.compared,
                "matched": self.matched,
            }
        ).with_columns((pl.col("matched") / pl.col("compared")).fill_nan(None).alias("accuracy"))
        first = self.first_time or (None, None)
        return ExactComparison(
            kind=self.kind,
            scope=self.scope,
            records=self.records,
            aligned=pairs.height,
            matched=int(pairs.height - mismatch.sum()),
            incidents=stats.count_incidents(mismatch),
            levels=self.levels,
            per_level=per_level,
            pairs=pairs,
            mismatch_sample=pl.concat(self.sample),
            not_aligned=self.not_aligned,
            time_checked=self.time_checked,
            time_mismatched=self.time_mismatched,
            first_time_mismatch_ns=first[0],
            first_time_mismatch_msg_id=first[1],
        )


def _book_ts(schema: pl.Schema) -> pl.Expr:
    """The book row's exchange time in ns: it locates a failure (a golden record's own stamp
    may be a receive time on a lagging clock: spot bookTicker)."""
    has_ts = "ts_event" in schema.names()
    book_ts = pl.col("ts_event").dt.epoch("ns") if has_ts else pl.lit(None)
    return book_ts.cast(pl.Int64).alias("_book_ts")


def _book_side(snapshots: Table, names: list[str], ids: pl.Series) -> pl.DataFrame:
    """The valid book rows at ``ids``: last_update_id, msg_id, level columns, ``_book_ts``."""
    return valid_book_rows(snapshots, ids).select(
        "last_update_id", "msg_id", *names, _book_ts(snapshots.schema)
    )


def _non_decreasing(ids: Iterable[pl.Series]) -> bool:
    """Whether ids read batch by batch are never null and never decrease, across batches too."""
    last = None
    for batch in ids:
        if batch.null_count():
            return False
        if batch.len() == 0:
            continue
        if (last is not None and batch[0] < last) or not batch.is_sorted():
            return False
        last = batch[-1]
    return True


def valid_ids_in_order(snapshots: Table) -> bool:
    """Whether the valid rows' ``last_update_id`` never decreases in file order (nulls aside):
    then the rows at the ids of one batch of records all come before any row beyond them."""
    valid = pl.col("is_valid") & pl.col("last_update_id").is_not_null()
    batches_ = snapshots.batches(["last_update_id", "is_valid"])
    return _non_decreasing(b.filter(valid)["last_update_id"] for b in batches_)


class BookCursor:
    """``_book_side`` for batches of records in update-id order, in one pass over the book.

    A scan per batch (the semi-join pushed into the reader) decodes the row groups around
    every batch again: ~5x the CPU of reading the level columns once. With the valid rows in
    update-id order (``valid_ids_in_order``), the rows at ids up to a batch's last id all come
    before the first valid row beyond it: the book is read batch by batch up to that row, and
    what lies beyond waits for the next batch of records. The same rows as ``_book_side``.
    """

    def __init__(self, snapshots: Table, names: list[str], rows: int) -> None:
        cols = ["last_update_id", "msg_id", "is_valid", *names]
        cols += ["ts_event"] if "ts_event" in snapshots.schema.names() else []
        self._batches = batches(snapshots.source, cols, rows)
        self._select = [pl.col("last_update_id"), pl.col("msg_id"), *map(pl.col, names),
                        _book_ts(snapshots.schema)]  # fmt: skip
        self._ahead = [collect(snapshots.lf.head(0).select(cols).select(self._select))]
        self._last: int | None = None  # the last valid id read so far
        self._done = False

    def _read(self) -> None:
        b = next(self._batches, None)
        if b is None:
            self._done = True
            return
        b = b.filter(pl.col("is_valid") & pl.col("last_update_id").is_not_null())
        if b.height:
            self._ahead.append(b.select(self._select))
            self._last = int(b["last_update_id"][-1])

    def at(self, ids: pl.Series) -> pl.DataFrame:
        """The valid book rows at ``ids`` (not below any id of a previous call)."""
        ids = ids.drop_nulls()
        if ids.len():
            hi = int(ids.max())  # type: ignore[arg-type]
            while not self._done and (self._last is None or self._last <= hi):
                self._read()
        rows = pl.concat(self._ahead, rechunk=False)
        cut = np.searchsorted(rows["last_update_id"].to_numpy(), hi, "right") if ids.len() else 0
        self._ahead = [rows.slice(int(cut))]
        return (
            rows.slice(0, cut)
            .filter(pl.col("last_update_id").is_in(ids.implode()))
            .unique("last_update_id", keep="last", maintain_order=True)
        )


def _compare(
    kind: str,
    scope: str,
    ref: pl.DataFrame,
    snapshots: Frame | Table,
    depth: int,
    messages: Messages | None,
    sink: PairsSink | None = None,
) -> ExactComparison:
    """One frame of records (``ref``: update_id, ts_event, ts_local, levels, level columns
    1..depth, book naming) compared in one batch."""
    book = table_of(snapshots)
    levels = int(ref["levels"].max() or 0) if ref.height else 0
    acc = _Accumulator(kind, scope, depth, levels, messages, sink, check_times=False)
    names = [n for group in schemas.level_names(depth) for n in group]
    acc.add(ref.with_row_index("_order"), _book_side(book, names, ref["update_id"]))
    return acc.result()


def _sorted_by_id(golden: Frame, rows: int) -> bool:
    """Whether the records' update ids are non-decreasing and never null (stream order)."""
    return _non_decreasing(b["update_id"] for b in batches(golden, ["update_id"], rows))


def _record_batches(
    golden: Frame, select: list[pl.Expr], rows: int, in_order: bool
) -> Iterator[pl.DataFrame]:
    """The records, projected by ``select``, with ``_order`` (position in the input), in
    batches of ``rows`` in update-id order.

    Golden files are written in stream order, which is update-id order: they are read batch by
    batch. Records that are not in that order are compared in one batch (the join sorts them).
    """
    needed = sorted({c for e in select for c in e.meta.root_names()})
    if not in_order:  # see _sorted_by_id
        yield collect(lazy(golden).select(select).with_row_index("_order"))
        return
    start = 0
    for b in batches(golden, needed, rows):
        out = b.select(select).with_row_index("_order", offset=start)
        start += b.height
        yield out
    if start == 0:
        yield collect(lazy(golden).head(0).select(select).with_row_index("_order"))


def _compare_golden(
    kind: str,
    scope: str,
    snapshots: Table,
    golden: Frame,
    depth: int,
    select: list[pl.Expr],
    messages: Messages | None,
    sink: PairsSink | None,
    rows: int,
) -> ExactComparison:
    """A golden file against the book, batch by batch (see ``_record_batches``)."""
    names = [n for group in schemas.level_names(depth) for n in group]
    n, levels = collect(lazy(golden).select(pl.len(), select[3].max())).row(0)  # [3]: levels
    acc = _Accumulator(kind, scope, depth, int(levels or 0) if n else 0, messages, sink, True)
    in_order = _sorted_by_id(golden, rows)
    cursor = (
        BookCursor(snapshots, names, rows) if in_order and valid_ids_in_order(snapshots) else None
    )
    for ref in _record_batches(golden, select, rows, in_order):
        ids = ref["update_id"]
        book = cursor.at(ids) if cursor else _book_side(snapshots, names, ids)
        acc.add(ref.with_columns(pl.col("_order").cast(pl.UInt32)), book)
    return acc.result()


BBO_SELECT = [
    pl.col("update_id"),
    pl.col("ts_event"),
    pl.col("ts_local"),
    pl.lit(1, pl.Int16).alias("levels"),
    pl.col("bid_price").alias("bid_price_1"),
    pl.col("bid_size").alias("bid_size_1"),
    pl.col("ask_price").alias("ask_price_1"),
    pl.col("ask_size").alias("ask_size_1"),
]


def _rows(snapshots: Table, batch_rows: int | None) -> int:
    return batch_rows or min(snapshots.batch_rows, GOLDEN_BATCH)


def compare_bbo(
    snapshots: Frame | Table,
    golden_bbo: Frame,
    events: Frame | Events | Messages | None = None,
    *,
    sink: PairsSink | None = None,
    batch_rows: int | None = None,
) -> ExactComparison:
    """bookTicker against level 1 of the book at the same update id (plus exchange times)."""
    book = table_of(snapshots)
    return _compare_golden("bookTicker", TOUCH, book, golden_bbo, 1, BBO_SELECT,
                           messages_of(events), sink, _rows(book, batch_rows))  # fmt: skip


def compare_depth(
    snapshots: Frame | Table,
    golden_depth: Frame,
    events: Frame | Events | Messages | None = None,
    *,
    sink: PairsSink | None = None,
    batch_rows: int | None = None,
) -> ExactComparison:
    """Partial-book records (depth5/10/20) against the same levels of the book at the same id."""
    book, golden = table_of(snapshots), lazy(golden_depth)
    depth = min(schemas.depth_of(book.schema), schemas.depth_of(golden))
    names = [n for group in schemas.level_names(depth) for n in group]
    select = [
        pl.col("update_id"),
        pl.col("ts_event"),
        pl.col("ts_local"),
        pl.col("levels").clip(upper_bound=depth).cast(pl.Int16),
        *[pl.col(n) for n in names],
    ]
    return _compare_golden("depth", TOP, book, golden_depth, depth, select, messages_of(events),
                           sink, _rows(book, batch_rows))  # fmt: skip


def rest_snapshot_records(events: Frame | Events, depth: int) -> pl.DataFrame:
    """REST snapshots in raw_book_events as top-``depth`` wide records (golden_depth-shaped)."""
    ev = events_of(events)
    assert ev is not None
    bp, bs, ap, asz = schemas.level_names(depth)
    heads = ev.heads.filter(pl.col("is_snapshot")).select(
        "msg_id", pl.col("last_update_id").alias("update_id"), "ts_event", "ts_local"
    )
    if heads.height == 0:
        p = ev.schema["price"]
        s = ev.schema["size"]
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
    snaps = ev.rows(pl.col("is_snapshot") & pl.col("side").is_not_null() & (pl.col("size") > 0))
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
    snapshots: Frame | Table,
    events: Frame | Events,
    depth: int | None = None,
    *,
    sink: PairsSink | None = None,
) -> ExactComparison:
    """REST snapshots against the valid book at their ``lastUpdateId``, independent of them.

    The book row used is a valid row at the snapshot's id that does not derive from the
    snapshot: any such row except the snapshot's own when the snapshot did not sync the book (it
    arrived while the book was valid, before or after the message at its id), and only rows
    emitted before it when it (re)synced the book (everything after comes from it). The nearest
    such row in output order wins. A snapshot that synced an invalid book has none: not compared.
    """
    book = table_of(snapshots)
    depth = depth or schemas.depth_of(book.schema)
    recs = rest_snapshot_records(events, depth)
    names = [n for group in schemas.level_names(depth) for n in group]
    # only the snapshots' own rows and the valid rows at their ids are read
    wanted = pl.col("msg_id").is_in(recs["msg_id"].implode()) | (
        pl.col("is_valid") & pl.col("last_update_id").is_in(recs["update_id"].implode())
    )
    rows = collect(
        book.lf.with_row_index("_row").filter(wanted).with_columns(pl.col("_row").cast(pl.Int64))
    )
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
    chosen = joined.sort("msg_id", "_dist", maintain_order=True).unique(
        "msg_id", keep="first", maintain_order=True
    )
    ref = chosen.select("update_id", "ts_event", "ts_local", "levels", *names)
    book_rows = chosen.select(
        pl.col("update_id").alias("last_update_id"),
        pl.col("_book_msg").alias("msg_id"),
        pl.lit(True).alias("is_valid"),
        *[pl.col(f"{n}_book").alias(n) for n in names],
    )
    cmp = _compare("rest", TOP, ref, book_rows, depth, None, sink)
    cmp.records = recs.height
    cmp.not_aligned = (
        {"no_independent_valid_book": recs.height - chosen.height}
        if recs.height > chosen.height
        else {}
    )
    return cmp


# --------------------------------------------------------------------------------------------
# window matching (time-stamped references: Tardis)


OFFSETS = (0, -1, 1)
BBO_PAIRS = [
    ("bid_price", "bid_price_1", 1),
    ("bid_size", "bid_size_1", 1),
    ("ask_price", "ask_price_1", 1),
    ("ask_size", "ask_size_1", 1),
]


def _pairs_for(book: Table, reference: pl.DataFrame) -> tuple[int, list[tuple[str, str, int]]]:
    """(depth, (reference column, book column, level)) of a book_snapshot_N or quotes frame."""
    if "levels" in reference.columns:
        depth = min(schemas.depth_of(book.schema), schemas.depth_of(reference))
        names = [n for g in schemas.level_names(depth) for n in g]
        return depth, [(n, n, int(n.rsplit("_", 1)[1])) for n in names]
    return 1, BBO_PAIRS


def _align(
    book: Table, references: pl.DataFrame, pairs: list[tuple[str, str, int]]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(alignment per reference, the book's pos/t/is_valid, the valid rows near a reference).

    Only ``ts_local`` and ``is_valid`` are read for every row; the level columns only for the
    valid rows at offsets -1, 0, +1 of an aligned reference.
    """
    book_cols = sorted({b for _, b, _ in pairs})
    small = book.rows(None, ["ts_local", "is_valid"]).select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("pos"),
        pl.col("ts_local").dt.epoch("ns").cum_max().alias("t"),
        "is_valid",
    )
    refs = references.with_row_index("ref").with_columns(
        pl.col("ts_local").dt.epoch("ns").alias("t_ref")
    )
    has_levels = "levels" in refs.columns
    joined = (
        refs.sort("t_ref")
        .join_asof(small.select("t", "pos"), left_on="t_ref", right_on="t", strategy="backward")
        .sort("ref")
    )
    near = pl.concat([joined["pos"].drop_nulls() + o for o in OFFSETS]).unique()
    fetched = collect(
        book.lf.with_row_index("pos")
        .with_columns(pl.col("pos").cast(pl.Int64))
        .filter(pl.col("is_valid") & pl.col("pos").is_in(near.implode()))
        .select("pos", "msg_id", "is_valid", *book_cols)
    )
    valid_book = fetched.select(
        "pos", *[pl.col(c).alias(f"{c}__b") for c in book_cols], pl.lit(True).alias("__hit")
    )
    ref_cols = sorted({r for r, _, _ in pairs})
    matched_cols, present_cols = [], []
    for o in OFFSETS:
        cand = joined.select(
            "ref",
            (pl.col("pos") + o).alias("pos_o"),
            *ref_cols,
            *(["levels"] if has_levels else []),
        ).join(valid_book, left_on="pos_o", right_on="pos", how="left", maintain_order="left")
        present = pl.col("__hit").fill_null(False)
        equal = pl.all_horizontal(
            pl.col(r).eq_missing(pl.col(f"{b}__b"))
            | (pl.col("levels") < level if has_levels else pl.lit(False))
            for r, b, level in pairs
        )
        res = cand.select(present.alias("present"), (present & equal).alias("match"))
        matched_cols.append(res["match"].alias(f"match_{o}"))
        present_cols.append(res["present"].alias(f"present_{o}"))
    out = joined.select("ref", "pos").with_columns(*matched_cols, *present_cols)
    offset = pl.when(pl.col("match_0")).then(0)
    for o in OFFSETS[1:]:
        offset = offset.when(pl.col(f"match_{o}")).then(o)
    aligned = out.select(
        "pos",
        (pl.col("pos").is_not_null() & pl.any_horizontal(f"present_{o}" for o in OFFSETS)).alias(
            "aligned"
        ),
        offset.otherwise(None).cast(pl.Int8).alias("offset"),
    )
    return aligned, small, fetched


def align(
    snapshots: Frame | Table, references: pl.DataFrame, pairs: list[tuple[str, str, int]]
) -> pl.DataFrame:
    """Per reference (input order): ``pos`` (aligned row j or null), ``aligned``, ``offset``.

    A reference with local time ``t`` is aligned with message ``j``: the last book_snapshots
    row, in message order, whose ``ts_local <= t`` (``ts_local`` made non-decreasing by a
    running maximum first, so one late clock reading cannot reorder the search). It matches if
    it equals, exactly, the valid book after message ``j``, ``j - 1`` or ``j + 1`` (a clock tie,
    or a reference stamped just before/after its message); offset 0 is tried first. It is
    aligned when ``j`` exists and one of the three rows is valid. ``pairs`` are (reference
    column, book column, level); a pair is skipped where the record's ``levels`` is below it.
    """
    return _align(table_of(snapshots), references, pairs)[0]


def offset_counts(snapshots: Frame | Table, golden: Frame) -> dict[str, int]:
    """How many references matched at offset 0 / -1 / +1, and how many were not aligned."""
    book, reference = table_of(snapshots), collect(lazy(golden))
    a = align(book, reference, _pairs_for(book, reference)[1])
    return {
        "offset_0": int((a["offset"] == 0).sum()),
        "offset_-1": int((a["offset"] == -1).sum()),
        "offset_+1": int((a["offset"] == 1).sum()),
        "not_aligned": int((~a["aligned"]).sum()),
    }


def compare_windowed(
    kind: str,
    scope: str,
    snapshots: Frame | Table,
    reference: Frame,
    *,
    sink: PairsSink | None = None,
) -> ExactComparison:
    """References without update ids (Tardis ``book_snapshot_N``, ``quotes``), within ±1 message.

    Tardis stamps these rows with the ``local_timestamp`` of the message after which it took
    them, not with an update id: they are aligned by time (``align``). A record that matches no
    neighbour is compared with the nearest valid one of the three rows, so its per-level errors
    are reported. Tardis writes a row only when what it shows changed, so on a faithful replay
    offset 0 matches every one of them.
    """
    book, reference = table_of(snapshots), collect(lazy(reference))
    depth, pairs = _pairs_for(book, reference)
    names = [n for g in schemas.level_names(depth) for n in g]
    ref_wide = reference.select(
        "ts_event",
        "ts_local",
        pl.col("levels").clip(upper_bound=depth).cast(pl.Int16)
        if "levels" in reference.columns
        else pl.lit(1, pl.Int16).alias("levels"),
        *[pl.col(r).alias(b) for r, b, _ in pairs],
    )
    if reference.height:
        a, small, fetched = _align(book, reference, pairs)
    else:
        a = pl.DataFrame(schema={"pos": pl.Int64, "aligned": pl.Boolean, "offset": pl.Int8})
        small = book.rows(None, ["is_valid"])
        fetched = pl.DataFrame(schema={"pos": pl.Int64})
    valid = small["is_valid"].fill_null(False).to_numpy()
    n_book = small.height

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
    # every chosen row is a valid row next to an aligned reference: among the fetched ones
    rows = pl.DataFrame({"pos": chosen[idx]}).join(
        fetched, on="pos", how="left", maintain_order="left"
    ) if idx.size else None  # fmt: skip
    rec_frame = (
        rows.select(pl.Series("last_update_id", idx.astype(np.int64)), "msg_id", "is_valid", *names)
        if rows is not None
        else ref_frame.head(0).select(
            pl.col("update_id").alias("last_update_id"),
            pl.lit(None, pl.Int64).alias("msg_id"),
            pl.lit(True).alias("is_valid"),
            *names,
        )
    )
    cmp = _compare(
        kind,
        scope,
        ref_frame.select("update_id", "ts_event", "ts_local", "levels", *names),
        rec_frame,
        depth,
        None,
        sink,
    )
    cmp.records = reference.height
    cmp.not_aligned = (
        {"no_valid_book_near": reference.height - int(aligned.sum())}
        if reference.height > aligned.sum()
        else {}
    )
    return cmp


# --------------------------------------------------------------------------------------------
# one day


def golden_records(golden: Frame | None) -> tuple[int, bool]:
    """(records, every record carries an update id) of a golden frame or file."""
    if golden is None:
        return 0, False
    n, nulls = collect(lazy(golden).select(pl.len(), pl.col("update_id").null_count())).row(0)
    return int(n), bool(n) and nulls == 0


def day_comparisons(
    snapshots: Frame | Table,
    events: Frame | Events | None = None,
    golden_bbo: Frame | None = None,
    golden_depth: Frame | None = None,
    aligned_by: str | None = None,
    rest: bool = True,
    *,
    sink: PairsSink | None = None,
    batch_rows: int | None = None,
) -> list[ExactComparison]:
    """Every golden comparison of a day, from frames or parquet paths, in bounded memory.

    ``aligned_by``: ``"update_id"`` (Binance: the book row at the record's id),
    ``"time"`` (Tardis: within ±1 message of its arrival) or ``None`` (by id when every record
    carries one). The bookTicker/quotes kind is compared whenever ``golden_bbo`` is given, even
    with no records (it is then reported as 0 compared); depth only when it has records; REST
    snapshots in ``events`` when ``rest`` (the replayer checks them too: ``snapshot_mismatches``).
    Records aligned by id are read ``batch_rows`` at a time (default: ``GOLDEN_BATCH``, or the
    book Table's batch if smaller) with the book rows at their ids; ``sink`` receives the
    aligned pairs batch by batch (Gate A2).
    """
    if aligned_by not in (None, "update_id", "time"):
        raise ValueError(f"aligned_by must be 'update_id', 'time' or None, not {aligned_by!r}")
    book, ev = table_of(snapshots), events_of(events)
    rows = _rows(book, batch_rows)
    plan = []
    for golden, by_id, by_time in (
        (golden_bbo, compare_bbo, ("quotes", TOUCH)),
        (golden_depth, compare_depth, ("book_snapshot", TOP)),
    ):
        n, ids = golden_records(golden)
        if golden is None or (n == 0 and golden is golden_depth):
            continue
        plan.append((golden, n, aligned_by == "update_id" or (aligned_by is None and (ids or n == 0)),
                     by_id, by_time))  # fmt: skip
    with_rest = rest and ev is not None and ev.has_snapshots
    if sink is not None:
        snaps = int(ev.heads["is_snapshot"].sum()) if with_rest and ev is not None else 0
        sink.start(sum(p[1] for p in plan) + snaps)
    messages = messages_of(ev) if ev is not None and any(p[2] for p in plan) else None
    out: list[ExactComparison] = []
    for golden, _, by_ids, by_id, by_time in plan:
        if by_ids:
            out.append(by_id(book, golden, messages, sink=sink, batch_rows=rows))
        else:
            out.append(compare_windowed(by_time[0], by_time[1], book, golden, sink=sink))
    if with_rest:
        assert ev is not None
        out.append(compare_rest(book, ev, sink=sink))
    return out


def summary(comparisons: list[ExactComparison]) -> dict[str, int]:
    """CLI totals (compared / matched / mismatched / time mismatched, and per kind)."""
    out = {
        "golden_records": sum(c.records for c in comparisons),
        "golden_compared": sum(c.compared for c in comparisons),
        "golden_matched": sum(c.matched for c in comparisons),
        "golden_mismatched": sum(c.mismatched for c in comparisons),
        "golden_time_mismatched": sum(c.time_mismatched for c in comparisons),
    }
    for c in comparisons:  # summed per kind: a list may hold several days
        for figure, n in (("compared", c.compared), ("mismatched", c.mismatched)):
            key = f"golden_{c.kind}_{figure}"
            out[key] = out.get(key, 0) + n
    return out


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


@dataclass(frozen=True)
class KindCounts:
    """A golden kind's counts as its A1 result keeps them (``exact_results``: the comparison's
    ``summary``), so a day's published counts read the same from a fresh comparison or from
    stored results."""

    kind: str
    records: int
    aligned: int
    mismatched: int
    incidents: int


def kind_counts(results: list[GateResult]) -> list[KindCounts]:
    """The golden kinds among a day's results, in comparison order: the A1 results of one kind
    each (those with a ``records`` figure; the pooled ``touch`` / ``top`` and ``_time`` ones
    have none)."""
    names = ("records", "aligned", "mismatched", "incidents")
    return [
        KindCounts(r.check, *(int(r.metrics[m]) for m in names))
        for r in results
        if r.gate == "A1" and "records" in r.metrics
    ]

"""Day datasets read in bounded memory: lazy scans, batches, and the message heads of a day.

Every Gate A input may be a DataFrame (a replay just done), a LazyFrame or a parquet path (a
lake partition). The gates never hold a whole day of level columns: they take the few columns
they need for every row (flags, times, ids), aggregate the rest batch by batch, and fetch level
columns only for the rows a golden record aligns with (a semi-join pushed into the scan).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import polars as pl

Frame = pl.DataFrame | pl.LazyFrame | Path | str

#: rows per batch when level columns are aggregated (80 Decimal columns: ~130 MB per batch)
BATCH_ROWS = 1 << 18


def lazy(source: Frame) -> pl.LazyFrame:
    """A LazyFrame over a frame or a parquet file (projection and predicates pushed into it)."""
    if isinstance(source, pl.LazyFrame):
        return source
    if isinstance(source, pl.DataFrame):
        return source.lazy()
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return pl.scan_parquet(path)


def collect(lf: pl.LazyFrame) -> pl.DataFrame:
    """Collect with the streaming engine (memory bounded by the result, not the input)."""
    return lf.collect(engine="streaming")


def names(lf: pl.LazyFrame) -> list[str]:
    return lf.collect_schema().names()


def height(lf: pl.LazyFrame) -> int:
    return int(collect(lf.select(pl.len())).item())


def batches(source: Frame, columns: list[str], rows: int = BATCH_ROWS) -> Iterator[pl.DataFrame]:
    """The projected columns in row order, ``rows`` at a time (a parquet file row group by row
    group through pyarrow, so no more than a batch is decoded at once)."""
    if isinstance(source, pl.DataFrame):
        yield from source.select(columns).iter_slices(rows)
    elif isinstance(source, pl.LazyFrame):
        yield from source.select(columns).collect_batches(chunk_size=rows, maintain_order=True)
    else:
        import pyarrow.parquet as pq

        with pq.ParquetFile(source) as f:
            for b in f.iter_batches(batch_size=rows, columns=columns, use_threads=False):
                yield pl.from_arrow(b)  # type: ignore[misc]


HEAD_COLUMNS = [
    "msg_id",
    "is_snapshot",
    "first_update_id",
    "last_update_id",
    "prev_update_id",
    "ts_event",
    "ts_local",
]


class Table:
    """One dataset of a day, from a frame or a parquet file: rows by predicate, or batches."""

    def __init__(self, source: Frame, batch_rows: int = BATCH_ROWS) -> None:
        self.source = source if isinstance(source, pl.DataFrame | pl.LazyFrame) else Path(source)
        self.lf = lazy(source)
        self.batch_rows = batch_rows

    @cached_property
    def height(self) -> int:
        return height(self.lf)

    @cached_property
    def schema(self) -> pl.Schema:
        return self.lf.collect_schema()

    def rows(
        self, predicate: pl.Expr | None = None, columns: list[str] | None = None
    ) -> pl.DataFrame:
        """The rows where ``predicate`` holds, in file order (pushed into the scan)."""
        if predicate is None and isinstance(self.source, pl.DataFrame):
            return self.source.select(columns) if columns else self.source
        lf = self.lf if predicate is None else self.lf.filter(predicate)
        return collect(lf.select(columns) if columns else lf)

    def batches(self, columns: list[str]) -> Iterator[pl.DataFrame]:
        return batches(self.source, columns, self.batch_rows)


class Events(Table):
    """raw_book_events of a day: also one row per message (``heads``).

    A message's rows share its ids, times and kind; ``heads`` keeps the first row of each
    (message, kind) in order of first appearance: what ``group_by(maintain_order=True).first()``
    gives on the whole frame, computed batch by batch. A key's first row starts a run of equal
    keys, so each batch keeps only the rows that start a run (and its first row): the grouping
    then sees ~1 row a message instead of ~15 (a message cut by a batch edge, or a key seen in
    two runs, appears twice; the later row is dropped when the kept rows are grouped).
    """

    @cached_property
    def heads(self) -> pl.DataFrame:
        keys = ["msg_id", "is_snapshot"]
        rest = [c for c in HEAD_COLUMNS if c not in keys]
        same = pl.all_horizontal(pl.col(k).eq_missing(pl.col(k).shift(1)) for k in keys)
        starts = ~same | (pl.int_range(pl.len()) == 0)
        parts = [b.filter(starts) for b in self.batches(HEAD_COLUMNS)]
        if not parts:
            return pl.DataFrame(schema={c: self.schema[c] for c in HEAD_COLUMNS})
        return (
            pl.concat(parts)
            .group_by(keys, maintain_order=True)
            .agg(pl.col(rest).first())
            .select(HEAD_COLUMNS)
        )

    @cached_property
    def has_snapshots(self) -> bool:
        return self.height > 0 and bool(self.heads["is_snapshot"].any())


def table_of(source: Frame | Table, batch_rows: int = BATCH_ROWS) -> Table:
    return source if isinstance(source, Table) else Table(source, batch_rows)


def events_of(source: Frame | Events | None, batch_rows: int = BATCH_ROWS) -> Events | None:
    if source is None or isinstance(source, Events):
        return source
    return Events(source, batch_rows)

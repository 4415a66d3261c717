"""Great Expectations 1.x suites for raw_book_events and book_snapshots, run on the written files.

Why GE next to the Polars invariants: the suites are declarative, readable by non-engineers and
report ``unexpected_count`` / samples per expectation, which land in the check's metadata. They
are not the hard gate (the Polars checks in ``checks.py`` are, before writing).

``import great_expectations`` costs 8–16 s, so it happens lazily inside ``validate`` (once per run
process; later calls reuse the module and the ephemeral context). No project folder, no files:
``gx.get_context(mode="ephemeral")`` with a pandas datasource. Decimal prices/sizes are handed to
pandas as float64 (exact enough for ordering and sign tests; exactness is the Polars checks' job).

A real-volume day (27 M raw_book_events rows) does not fit in pandas at once, so the suite runs
on batches of every row (no sampling) and the results are summed into the day's (``_Totals``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from obpipeline import schemas
from obpipeline.verdict import Severity, Verdict

# raw_book_events columns that are never null (a level-less message has a null side/price/size)
RAW_NOT_NULL = [
    "ts_event",
    "ts_local",
    "msg_id",
    "first_update_id",
    "last_update_id",
    "is_snapshot",
]


def _raw_suite(gxe: Any) -> list[Any]:
    return [
        *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in RAW_NOT_NULL],
        gxe.ExpectColumnValuesToBeInSet(column="side", value_set=[schemas.BID, schemas.ASK]),
        gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0, strict_min=True),
        gxe.ExpectColumnValuesToBeBetween(column="size", min_value=0),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="last_update_id", column_B="first_update_id", or_equal=True
        ),
        gxe.ExpectColumnValuesToBeIncreasing(column="msg_id"),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
    ]


def _snapshots_suite(gxe: Any) -> list[Any]:
    # Run on the rows that claim to be in sync (is_valid): those must be sane books. A side may
    # be empty for a moment on a thin book (the simulator's demo profile does it), hence mostly.
    return [
        *[
            gxe.ExpectColumnValuesToNotBeNull(column=c)
            for c in ("ts_event", "msg_id", "last_update_id")
        ],
        *[
            gxe.ExpectColumnValuesToNotBeNull(column=c, mostly=0.999)
            for c in ("bid_price_1", "ask_price_1")
        ],
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="ask_price_1", column_B="bid_price_1", ignore_row_if="either_value_is_missing"
        ),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="bid_price_1", column_B="bid_price_2", ignore_row_if="either_value_is_missing"
        ),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="ask_price_2", column_B="ask_price_1", ignore_row_if="either_value_is_missing"
        ),
        gxe.ExpectColumnValuesToBeBetween(column="bid_size_1", min_value=0, strict_min=True),
        gxe.ExpectColumnValuesToBeBetween(column="ask_size_1", min_value=0, strict_min=True),
        gxe.ExpectColumnValuesToBeIncreasing(column="last_update_id"),
    ]


SUITES = {"raw_book_events": _raw_suite, "book_snapshots": _snapshots_suite}
COLUMNS = {
    "raw_book_events": [*RAW_NOT_NULL, "side", "price", "size"],
    "book_snapshots": [
        "ts_event",
        "msg_id",
        "last_update_id",
        "bid_price_1",
        "bid_size_1",
        "bid_price_2",
        "ask_price_1",
        "ask_size_1",
        "ask_price_2",
    ],
}

_context: dict[str, Any] = {}


def _validation(dataset: str) -> Any:
    """The (cached) ValidationDefinition of a dataset in one ephemeral context per process."""
    if dataset in _context:
        return _context[dataset]
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # GE hashes every dataframe under 1 GB into a "pandas_data_fingerprint" batch marker that
    # nothing here reads: ~20 % of a real day's suite (1.5 of 7.5 CPU-s). 0 turns it off.
    pandas_execution_engine.HASH_THRESHOLD = 0

    ctx = _context.get("__ctx__")
    if ctx is None:
        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        _context["__ctx__"] = ctx
    suite = ctx.suites.add(gx.ExpectationSuite(name=dataset, expectations=SUITES[dataset](gxe)))
    batch = (
        ctx.data_sources.add_pandas(f"{dataset}_source")
        .add_dataframe_asset(dataset)
        .add_batch_definition_whole_dataframe("day")
    )
    vd = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=f"{dataset}_validation", data=batch, suite=suite)
    )
    _context[dataset] = vd
    return vd


# rows per GE run: ~0.3 GB of pandas for these columns; each run also costs ~0.1 s of GE's own
# bookkeeping, so a real day (27 M rows) in 2 M-row batches takes 4.3 CPU-s, in 1 M-row 5.9
BATCH_ROWS = 2_000_000


def _frame(dataset: str, frame: pl.DataFrame) -> Any:
    cols = [c for c in COLUMNS[dataset] if c in frame.columns]
    if dataset == "book_snapshots" and "is_valid" in frame.columns:
        frame = frame.filter(pl.col("is_valid"))
    out = frame.select(cols).with_columns(pl.col(pl.Decimal).cast(pl.Float64))
    return out.to_pandas()


def _read_columns(dataset: str, names: list[str]) -> list[str]:
    wanted = [*COLUMNS[dataset], "is_valid"] if dataset == "book_snapshots" else COLUMNS[dataset]
    return [c for c in wanted if c in names]


class _Totals:
    """One suite's results over the batches of a day, as if run on the whole day: unexpected
    counts summed, the first samples kept, ``mostly`` judged on the day's totals, row counts
    on the day's rows, and "increasing" also checked across each batch edge."""

    def __init__(self) -> None:
        self.rows = 0
        self.batches = 0
        self.by_key: dict[str, dict[str, Any]] = {}
        self.last: dict[str, Any] = {}  # column -> last non-null value (increasing checks)

    def add(self, result: Any, frame: Any) -> None:
        self.batches += 1
        self.rows += len(frame)
        for r in result.results:
            cfg = r.expectation_config
            key = f"{cfg.type}:{sorted(cfg.kwargs.items())}"
            t = self.by_key.setdefault(
                key,
                {"cfg": cfg, "unexpected": 0, "elements": 0, "missing": 0, "sample": [],
                 "exception": "", "success": True},
            )  # fmt: skip
            res = r.result or {}
            if r.exception_info and r.exception_info.get("raised_exception"):
                t["exception"] = t["exception"] or str(r.exception_info.get("exception_message"))
            t["success"] = t["success"] and bool(r.success)
            t["unexpected"] += int(res.get("unexpected_count") or 0)
            t["elements"] += int(res.get("element_count") or 0)
            t["missing"] += int(res.get("missing_count") or 0)
            t["sample"] += [str(x) for x in res.get("partial_unexpected_list") or []]
            del t["sample"][5:]
            if cfg.type == "expect_column_values_to_be_increasing":
                self._edge(t, frame[cfg.kwargs["column"]], bool(cfg.kwargs.get("strictly")))

    def _edge(self, t: dict[str, Any], column: Any, strictly: bool) -> None:
        """The pair across the batch edge: the last value before it and the first after."""
        values = column.dropna()
        if values.empty:
            return
        first, name = values.iloc[0], column.name
        before = self.last.get(name)
        if before is not None and (first <= before if strictly else first < before):
            t["unexpected"] += 1
            t["sample"] = (t["sample"] + [str(first)])[:5]
        self.last[name] = values.iloc[-1]

    def failed(self) -> list[dict[str, Any]]:
        out = []
        for t in self.by_key.values():
            cfg = t["cfg"]
            kwargs = cfg.kwargs
            if t["exception"]:
                ok = False
            elif cfg.type == "expect_table_row_count_to_be_between":
                lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
                ok = (lo is None or self.rows >= lo) and (hi is None or self.rows <= hi)
                t["unexpected"] = None if ok else self.rows
            elif kwargs.get("mostly") is not None:
                base = t["elements"]
                if cfg.type != "expect_column_values_to_not_be_null":
                    base -= t["missing"]
                ok = base == 0 or (base - t["unexpected"]) / base >= kwargs["mostly"]
            else:
                ok = t["unexpected"] == 0 and (t["success"] or t["elements"] == 0)
            if ok:
                continue
            out.append(
                {
                    "type": cfg.type,
                    "column": kwargs.get("column")
                    or f"{kwargs.get('column_A')}>{kwargs.get('column_B')}",
                    "unexpected_count": t["unexpected"],
                    "sample": t["sample"],
                    "exception": t["exception"][:200],
                }
            )
        return out


def _run(dataset: str, frames: Iterator[pl.DataFrame], empty: pl.DataFrame) -> Verdict:
    """The dataset's suite over every row of ``frames`` (batches of one day, in order): the
    ``ge_suite`` check's verdict, failed expectations (type, column, count, samples) by name."""
    started = time.perf_counter()
    vd = _validation(dataset)
    totals = _Totals()
    for frame in frames:
        batch = _frame(dataset, frame)
        if len(batch):
            totals.add(
                vd.run(batch_parameters={"dataframe": batch}, result_format="SUMMARY"), batch
            )
    if totals.batches == 0:  # no rows: the suite still runs (and the row count fails)
        batch = _frame(dataset, empty)
        totals.add(vd.run(batch_parameters={"dataframe": batch}, result_format="SUMMARY"), batch)
    failed = totals.failed()
    evaluated = len(totals.by_key)
    return Verdict(
        "ge_suite",
        not failed,
        Severity.ERROR,
        f"{len(failed)} of {evaluated} expectations failed"
        if failed
        else f"{evaluated} expectations met",
        {
            "evaluated": evaluated,
            "failed": len(failed),
            "failed_expectations": failed,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )


def validate(dataset: str, frame: pl.DataFrame, batch_rows: int = BATCH_ROWS) -> Verdict:
    """Run the dataset's suite on one day held in memory; failures carry type, column, count
    and samples."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be positive: {batch_rows}")
    frame = frame.select(_read_columns(dataset, frame.columns))
    return _run(dataset, frame.iter_slices(batch_rows), frame.head(0))


def validate_parquet(dataset: str, path: Path | str, batch_rows: int = BATCH_ROWS) -> Verdict:
    """Run the dataset's suite on every row of a day's parquet file, ``batch_rows`` at a time
    and reading only the columns the suite looks at: memory is that of a batch."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be positive: {batch_rows}")
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"{dataset} {path}: not a readable parquet file ({exc})") from exc
    columns = _read_columns(dataset, pf.schema_arrow.names)
    empty = pl.from_arrow(pf.schema_arrow.empty_table().select(columns))
    assert isinstance(empty, pl.DataFrame)

    def frames() -> Iterator[pl.DataFrame]:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            yield frame

    return _run(dataset, frames(), empty)

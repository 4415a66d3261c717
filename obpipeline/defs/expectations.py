"""Great Expectations 1.x suites for raw_book_events and book_snapshots, run on the written files.

Why GE next to the Polars invariants: the suites are declarative, readable by non-engineers and
report ``unexpected_count`` / samples per expectation, which land in the check's metadata. They
are not the hard gate (the Polars checks in ``checks.py`` are, before writing).

``import great_expectations`` costs 8–16 s, so it happens lazily inside ``validate`` (once per run
process; later calls reuse the module and the ephemeral context). No project folder, no files:
``gx.get_context(mode="ephemeral")`` with a pandas datasource. Decimal prices/sizes are handed to
pandas as float64 (exact enough for ordering and sign tests; exactness is the Polars checks' job).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import polars as pl

from obpipeline import schemas


@dataclass
class GEResult:
    passed: bool
    evaluated: int
    failed: list[dict[str, Any]]
    seconds: float


def _raw_suite(gxe: Any) -> list[Any]:
    return [
        *[
            gxe.ExpectColumnValuesToNotBeNull(column=c)
            for c in (
                "ts_event",
                "ts_local",
                "msg_id",
                "first_update_id",
                "last_update_id",
                "is_snapshot",
            )
        ],
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
    "raw_book_events": [
        "ts_event",
        "ts_local",
        "msg_id",
        "first_update_id",
        "last_update_id",
        "is_snapshot",
        "side",
        "price",
        "size",
    ],
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


def _frame(dataset: str, frame: pl.DataFrame) -> Any:
    cols = [c for c in COLUMNS[dataset] if c in frame.columns]
    out = frame.select(cols)
    if dataset == "book_snapshots":
        out = frame.filter(pl.col("is_valid")).select(cols)
    out = out.with_columns(pl.col(pl.Decimal).cast(pl.Float64))
    return out.to_pandas()


def validate(dataset: str, frame: pl.DataFrame) -> GEResult:
    """Run the dataset's suite on one day; failures carry type, column, count and samples."""
    import time

    started = time.perf_counter()
    vd = _validation(dataset)
    result = vd.run(batch_parameters={"dataframe": _frame(dataset, frame)}, result_format="SUMMARY")
    failed = []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        kwargs = cfg.kwargs
        failed.append(
            {
                "type": cfg.type,
                "column": kwargs.get("column")
                or f"{kwargs.get('column_A')}>{kwargs.get('column_B')}",
                "unexpected_count": (r.result or {}).get("unexpected_count"),
                "sample": [str(x) for x in (r.result or {}).get("partial_unexpected_list", [])[:5]],
                "exception": str((r.exception_info or {}).get("exception_message") or "")[:200],
            }
        )
    return GEResult(
        passed=bool(result.success),
        evaluated=int(result.statistics["evaluated_expectations"]),
        failed=failed,
        seconds=time.perf_counter() - started,
    )

"""The common result of every fidelity check: a ``GateResult``, and the long metrics frame.

Each check says which gate it belongs to (A0, A1, A2 block a day; C only warns), its status, the
figure it judged and the threshold, and *where* it first failed (exchange time and message id),
which the mutation test turns into a detection latency.

Statuses are ``obpipeline.verdict.Status`` (the one vocabulary, explained there): ``pass``,
``fail``, ``insufficient``, ``warn``, ``skipped``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from obpipeline.verdict import Status

PASS, FAIL, INSUFFICIENT, WARN, SKIPPED = (s.value for s in Status)
BLOCKING_GATES = ("A0", "A1", "A2")
# A1 checks that are not records of the golden datasets (golden_bbo, golden_depth): the pooled
# touch/top evidence and the REST snapshots (counted by opening_book_agrees). ``golden_compared``
# everywhere (checks, metadata, daily table, report, demo) counts the other A1 kinds only.
NOT_GOLDEN = ("touch", "top", "rest")


def golden_counts(comparisons: list[Any]) -> dict[str, Any]:
    """The one definition of a day's golden counts, from ``fidelity.exact`` comparisons (or
    their ``KindCounts``: kind, records, aligned, mismatched)."""
    mine = [c for c in comparisons if c.kind not in NOT_GOLDEN]
    records = sum(c.records for c in mine)
    compared = sum(c.aligned for c in mine)
    mismatched = sum(c.mismatched for c in mine)
    return {
        "golden_records": records,
        "golden_compared": compared,
        "golden_mismatched": mismatched,
        "golden_match_rate": (compared - mismatched) / compared if compared else 0.0,
    }


@dataclass
class GateResult:
    gate: str  # A0 | A1 | A2 | C
    check: str  # e.g. "gaps", "bookTicker", "spread_delta"
    status: str
    value: float | None = None  # the judged figure
    threshold: float | None = None
    detail: str = ""
    first_failure_ns: int | None = None  # exchange time (ns) of the first failing record
    first_failure_msg_id: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def blocking(self) -> bool:
        return self.gate in BLOCKING_GATES

    @property
    def failed(self) -> bool:
        """A blocking failure: what stops the day (Gate A) and what the mutation test needs."""
        return self.blocking and self.status == FAIL

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["blocking"] = self.blocking
        return out


def gate_passed(results: list[GateResult]) -> bool:
    """Gate A verdict of a day: no blocking check failed."""
    return not any(r.failed for r in results)


def failures(results: list[GateResult]) -> list[GateResult]:
    return [r for r in results if r.failed]


def first_failure(results: list[GateResult]) -> GateResult | None:
    """The failed blocking check that fired earliest in exchange time (None if none failed)."""
    failed = [r for r in results if r.failed]
    if not failed:
        return None
    return min(
        failed, key=lambda r: r.first_failure_ns if r.first_failure_ns is not None else math.inf
    )


METRICS_SCHEMA = pl.Schema(
    {
        "gate": pl.String,
        "check": pl.String,
        "metric": pl.String,
        "value": pl.Float64,
        "status": pl.String,
        "blocking": pl.Boolean,
        "threshold": pl.Float64,
        "detail": pl.String,
    }
)
"""The ``fidelity_metrics`` dataset: one row per (check, metric) of a day, long format, so new
metrics never change the schema. The row with ``metric == "value"`` carries the check's verdict."""


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f


def metrics_frame(results: list[GateResult]) -> pl.DataFrame:
    """GateResults → the long ``fidelity_metrics`` frame (one verdict row + one row per metric)."""
    rows: list[dict[str, Any]] = []
    for r in results:
        rows.append(
            {
                "gate": r.gate,
                "check": r.check,
                "metric": "value",
                "value": _num(r.value),
                "status": r.status,
                "blocking": r.blocking,
                "threshold": _num(r.threshold),
                "detail": r.detail,
            }
        )
        for name, v in r.metrics.items():
            rows.append(
                {
                    "gate": r.gate,
                    "check": r.check,
                    "metric": name,
                    "value": _num(v),
                    "status": None,
                    "blocking": r.blocking,
                    "threshold": None,
                    "detail": None,
                }
            )
    return pl.DataFrame(rows, schema=METRICS_SCHEMA)


def results_from_frame(frame: pl.DataFrame) -> list[GateResult]:
    """Inverse of ``metrics_frame`` (first-failure positions are not stored)."""
    out: list[GateResult] = []
    for (gate, check), part in frame.group_by(["gate", "check"], maintain_order=True):
        head = part.filter(pl.col("metric") == "value")
        if head.height == 0:
            continue
        h = head.row(0, named=True)
        metrics = {
            m: v
            for m, v in part.filter(pl.col("metric") != "value")
            .select("metric", "value")
            .iter_rows()
        }
        out.append(
            GateResult(
                str(gate),
                str(check),
                h["status"],
                h["value"],
                h["threshold"],
                h["detail"] or "",
                metrics=metrics,
            )
        )
    return out

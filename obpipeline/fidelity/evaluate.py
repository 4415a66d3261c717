"""One day's fidelity: Gates A0 + A1 + A2 over a replayed day, as verdicts and a metrics frame.

This is the function the Dagster ``fidelity_metrics`` asset, the CLI and the mutation test share::

    day = evaluate_day(snapshots, instrument, events=..., golden_bbo=..., golden_depth=...,
                       counters=result.counters, checkpoint_in=previous_checkpoint)
    day.passed            # Gate A verdict (no blocking check failed)
    day.metrics           # the long fidelity_metrics frame (gates.METRICS_SCHEMA)
    day.results           # list[GateResult]

Golden kinds are chosen by what the inputs carry: records with update ids are aligned by id
(``exact.compare_bbo`` / ``compare_depth``), records without (Tardis ``quotes`` /
``book_snapshot_N``) by time within ±1 message (``exact.compare_windowed``); REST snapshots inside
``events`` are compared when they arrive on a valid book (``exact.compare_rest``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from obpipeline.book.stream import Book, ReplayCounters
from obpipeline.fidelity import exact, gates
from obpipeline.fidelity.config import Thresholds, thresholds_for
from obpipeline.fidelity.frames import Events, Frame, Table, events_of, table_of
from obpipeline.fidelity.gates import GateResult
from obpipeline.fidelity.integrity import IntegrityReport, integrity
from obpipeline.fidelity.materiality import Materiality, MaterialityReport
from obpipeline.instruments import Instrument


@dataclass
class DayFidelity:
    """Everything Gate A computed for one day."""

    results: list[GateResult]
    integrity: IntegrityReport
    comparisons: list[exact.ExactComparison]
    materiality: MaterialityReport | None
    thresholds: Thresholds
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return gates.gate_passed(self.results)

    @property
    def failures(self) -> list[GateResult]:
        return gates.failures(self.results)

    @property
    def metrics(self) -> pl.DataFrame:
        return gates.metrics_frame(self.results)

    def summary(self) -> dict[str, object]:
        """A flat summary for logs, CLI output and Dagster metadata."""
        out: dict[str, object] = {"passed": self.passed}
        for c in self.comparisons:
            out[f"{c.kind}_aligned"] = c.aligned
            out[f"{c.kind}_mismatched"] = c.mismatched
            out[f"{c.kind}_incidents"] = c.incidents
        for k in ("gaps", "crossed", "uncross_repairs", "duplicates", "gap_invalid_seconds"):
            out[k] = self.integrity.figures.get(k)
        out["failed_checks"] = [f"{r.gate}:{r.check}" for r in self.failures]
        return out


def comparisons_for(
    snapshots: Frame | Table,
    events: Frame | Events | None = None,
    golden_bbo: Frame | None = None,
    golden_depth: Frame | None = None,
    sink: exact.PairsSink | None = None,
) -> list[exact.ExactComparison]:
    """Every A1 comparison the inputs allow (see the module docstring); empty kinds are left out."""
    n_bbo = exact.golden_records(golden_bbo)[0]
    bbo = golden_bbo if n_bbo else None
    return exact.day_comparisons(snapshots, events, bbo, golden_depth, sink=sink)


def evaluate_day(
    snapshots: Frame | Table,
    instrument: Instrument,
    *,
    events: Frame | Events | None = None,
    golden_bbo: Frame | None = None,
    golden_depth: Frame | None = None,
    counters: ReplayCounters | dict | None = None,
    checkpoint_in: Book | None = None,
    quarantined: int = 0,
    thresholds: Thresholds | None = None,
    with_materiality: bool = True,
) -> DayFidelity:
    """Gate A (A0 integrity, A1 exact, A2 materiality) for one replayed day.

    Frames or parquet paths alike: level columns are read in batches or only at aligned rows;
    golden records batch by batch, Gate A2 accumulating on each batch of aligned pairs.
    """
    t = thresholds or thresholds_for(instrument.venue_id)
    snapshots, events = table_of(snapshots), events_of(events)
    a0 = integrity(snapshots, instrument, events, counters, checkpoint_in, quarantined)
    sink = Materiality(instrument, t) if with_materiality else None
    comps = comparisons_for(snapshots, events, golden_bbo, golden_depth, sink)
    results = a0.results(t) + exact.exact_results(comps, t)
    mat = sink.report() if sink is not None else None
    if mat is not None:
        results += mat.results
    return DayFidelity(results, a0, comps, mat, t)


def fidelity_metrics(
    snapshots: pl.DataFrame,
    instrument: Instrument,
    **inputs: object,
) -> tuple[pl.DataFrame, list[GateResult]]:
    """``evaluate_day`` reduced to what an asset stores and checks: (metrics frame, verdicts)."""
    day = evaluate_day(snapshots, instrument, **inputs)  # type: ignore[arg-type]
    return day.metrics, day.results

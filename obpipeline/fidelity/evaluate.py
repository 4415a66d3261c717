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

Gates A1 + A2 are the day's one golden comparison (``golden_day``): the Dagster book_snapshots
step runs it before publishing (its blocking ``golden_exact`` check) and stores the results;
``evaluate_day`` takes them (``golden=``) instead of comparing the day again.
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
    comparisons: list[exact.ExactComparison]  # empty when the A1 + A2 results were given
    materiality: MaterialityReport | None  # None then too
    thresholds: Thresholds
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def kinds(self) -> list[exact.KindCounts]:
        """Each golden kind's counts, from the A1 results (so also when they were given)."""
        return exact.kind_counts(self.results)

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
        for c in self.kinds:
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


@dataclass
class GoldenDay:
    """Gates A1 + A2 of one day: the golden comparison and what Gate A2 made of its pairs."""

    comparisons: list[exact.ExactComparison]
    materiality: MaterialityReport | None
    results: list[GateResult]  # A1 (``exact.exact_results``), then A2


def golden_day(
    snapshots: Frame | Table,
    instrument: Instrument,
    *,
    events: Frame | Events | None = None,
    golden_bbo: Frame | None = None,
    golden_depth: Frame | None = None,
    thresholds: Thresholds | None = None,
    with_materiality: bool = True,
) -> GoldenDay:
    """Gates A1 + A2 of a day: every golden kind the inputs allow compared with the book, Gate A2
    accumulating on each batch of aligned pairs. Golden records are read batch by batch and the
    book's level columns only at aligned rows."""
    t = thresholds or thresholds_for(instrument.venue_id)
    sink = Materiality(instrument, t) if with_materiality else None
    comps = comparisons_for(table_of(snapshots), events_of(events), golden_bbo, golden_depth, sink)
    mat = sink.report() if sink is not None else None
    return GoldenDay(comps, mat, exact.exact_results(comps, t) + (mat.results if mat else []))


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
    golden: list[GateResult] | None = None,
) -> DayFidelity:
    """Gate A (A0 integrity, A1 exact, A2 materiality) for one replayed day.

    Frames or parquet paths alike: level columns are read in batches or only at aligned rows.
    ``golden``: the day's A1 + A2 results, already computed by ``golden_day`` on the same inputs
    and thresholds (the book_snapshots step stores them): used as they are, nothing is compared.
    """
    t = thresholds or thresholds_for(instrument.venue_id)
    snapshots, events = table_of(snapshots), events_of(events)
    a0 = integrity(snapshots, instrument, events, counters, checkpoint_in, quarantined)
    if golden is None:
        g = golden_day(
            snapshots, instrument, events=events, golden_bbo=golden_bbo,
            golden_depth=golden_depth, thresholds=t, with_materiality=with_materiality,
        )  # fmt: skip
    else:
        g = GoldenDay([], None, golden)
    return DayFidelity(a0.results(t) + g.results, a0, g.comparisons, g.materiality, t)


def fidelity_metrics(
    snapshots: pl.DataFrame,
    instrument: Instrument,
    **inputs: object,
) -> tuple[pl.DataFrame, list[GateResult]]:
    """``evaluate_day`` reduced to what an asset stores and checks: (metrics frame, verdicts)."""
    day = evaluate_day(snapshots, instrument, **inputs)  # type: ignore[arg-type]
    return day.metrics, day.results

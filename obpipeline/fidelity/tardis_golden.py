"""Former home of the time-aligned (Tardis) golden comparison, now ``fidelity.exact``.

Kept only as names for callers not yet switched to ``exact.day_comparisons(aligned_by="time")``.
"""

from __future__ import annotations

from obpipeline.fidelity.exact import (
    OFFSETS,
    TOP,
    TOUCH,
    ExactComparison,
    Frame,
    Table,
    align,
    compare_windowed,
    offset_counts,
)


def compare_depth(snapshots: Frame | Table, golden_depth: Frame) -> ExactComparison:
    """``book_snapshot_N`` records against the book within ±1 message of their arrival time."""
    return compare_windowed("book_snapshot", TOP, snapshots, golden_depth)


def compare_bbo(snapshots: Frame | Table, golden_bbo: Frame) -> ExactComparison:
    """``quotes`` / ``book_ticker`` records against level 1 within ±1 message of their time."""
    return compare_windowed("quotes", TOUCH, snapshots, golden_bbo)


__all__ = ["OFFSETS", "align", "compare_bbo", "compare_depth", "offset_counts"]

"""Former home of the update-id-aligned golden comparison, now ``fidelity.exact``.

Kept only as names for callers not yet switched to ``exact.day_comparisons`` / ``exact.summary``.
"""

from __future__ import annotations

from obpipeline.fidelity.exact import ExactComparison, compare_bbo, compare_depth, summary

GoldenComparison = ExactComparison

__all__ = ["GoldenComparison", "compare_bbo", "compare_depth", "summary"]

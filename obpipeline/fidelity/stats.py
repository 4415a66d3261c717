"""Small exact statistics the gates need: Clopper–Pearson bounds and incident counting.

Why one-sided Clopper–Pearson: the claim to certify is "the mismatch rate is below p*", so only
the upper bound matters, and it must hold for any n, including 0 failures (where it is
``1 - alpha**(1/n)``, the "rule of three" 3/n for 95 %). Why incidents: a wrong level often
survives several reference snapshots until the exchange overwrites it; those snapshots are not
independent trials, so the bound is computed on runs of consecutive mismatches (FIDELITY.md:
"count incidents, not repeated snapshots of the same error").
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def clopper_pearson_upper(failures: int, n: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound of a binomial rate (1.0 when n == 0: nothing is known)."""
    if failures < 0 or n < 0 or failures > n:
        raise ValueError(f"need 0 <= failures <= n, got {failures} of {n}")
    if n == 0 or failures == n:
        return 1.0
    return float(stats.beta.ppf(confidence, failures + 1, n - failures))


def clopper_pearson_lower(failures: int, n: int, confidence: float = 0.95) -> float:
    """One-sided lower confidence bound of a binomial rate (0.0 when there are no failures)."""
    if failures < 0 or n < 0 or failures > n:
        raise ValueError(f"need 0 <= failures <= n, got {failures} of {n}")
    if failures == 0:
        return 0.0
    return float(stats.beta.ppf(1.0 - confidence, failures, n - failures + 1))


def records_to_certify(rate: float, confidence: float = 0.95) -> int:
    """Aligned records with zero failures needed for the upper bound to fall below ``rate``."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    n = math.ceil(math.log(1.0 - confidence) / math.log1p(-rate))
    while clopper_pearson_upper(0, n, confidence) >= rate:  # guard the float edge
        n += 1
    return n


def incident_starts(mismatch: np.ndarray) -> np.ndarray:
    """Boolean mask of the records that start an incident (a run of consecutive mismatches)."""
    m = np.asarray(mismatch, dtype=bool)
    if m.size == 0:
        return m
    prev = np.concatenate(([False], m[:-1]))
    return m & ~prev


def count_incidents(mismatch: np.ndarray) -> int:
    """Number of runs of consecutive True values (each run is one incident)."""
    return int(incident_starts(mismatch).sum())


def incident_lengths(mismatch: np.ndarray) -> np.ndarray:
    """Length of each run of consecutive True values, in order."""
    m = np.asarray(mismatch, dtype=np.int8)
    if m.size == 0:
        return np.zeros(0, np.int64)
    edges = np.diff(np.concatenate(([0], m, [0])))
    return (np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).astype(np.int64)

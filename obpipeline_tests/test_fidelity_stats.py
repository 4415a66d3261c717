"""Clopper–Pearson bounds against known values, incident counting, the thresholds object."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats as sps

from obpipeline.fidelity import stats
from obpipeline.fidelity.config import DEFAULT, Thresholds, thresholds_for


def test_zero_failures_is_the_rule_of_three() -> None:
    # 1 - 0.05**(1/n): the exact zero-failure bound, ~3/n
    for n in (10, 100, 3000, 864_000):
        assert stats.clopper_pearson_upper(0, n) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)
    assert stats.clopper_pearson_upper(0, 3000) < 1e-3 < stats.clopper_pearson_upper(0, 2994)
    assert stats.clopper_pearson_upper(0, 864_000) == pytest.approx(3.467e-6, rel=1e-3)


def test_known_values() -> None:
    # tabulated one-sided 95 % upper limits (e.g. Clopper & Pearson 1934; any CP table)
    assert stats.clopper_pearson_upper(1, 10) == pytest.approx(0.39416, abs=1e-5)
    # the F-distribution form of the same bound (an independent formula)
    x, n = 5, 20
    f = sps.f.ppf(0.95, 2 * (x + 1), 2 * (n - x))
    assert stats.clopper_pearson_upper(x, n) == pytest.approx(
        (x + 1) * f / (n - x + (x + 1) * f), rel=1e-9
    )
    assert stats.clopper_pearson_upper(0, 1) == pytest.approx(0.95)
    assert stats.clopper_pearson_upper(3, 3) == 1.0
    assert stats.clopper_pearson_upper(0, 0) == 1.0
    assert stats.clopper_pearson_lower(0, 50) == 0.0
    assert stats.clopper_pearson_lower(10, 10) == pytest.approx(0.05 ** (1 / 10))


@pytest.mark.parametrize(("x", "n"), [(0, 7), (1, 10), (7, 50), (49, 50), (3, 100_000)])
def test_agrees_with_scipy_binomtest(x: int, n: int) -> None:
    ci = sps.binomtest(x, n, alternative="less").proportion_ci(0.95, method="exact")
    assert stats.clopper_pearson_upper(x, n) == pytest.approx(ci.high, rel=1e-9)
    ci = sps.binomtest(x, n, alternative="greater").proportion_ci(0.95, method="exact")
    assert stats.clopper_pearson_lower(x, n) == pytest.approx(ci.low, rel=1e-9, abs=1e-15)


def test_records_to_certify() -> None:
    assert stats.records_to_certify(1e-3) == 2995  # "≥ 3 000 aligned records certify 0.1 %"
    assert stats.records_to_certify(1e-4) == 29956
    n = stats.records_to_certify(1e-3, 0.99)
    assert (
        stats.clopper_pearson_upper(0, n, 0.99)
        < 1e-3
        <= stats.clopper_pearson_upper(0, n - 1, 0.99)
    )
    with pytest.raises(ValueError):
        stats.records_to_certify(0.0)


def test_incidents_count_runs_not_records() -> None:
    m = np.array([0, 1, 1, 1, 0, 0, 1, 0, 1, 1], bool)
    assert stats.count_incidents(m) == 3
    assert stats.incident_starts(m).tolist() == [0, 1, 0, 0, 0, 0, 1, 0, 1, 0]
    assert stats.incident_lengths(m).tolist() == [3, 1, 2]
    assert stats.count_incidents(np.zeros(0, bool)) == 0
    assert stats.count_incidents(np.ones(5, bool)) == 1


def test_thresholds_are_frozen_documented_and_overridable() -> None:
    assert DEFAULT.max_mismatch_rate_top == 1e-3
    assert DEFAULT.max_mismatch_rate_touch == 1e-4
    assert DEFAULT.max_slippage_mean_delta_bp == 0.05
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.max_gaps = 3  # type: ignore[misc]
    cm = thresholds_for("binance-cm")
    assert cm.walk_sizes != DEFAULT.walk_sizes and cm.max_gaps == DEFAULT.max_gaps
    assert thresholds_for("binance-usdm", max_gaps=2).max_gaps == 2
    assert thresholds_for("unknown-venue") == DEFAULT
    with pytest.raises(TypeError):
        thresholds_for("binance-usdm", no_such_threshold=1)
    with pytest.raises(ValueError):
        Thresholds(confidence=1.5)
    assert math.isclose(DEFAULT.to_dict()["confidence"], 0.95)

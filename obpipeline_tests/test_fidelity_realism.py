"""Gate C estimators on series with known parameters."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from obpipeline import schemas
from obpipeline.fidelity import realism as R
from obpipeline.fidelity.config import DEFAULT
from obpipeline.fidelity.gates import PASS, WARN
from obpipeline.instruments import get_instrument


def test_hill_recovers_the_tail_index_of_student_t3() -> None:
    x = np.random.default_rng(7).standard_t(3, size=200_000)
    est = R.hill_tails(x, (0.01, 0.02), samples=40)
    for e in est:
        assert e.iid_low < e.alpha < e.iid_high and e.boot_low < e.alpha < e.boot_high
        # Student-t's second-order term biases Hill down as k grows (≈ 2.7 at 2 %)
        assert 2.5 < e.alpha < 3.2, e
    # closer to the tail the bias fades: k = 0.2 % of a million draws gives ≈ 3 on both tails
    big = np.random.default_rng(7).standard_t(3, size=1_000_000)
    for e in R.hill_tails(big, (0.002,), samples=0):
        assert e.alpha == pytest.approx(3.0, abs=0.15), e
        assert e.iid_low - 0.1 < 3.0 < e.iid_high + 0.1
    # a Pareto sample with index 2: Hill is exact in expectation at any k
    p = np.random.default_rng(1).pareto(2.0, 100_000) + 1.0
    assert R.hill(p, 5_000) == pytest.approx(2.0, rel=0.05)


def test_garch_t_maximum_likelihood_recovers_its_parameters() -> None:
    r = R.simulate_garch_t(30_000, omega=1e-7, alpha=0.08, beta=0.90, nu=5.0, seed=11)
    g = R.fit_garch_t(r)
    assert g.converged
    assert g.alpha == pytest.approx(0.08, abs=0.015)
    assert g.beta == pytest.approx(0.90, abs=0.015)
    assert g.nu == pytest.approx(5.0, abs=1.0)
    assert g.omega == pytest.approx(1e-7, rel=0.35)
    true_half_life = math.log(0.5) / math.log(0.98)
    assert g.half_life == pytest.approx(true_half_life, rel=0.3)
    assert 0 < g.se["alpha"] < 0.02 and 0 < g.se["beta"] < 0.02
    # the likelihood is maximal near the truth
    y = r / np.std(r)
    at_fit = R.garch_t_loglik(np.array([0.0, g.omega / np.var(r), g.alpha, g.beta, g.nu]), y)
    worse = R.garch_t_loglik(np.array([0.0, g.omega / np.var(r), 0.2, 0.7, g.nu]), y)
    assert at_fit > worse


def test_acf_and_ljung_box() -> None:
    rng = np.random.default_rng(3)
    e = rng.standard_normal(20_000)
    rho = R.acf(e, 5)
    d = e - e.mean()
    direct = np.array([np.sum(d[k:] * d[: d.size - k]) for k in range(6)]) / np.sum(d * d)
    np.testing.assert_allclose(rho, direct, atol=1e-12)
    q, p = R.ljung_box(e, 10)
    n, rho10 = e.size, R.acf(e, 10)
    assert q == pytest.approx(n * (n + 2) * sum(rho10[k] ** 2 / (n - k) for k in range(1, 11)))
    assert p > 0.01
    r = R.simulate_garch_t(20_000, seed=2)
    assert R.ljung_box(r**2, 10)[1] < 1e-6  # volatility clustering
    ar = np.zeros(5_000)
    for t in range(1, ar.size):
        ar[t] = 0.5 * ar[t - 1] + rng.standard_normal()
    assert R.acf(ar, 1)[1] == pytest.approx(0.5, abs=0.05)


def test_impact_fit_recovers_a_power_law() -> None:
    q = np.array([0.1, 1, 5, 10, 50])
    y, delta, r2 = R.impact_fit(q, 2.0 * q**0.5)
    assert (y, delta, r2) == pytest.approx((2.0, 0.5, 1.0))
    assert math.isnan(R.impact_fit(np.array([1.0]), np.array([1.0]))[1])


def snapshots_from_mids(mids: np.ndarray, start_ns: int, step_ns: int) -> pl.DataFrame:
    """A depth-1 book_snapshots frame around given mids (1-tick spread, constant sizes)."""
    inst = get_instrument("binance", "usdm", "BTCUSDT")
    n = mids.size
    bid = np.round(mids * 10).astype(np.int64)  # unscaled at scale 1
    cols = [
        pl.Series("ts_event", start_ns + step_ns * np.arange(n)).cast(schemas.TS),
        pl.Series("ts_local", start_ns + step_ns * np.arange(n)).cast(schemas.TS),
        pl.Series("msg_id", np.arange(n)),
        pl.Series("last_update_id", np.arange(n) + 1),
        schemas.from_unscaled(bid, 1, None, "bid_price_1"),
        schemas.from_unscaled(np.full(n, 1500), 3, None, "bid_size_1"),
        schemas.from_unscaled(bid + 1, 1, None, "ask_price_1"),
        schemas.from_unscaled(np.full(n, 2500), 3, None, "ask_size_1"),
        pl.Series("is_valid", np.ones(n, bool)),
        pl.Series("crossed_repaired", np.zeros(n, bool)),
        pl.Series("resynced", np.zeros(n, bool)),
    ]
    return schemas.conform(pl.DataFrame(cols), schemas.book_snapshots(inst, 1), "book_snapshots")


def test_realism_report_over_days_of_a_garch_price() -> None:
    step = 10 * 10**9  # one book every 10 s
    per_day = 8640
    r = R.simulate_garch_t(3 * per_day, omega=2e-9, alpha=0.06, beta=0.92, nu=4.0, seed=5)
    mids = 60_000 * np.exp(np.cumsum(r))
    t0 = 1_720_000_000 * 10**9 // (86_400 * 10**9) * 86_400 * 10**9
    days = []
    for d in range(3):
        sl = slice(d * per_day, (d + 1) * per_day)
        day = str(np.datetime64(t0 + d * 86_400 * 10**9, "ns").astype("datetime64[D]"))
        days.append((day, snapshots_from_mids(mids[sl], t0 + d * 86_400 * 10**9, step)))
    t = DEFAULT
    rep = R.realism_report(days, t)
    assert rep.n_returns == 3 * 1440  # 1-min grid, consecutive days
    assert {h.tail for h in rep.hill} == {"left", "right"} and len(rep.hill) == 6
    assert rep.garch.converged and rep.garch.persistence < 1
    checks = {x.check: x for x in rep.results}
    assert checks["volatility_clustering"].status == PASS
    assert checks["linear_autocorrelation"].status in (PASS, WARN)
    assert rep.day_figures.height == 3 * 4 and set(rep.profiles["hour"].to_list()) == set(range(24))
    assert all(x.gate == "C" and not x.blocking for x in rep.results)
    assert rep.signature[1] > 0

"""Price paths: the daily open-price series and the intraday fundamental price of one day.

Daily level (any day computable on its own): from an anchor date, per-block generators (366 days
each, seeded by ``(seed, venue, symbol, block)``) draw a log-volatility AR(1) and t-distributed
daily returns; the log open price is a slowly mean-reverting sum of those returns around a
per-symbol reference price. Computing day D costs a few thousand vectorised draws, never a
simulation of earlier days, and extending the range never changes earlier days.

Intraday level: a 1-second grid carries (a) a Hawkes-type self-exciting count of "price-moving
events" (three exponential kernels, 5 s / 1 min / 10 min, branching ratio < 1) whose baseline is
modulated by a three-factor log-volatility OU (2 min / 30 min / 4 h half-lives) and a UTC
seasonality, and (b) the fundamental log price, whose increment in second s has variance
proportional to that second's event count with Student-t(3) shocks. The count clustering gives
volatility clustering (slowly decaying ACF of |r|); the mixture over counts plus the t shocks give
fat tails. The path is then bridged, in business time (cumulative variance), from the day's open
to the next day's open, so the last book of day D sits where day D+1 opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from numba import njit
from scipy.signal import lfilter

from obpipeline.sources.synthetic import rng as R

ANCHOR = date(2017, 1, 1)
BLOCK = 366
DAY_SECONDS = 86_400

# Per-symbol reference price (the level the long-run log price reverts to).
REFERENCE_PRICE: dict[str, float] = {
    "BTCUSDT": 60_000.0,
    "ETHUSDT": 3_000.0,
    "BTCUSD_PERP": 60_000.0,
}

DAILY_VOL = 0.028  # typical BTC daily log-return volatility
VOL_PHI = 0.92  # day-to-day persistence of log daily volatility
VOL_SD = 0.30  # stationary sd of log daily volatility
PRICE_PHI = 1.0 - 1.0 / 365.0  # long-run mean reversion of the log price (half-life ~250 days)
RET_NU = 4.0


def day_index(day: date) -> int:
    idx = (day - ANCHOR).days
    if idx < 0:
        raise ValueError(f"the simulator starts at {ANCHOR}; got {day}")
    return idx


@dataclass(frozen=True)
class DailyState:
    log_open: float
    sigma: float


def daily_states(
    day: date, seed: int, venue: str, symbol: str, count: int = 2, vol_scale: float = 1.0
) -> list[DailyState]:
    """Open price and daily volatility of ``day`` and the ``count - 1`` following days."""
    last = day_index(day) + count - 1
    n_blocks = last // BLOCK + 1
    vol_shocks = np.empty(n_blocks * BLOCK)
    ret_shocks = np.empty(n_blocks * BLOCK)
    for b in range(n_blocks):
        g = np.random.Generator(np.random.PCG64(R.derive_seed("daily", seed, venue, symbol, b)))
        vol_shocks[b * BLOCK : (b + 1) * BLOCK] = g.standard_normal(BLOCK)
        ret_shocks[b * BLOCK : (b + 1) * BLOCK] = g.standard_t(RET_NU, BLOCK) / np.sqrt(
            RET_NU / (RET_NU - 2)
        )
    n = last + 1
    innov = vol_shocks[:n] * VOL_SD * np.sqrt(1 - VOL_PHI**2)
    innov[0] = vol_shocks[0] * VOL_SD  # stationary start at the anchor
    log_vol = lfilter([1.0], [1.0, -VOL_PHI], innov)
    sigma = vol_scale * DAILY_VOL * np.exp(log_vol - 0.5 * VOL_SD**2)
    rets = sigma * ret_shocks[:n]
    # m[k] is the log open of day k relative to the reference; m[0] = 0 at the anchor.
    m = lfilter([0.0, 1.0], [1.0, -PRICE_PHI], rets)
    ref = np.log(REFERENCE_PRICE.get(symbol.upper(), 100.0))
    first = day_index(day)
    return [DailyState(float(ref + m[k]), float(sigma[k])) for k in range(first, first + count)]


@njit(cache=True)
def _intraday(
    seed: np.uint64, n_sec: int, par: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw (unbridged) log-price increments, Hawkes intensity and counts on the 1-second grid."""
    st = np.empty(1, dtype=np.uint64)
    st[0] = seed
    # log-volatility factors (OU, exact discretisation at 1 s)
    hl = par[0:3]
    sd = par[3:6]
    a = np.exp(-np.log(2.0) / hl)
    x = np.empty(3)
    for j in range(3):
        x[j] = sd[j] * R.normal(st)
    # Hawkes kernels
    alpha = par[6:9]
    beta = par[9:12]
    decay = np.exp(-beta)
    mu = par[12]
    season_amp = par[13]
    season_peak = par[14]
    nu = par[15]
    exc = np.zeros(3)
    # start the excitation at its stationary mean so a day does not open unnaturally quiet
    branching = 0.0
    for j in range(3):
        branching += alpha[j] * decay[j] / (1.0 - decay[j])
    lam_bar = mu / (1.0 - branching)
    for j in range(3):
        exc[j] = alpha[j] * decay[j] / (1.0 - decay[j]) * lam_bar
    dx = np.empty(n_sec)
    lam = np.empty(n_sec)
    cnt = np.empty(n_sec)
    for s in range(n_sec):
        hour = s / 3600.0
        season = 1.0 + season_amp * np.cos(2.0 * np.pi * (hour - season_peak) / 24.0)
        logv = 0.0
        for j in range(3):
            x[j] = a[j] * x[j] + sd[j] * np.sqrt(1.0 - a[j] * a[j]) * R.normal(st)
            logv += x[j]
        base = mu * season * np.exp(logv - 0.5 * (sd[0] ** 2 + sd[1] ** 2 + sd[2] ** 2))
        lt = base + exc[0] + exc[1] + exc[2]
        n = R.poisson(st, lt)
        for j in range(3):
            exc[j] = decay[j] * (exc[j] + alpha[j] * n)
        lam[s] = lt
        cnt[s] = n
        dx[s] = np.sqrt(n) * R.student_t_unit(st, nu) if n > 0 else 0.0
    return dx, lam, cnt


# half-lives (s) and sds of the three log-vol factors; Hawkes alphas, betas (1/s), baseline mu
# (events/s), seasonality amplitude and peak hour (UTC), t degrees of freedom.
INTRADAY_PARAMS = np.array(
    [
        120.0, 1800.0, 14400.0,
        0.35, 0.35, 0.40,
        0.0774, 0.0042, 0.000334,
        1.0 / 5.0, 1.0 / 60.0, 1.0 / 600.0,
        1.0,
        0.30, 15.0,
        3.0,
    ]
)  # fmt: skip


@dataclass(frozen=True)
class IntradayPath:
    """Fundamental price per second boundary (length n+1, log) and relative activity (length n)."""

    log_price: np.ndarray
    activity: np.ndarray


def intraday_path(
    seed: int, log_open: float, log_next_open: float, sigma_day: float, n_sec: int = DAY_SECONDS
) -> IntradayPath:
    """The day's fundamental log price, bridged from this open to the next day's open."""
    dx, lam, cnt = _intraday(np.uint64(seed), n_sec, INTRADAY_PARAMS)
    qv = cnt.sum()
    scale = sigma_day / np.sqrt(qv) if qv > 0 else 0.0
    w = np.concatenate([[0.0], np.cumsum(dx * scale)])
    tau = np.concatenate([[0.0], np.cumsum(cnt)])
    tau = tau / tau[-1] if tau[-1] > 0 else np.linspace(0.0, 1.0, n_sec + 1)
    log_price = log_open + w - tau * (w[-1] - (log_next_open - log_open))
    activity = lam / lam.mean()
    return IntradayPath(log_price, activity)

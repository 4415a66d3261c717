"""Stylized facts of a simulated week, against FIDELITY.md's published ranges (Gate C, descriptive).

Measured on the true book after every depth message (what an exact replay reproduces):

* spread distribution (ticks and bp of mid), touch and top-20 depth;
* 1-minute mid log returns (mid at each minute boundary, days chained): Hill tail index at
  k = 1/2/5 % for both tails (FIDELITY.md: 2-5, ~3 for recent BTC), excess kurtosis;
* ACF of |r| at lags 1-100 (volatility clustering: positive, slowly decaying) and of r at lags
  1-5 (no linear autocorrelation), with the Ljung-Box statistic of |r| at lag 20;
* for scale, the same spread distribution from the real USD-M capture's bookTicker when
  ``../shared/data`` is present.

    uv run python scripts/stylized_facts.py [--profile demo|real] [--days 7] [--start 2024-03-04]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REAL_CAPTURE = ROOT.parent / "shared" / "data" / "binance" / "usdm" / "btcusdt_20240808.gz"


def hill(x: np.ndarray, k: float) -> float:
    """Hill estimator of the right tail of ``x`` using the top ``k`` share of positive values."""
    x = np.sort(x[x > 0])[::-1]
    n = max(2, int(len(x) * k))
    if len(x) <= n:
        return float("nan")
    return float(1.0 / np.mean(np.log(x[:n] / x[n])))


def acf(x: np.ndarray, lags: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    d = float(np.dot(x, x))
    return np.array([np.dot(x[:-h], x[h:]) / d for h in lags])


def day_series(sim) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(minute mids, spreads in ticks, touch sizes, top-20 depth) from the day's true book."""
    r = sim.records
    t = r.truth
    bid, ask = t[:, 0, 0].astype(np.float64), t[:, 2, 0].astype(np.float64)
    mid = 0.5 * (bid + ask) * float(sim.instrument.tick_size)
    spread = (t[:, 2, 0] - t[:, 0, 0]).astype(np.int64)
    start = int(np.datetime64(str(sim.day), "ms").astype(np.int64))
    minute = (r.msgs[:, 1] - start) // 60_000
    last = np.searchsorted(minute, np.arange(1440), side="right") - 1
    mids = mid[np.maximum(last, 0)]
    lot = float(sim.instrument.lot_size)
    touch = 0.5 * (t[:, 1, 0] + t[:, 3, 0]) * lot
    depth20 = (t[:, 1, :].sum(axis=1) + t[:, 3, :].sum(axis=1)) * lot
    return mids, spread, touch, depth20


def real_spreads() -> np.ndarray | None:
    if not REAL_CAPTURE.exists():
        return None
    out = []
    with gzip.open(REAL_CAPTURE, "rt") as f:
        for line in f:
            if "@bookTicker" in line:
                d = json.loads(line.split(" ", 1)[1])["data"]
                out.append(round((float(d["a"]) - float(d["b"])) * 10))
    return np.array(out)


def spread_table(spread: np.ndarray) -> str:
    bins = [(1, 1), (2, 2), (3, 5), (6, 10), (11, 50), (51, 10**9)]
    parts = []
    for a, b in bins:
        share = np.mean((spread >= a) & (spread <= b))
        label = f"{a}" if a == b else (f"{a}-{b}" if b < 10**9 else f">{a - 1}")
        parts.append(f"{label}:{share:6.1%}")
    return "  ".join(parts)


def main() -> int:
    from obpipeline.sources import synthetic as S

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--start", type=date.fromisoformat, default=date(2024, 3, 4))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    mids, spreads, touch, depth = [], [], [], []
    started = time.perf_counter()
    for k in range(args.days):
        day = args.start + timedelta(days=k)
        sim = S.simulate_day(day, profile=args.profile, seed=args.seed)
        m, sp, tc, dp = day_series(sim)
        mids.append(m)
        spreads.append(sp)
        touch.append(tc)
        depth.append(dp)
        print(
            f"{day}  messages={sim.n_messages:>9,}  level_updates={sim.n_level_updates:>11,}  "
            f"open={m[0]:,.1f}  close={m[-1]:,.1f}",
            flush=True,
        )
    elapsed = time.perf_counter() - started
    mid = np.concatenate(mids)
    spread = np.concatenate(spreads)
    r = np.diff(np.log(mid))
    r = r[np.isfinite(r)]
    z = (r - r.mean()) / r.std()
    lags = np.arange(1, 101)
    a = acf(np.abs(r), lags)
    a_lin = acf(r, np.arange(1, 6))
    n = len(r)
    lb = n * (n + 2) * np.sum(a[:20] ** 2 / (n - np.arange(1, 21)))
    mid_px = float(np.median(mid))
    tick = float(S.instrument_for().tick_size)

    print(f"\nprofile={args.profile} days={args.days} seed={args.seed}  ({elapsed:.0f}s)")
    print("spread (share of messages, ticks):", spread_table(spread))
    print(
        f"spread ticks: mean={spread.mean():.2f} median={np.median(spread):.0f} "
        f"p90={np.percentile(spread, 90):.0f} p99={np.percentile(spread, 99):.0f}  "
        f"(1 tick = {tick / mid_px * 1e4:.3f} bp)"
    )
    real = real_spreads()
    if real is not None:
        print("real USD-M bookTicker spreads (btcusdt_20240808):", spread_table(real))
    t, d = np.concatenate(touch), np.concatenate(depth)
    print(
        f"touch size (BTC, mean of sides): median={np.median(t):.3f} p90={np.percentile(t, 90):.3f}"
        f"   top-20 depth both sides: median={np.median(d):.1f} BTC"
    )
    print(f"\n1-min returns: n={n}  sd={r.std():.2e}  excess kurtosis={np.mean(z**4) - 3:.1f}")
    ok = True
    for k in (0.01, 0.02, 0.05):
        up, down = hill(r, k), hill(-r, k)
        inside = 2 <= up <= 5 and 2 <= down <= 5
        ok &= inside if k == 0.05 else True
        print(
            f"Hill k={k:.0%}: right={up:.2f} left={down:.2f}   FIDELITY.md range 2-5: {'in' if inside else 'OUT'}"
        )
    sel = [1, 2, 5, 10, 20, 50, 100]
    print("ACF |r| lags " + " ".join(f"{h}:{a[h - 1]:.3f}" for h in sel))
    print(
        f"ACF |r| lags 1-100: min={a.min():.3f} mean={a.mean():.3f} positive={np.mean(a > 0):.0%}"
        f"   Ljung-Box(20) on |r| = {lb:.0f} (chi2_20 95% = 31.4)"
    )
    print(
        "ACF r lags 1-5: "
        + " ".join(f"{x:+.3f}" for x in a_lin)
        + f"  (+/-2/sqrt(n) = {2 / np.sqrt(n):.3f})"
    )
    clustering = a[:10].mean() > 0.05 and a.mean() > 0 and a[:10].mean() > a[-10:].mean()
    print(
        f"\nverdict: Hill(5%) in 2-5: {'yes' if ok else 'no'}; "
        f"volatility clustering (positive, decaying ACF of |r|): {'yes' if clustering else 'no'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Gate A2: how much would a residual error move what a backtest or an agent sees?

Computed on the *same aligned pairs* as Gate A1 (the golden record and our book at the same update
id), with the features module's definitions, so a tolerance here means exactly what a feature user
sees. Both sides are truncated to the levels the record covers before the features are computed,
so on a faithful book every delta is exactly 0 (the same decimals go through the same float
arithmetic), and any nonzero delta comes from the reconstruction.

Figures (FIDELITY.md, A2):

* L1..L20 spreads: p99.9 of |Δ(a_k − b_k)| ≤ 1 tick (from ``spread_l{k}_bp`` × mid);
* depth within 1–100 bp of mid: exact in ≥ 99.9 % of pairs (records covering ≥ 5 levels);
* imbalance (L1/L5/L10): exact in ≥ 99.9 %;
* microprice (size-weighted mid): p99.9 |Δ| ≤ 0.1 tick;
* OFI summed over 1 s (contributions between consecutive aligned records of one kind):
  correlation ≥ 0.999 and RMSE/SD ≤ 1 %;
* book-walk slippage for the configured sizes: |mean Δ| ≤ 0.05 bp and p99 |Δ| ≤ 0.5 bp.

A value defined on one side and null on the other (a level missing, a walk too thin on one side
only) counts as an infinite delta: a disagreement, never silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from obpipeline import features as F
from obpipeline import schemas
from obpipeline.fidelity.config import Thresholds
from obpipeline.fidelity.exact import ExactComparison
from obpipeline.fidelity.gates import FAIL, PASS, SKIPPED, GateResult
from obpipeline.instruments import Instrument

BP = 1e4
MIN_LEVELS_FOR_DEPTH = 5


@dataclass
class PairedFeatures:
    """Features of both sides of one golden kind's aligned pairs (row for row)."""

    kind: str
    levels: int
    ref: pl.DataFrame
    rec: pl.DataFrame


@dataclass
class MaterialityReport:
    pairs: list[PairedFeatures]
    figures: dict[str, float] = field(default_factory=dict)
    results: list[GateResult] = field(default_factory=list)
    first: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)


def _feature_config(t: Thresholds, depth: int) -> F.FeatureConfig:
    return F.FeatureConfig(
        walk_sizes=t.walk_sizes,
        depth_bands_bp=t.depth_bands_bp,
        spread_levels=tuple(k for k in t.spread_levels if k <= depth) or (1,),
        imbalance_levels=tuple(k for k in t.imbalance_levels if k <= depth) or (1,),
        ofi_levels=max(1, min(10, depth)),
    )


def paired_features(
    cmp: ExactComparison, instrument: Instrument, thresholds: Thresholds
) -> PairedFeatures | None:
    """Features of the reference and of our book for one comparison's aligned pairs."""
    if cmp.aligned == 0:
        return None
    depth = max(1, min(cmp.levels, 20))
    config = _feature_config(thresholds, depth)
    names = [n for g in schemas.level_names(depth) for n in g]
    keep = ["last_update_id", "ts_event", "is_valid", *names]
    ref = F.compute_features(cmp.ref.select(keep), config=config, instrument=instrument)
    rec = F.compute_features(cmp.rec.select(keep), config=config, instrument=instrument)
    return PairedFeatures(cmp.kind, depth, ref, rec)


def _abs_delta(ref: pl.Series, rec: pl.Series) -> np.ndarray:
    """|rec − ref| with inf where exactly one side is null/NaN and 0 where both are."""
    a = ref.cast(pl.Float64).to_numpy().astype(np.float64)
    b = rec.cast(pl.Float64).to_numpy().astype(np.float64)
    na, nb = np.isnan(a), np.isnan(b)
    d = np.abs(b - a)
    d[na & nb] = 0.0
    d[na ^ nb] = np.inf
    return d


def _quantile(x: np.ndarray, q: float) -> float:
    if x.size == 0:
        return float("nan")
    return float(np.quantile(x, q, method="higher"))


def _first_nonzero(
    d: np.ndarray, ts: pl.Series, uid: pl.Series, limit: float = 0.0
) -> tuple[int | None, int | None]:
    idx = np.flatnonzero(d > limit)
    if idx.size == 0:
        return None, None
    i = int(idx[0])
    return int(ts.dt.epoch("ns")[i]), int(uid[i])


def _ofi_by_second(p: PairedFeatures, every: str) -> tuple[np.ndarray, np.ndarray]:
    """OFI (level 1 .. min(levels, 10) summed) per ``every`` bucket, reference and ours."""
    cols = [c for c in p.ref.columns if c.startswith("ofi_")]
    cols = [c for c in cols if int(c.split("_")[1]) <= min(p.levels, 10)]
    step = F.parse_duration(every)
    t = p.ref["ts_event"].dt.epoch("ns").to_numpy()
    if t.size == 0:
        return np.zeros(0), np.zeros(0)
    t = np.maximum.accumulate(t)
    b = (t - t[0]) // step
    ref = p.ref.select(pl.sum_horizontal([pl.col(c).fill_null(0.0) for c in cols])).to_series()
    rec = p.rec.select(pl.sum_horizontal([pl.col(c).fill_null(0.0) for c in cols])).to_series()
    n = int(b[-1]) + 1
    r1 = np.bincount(b, weights=ref.to_numpy(), minlength=n)
    r2 = np.bincount(b, weights=rec.to_numpy(), minlength=n)
    occupied = np.bincount(b, minlength=n) > 0
    return r1[occupied], r2[occupied]


def ofi_agreement(ref: np.ndarray, rec: np.ndarray) -> tuple[float, float]:
    """(correlation, RMSE / SD(ref)); identical series give (1, 0) even when constant."""
    if ref.size == 0:
        return float("nan"), float("nan")
    if np.array_equal(ref, rec):
        return 1.0, 0.0
    sd = float(np.std(ref))
    rmse = float(np.sqrt(np.mean((rec - ref) ** 2)))
    if sd == 0.0 or float(np.std(rec)) == 0.0:
        return 0.0, (rmse / sd if sd > 0 else math.inf)
    return float(np.corrcoef(ref, rec)[0, 1]), rmse / sd


def materiality(
    comparisons: list[ExactComparison], instrument: Instrument, thresholds: Thresholds
) -> MaterialityReport:
    """Paired feature deltas over every golden kind's aligned pairs, and the A2 verdicts."""
    t = thresholds
    tick = float(instrument.tick_size)
    pairs = [p for c in comparisons if (p := paired_features(c, instrument, t)) is not None]
    rep = MaterialityReport(pairs)
    if not pairs:
        rep.results = [GateResult("A2", "materiality", SKIPPED, detail="no aligned pairs")]
        return rep

    def pooled(col: str, min_levels: int = 1, scale: pl.Expr | None = None):
        ds, ts, ids = [], [], []
        for p in pairs:
            if p.levels < min_levels or col not in p.ref.columns:
                continue
            a, b = p.ref[col], p.rec[col]
            if scale is not None:
                a = p.ref.select(scale.alias(col)).to_series()
                b = p.rec.select(scale.alias(col)).to_series()
            ds.append(_abs_delta(a, b))
            ts.append(p.ref["ts_event"])
            ids.append(p.ref["last_update_id"])
        if not ds:
            return np.zeros(0), None, None
        return np.concatenate(ds), pl.concat(ts), pl.concat(ids)

    results: list[GateResult] = []
    figures: dict[str, float] = {"pairs": float(sum(p.ref.height for p in pairs))}

    # spreads L1..L20 in ticks
    worst, worst_first = 0.0, (None, None)
    for k in t.spread_levels:
        col = f"spread_l{k}_bp"
        d, ts, ids = pooled(col, k, pl.col(col) * pl.col("mid") / BP / tick)
        if d.size == 0:
            continue
        q = _quantile(d, t.spread_quantile)
        figures[f"spread_l{k}_p999_ticks"] = q
        if q > worst or (worst_first[0] is None and np.any(d > 0)):
            worst = max(worst, q)
            worst_first = _first_nonzero(d, ts, ids)
    results.append(
        _judge(
            "spread_delta",
            worst,
            t.max_spread_delta_ticks,
            worst > t.max_spread_delta_ticks,
            f"p{t.spread_quantile * 100:g} |Δ spread| = {worst:.3g} ticks",
            worst_first,
            {k: v for k, v in figures.items() if k.startswith("spread_")},
        )
    )

    # depth within bands: exact share (records covering >= 5 levels)
    shares = {}
    first_depth = (None, None)
    for side in ("bid", "ask"):
        for x in t.depth_bands_bp:
            col = f"{side}_depth_{F._num(x)}bp"
            d, ts, ids = pooled(col, MIN_LEVELS_FOR_DEPTH)
            if d.size == 0:
                continue
            lot = float(instrument.lot_size)
            exact = d < lot / 2
            shares[f"{col}_exact_share"] = float(exact.mean())
            if first_depth[0] is None:
                first_depth = _first_nonzero(d, ts, ids, lot / 2)
    if shares:
        v = min(shares.values())
        results.append(
            _judge(
                "depth_exact",
                v,
                t.min_depth_exact_share,
                v < t.min_depth_exact_share,
                f"depth within bands exact in {v:.4%} of pairs",
                first_depth,
                shares,
            )
        )

    # imbalance exact share
    imb = {}
    first_imb = (None, None)
    for k in t.imbalance_levels:
        col = f"imbalance_{k}"
        d, ts, ids = pooled(col, k)
        if d.size == 0:
            continue
        imb[f"{col}_exact_share"] = float((d <= 1e-12).mean())
        if first_imb[0] is None:
            first_imb = _first_nonzero(d, ts, ids, 1e-12)
    if imb:
        v = min(imb.values())
        results.append(
            _judge(
                "imbalance_exact",
                v,
                t.min_imbalance_exact_share,
                v < t.min_imbalance_exact_share,
                f"imbalance exact in {v:.4%} of pairs",
                first_imb,
                imb,
            )
        )

    # microprice
    d, ts, ids = pooled("microprice", 1, pl.col("microprice") / tick)
    if d.size:
        q = _quantile(d, t.microprice_quantile)
        results.append(
            _judge(
                "microprice_delta",
                q,
                t.max_microprice_delta_ticks,
                q > t.max_microprice_delta_ticks,
                f"p{t.microprice_quantile * 100:g} |Δ microprice| = {q:.3g} ticks",
                _first_nonzero(d, ts, ids),
                {"microprice_mean_abs_ticks": float(np.mean(d[np.isfinite(d)]) if d.size else 0)},
            )
        )

    # OFI per second, per kind (consecutive records of one kind)
    ofi: dict[str, float] = {}
    worst_corr, worst_rmse = 1.0, 0.0
    for p in pairs:
        a, b = _ofi_by_second(p, t.ofi_every)
        if a.size < 2:
            continue
        corr, rel = ofi_agreement(a, b)
        ofi[f"{p.kind}_ofi_corr"] = corr
        ofi[f"{p.kind}_ofi_rel_rmse"] = rel
        ofi[f"{p.kind}_ofi_buckets"] = float(a.size)
        worst_corr = min(worst_corr, corr)
        worst_rmse = max(worst_rmse, rel)
    if ofi:
        bad = worst_corr < t.min_ofi_correlation or worst_rmse > t.max_ofi_rel_rmse
        results.append(
            _judge(
                "ofi_correlation",
                worst_corr,
                t.min_ofi_correlation,
                bad,
                f"OFI ({t.ofi_every}) corr {worst_corr:.5f}, rel. RMSE {worst_rmse:.3%}",
                (None, None),
                ofi,
            )
        )

    # book-walk slippage
    mean_worst, q_worst = 0.0, 0.0
    slip: dict[str, float] = {}
    first_slip = (None, None)
    for side in ("buy", "sell"):
        for qty in t.walk_sizes:
            col = f"{side}_slip_bp_{F._num(qty)}"
            ds, ts_l, id_l = [], [], []
            signed = []
            for p in pairs:
                if p.levels < MIN_LEVELS_FOR_DEPTH or col not in p.ref.columns:
                    continue
                a = p.ref[col].cast(pl.Float64).to_numpy()
                b = p.rec[col].cast(pl.Float64).to_numpy()
                ds.append(_abs_delta(p.ref[col], p.rec[col]))
                both = ~np.isnan(a) & ~np.isnan(b)
                signed.append((b - a)[both])
                ts_l.append(p.ref["ts_event"])
                id_l.append(p.ref["last_update_id"])
            if not ds:
                continue
            d = np.concatenate(ds)
            s = np.concatenate(signed)
            m = float(abs(s.mean())) if s.size else 0.0
            qv = _quantile(d, t.slippage_quantile)
            slip[f"{col}_mean_delta"] = m
            slip[f"{col}_p99_delta"] = qv
            slip[f"{col}_pairs"] = float(s.size)
            mean_worst, q_worst = max(mean_worst, m), max(q_worst, qv)
            if first_slip[0] is None:
                first_slip = _first_nonzero(d, pl.concat(ts_l), pl.concat(id_l))
    if slip:
        bad = (
            mean_worst > t.max_slippage_mean_delta_bp or q_worst > t.max_slippage_quantile_delta_bp
        )
        results.append(
            _judge(
                "slippage_delta",
                q_worst,
                t.max_slippage_quantile_delta_bp,
                bad,
                f"|mean Δ slippage| {mean_worst:.3g} bp, p{t.slippage_quantile * 100:g} "
                f"{q_worst:.3g} bp",
                first_slip,
                {**slip, "slippage_mean_delta_worst": mean_worst},
            )
        )
    rep.figures = figures
    rep.results = results
    return rep


def _judge(
    check: str,
    value: float,
    limit: float,
    bad: bool,
    detail: str,
    first: tuple[int | None, int | None],
    metrics: dict[str, float],
) -> GateResult:
    return GateResult(
        "A2",
        check,
        FAIL if bad else PASS,
        value,
        limit,
        detail if bad else "",
        first_failure_ns=first[0] if bad else None,
        # the pair's update id stands in for the message id here (book rows share it)
        first_failure_msg_id=None,
        metrics=metrics,
    )

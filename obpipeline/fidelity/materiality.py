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
from fractions import Fraction

import numpy as np
import polars as pl

from obpipeline import features as F
from obpipeline import schemas
from obpipeline.fidelity.config import Thresholds
from obpipeline.fidelity.gates import FAIL, PASS, SKIPPED, GateResult
from obpipeline.instruments import Instrument

BP = 1e4
MIN_LEVELS_FOR_DEPTH = 5


@dataclass
class MaterialityReport:
    pairs: dict[str, int]  # kind → aligned pairs the features were computed on
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


def _abs_delta(ref: pl.Series, rec: pl.Series) -> np.ndarray:
    """|rec − ref| with inf where exactly one side is null/NaN and 0 where both are."""
    a = ref.cast(pl.Float64).to_numpy().astype(np.float64)
    b = rec.cast(pl.Float64).to_numpy().astype(np.float64)
    na, nb = np.isnan(a), np.isnan(b)
    d = np.abs(b - a)
    d[na & nb] = 0.0
    d[na ^ nb] = np.inf
    return d


def row_sum(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """Per row, the columns' sum (nulls as 0) added left to right.

    ``pl.sum_horizontal`` over many float columns adds them in an order that depends on thread
    scheduling, so its last bits (and the OFI figures built on them) changed from run to run.
    """
    out = np.zeros(frame.height)
    for c in columns:
        out += frame[c].cast(pl.Float64).fill_null(0.0).to_numpy()
    return out


def higher_quantile_index(n: int, q: float) -> int:
    """The sorted position ``np.quantile(x, q, method="higher")`` takes of n values."""
    return int(np.ceil((n - 1) * np.float64(q)))


class ExactSum:
    """A float sum kept exactly (an integer in units of 2**-1130), so a mean is the correctly
    rounded mean of all the values however they were batched."""

    SHIFT = 1130  # frexp exponents are >= -1073 (subnormals): every shift is >= 0

    def __init__(self) -> None:
        self.total = 0
        self.n = 0

    def add(self, x: np.ndarray) -> None:
        self.n += int(x.size)
        x = x[x != 0]
        if x.size == 0:
            return
        m, e = np.frexp(x)
        mant = (m * 2.0**53).astype(np.int64)  # exact: 53-bit significands
        shift = e.astype(np.int64) - 53 + self.SHIFT
        for s in np.unique(shift):
            v = mant[shift == s]
            # int64 sums of 512 significands (< 2**62) cannot overflow
            part = np.add.reduceat(v, np.arange(0, v.size, 512))
            self.total += sum(int(c) for c in part) << int(s)

    def mean(self) -> float:
        return float(Fraction(self.total, self.n << self.SHIFT)) if self.n else float("nan")


class TopValues:
    """The ``cap`` largest values seen and how many were seen: the exact upper quantiles of up
    to ``n_max`` values, where ``cap`` covers the quantile's rank from the top for any n."""

    def __init__(self, q: float, n_max: int) -> None:
        self.q = q
        self.cap = max(1, n_max - higher_quantile_index(max(n_max, 1), q) + 1)
        self.values = np.zeros(0)
        self.n = 0

    def add(self, x: np.ndarray) -> None:
        self.n += int(x.size)
        v = np.concatenate([self.values, x])
        if v.size > self.cap:
            v = np.partition(v, v.size - self.cap)[v.size - self.cap :]
        self.values = v

    @staticmethod
    def quantile(parts: list[TopValues]) -> float:
        """``np.quantile(all values, q, method="higher")`` of the pooled parts."""
        n = sum(p.n for p in parts)
        if n == 0:
            return float("nan")
        top = np.sort(np.concatenate([p.values for p in parts]))
        i = higher_quantile_index(n, parts[0].q) - (n - top.size)
        if i < 0:
            raise AssertionError("quantile rank below the kept values: cap too small")
        return float(top[i])


@dataclass
class _Spec:
    """One paired statistic: |Δ column| (× scale), on kinds covering ``min_levels``."""

    col: str
    min_levels: int = 1
    scale: str | None = None  # "spread": × mid / 1e4 / tick; "tick": / tick
    tol: float = 0.0  # exact when |Δ| < tol (strict) or <= tol; the first beyond it located
    strict: bool = False
    q: float | None = None  # upper quantile
    mean_finite: bool = False  # mean |Δ| over finite deltas
    signed: bool = False  # mean signed Δ where both sides exist


@dataclass
class _Acc:
    """One statistic over one kind's pairs, accumulated batch by batch."""

    n: int = 0
    exact: int = 0
    first: tuple[int, int] | None = None  # first |Δ| beyond tol: (ts ns, update id)
    first0: tuple[int, int] | None = None  # first |Δ| > 0
    top: TopValues | None = None
    finite: ExactSum = field(default_factory=ExactSum)
    signed: ExactSum = field(default_factory=ExactSum)


@dataclass
class _KindState:
    levels: int
    config: F.FeatureConfig
    keep: list[str]
    ofi_cols: list[str]
    pairs: int = 0
    last: tuple[pl.DataFrame, pl.DataFrame] | None = None  # the OFI predecessor rows
    acc: dict[str, _Acc] = field(default_factory=dict)
    # OFI per bucket: closed bucket sums, the open bucket's records, the running time key
    ofi_ref: list[np.ndarray] = field(default_factory=list)
    ofi_rec: list[np.ndarray] = field(default_factory=list)
    t0: int | None = None
    t_max: int | None = None
    open: tuple[int, np.ndarray, np.ndarray] | None = None  # bucket, its ref and rec values


class Materiality:
    """Gate A2 accumulated on the aligned pairs, batch by batch (an ``exact.PairsSink``).

    Features are computed per batch with the previous batch's last row in front (OFI needs the
    row before); quantiles keep the few largest deltas their rank needs (``TopValues``), means
    are exact sums, OFI is summed per bucket over all its records in order (the open bucket's records carried): the
    figures are those of the whole day's pairs at once, bit for bit.
    """

    def __init__(self, instrument: Instrument, thresholds: Thresholds) -> None:
        self.instrument, self.t = instrument, thresholds
        self.tick = float(instrument.tick_size)
        self.lot = float(instrument.lot_size)
        self.n_max = 0
        self.kinds: dict[str, _KindState] = {}
        t = thresholds
        specs: dict[str, _Spec] = {}
        for k in t.spread_levels:
            specs[f"spread_l{k}_bp"] = _Spec(f"spread_l{k}_bp", k, "spread", q=t.spread_quantile)
        for side in ("bid", "ask"):
            for x in t.depth_bands_bp:
                col = f"{side}_depth_{F._num(x)}bp"
                specs[col] = _Spec(col, MIN_LEVELS_FOR_DEPTH, tol=self.lot / 2, strict=True)
        for k in t.imbalance_levels:
            specs[f"imbalance_{k}"] = _Spec(f"imbalance_{k}", k, tol=1e-12)
        specs["microprice"] = _Spec("microprice", 1, "tick", q=t.microprice_quantile,
                                    mean_finite=True)  # fmt: skip
        for side in ("buy", "sell"):
            for qty in t.walk_sizes:
                col = f"{side}_slip_bp_{F._num(qty)}"
                specs[col] = _Spec(col, MIN_LEVELS_FOR_DEPTH, q=t.slippage_quantile, signed=True)
        self.specs = specs

    def start(self, records: int) -> None:
        self.n_max += records

    def add(self, kind: str, levels: int, ref: pl.DataFrame, rec: pl.DataFrame) -> None:
        if ref.height == 0:
            return
        st = self.kinds.get(kind)
        if st is None:
            depth = max(1, min(levels, 20))
            config = _feature_config(self.t, depth)
            names = [n for g in schemas.level_names(depth) for n in g]
            ofi = [f"ofi_{m + 1}" for m in range(config.ofi_levels) if m + 1 <= min(depth, 10)]
            st = self.kinds[kind] = _KindState(depth, config, ["last_update_id", "ts_event",
                                               "is_valid", *names], ofi)  # fmt: skip
        ref, rec = ref.select(st.keep), rec.select(st.keep)
        skip = 0
        if st.last is not None:
            ref, rec, skip = pl.concat([st.last[0], ref]), pl.concat([st.last[1], rec]), 1
        st.last = (ref.tail(1), rec.tail(1))
        fa = F.compute_features(ref, config=st.config, instrument=self.instrument).slice(skip)
        fb = F.compute_features(rec, config=st.config, instrument=self.instrument).slice(skip)
        st.pairs += fa.height
        ts = fa["ts_event"].dt.epoch("ns").to_numpy()
        uid = fa["last_update_id"].to_numpy()
        for name, spec in self.specs.items():
            if st.levels < spec.min_levels or spec.col not in fa.columns:
                continue
            self._stat(st.acc.setdefault(name, _Acc()), spec, fa, fb, ts, uid)
        self._ofi(st, fa, fb, ts)

    def _stat(self, acc: _Acc, spec: _Spec, fa, fb, ts: np.ndarray, uid: np.ndarray) -> None:
        a, b = fa[spec.col], fb[spec.col]
        if spec.scale == "spread":
            a = fa.select(pl.col(spec.col) * pl.col("mid") / BP / self.tick).to_series()
            b = fb.select(pl.col(spec.col) * pl.col("mid") / BP / self.tick).to_series()
        elif spec.scale == "tick":
            a = fa.select(pl.col(spec.col) / self.tick).to_series()
            b = fb.select(pl.col(spec.col) / self.tick).to_series()
        d = _abs_delta(a, b)
        acc.n += d.size
        acc.exact += int((d < spec.tol).sum() if spec.strict else (d <= spec.tol).sum())
        if acc.first is None and (i := np.flatnonzero(d > spec.tol)).size:
            acc.first = (int(ts[i[0]]), int(uid[i[0]]))
        if acc.first0 is None and (i := np.flatnonzero(d > 0)).size:
            acc.first0 = (int(ts[i[0]]), int(uid[i[0]]))
        if spec.q is not None:
            if acc.top is None:
                acc.top = TopValues(spec.q, self.n_max)
            acc.top.add(d)
        if spec.mean_finite:
            acc.finite.add(d[np.isfinite(d)])
        if spec.signed:
            x = a.cast(pl.Float64).to_numpy().astype(np.float64)
            y = b.cast(pl.Float64).to_numpy().astype(np.float64)
            both = ~np.isnan(x) & ~np.isnan(y)
            acc.signed.add((y - x)[both])

    def _ofi(self, st: _KindState, fa: pl.DataFrame, fb: pl.DataFrame, ts: np.ndarray) -> None:
        """OFI summed per ``ofi_every`` bucket of the running-max time key, in record order."""
        step = F.parse_duration(self.t.ofi_every)
        if st.t0 is None:
            st.t0 = st.t_max = int(ts[0])
        t = np.maximum.accumulate(np.concatenate([[st.t_max], ts]))[1:]
        st.t_max = int(t[-1])
        b = (t - st.t0) // step
        wa, wb = row_sum(fa, st.ofi_cols), row_sum(fb, st.ofi_cols)
        if st.open is not None:
            # the open bucket's records (not their partial sum) go first, so each bucket is
            # summed over all its records in order, whatever the batch edges: the same bits
            bucket, oa, ob = st.open
            b = np.concatenate([np.full(len(oa), bucket), b])
            wa = np.concatenate([oa, wa])
            wb = np.concatenate([ob, wb])
        base = int(b[0])
        idx = b - base
        n = int(idx[-1]) + 1
        ra = np.bincount(idx, weights=wa, minlength=n)
        rb = np.bincount(idx, weights=wb, minlength=n)
        occupied = np.flatnonzero(np.bincount(idx, minlength=n) > 0)
        st.ofi_ref.append(ra[occupied[:-1]])
        st.ofi_rec.append(rb[occupied[:-1]])
        last = int(occupied[-1])
        tail = idx == last  # the last bucket may go on in the next batch: keep its records
        st.open = (base + last, wa[tail], wb[tail])

    def ofi_by_bucket(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """Reference and reconstructed OFI per occupied bucket of one kind."""
        st = self.kinds[kind]

        def total(values: np.ndarray) -> np.ndarray:  # bincount's order: as closed buckets
            return np.bincount(np.zeros(len(values), np.intp), weights=values, minlength=1)

        tail = [total(st.open[1])] if st.open else []
        tail_b = [total(st.open[2])] if st.open else []
        return np.concatenate([*st.ofi_ref, *tail]), np.concatenate([*st.ofi_rec, *tail_b])

    def _pooled(self, name: str) -> list[_Acc]:
        return [st.acc[name] for st in self.kinds.values() if name in st.acc]

    def report(self) -> MaterialityReport:
        """The A2 figures and verdicts of every pair added."""
        t = self.t
        rep = MaterialityReport({k: st.pairs for k, st in self.kinds.items()})
        if not self.kinds:
            rep.results = [GateResult("A2", "materiality", SKIPPED, detail="no aligned pairs")]
            return rep

        def first(parts: list[_Acc], zero: bool = False) -> tuple[int | None, int | None]:
            for p in parts:
                f = p.first0 if zero else p.first
                if f is not None:
                    return f
            return None, None

        results: list[GateResult] = []
        figures: dict[str, float] = {"pairs": float(sum(rep.pairs.values()))}

        # spreads L1..L20 in ticks
        worst, worst_first = 0.0, (None, None)
        for k in t.spread_levels:
            parts = self._pooled(f"spread_l{k}_bp")
            if not parts:
                continue
            q = TopValues.quantile([p.top for p in parts])  # type: ignore[misc]
            figures[f"spread_l{k}_p999_ticks"] = q
            f0 = first(parts, zero=True)
            if q > worst or (worst_first[0] is None and f0[0] is not None):
                worst = max(worst, q)
                worst_first = f0
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

        def exact_share(check: str, columns: list[str], limit: float, what: str) -> None:
            """The lowest share of exactly equal pairs over ``columns`` (each pooled over kinds)."""
            shares: dict[str, float] = {}
            first_bad: tuple[int | None, int | None] = (None, None)
            for col in columns:
                parts = self._pooled(col)
                if not parts:
                    continue
                shares[f"{col}_exact_share"] = sum(p.exact for p in parts) / sum(p.n for p in parts)
                if first_bad[0] is None:
                    first_bad = first(parts)
            if shares:
                v = min(shares.values())
                detail = f"{what} exact in {v:.4%} of pairs"
                results.append(_judge(check, v, limit, v < limit, detail, first_bad, shares))

        # depth within bands (records covering >= 5 levels), imbalance: exact shares
        bands = [f"{side}_depth_{F._num(x)}bp" for side in ("bid", "ask") for x in t.depth_bands_bp]
        exact_share("depth_exact", bands, t.min_depth_exact_share, "depth within bands")
        imbalances = [f"imbalance_{k}" for k in t.imbalance_levels]
        exact_share("imbalance_exact", imbalances, t.min_imbalance_exact_share, "imbalance")

        # microprice
        parts = self._pooled("microprice")
        if parts:
            q = TopValues.quantile([p.top for p in parts])  # type: ignore[misc]
            finite = ExactSum()
            finite.total, finite.n = (
                sum(p.finite.total for p in parts),
                sum(p.finite.n for p in parts),
            )
            results.append(
                _judge(
                    "microprice_delta",
                    q,
                    t.max_microprice_delta_ticks,
                    q > t.max_microprice_delta_ticks,
                    f"p{t.microprice_quantile * 100:g} |Δ microprice| = {q:.3g} ticks",
                    first(parts),
                    {"microprice_mean_abs_ticks": finite.mean()},
                )
            )

        # OFI per second, per kind (consecutive records of one kind)
        ofi: dict[str, float] = {}
        worst_corr, worst_rmse = 1.0, 0.0
        for kind in self.kinds:
            a, b = self.ofi_by_bucket(kind)
            if a.size < 2:
                continue
            corr, rel = ofi_agreement(a, b)
            ofi[f"{kind}_ofi_corr"] = corr
            ofi[f"{kind}_ofi_rel_rmse"] = rel
            ofi[f"{kind}_ofi_buckets"] = float(a.size)
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
        first_slip: tuple[int | None, int | None] = (None, None)
        for side in ("buy", "sell"):
            for qty in t.walk_sizes:
                col = f"{side}_slip_bp_{F._num(qty)}"
                parts = self._pooled(col)
                if not parts:
                    continue
                signed = ExactSum()
                signed.total = sum(p.signed.total for p in parts)
                signed.n = sum(p.signed.n for p in parts)
                m = abs(signed.mean()) if signed.n else 0.0
                qv = TopValues.quantile([p.top for p in parts])  # type: ignore[misc]
                slip[f"{col}_mean_delta"] = m
                slip[f"{col}_p99_delta"] = qv
                slip[f"{col}_pairs"] = float(signed.n)
                mean_worst, q_worst = max(mean_worst, m), max(q_worst, qv)
                if first_slip[0] is None:
                    first_slip = first(parts, zero=True)
        if slip:
            bad = (
                mean_worst > t.max_slippage_mean_delta_bp
                or q_worst > t.max_slippage_quantile_delta_bp
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

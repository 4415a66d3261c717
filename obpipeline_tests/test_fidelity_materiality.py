"""Gate A2 accumulated batch by batch equals the statistics of the whole day's pairs at once.

The pairs of a faulty simulated day are collected whole (a sink that keeps every batch) and the
A2 figures recomputed from them with numpy's own quantile, bincount and an exact mean: the
streamed figures must be the same numbers, with batches of any size. The accumulators are also
held to numpy on random data split at random places.
"""

from __future__ import annotations

import gzip
from datetime import date
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obpipeline import book
from obpipeline import features as F
from obpipeline.fidelity import exact
from obpipeline.fidelity.config import thresholds_for
from obpipeline.fidelity.frames import Events, Table
from obpipeline.fidelity.materiality import (
    ExactSum,
    Materiality,
    TopValues,
    _abs_delta,
    _feature_config,
)
from obpipeline.sources import faults
from obpipeline.sources import synthetic as S
from obpipeline.sources.binance import read_capture

SMALL = {"event_rate": 3.0, "msg_ms": 10_000, "d20_ms": 30_000, "warmup_events": 20_000}


class Collect(Materiality):
    """Materiality that also keeps every batch of pairs (the whole-day reference)."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.whole: dict[str, list[tuple[pl.DataFrame, pl.DataFrame, int]]] = {}

    def add(self, kind, levels, ref, rec) -> None:
        self.whole.setdefault(kind, []).append((ref, rec, levels))
        super().add(kind, levels, ref, rec)


@pytest.fixture(scope="module")
def faulty_day(tmp_path_factory):
    day = next(iter(S.simulate_days(date(2024, 3, 1), 1, **SMALL)))
    lines, _ = faults.inject(day.lines(), "scale_size=0.02,shift_price=0.005", seed=5)
    tmp = tmp_path_factory.mktemp("a2")
    path = tmp / "f.gz"
    path.write_bytes(gzip.compress(b"".join(x + b"\n" for x in lines), compresslevel=1))
    cap = read_capture([path])
    res = book.replay(cap.events, cap.instrument, 20)
    files = {}
    for name, frame in (("snaps", res.snapshots), ("events", cap.events),
                        ("bbo", cap.golden_bbo), ("depth", cap.golden_depth)):  # fmt: skip
        files[name] = tmp / f"{name}.parquet"
        frame.write_parquet(files[name], row_group_size=4096)
    return cap, files


def _run(cap, files: dict[str, Path], rows: int) -> Collect:
    t = thresholds_for(cap.instrument.venue_id)
    sink = Collect(cap.instrument, t)
    exact.day_comparisons(
        Table(files["snaps"], rows), Events(files["events"], rows), files["bbo"], files["depth"],
        sink=sink,
    )  # fmt: skip
    return sink


def test_streamed_a2_equals_the_whole_pairs(faulty_day) -> None:
    cap, files = faulty_day
    t = thresholds_for(cap.instrument.venue_id)
    streamed = _run(cap, files, 257)
    one = _run(cap, files, 1 << 30)
    assert all(len(v) == 1 for v in one.whole.values())
    assert sum(len(v) for v in streamed.whole.values()) > 10  # really in batches
    a, b = streamed.report(), one.report()
    assert a.figures == b.figures and a.pairs == b.pairs
    # verdicts and counts equal; float statistics equal up to summation order (last bits)
    assert [(r.check, r.status, r.first_failure_ns) for r in a.results] == [
        (r.check, r.status, r.first_failure_ns) for r in b.results
    ]
    for ra, rb in zip(a.results, b.results, strict=True):
        assert ra.value == pytest.approx(rb.value, rel=1e-12, nan_ok=True)
        assert ra.metrics == pytest.approx(rb.metrics, rel=1e-12, nan_ok=True)
    assert any(r.status == "fail" for r in a.results)  # the faults move features

    # the reference: features on the whole pairs, numpy's statistics
    tick = float(cap.instrument.tick_size)
    whole = {}
    for kind, parts in streamed.whole.items():
        levels = max(1, min(parts[0][2], 20))
        config = _feature_config(t, levels)
        ref = pl.concat([p[0] for p in parts])
        rec = pl.concat([p[1] for p in parts])
        whole[kind] = (
            levels,
            F.compute_features(ref, config=config, instrument=cap.instrument),
            F.compute_features(rec, config=config, instrument=cap.instrument),
        )
    fig = a.figures
    for k in t.spread_levels:
        col = f"spread_l{k}_bp"
        ds = [
            _abs_delta(
                fa.select(pl.col(col) * pl.col("mid") / 1e4 / tick).to_series(),
                fb.select(pl.col(col) * pl.col("mid") / 1e4 / tick).to_series(),
            )
            for lv, fa, fb in whole.values()
            if lv >= k and col in fa.columns
        ]
        if ds:
            d = np.concatenate(ds)
            assert fig[f"spread_l{k}_p999_ticks"] == np.quantile(d, t.spread_quantile,
                                                                  method="higher")  # fmt: skip
    by = {r.check: r for r in a.results}
    d = np.concatenate(
        [
            _abs_delta(fa["microprice"] / tick, fb["microprice"] / tick)
            for _, fa, fb in whole.values()
        ]  # fmt: skip
    )
    assert by["microprice_delta"].value == np.quantile(d, t.microprice_quantile, method="higher")
    finite = d[np.isfinite(d)]
    exact_mean = float(sum((Fraction(x) for x in finite), Fraction(0)) / finite.size)
    assert by["microprice_delta"].metrics["microprice_mean_abs_ticks"] == exact_mean
    assert exact_mean == pytest.approx(float(np.mean(finite)), rel=1e-12)
    col = "buy_slip_bp_1"
    ds = [_abs_delta(fa[col], fb[col]) for lv, fa, fb in whole.values() if lv >= 5]
    assert by["slippage_delta"].metrics[f"{col}_p99_delta"] == np.quantile(
        np.concatenate(ds), t.slippage_quantile, method="higher"
    )
    # OFI per second from the whole pairs (the previous definition, verbatim)
    step = F.parse_duration(t.ofi_every)
    for kind, (lv, fa, fb) in whole.items():
        cols = [f"ofi_{m}" for m in range(1, min(lv, 10) + 1)]
        tt = np.maximum.accumulate(fa["ts_event"].dt.epoch("ns").to_numpy())
        bb = (tt - tt[0]) // step
        n = int(bb[-1]) + 1
        r1, r2 = (
            np.bincount(bb, weights=f.select(pl.sum_horizontal(
                [pl.col(c).fill_null(0.0) for c in cols])).to_series().to_numpy(), minlength=n)
            for f in (fa, fb)
        )  # fmt: skip
        occupied = np.bincount(bb, minlength=n) > 0
        got = streamed.ofi_by_bucket(kind)
        # bucket sums in record order; numpy's bincount may add in another order (last bits)
        np.testing.assert_allclose(got[0], r1[occupied], rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(got[1], r2[occupied], rtol=1e-12, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(-1e6, 1e6, allow_nan=False), st.just(0.0), st.just(np.inf),
            st.floats(-1e-300, 1e-300, allow_nan=False),
        ),
        max_size=400,
    ),
    st.lists(st.integers(0, 400), max_size=6),
    st.sampled_from([0.5, 0.99, 0.999]),
)  # fmt: skip
def test_top_values_and_exact_sums_do_not_depend_on_batches(values, cuts, q) -> None:
    x = np.abs(np.asarray(values, dtype=np.float64))
    edges = sorted({0, x.size, *[c for c in cuts if c <= x.size]})
    tops = [TopValues(q, x.size), TopValues(q, x.size)]  # one kind split in two parts
    total = ExactSum()
    for i, (lo, hi) in enumerate(zip(edges, edges[1:], strict=False)):
        tops[i % 2].add(x[lo:hi])
        finite = x[lo:hi][np.isfinite(x[lo:hi])]
        total.add(finite)
    want = np.quantile(x, q, method="higher") if x.size else float("nan")
    got = TopValues.quantile(tops)
    assert (np.isnan(want) and np.isnan(got)) or got == want
    finite = x[np.isfinite(x)]
    if finite.size:
        assert total.mean() == float(sum((Fraction(v) for v in finite), Fraction(0)) / finite.size)

"""Gate A and Gate C figures are bit-identical from run to run, whatever the threads do.

Polars' parallel float reductions (``sum_horizontal`` over many columns, ``group_by().mean()``)
add in an order that depends on thread scheduling; a re-materialised day then wrote different
bytes (an OFI relative RMSE of 0.0 in one run, 3e-17 in the next). The day is evaluated here
several times, with several batch sizes, in processes with 1 and 4 Polars threads: the metrics
frame's parquet bytes, the OFI per bucket and the hourly profiles must not change.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from obpipeline import features as F
from obpipeline import lake
from obpipeline.fidelity import exact, lakeio, realism
from obpipeline.fidelity.frames import Events, Table
from obpipeline.fidelity.materiality import Materiality, row_sum
from obpipeline.sources import synthetic as S
from obpipeline_tests.test_fidelity_lazy import SMALL, _capture, _lake_day

DAY = date(2024, 3, 1)
BATCHES = (997, 1 << 18)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprints(root: str, runs: int) -> list[dict[str, str]]:
    """Per evaluation of the lake's day (``runs`` per batch size): digests of the metrics bytes,
    the OFI buckets and the hourly profile of the day's 1-s grid (stored next to the lake)."""
    venue, symbol = lakeio.instruments_in_lake(Path(root))[0]
    grid = pl.read_parquet(Path(root) / "grid_1s.parquet")
    paths = {
        n: lake.partition_path(n, venue, symbol, DAY, Path(root))
        for n in ("book_snapshots", "raw_book_events", "golden_bbo", "golden_depth")
    }
    day_inst = lakeio.instrument_for(venue, symbol)
    out = []
    for rows in BATCHES:
        for _ in range(runs):
            day = lakeio.evaluate_lake_day(Path(root), venue, symbol, DAY, batch_rows=rows)
            buf = io.BytesIO()
            day.metrics.write_parquet(buf)
            sink = Materiality(day_inst, day.thresholds)
            exact.day_comparisons(
                Table(paths["book_snapshots"], rows),
                Events(paths["raw_book_events"], rows),
                paths["golden_bbo"],
                paths["golden_depth"],
                sink=sink,
                batch_rows=rows,
            )
            assert {"bookTicker", "depth", "rest"} <= set(sink.kinds)
            ofi = b"".join(x.tobytes() for k in sorted(sink.kinds) for x in sink.ofi_by_bucket(k))
            prof = io.BytesIO()
            realism.day_profile(grid).write_parquet(prof)
            out.append(
                {
                    "metrics": _digest(buf.getvalue()),
                    "ofi": _digest(ofi),
                    "profile": _digest(prof.getvalue()),
                }
            )
    return out


def _in_process(root: Path, threads: int, runs: int) -> list[dict[str, str]]:
    env = {**os.environ, "POLARS_MAX_THREADS": str(threads)}
    code = (
        "import json, sys; from obpipeline_tests.test_fidelity_determinism import fingerprints; "
        "print(json.dumps(fingerprints(sys.argv[1], int(sys.argv[2]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(root), str(runs)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def lake_day(tmp_path_factory) -> Path:
    """One simulated day in a lake (small row groups), with its 1-s features grid."""
    root = tmp_path_factory.mktemp("determinism")
    sim = next(iter(S.simulate_days(DAY, 1, **SMALL)))
    cap = _capture(sim.lines(), root / "d.gz")
    res = _lake_day(root, cap, DAY)
    F.grid_features(res.snapshots, None, "1s", instrument=cap.instrument).write_parquet(
        root / "grid_1s.parquet"
    )
    return root


def test_day_is_bit_identical_across_runs_batches_and_threads(lake_day: Path) -> None:
    many = _in_process(lake_day, 4, runs=2)
    one = _in_process(lake_day, 1, runs=1)
    assert len(many) == 2 * len(BATCHES) and len(one) == len(BATCHES)
    assert all(f == many[0] for f in many + one), many + one


def test_row_sum_is_the_left_fold() -> None:
    rng = np.random.default_rng(5)
    cols = {f"ofi_{m}": rng.normal(size=5000) * 10.0 ** rng.integers(-4, 4, 5000) for m in
            range(1, 11)}  # fmt: skip
    frame = pl.DataFrame(cols).with_columns(pl.when(pl.col("ofi_3") <= 1.0).then(pl.col("ofi_3")))
    want = np.zeros(frame.height)
    for c in frame.columns:
        want = want + np.nan_to_num(frame[c].to_numpy(), nan=0.0)
    got = row_sum(frame, frame.columns)
    assert got.tobytes() == want.tobytes()


def test_group_means_equal_polars_means() -> None:
    """Same groups, counts and nulls as ``group_by().mean()``; values equal to rounding."""
    rng = np.random.default_rng(9)
    n = 20_000
    frame = pl.DataFrame({"k": rng.integers(0, 24, n).astype(np.int8), "x": rng.normal(size=n),
                          "y": rng.exponential(size=n)})  # fmt: skip
    frame = frame.with_columns(
        pl.when(pl.col("k") != 3).then(pl.col("x")), pl.when(pl.col("y") <= 3.0).then(pl.col("y"))
    )
    got = realism.group_means(frame, "k", ["x", "y"])
    want = (
        frame.group_by("k")
        .agg(pl.col("x").mean(), pl.col("y").mean(), pl.len().alias("samples"))
        .sort("k")
    )
    assert got.schema == want.schema
    assert got["k"].to_list() == want["k"].to_list()
    assert got["samples"].to_list() == want["samples"].to_list()
    for c in ("x", "y"):
        assert got[c].is_null().to_list() == want[c].is_null().to_list()
        a, b = got[c].drop_nulls().to_numpy(), want[c].drop_nulls().to_numpy()
        assert np.allclose(a, b, rtol=1e-12, atol=0)
    empty = realism.group_means(frame.head(0), "k", ["x", "y"])
    assert empty.height == 0 and empty.schema == want.schema

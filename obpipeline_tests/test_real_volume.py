"""Real volume in bounded memory: a simulated real-profile BTC-USDT day (~600 MB gz, ~27 M level
updates) replays under the memory bound, and two days peak like one (memory does not grow with
the input). Slow: the days are simulated first (~2 minutes each on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BOUND_MB = 2048  # `obpipeline replay` peak RSS on a real day (issue: <= 2 GB)


def _cli(*args: str) -> dict:
    """Run the CLI in its own process; its last stdout line is the JSON summary."""
    done = subprocess.run(
        [sys.executable, "-m", "obpipeline.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def real_days(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("real")
    _cli("simulate", "--profile", "real", "--days", "2", "--date", "2026-01-01",
         "--out", str(out), "--no-truth")  # fmt: skip
    files = sorted(out.glob("btcusdt_*.gz"))
    assert len(files) == 2 and all(f.stat().st_size > 300e6 for f in files)
    return files


def test_real_day_replays_in_bounded_memory_and_two_days_peak_like_one(real_days, tmp_path):
    one = _cli("verify", str(real_days[0]), "--out", str(tmp_path / "one"))
    two = _cli("verify", *map(str, real_days), "--out", str(tmp_path / "two"))
    assert one["level_updates"] > 20_000_000
    assert two["level_updates"] > 2 * 20_000_000
    assert one["verdict"] == two["verdict"] == "pass", (one["failures"], two["failures"])
    assert one["golden_compared"] > 0 and one["golden_mismatched"] == 0
    assert one["peak_rss_mb"] <= BOUND_MB, one
    assert two["peak_rss_mb"] <= BOUND_MB, two
    assert abs(two["peak_rss_mb"] - one["peak_rss_mb"]) <= 0.10 * one["peak_rss_mb"], (
        one["peak_rss_mb"],
        two["peak_rss_mb"],
    )

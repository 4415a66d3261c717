"""The simulator streams a day: same bytes as the whole-day build, memory independent of the day.

The pinned digests are the capture and truth of the whole-day simulator before it ran in
stretches (same seed, same bytes): the stretched engine and the stretch-by-stretch publication
must reproduce them exactly, with many stretches per day.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from obpipeline.sources import synthetic as S
from obpipeline.sources.synthetic import day as D

LIGHT = {"event_rate": 3.0, "msg_ms": 20_000, "d20_ms": 60_000, "warmup_events": 20_000}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@pytest.fixture
def short_stretches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many engine stretches per day (a demo day is ~1 M events: ~50 stretches)."""
    monkeypatch.setattr(D, "SEGMENT_EVENTS", 20_000)


# (day, simulate_day arguments, capture digest, truth CSV digest, lines)
PINNED = {
    "light seed 3": ("2024-03-01", {"seed": 3, **LIGHT}, "e1e8ebdbaa23ca28", "36739e2f443cfdf6"),
    "demo": ("2024-03-01", {}, "55718ce0b704556a", "b33185e3f10c208f"),
    "real 300 s": ("2026-01-01", {"profile": "real", "_seconds": 300}, "66acb4c81b55ff9f", "95267875e9d33500"),
    "demo chained, no snapshot": (
        "2024-03-02",
        {"opening_snapshot": False, "snapshot_every": None},
        "b979d1dcc37e7aab",
        "14b537ce037a6cc7",
    ),
    "demo seed 7, every 17 min": ("2024-03-11", {"seed": 7, "snapshot_every": 17}, "e460af31f54e03d7", "944b4cfbf441cf3d"),
    "real 1800 s": ("2026-01-01", {"profile": "real", "_seconds": 1800}, "3a3d0aaa55de4c32", "5e0be30974778435"),
}  # fmt: skip
SLOW = {"demo chained, no snapshot", "demo seed 7, every 17 min", "real 1800 s"}


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in PINNED]
)
def test_stretched_day_reproduces_the_pinned_bytes(case: str, short_stretches: None) -> None:
    day, kwargs, capture, truth = PINNED[case]
    sim = S.simulate_day(day, **kwargs)
    assert digest(sim.capture) == capture
    assert digest(sim.truth.write_csv().encode()) == truth
    chunks = list(S.iter_capture_chunks(day, chunk_bytes=1 << 20, **kwargs))
    assert digest(b"".join(chunks)) == capture


@pytest.mark.parametrize("kwargs", [{"seed": 3, **LIGHT}, {}], ids=["light", "demo"])
def test_capture_chunks_are_the_days_chunks(kwargs: dict, short_stretches: None) -> None:
    """Streamed chunks = the whole day's chunks: same text, same cut points, whole lines."""
    sim = S.simulate_day("2024-03-01", **kwargs)
    for size in (1 << 20, 300):  # 300 bytes: every line is a chunk of its own
        chunks = list(S.iter_capture_chunks("2024-03-01", chunk_bytes=size, **kwargs))
        assert chunks == list(sim.iter_chunks(size))
        assert all(c.endswith(b"\n") and c.count(b"\n") >= 1 for c in chunks)
    assert len(chunks) == sim.n_lines
    assert b"".join(chunks) == sim.capture


def test_stretch_length_does_not_change_the_day(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(events: int) -> bytes:
        monkeypatch.setattr(D, "SEGMENT_EVENTS", events)
        return b"".join(S.iter_capture_chunks("2024-03-05", seed=5, **LIGHT))

    one = run(10**9)
    assert run(5_000) == one and run(1_000) == one
    assert b"".join(S.iter_capture_chunks("2024-03-05", seed=6, **LIGHT)) != one


def test_write_day_streaming_writes_write_days_files(tmp_path: Path, short_stretches: None) -> None:
    sim = S.simulate_day("2024-03-01", seed=2, **LIGHT)
    whole = S.write_day(sim, tmp_path / "whole")
    paths, stats = S.write_day_streaming("2024-03-01", tmp_path / "stream", seed=2, **LIGHT)
    assert paths["capture"].read_bytes() == whole["capture"].read_bytes()
    assert pl.read_parquet(paths["truth"]).equals(sim.truth)
    assert stats == sim.stats()
    assert not list((tmp_path / "stream").rglob(".*tmp"))
    paths, _ = S.write_day_streaming("2024-03-01", tmp_path / "none", truth=False, **LIGHT)
    assert set(paths) == {"capture"} and not (tmp_path / "none" / "truth").exists()


def test_streamed_days_chain(short_stretches: None) -> None:
    """The streamed day D ends on D+1's opening book and ids (the settlement message)."""
    nxt = S.simulate_day("2024-03-02", opening_snapshot=False, **LIGHT)
    last = b"".join(S.iter_capture_chunks("2024-03-01", **LIGHT)).split(b"\n")[:-1]
    diffs = [json.loads(ln.split(b" ", 1)[1])["data"] for ln in last if b"@depth@0ms" in ln]
    assert diffs[-1]["u"] == S.uid_base(date(2024, 3, 2)) == nxt.stats()["prev_update_id"]


# ----------------------------------------------------------------------------- memory

PEAK = """
import sys
from obpipeline.cli import main
assert main(sys.argv[1:]) == 0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM"):
        print("VMHWM", int(line.split()[1]) * 1024)
"""


def peak_rss(tmp: Path, *args: str) -> int:
    """Peak RSS (bytes) of ``obpipeline simulate ...`` in its own process."""
    argv = [sys.executable, "-c", PEAK, "simulate", *args, "--out", str(tmp)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return next(int(ln.split()[1]) for ln in out.splitlines() if ln.startswith("VMHWM"))


@pytest.mark.slow
def test_real_volume_days_stream_in_bounded_memory(tmp_path: Path) -> None:
    """A real-volume day peaks well under 1.5 GB, and a 2-day run at the same RSS."""
    common = ["--profile", "real", "--date", "2026-01-01", "--no-truth"]
    one = peak_rss(tmp_path / "one", *common, "--days", "1")
    two = peak_rss(tmp_path / "two", *common, "--days", "2")
    assert one < 1.5 * 2**30, one
    assert abs(two - one) <= 0.1 * one, (one, two)

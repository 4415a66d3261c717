"""The whole Dagster chain per day at real volume: seconds per asset and day, the run's peak RSS.

Each run is one child process that materialises every asset and check of the instrument over
its days in one in-process Dagster run (``obpipeline.defs.local.materialize_range``, what
``obpipeline demo`` does; Great Expectations suites off), against a fresh lake and
``DAGSTER_HOME`` in a temporary folder, configured by a temporary ``obpipeline.yaml``
(``OBPIPELINE_CONFIG``). The in-process executor runs every step in that process, so its peak
RSS (``_proc.measure``) is the chain's. Two runs: 2026-01-01 alone, then 2026-01-01..02 —
memory that does not grow with the size of the input peaks at the same RSS in both
(``rss_vs_1day``); an untimed 1-day run on the simulator goes first, so that neither pays
for compiling numba's caches. Per step (its first asset), ``day1_s`` / ``day2_s`` are the
wall seconds of each day's materialisation in the 2-day run, ``day1_cpu_s`` / ``day2_cpu_s``
its CPU seconds (all threads: on a shared box, the figure that does not depend on the load) and
``run_peak_rss_mb`` the run process's peak RSS when the step ended (``VmHWM``: the step whose
figure first reaches the run's peak is the one that sets it). The run rows give wall, CPU and
peak RSS of the whole process, per day.

On by default under ``make bench`` (minutes at real volume). Environment:

* ``OBPIPELINE_BENCH_CHAIN=0`` skips it.
* ``OBPIPELINE_BENCH_CHAIN_SOURCE``: ``landing`` (default) reads real-volume capture files
  (``btcusdt_20260101.gz``, ``btcusdt_20260102.gz``; generated once into ``data/bench/real2``
  with ``obpipeline simulate --profile real --days 2``); ``simulator`` runs the embedded
  simulator's ``demo`` profile instead (a quick check of the bench itself).
* ``OBPIPELINE_BENCH_CHAIN_LANDING=DIR`` reads the capture files from ``DIR`` instead.

    OBPIPELINE_BENCH_CHAIN_SOURCE=simulator uv run --frozen python bench/bench_chain.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _proc import last_json, measure
from bench_replay import BENCH_DIR, ROOT

FIRST_DAY = "2026-01-01"
DAYS = ("2026-01-01", "2026-01-02")
LANDING = BENCH_DIR / "real2"
OVERRIDES = (  # environment keys that would override the temporary configuration
    "OBPIPELINE_LAKE",
    "OBPIPELINE_SOURCE",
    "OBPIPELINE_LANDING",
    "OBPIPELINE_WINDOW_START",
    "OBPIPELINE_WINDOW_END",
    "OBPIPELINE_ALERT_LOG",
    "OBPIPELINE_ALERT_WEBHOOK",
)
OBPIPELINE = str(Path(sys.executable).with_name("obpipeline"))
# the first asset of each step (the others written by a step share its figures)
STEPS = ("raw_book_events", "book_checkpoint", "book_snapshots", "book_features",
         "fidelity_metrics", "fidelity_report")  # fmt: skip


def ensure_landing() -> Path:
    """The folder of real-volume capture files (``OBPIPELINE_BENCH_CHAIN_LANDING`` if set)."""
    given = os.environ.get("OBPIPELINE_BENCH_CHAIN_LANDING")
    if given:
        return Path(given)
    names = [f"btcusdt_{d.replace('-', '')}.gz" for d in DAYS]
    if not all((LANDING / n).exists() for n in names):
        scratch = Path(tempfile.mkdtemp(prefix=".real2-", dir=BENCH_DIR))
        try:
            subprocess.run(
                [OBPIPELINE, "simulate", "--profile", "real", "--days", str(len(DAYS))]
                + ["--date", FIRST_DAY, "--out", str(scratch), "--no-truth"],
                check=True,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            LANDING.mkdir(parents=True, exist_ok=True)
            for n in names:
                os.replace(scratch / n, LANDING / n)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return LANDING


def _config(source: str, landing: Path | None, work: Path) -> Path:
    """A temporary ``obpipeline.yaml``: one BTCUSDT chain, the lake and alerts under ``work``."""
    import yaml

    if source == "landing":
        src = {"kind": "landing", "path": str(landing), "pattern": "btcusdt_*", "format": "binance"}
    else:
        src = {"kind": "simulator", "profile": "demo", "seed": 0}
    cfg = {
        "lake": str(work / "lake"),
        "window": {"start": DAYS[0], "end": "2026-01-03"},
        "schedule": {"enabled": False},
        "checks": {"great_expectations": False},
        "alerts": {"log": str(work / "alerts.jsonl")},
        "instruments": [{"venue": "binance", "market": "usdm", "symbol": "BTCUSDT", "source": src}],
    }
    path = work / "obpipeline.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- child


def child(first: str, last: str) -> dict:
    """Materialise the chain over ``first..last`` in this process; per-asset seconds per day."""
    import warnings

    warnings.filterwarnings("ignore")
    import dagster as dg

    from obpipeline.defs import build_definitions, load_config
    from obpipeline.defs.local import dagster_home, materialize_range

    dagster_home()
    cfg = load_config()
    defs = build_definitions(cfg)
    instance = dg.DagsterInstance.get()
    (inst,) = cfg.instruments
    t = time.perf_counter()
    run = materialize_range(defs, instance, inst, first, last)
    run_s = time.perf_counter() - t
    if not run.success:
        errors = "\n".join(f"{k}: {v.strip()[:500]}" for k, v in run.step_errors.items())
        raise SystemExit(f"chain run {first}..{last} failed:\n{errors}")
    figures = ("seconds", "cpu_seconds", "peak_rss_mb")
    steps = {
        f"{asset}/{day}": {k: meta.get(k) for k in figures}
        for (asset, day), meta in run.metadata.items()
    }
    messages = {
        day: meta.get("messages")
        for (asset, day), meta in run.metadata.items()
        if asset == "book_snapshots"
    }
    return {
        "run_s": run_s,
        "steps": steps,
        "messages": messages,
        "failed_checks": [
            f"{c['asset']}.{c['check']} {c['partition']}: {c['description']}"
            for c in run.failed_checks
        ],
    }


# ----------------------------------------------------------------------------- cases


def _run(days: tuple[str, ...], source: str, landing: Path | None) -> dict:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chain-", dir=BENCH_DIR) as tmp:
        work = Path(tmp)
        env = {
            "OBPIPELINE_CONFIG": str(_config(source, landing, work)),
            "DAGSTER_HOME": str(work / "dagster"),
        }
        for key in OVERRIDES:
            env[key] = ""  # the temporary file decides
        m = measure([sys.executable, __file__, "--child", days[0], days[-1]], env=env, cwd=ROOT)
    return {**m, "child": last_json(m["stdout"])}


def run(force: bool = False) -> list[dict]:
    if not (force or os.environ.get("OBPIPELINE_BENCH_CHAIN", "1") == "1"):
        return []
    source = os.environ.get("OBPIPELINE_BENCH_CHAIN_SOURCE", "landing")
    if source not in ("landing", "simulator"):
        raise SystemExit(f"OBPIPELINE_BENCH_CHAIN_SOURCE={source!r}: landing or simulator")
    landing = ensure_landing() if source == "landing" else None
    label = f"landing {landing.name}" if landing is not None else "simulator demo"
    _run(DAYS[:1], "simulator", None)  # untimed: loads (or compiles) the numba caches
    one = _run(DAYS[:1], source, landing)
    two = _run(DAYS, source, landing)
    rows = []
    for days, r in ((DAYS[:1], one), (DAYS, two)):
        c = r["child"]
        row = {
            "section": "chain",
            "case": f"run {len(days)} day(s), {label}",
            "seconds": r["wall_s"],
            "cpu_s": r["cpu_s"],
            "rss_mb": r["rss_mb"],
            "run_s": c["run_s"],
            "run_s_per_day": c["run_s"] / len(days),
            "cpu_s_per_day": r["cpu_s"] / len(days),
            "messages": sum(v or 0 for v in c["messages"].values()),
            "failed_checks": len(c["failed_checks"]),
        }
        for failed in c["failed_checks"]:
            print(f"chain run {days[0]}..{days[-1]}: check failed: {failed}", file=sys.stderr)
        if r is two:
            row["rss_vs_1day"] = two["rss_mb"] / one["rss_mb"]
        rows.append(row)
    steps = two["child"]["steps"]  # in materialisation order
    for asset in dict.fromkeys(key.split("/")[0] for key in steps):
        if asset not in STEPS:
            continue  # written by the step of another asset: the same figures
        per_day = [steps.get(f"{asset}/{d}") or {} for d in DAYS]
        row: dict = {"section": "chain", "case": f"asset {asset} ({label})"}
        for k, m in enumerate(per_day, 1):
            if m.get("seconds") is not None:
                row[f"day{k}_s"] = float(m["seconds"])
            if m.get("cpu_seconds") is not None:
                row[f"day{k}_cpu_s"] = float(m["cpu_seconds"])
        peaks = [float(m["peak_rss_mb"]) for m in per_day if m.get("peak_rss_mb") is not None]
        if peaks:
            row["run_peak_rss_mb"] = max(peaks)  # the run process's VmHWM when the step ended
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(*a.child)))
        return
    for row in run(force=True):
        print(json.dumps(row))


if __name__ == "__main__":
    main()

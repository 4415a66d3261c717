"""One day, one judgement: ``obpipeline verify``, the Dagster checks and the fidelity report give
the same verdict and the same counts for the same capture, clean and with each fault kind of
``obpipeline.sources.faults``.

The same faulted capture file feeds all three: the command line reads it, the Dagster chain
reads it as its landing folder, and the report's judge (``fidelity_day``, what fidelity_metrics
and fidelity_report show) reads the lake the library writes from it (a day blocked by a Dagster
check never reaches fidelity_metrics, so the report's verdict of a bad day is computed on the
same library walk without Dagster's blocking).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import warnings
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from obpipeline.book.parquet_stream import replay_parquet
from obpipeline.defs import build_definitions
from obpipeline.defs.assets import COUNTERS, counters_schema
from obpipeline.defs.config import InstrumentConfig, PlatformConfig, SourceConfig
from obpipeline.defs.local import materialize_range
from obpipeline.fidelity import config
from obpipeline.fidelity.assets import fidelity_day
from obpipeline.fidelity.gates import FAIL
from obpipeline.fidelity.integrity import unhandled_gaps
from obpipeline.sources import faults as F
from obpipeline.sources import synthetic as S
from obpipeline.sources.day import DayRequest, ingest_day

warnings.filterwarnings("ignore")

DAY = date(2024, 3, 1)
SMALL = {"event_rate": 3.0, "msg_ms": 10_000, "d20_ms": 30_000, "warmup_events": 20_000}
# one spec per fault kind (the forms of docs/FIDELITY_GATES.md, Gate B)
SPECS = {
    "clean": None,
    "drop": "drop=0.01",
    "duplicate": "duplicate=0.01",
    "reorder": "reorder=0.01",
    "shift_ts": "shift_ts=1.0:1",
    "drop_level": "drop_level=0.01",
    "scale_size": "scale_size=1.0:1.01",
    "shift_price": "shift_price=0.01:1",
    "stale_snapshot": "stale_snapshot=1:5",
    "malformed": "malformed=0.01",
}
# the counts every judge reports (a judge that stopped earlier reports a subset)
COUNTS = ("gaps", "resyncs", "unhandled_gaps", "golden_mismatched", "crossed", "duplicates")


def test_every_fault_kind_is_covered():
    assert set(SPECS) - {"clean"} == set(F.KINDS)


@pytest.fixture(scope="module")
def clean_lines() -> list[bytes]:
    return S.simulate_day(DAY, **SMALL).lines()


def _landing(tmp: Path, lines: list[bytes], spec: str | None) -> Path:
    if spec is not None:
        lines, _ = F.inject(lines, spec, seed=3)
    folder = tmp / "landing"
    folder.mkdir()
    path = folder / f"btcusdt_{DAY:%Y%m%d}.gz"
    path.write_bytes(gzip.compress(b"".join(x + b"\n" for x in lines), compresslevel=1))
    return folder


def judge_cli(capture: Path) -> dict:
    from obpipeline.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["verify", str(capture)])
    s = json.loads(out.getvalue().strip().splitlines()[-1])
    return {
        "verdict": "pass" if code == 0 else "fail",
        **{k: s[k] for k in ("gaps", "resyncs", "crossed", "duplicates", "golden_mismatched")},
        "unhandled_gaps": unhandled_gaps(s),
        "failed": s["failures"],
    }


def judge_dagster(tmp: Path, landing: Path) -> dict:
    source = SourceConfig(kind="landing", path=landing, pattern="*.gz")
    cfg = PlatformConfig(
        instruments=(InstrumentConfig(source=source),),
        lake=tmp / "dagster-lake",
        alert_log=tmp / "alerts.jsonl",
        window_start=DAY,
        window_end=DAY + timedelta(days=2),
        great_expectations=False,
    )
    (tmp / "instance").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp / "instance")) as instance:
        run = materialize_range(build_definitions(cfg), instance, cfg.instruments[0], DAY)
    meta: dict[str, dict] = {}
    failed: list[str] = []
    for e in run.result.all_events:
        if e.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        ev = e.event_specific_data
        # A verdict of the day is a check evaluated on the day's partition. A freshness check
        # (``freshness_check`` on fidelity_report) says whether the platform is up to date at
        # the time it runs, not whether this day is faithful: it has no partition, and it is no
        # judge of the day.
        if ev.partition is None or "freshness" in ev.check_name:
            continue
        meta[ev.check_name] = {k: getattr(v, "value", v) for k, v in ev.metadata.items()}
        if not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR:
            failed.append(ev.check_name)
    out: dict = {"verdict": "fail" if failed or not run.success else "pass", "failed": failed}
    if "no_unhandled_gap" in meta:  # the day reached book_snapshots
        gap = meta["no_unhandled_gap"]
        out |= {k: gap[k] for k in ("gaps", "resyncs", "unhandled_gaps")}
        out["golden_mismatched"] = meta["golden_exact"]["golden_mismatched"]
        out["crossed"] = meta["no_crossed_book"]["crossed"]
    return out


def judge_report(tmp: Path, landing: Path) -> dict:
    root = tmp / "report-lake"
    source = SourceConfig(kind="landing", path=landing, pattern="*.gz")
    req = DayRequest(source, "binance", "usdm", "BTCUSDT", DAY, root)
    staged = ingest_day(req)
    staged.publish(DAY, req.path("quarantine"))
    _, c = replay_parquet(
        req.path("raw_book_events"), req.path("book_snapshots"), staged.instrument, req.depth
    )
    out_path = req.path(COUNTERS)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame([c.to_dict()], schema=counters_schema()).write_parquet(out_path)
    day = fidelity_day(root, req.venue_id, req.symbol, DAY)
    m = day.metadata
    figures = {r.check: r for r in day.results}
    return {
        "verdict": "pass" if m["gate_a_passed"] else "fail",
        **{k: m[k] for k in ("gaps", "resyncs", "crossed", "duplicates", "golden_mismatched")},
        "unhandled_gaps": int(figures["unhandled_gaps"].value),
        "failed": [r.check for r in day.results if r.gate == "A0" and r.status == FAIL],
    }


@pytest.mark.parametrize("kind", list(SPECS))
def test_cli_dagster_and_report_agree(tmp_path, clean_lines, kind):
    landing = _landing(tmp_path, clean_lines, SPECS[kind])
    capture = next(landing.iterdir())
    judges = {
        "cli": judge_cli(capture),
        "dagster": judge_dagster(tmp_path, landing),
        "report": judge_report(tmp_path, landing),
    }
    shown = json.dumps(judges, indent=1, default=str)
    verdicts = {name: j["verdict"] for name, j in judges.items()}
    assert len(set(verdicts.values())) == 1, f"{kind}: verdicts differ\n{shown}"
    # clean passes; every fault fails (Gate B: each mutant must fail Gate A, a dropped duplicate
    # too: integrity.COUNTED)
    assert verdicts["cli"] == ("pass" if kind == "clean" else "fail"), shown
    for count in COUNTS:
        seen = {name: j[count] for name, j in judges.items() if count in j}
        assert len(set(seen.values())) == 1, f"{kind}: {count} differs\n{shown}"


# A venue's thresholds (fidelity/config.VENUE_OVERRIDES) change every judge alike: the counted
# rule (integrity.COUNTED) is the one ``verify``, Gate A0 and the Dagster checks apply.
OVERRIDES = {
    # dropped duplicates are then accepted: every judge passes the day
    "duplicate": ({"max_duplicates": 10**6}, "pass", ("duplicates",), "duplicates"),
    # crossed books (before repair) are then accepted: the golden records still fail the day,
    # but no judge names the crossed book
    "stale_snapshot": (
        {"max_crossed": 10**6, "max_uncross_repairs": 10**6},
        "fail",
        ("crossed", "no_crossed_book", "checkpoint_consistent"),
        "crossed",
    ),
}


def _failed_names(judge: dict) -> set[str]:
    """Check names a judge failed (``verify`` says ``A0 <name>: ...``)."""
    return {f.split(":")[0].removeprefix("A0 ") for f in judge["failed"]}


@pytest.mark.parametrize("kind", list(OVERRIDES))
def test_a_venue_override_changes_every_judge_alike(tmp_path, clean_lines, kind, monkeypatch):
    overrides, verdict, no_longer_failed, figure = OVERRIDES[kind]
    landing = _landing(tmp_path, clean_lines, SPECS[kind])
    capture = next(landing.iterdir())
    # under the default thresholds every judge fails the day, and names the rule
    default = judge_cli(capture)
    assert default["verdict"] == "fail"
    assert _failed_names(default) & set(no_longer_failed), default
    monkeypatch.setitem(config.VENUE_OVERRIDES, "binance-usdm", overrides)
    judges = {
        "cli": judge_cli(capture),
        "dagster": judge_dagster(tmp_path, landing),
        "report": judge_report(tmp_path, landing),
    }
    shown = json.dumps(judges, indent=1, default=str)
    assert {j["verdict"] for j in judges.values()} == {verdict}, shown
    for name, j in judges.items():
        assert not _failed_names(j) & set(no_longer_failed), f"{name}\n{shown}"
    for count in COUNTS:
        seen = {name: j[count] for name, j in judges.items() if count in j}
        assert len(set(seen.values())) == 1, f"{kind}: {count} differs\n{shown}"
    # the day really has what the override accepts, and the Dagster day reached book_snapshots
    assert judges["cli"][figure] > 0 and "no_unhandled_gap" not in judges["dagster"]["failed"]
    assert "gaps" in judges["dagster"], shown

"""What the Dagster UI shows after a fault drill: every check's status for each day.

Three simulated days, the middle one with dropped depth messages (an unhandled gap). One range
run over the three days (as a backfill run) fails the middle day's raw_id_chain; the clean days
are then run again alone. The webserver's own GraphQL schema, over the same instance and a
workspace loaded from a definitions file, must report every check's per-day status (the check's
*Partitions* tab reads the same field).
"""

import warnings
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import yaml

from obpipeline.defs import build_definitions
from obpipeline.defs.config import load_config
from obpipeline.defs.local import materialize_range, ui_check_statuses

warnings.filterwarnings("ignore")

DAYS = ["2025-03-01", "2025-03-02", "2025-03-03"]
BAD = DAYS[1]
SMALL = {"event_rate": 2.0, "msg_ms": 10_000, "warmup_events": 20_000, "snapshot_every": None}


def write_config(tmp: Path, reports_url: str | None = None) -> Path:
    """A definitions file and its YAML config, as a deployment would have them."""
    config = {
        "lake": str(tmp / "lake"),
        "reports": {"url": reports_url},
        "window": {"start": "2025-03-01", "end": "2025-03-10"},
        "alerts": {"log": str(tmp / "alerts.jsonl")},
        "checks": {"great_expectations": False},
        "instruments": [
            {
                "venue": "binance",
                "market": "usdm",
                "symbol": "BTCUSDT",
                "source": {
                    "kind": "simulator",
                    "options": SMALL,
                    "faults": "drop=0.01",
                    "fault_days": [BAD],
                },
            }
        ],
    }
    (tmp / "obpipeline.yaml").write_text(yaml.safe_dump(config))
    defs_file = tmp / "definitions.py"
    defs_file.write_text(
        "from obpipeline.defs import build_definitions, load_config\n"
        f"defs = build_definitions(load_config({str(tmp / 'obpipeline.yaml')!r}))\n"
    )
    return defs_file


@pytest.fixture(scope="module")
def drilled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    defs_file = write_config(tmp)
    cfg = load_config(tmp / "obpipeline.yaml")
    defs = build_definitions(cfg)
    inst = cfg.instruments[0]
    with dg.instance_for_test(temp_dir=str(tmp)) as instance:
        backfill = materialize_range(defs, instance, inst, DAYS[0], DAYS[-1])
        again = [materialize_range(defs, instance, inst, d) for d in (DAYS[0], DAYS[-1])]
        yield instance, defs_file, backfill, again


def test_every_check_has_a_status_for_every_day(drilled):
    instance, defs_file, backfill, again = drilled
    assert not backfill.success and all(r.success for r in again), [r.step_errors for r in again]
    statuses = ui_check_statuses(instance, defs_file)
    names = {check for check, _ in statuses}
    assert {"raw_id_chain", "no_unhandled_gap", "golden_exact", "gate_a", "gate_c"} <= names
    assert len(names) == 13  # 3 raw, 2 checkpoint, 5 snapshots, 3 fidelity
    assert {day for _, day in statuses} == set(DAYS)
    for check in names:
        days = {day: s for (c, day), s in statuses.items() if c == check}
        assert sorted(days) == DAYS, (check, days)  # no day Missing
        # the clean days pass every blocking check (gate_c may warn on a short day)
        if check != "gate_c":
            assert days[DAYS[0]] == days[DAYS[2]] == "SUCCEEDED", (check, days)
    # the drilled day: the gap fails its check; what could not run because of it says so
    assert statuses[("raw_id_chain", BAD)] == "FAILED"
    assert statuses[("raw_schema", BAD)] == "SUCCEEDED"
    assert statuses[("no_unhandled_gap", BAD)] == "EXECUTION_FAILED"
    assert statuses[("gate_a", BAD)] == "EXECUTION_FAILED"


def test_check_metadata_is_numeric_and_named(drilled):
    """Gate evidence plots across partitions: numbers by name, not strings by position."""
    instance, *_ = drilled
    key = dg.AssetCheckKey(dg.AssetKey(["binance_usdm", "btcusdt", "fidelity_metrics"]), "gate_a")
    records = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
    evaluation = next(r for r in records if r.partition == DAYS[0]).event.dagster_event
    meta = {k: getattr(v, "value", v) for k, v in evaluation.event_specific_data.metadata.items()}
    assert isinstance(meta["checks"], int) and meta["checks"] > 0
    assert meta["n_fail"] == 0 and meta["n_pass"] + meta["n_insufficient"] > 0
    numeric = [k for k, v in meta.items() if k.startswith("A1_") and isinstance(v, float)]
    assert numeric, meta
    assert isinstance(meta["checked_at"], float) and meta["checked_at"] > date(2025, 1, 1).year


def test_one_golden_count_everywhere(drilled):
    """book_snapshots' golden_exact, fidelity_metrics and the rolling report count alike."""
    *_, again = drilled
    for run, day in zip(again, (DAYS[0], DAYS[-1]), strict=True):
        snapshots = run.metadata[("book_snapshots", day)]
        metrics = run.metadata[("fidelity_metrics", day)]
        assert snapshots["golden_compared"] > 100
        for name in ("golden_compared", "golden_mismatched", "golden_match_rate"):
            assert snapshots[name] == metrics[name], name
    report = again[-1].metadata[("fidelity_report", DAYS[-1])]
    compared = sum(r.metadata[("fidelity_metrics", d)]["golden_compared"]
                   for r, d in zip(again, (DAYS[0], DAYS[-1]), strict=True))  # fmt: skip
    assert report["golden_compared"] == compared
    assert report["html"].startswith("file://") and report["html"].endswith(
        f"fidelity_report_{DAYS[0]}_{DAYS[-1]}.html"
    )


def test_gate_c_judges_what_the_report_shows(drilled):
    """gate_c's checks on the last day are the Gate C checks of the HTML report (one count)."""
    from obpipeline.fidelity import report
    from obpipeline.fidelity.config import thresholds_for

    instance, defs_file, *_ = drilled
    key = dg.AssetCheckKey(dg.AssetKey(["binance_usdm", "btcusdt", "fidelity_metrics"]), "gate_c")
    records = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
    latest = next(r for r in records if r.partition == DAYS[-1]).event.dagster_event
    statuses = latest.event_specific_data.metadata["statuses"].value
    lake = Path(defs_file).parent / "lake"
    shown = report._load_realism(lake, "binance-usdm", "BTCUSDT", thresholds_for("binance-usdm"), 7)
    assert sorted(statuses) == sorted(f"C:{r.check}" for r in shown.results)

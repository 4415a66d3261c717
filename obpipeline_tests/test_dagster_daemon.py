"""End to end through a running daemon (slow): a UI-style backfill with a faulty day → alerts.

``scripts/backfill_12m.py`` starts ``dagster dev`` on a fresh instance, submits the backfill with
the GraphQL ``launchPartitionBackfill`` mutation and waits for the daemon to finish it. Day 2 gets
dropped depth messages and no intraday snapshot (an unhandled gap): its raw_book_events check
fails, the run fails, and both alert sensors — running in the daemon — write their JSONL lines.
One day per run, so day 1 still completes and day 3 stays unmaterialised (it needs day 2's book).
"""

import json
import subprocess
import sys

import pytest

from obpipeline.defs.config import REPO_ROOT

pytestmark = pytest.mark.slow


def test_daemon_backfill_with_a_faulty_day_alerts(tmp_path):
    work = tmp_path / "bf"
    cmd = [
        sys.executable,
        str(REPO_ROOT / "scripts" / "backfill_12m.py"),
        "--days", "3",
        "--end", "2025-03-03",
        "--work", str(work),
        "--port", "3961",
        "--poll", "5",
        "--timeout", "1200",
        "--no-ge",
        "--days-per-run", "1",
        "--faults", "drop=0.01",
        "--fault-day", "2",
        "--sim-option", "snapshot_every=null",
        "--sim-option", "event_rate=2.0",
        "--sim-option", "msg_ms=10000",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((work / "report.json").read_text())
    assert report["backfill_status"] in ("COMPLETED_FAILED", "FAILED", "COMPLETED")
    assert report["failed_runs"] >= 1
    done = report["materialized_partitions"]
    assert done["raw_book_events"] == 2 and done["fidelity_report"] == 1  # day 1 only downstream
    alerts = report["alerts"]
    checks = {
        (a["check"], a["severity"], a["partition"]) for a in alerts if a["kind"] == "asset_check"
    }
    assert ("raw_id_chain", "ERROR", "2025-03-02") in checks
    runs = [a for a in alerts if a["kind"] == "run_failure"]
    assert any(a["partition"] == "2025-03-02" for a in runs), runs

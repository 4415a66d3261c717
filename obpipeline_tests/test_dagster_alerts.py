"""A day with injected faults: its blocking check fails, nothing downstream runs, alerts go out.

Faults come from ``obpipeline.sources.faults`` (dropped depth messages on a day whose only REST
snapshot is the opening one → an unhandled gap; malformed lines → quarantine, a WARN). The two
alert sensors are evaluated in process against the run's instance; the webhook is a local HTTP
server. The same flow through a running daemon is ``test_dagster_daemon.py`` (slow).
"""

import json
import threading
import warnings
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import pytest

from obpipeline.defs import build_definitions
from obpipeline.defs.alerts import deliver, read_alerts
from obpipeline.defs.config import InstrumentConfig, PlatformConfig, SourceConfig
from obpipeline.defs.local import materialize_range

warnings.filterwarnings("ignore")

SMALL = {"event_rate": 2.0, "msg_ms": 10_000, "warmup_events": 20_000, "snapshot_every": None}
BAD, AFTER = "2025-03-02", "2025-03-03"


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def webhook():
    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/alerts"
    server.shutdown()


@pytest.fixture(scope="module")
def faulty(tmp_path_factory, webhook):
    tmp: Path = tmp_path_factory.mktemp("faults")
    source = SourceConfig(
        options=SMALL,
        faults="drop=0.01,malformed=0.001",
        fault_days=(date.fromisoformat(BAD),),
    )
    cfg = PlatformConfig(
        instruments=(InstrumentConfig(source=source),),
        lake=tmp / "lake",
        alert_log=tmp / "alerts" / "alerts.jsonl",
        alert_webhook=webhook,
        window_start=date(2025, 3, 1),
        window_end=date(2025, 3, 10),
        great_expectations=False,
    )
    defs = build_definitions(cfg)
    with dg.instance_for_test(temp_dir=str(tmp)) as instance:
        # one range run over the faulty day and a clean one, as a backfill run would do
        bad = materialize_range(defs, instance, cfg.instruments[0], BAD, AFTER)
        yield cfg, defs, instance, bad


def test_faulty_day_fails_its_blocking_check_and_stops_downstream(faulty):
    cfg, _, _, bad = faulty
    assert not bad.success
    failed = {(c["check"], c["severity"], c["partition"]) for c in bad.failed_checks}
    assert ("raw_id_chain", "ERROR", BAD) in failed
    assert ("raw_quarantine", "WARN", BAD) in failed
    assert list(bad.step_errors) == ["binance_usdm__btcusdt__raw_book_events"]
    error = bad.step_errors["binance_usdm__btcusdt__raw_book_events"]
    assert f"{BAD}: raw_id_chain" in error and "with no snapshot after them" in error
    # the clean day of the range is recorded (a backfill carries on with it), the bad one not,
    # and nothing downstream ran in this run
    raw_step = ["raw_book_events", "golden_bbo", "golden_depth", "trades", "quarantine"]
    assert bad.materialized == {name: [AFTER] for name in raw_step}
    assert not list(cfg.lake.glob(f"*/*/*/date={BAD}/*"))  # nothing of the bad day landed
    assert len(list(cfg.lake.glob(f"*/*/*/date={AFTER}/*"))) == 5  # raw + alongside


def test_alert_sensors_write_jsonl_and_post_webhook(faulty):
    cfg, defs, instance, bad = faulty
    check_sensor = defs.resolve_sensor_def("check_failure_alerts")
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        check_sensor(context)
        cursor = context.cursor
    alerts = read_alerts(cfg.alert_log)
    got = {(a["kind"], a["check"], a["severity"], a["partition"]) for a in alerts}
    assert ("asset_check", "raw_id_chain", "ERROR", BAD) in got
    assert ("asset_check", "raw_quarantine", "WARN", BAD) in got
    assert all(a["webhook_status"] == 204 for a in alerts)
    assert {a["check"] for a in Hook.received} >= {"raw_id_chain", "raw_quarantine"}
    first = next(a for a in alerts if a["check"] == "raw_id_chain")
    assert first["metadata"]["unhandled_gaps"] > 0 and first["run_id"] == bad.run_id

    # the cursor holds: a second tick alerts nothing new
    with dg.build_sensor_context(instance=instance, definitions=defs, cursor=cursor) as context:
        check_sensor(context)
    assert len(read_alerts(cfg.alert_log)) == len(alerts)

    run_sensor = defs.resolve_sensor_def("run_failure_alerts")
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts",
        dagster_event=bad.result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=bad.result.dagster_run,
    ).for_run_failure()
    run_sensor(context)
    runs = [a for a in read_alerts(cfg.alert_log) if a["kind"] == "run_failure"]
    assert len(runs) == 1 and runs[0]["run_id"] == bad.run_id
    assert runs[0]["partition_range"] == [BAD, AFTER]
    step_error = runs[0]["failed_steps"]["binance_usdm__btcusdt__raw_book_events"]
    assert "raw_id_chain" in step_error


def test_webhook_failure_is_recorded_not_raised(tmp_path):
    alert = deliver({"kind": "test"}, tmp_path / "a.jsonl", "http://127.0.0.1:9/nothing-here")
    assert "webhook_error" in alert
    assert read_alerts(tmp_path / "a.jsonl")[0]["kind"] == "test"


class SlackApi(BaseHTTPRequestHandler):
    """A Slack Web API stand-in: records chat.postMessage calls, answers like Slack."""

    posted: list[tuple[str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        SlackApi.posted.append((self.path, json.loads(body)))
        payload = json.dumps({"ok": True, "channel": "C1", "ts": "1.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


def test_slack_delivery_through_dagster_slack(tmp_path, monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), SlackApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OBPIPELINE_SLACK_API_URL", f"http://127.0.0.1:{server.server_port}/api/")
    alert = {"kind": "asset_check", "check": "raw_id_chain", "asset": "a/b/raw_book_events",
             "partition": BAD, "severity": "ERROR", "description": "2 gaps"}  # fmt: skip
    try:
        written = deliver(alert, tmp_path / "a.jsonl", None, ("xoxb-secret-token", "#alerts"))
    finally:
        server.shutdown()
    assert written["slack_channel"] == "#alerts" and "slack_error" not in written
    path, body = SlackApi.posted[-1]
    assert path.endswith("chat.postMessage") and body["channel"] == "#alerts"
    assert body["text"].startswith("[ERROR] a/b/raw_book_events · raw_id_chain failed on " + BAD)
    # an unreachable Slack is recorded in the log line, the token never is
    monkeypatch.setenv("OBPIPELINE_SLACK_API_URL", "http://127.0.0.1:9/api/")
    failed = deliver(alert, tmp_path / "a.jsonl", None, ("xoxb-secret-token", "#alerts"))
    assert "slack_error" in failed and "secret" not in json.dumps(read_alerts(tmp_path / "a.jsonl"))


def test_a_missed_day_alerts_through_the_freshness_sensor(tmp_path):
    """The report holds every day of an ended window but its last: the freshness sensor asks
    for its check, the check fails (the missed day is overdue), check_failure_alerts alerts on
    it; once the day has landed the same check passes. The daily job never runs it (it judges
    the clock, not the days a run materialises)."""
    cfg = PlatformConfig(
        instruments=(InstrumentConfig(source=SourceConfig(options=SMALL)),),
        lake=tmp_path / "lake",
        alert_log=tmp_path / "alerts.jsonl",
        window_start=date(2025, 3, 1),
        window_end=date(2025, 3, 10),
        great_expectations=False,
    )
    defs = build_definitions(cfg)
    report = dg.AssetKey(["binance_usdm", "btcusdt", "fidelity_report"])
    fresh = dg.AssetCheckKey(report, "freshness_check")
    daily = defs.resolve_job_def("binance_usdm__btcusdt__daily")
    assert fresh not in daily.asset_layer.asset_graph.asset_check_keys

    def tick(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
        sensor = defs.resolve_sensor_def("freshness_checks_sensor")
        with dg.build_sensor_context(instance=instance, definitions=defs) as context:
            request = sensor(context)
        assert isinstance(request, dg.RunRequest), request
        assert list(request.asset_check_keys) == [fresh]
        job = defs.resolve_implicit_global_asset_job_def()
        only = job.get_subset(asset_selection=set(), asset_check_selection={fresh})
        return only.execute_in_process(instance=instance)

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        for day in range(1, 9):  # 2025-03-09 is missed
            instance.report_runless_asset_event(
                dg.AssetMaterialization(report, partition=f"2025-03-0{day}")
            )
        missed = tick(instance)
        (evaluation,) = missed.get_asset_check_evaluations()
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
        assert "2025-03-09" in evaluation.description  # the overdue day, named
        alerts_sensor = defs.resolve_sensor_def("check_failure_alerts")
        with dg.build_sensor_context(instance=instance, definitions=defs) as context:
            alerts_sensor(context)
        (alert,) = read_alerts(cfg.alert_log)
        assert (alert["kind"], alert["check"], alert["severity"]) == (
            "asset_check", "freshness_check", "ERROR"
        )  # fmt: skip
        assert alert["asset"] == "binance_usdm/btcusdt/fidelity_report"
        assert "overdue" in alert["description"] and alert["partition"] is None

        instance.report_runless_asset_event(dg.AssetMaterialization(report, partition="2025-03-09"))
        (evaluation,) = tick(instance).get_asset_check_evaluations()
        assert evaluation.passed, evaluation.description

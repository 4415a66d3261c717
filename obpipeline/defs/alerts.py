"""Alerts: failed asset checks (WARN and ERROR) and failed runs → JSONL log (+ optional webhook).

Open-source Dagster has no alert policies, so alerts are two sensors run by the daemon
(docs/DESIGN.md §8, measured):

* ``check_failure_alerts`` pages ``event_log_storage.get_asset_check_execution_history`` per
  check key with a per-key cursor (the last record id alerted). The obvious
  ``get_event_records(after_cursor=int)`` crashes on the default run-sharded SQLite storage.
  It sees WARN failures (which do not fail a run) and ERROR ones, with their partition.
* ``run_failure_alerts`` (``run_failure_sensor``) sees every failed run of this code location,
  including blocking-check failures and crashes before any check ran. It does not see runs
  started with the ``dagster asset materialize`` CLI (no code-location origin).

Each alert is one JSON object per line in the alert log (default ``data/alerts/alerts.jsonl``)
and, when a webhook URL is configured, the same object POSTed as JSON (5 s timeout; a failed
delivery is logged by the sensor and recorded in the log line, never raised). The webhook URL
is a secret (it often embeds a token): it never appears in a log or alert line, only its
redacted form (``redact_url``), even when the URL is malformed.
"""

import fcntl
import json
import os
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from obpipeline.defs.config import PlatformConfig

PAGE = 100


def redact_url(url: str) -> str:
    """``scheme://host/…``: enough to tell which endpoint, nothing of its path, query or login."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
    if not host or parts.scheme not in ("http", "https"):
        return "<malformed webhook URL>"
    return f"{parts.scheme}://{host}/…"


def _scrub(text: str, url: str) -> str:
    """``text`` without the URL or any sizeable piece of it (paths and tokens get quoted alone)."""
    text = text.replace(url, redact_url(url))
    for piece in sorted(set(filter(None, _url_pieces(url))), key=len, reverse=True):
        if len(piece) >= 4:
            text = text.replace(piece, "…")
    return text


def _url_pieces(url: str) -> list[str]:
    try:
        p = urllib.parse.urlsplit(url)
    except ValueError:
        return [url.strip()]
    return [url.strip(), p.path, p.query, p.fragment, p.password or "", p.username or "",
            p.netloc if "@" in p.netloc else ""]  # fmt: skip


def slack_text(alert: dict[str, Any]) -> str:
    """The alert as one short Slack message (the JSON log line keeps every field)."""
    if alert.get("kind") == "asset_check":
        return (
            f"[{alert.get('severity')}] {alert.get('asset')} · {alert.get('check')} failed on "
            f"{alert.get('partition')}: {str(alert.get('description') or '')[:300]}"
        )
    where = alert.get("partition") or alert.get("partition_range")
    return f"[RUN FAILED] {alert.get('job')} ({where}): {str(alert.get('message') or '')[:300]}"


def post_slack(
    alert: dict[str, Any], token: str, channel: str, base_url: str | None = None
) -> None:
    """Post the alert to a Slack channel through ``dagster-slack`` (``base_url``: tests only)."""
    from dagster_slack import SlackResource

    client = SlackResource(token=token).get_client()
    if base_url:
        client.base_url = base_url
    client.chat_postMessage(channel=channel, text=slack_text(alert))


def deliver(
    alert: dict[str, Any],
    log_path: Path,
    webhook_url: str | None,
    slack: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Append the alert to the JSONL log, POST it to the webhook and (``slack``: token, channel)
    post it to Slack; returns what was written. Delivery errors are recorded, never raised."""
    alert = {"alerted_at": datetime.now(UTC).isoformat(timespec="seconds"), **alert}
    if slack:
        token, channel = slack
        try:
            post_slack(alert, token, channel, os.environ.get("OBPIPELINE_SLACK_API_URL"))
            alert["slack_channel"] = channel
        except Exception as exc:  # delivery problems must not stop the other alerts
            alert["slack_error"] = _scrub(f"{type(exc).__name__}: {exc}", token)[:300]
    if webhook_url:
        try:
            req = urllib.request.Request(
                webhook_url,
                data=json.dumps(alert, default=str).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=5) as resp:
                alert["webhook_status"] = resp.status
        except Exception as exc:  # delivery problems must not stop the other alerts
            error = _scrub(f"{type(exc).__name__}: {exc}", webhook_url)
            alert["webhook_error"] = f"{error[:300]} (webhook {redact_url(webhook_url)})"
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(alert, default=str) + "\n")
        f.flush()
        fcntl.flock(f, fcntl.LOCK_UN)
    return alert


def read_alerts(log_path: Path) -> list[dict[str, Any]]:
    path = Path(log_path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _json_safe(value: Any) -> Any:
    raw = getattr(value, "value", value)
    try:
        json.dumps(raw)
        return raw
    except TypeError:
        return str(raw)


def _check_alert(record: Any) -> dict[str, Any]:
    evaluation = record.event.dagster_event.event_specific_data if record.event else None
    metadata = {k: _json_safe(v) for k, v in (getattr(evaluation, "metadata", None) or {}).items()}
    return {
        "kind": "asset_check",
        "check": record.key.name,
        "asset": record.key.asset_key.to_user_string(),
        "partition": record.partition,
        "severity": evaluation.severity.value if evaluation else None,
        "description": getattr(evaluation, "description", None),
        "run_id": record.run_id,
        "record_id": record.id,
        # when the check ran (a step stores its evaluations at its end; older records: stored)
        "evaluated_at": datetime.fromtimestamp(
            float(metadata.get("checked_at") or record.create_timestamp), UTC
        ).isoformat(),
        "metadata": metadata,
    }


def _step_error(event: Any) -> str:
    error = getattr(event.event_specific_data, "error", None)
    return (getattr(error, "message", "") or "")[:1000]


def new_failed_check_records(instance: dg.DagsterInstance, check_key: dg.AssetCheckKey, after: int):
    """Failed evaluations of one check with record id > ``after``, oldest first (paged)."""
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )

    found, cursor = [], None
    while True:
        page = instance.event_log_storage.get_asset_check_execution_history(
            check_key,
            limit=PAGE,
            cursor=cursor,
            status={AssetCheckExecutionRecordStatus.FAILED},
        )
        fresh = [r for r in page if r.id > after]
        found += fresh
        if len(page) < PAGE or len(fresh) < len(page):
            break
        cursor = min(r.id for r in page)
    return sorted(found, key=lambda r: r.id)


def _slack(cfg: PlatformConfig) -> tuple[str, str] | None:
    """(token, channel) when Slack delivery is configured (the token only from the environment)."""
    token = os.environ.get("OBPIPELINE_SLACK_TOKEN")
    return (token, cfg.slack_channel) if token and cfg.slack_channel else None


def build_alert_sensors(cfg: PlatformConfig) -> list[dg.SensorDefinition]:
    @dg.sensor(
        name="check_failure_alerts",
        description="Alert on every failed asset check evaluation (WARN and ERROR), per partition.",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def check_failure_alerts(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        cursor: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
        sent = 0
        for check_key in sorted(
            context.repository_def.asset_graph.asset_check_keys, key=lambda k: k.to_user_string()
        ):
            name = check_key.to_user_string()
            records = new_failed_check_records(context.instance, check_key, cursor.get(name, 0))
            for record in records:
                alert = deliver(_check_alert(record), cfg.alert_log, cfg.alert_webhook, _slack(cfg))
                if "webhook_error" in alert:
                    context.log.warning(f"webhook delivery failed: {alert['webhook_error']}")
                sent += 1
            if records:
                cursor[name] = records[-1].id
        context.update_cursor(json.dumps(cursor, sort_keys=True))
        return dg.SkipReason(f"{sent} check failure alert(s) delivered to {cfg.alert_log}")

    @dg.run_failure_sensor(
        name="run_failure_alerts",
        description="Alert on every failed run of this code location (blocking checks included).",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def run_failure_alerts(context: dg.RunFailureSensorContext) -> None:
        run = context.dagster_run
        tags = run.tags
        first = tags.get("dagster/asset_partition_range_start")
        last = tags.get("dagster/asset_partition_range_end")
        alert = {
            "kind": "run_failure",
            "job": run.job_name,
            "run_id": run.run_id,
            # backfill runs of one day come as a one-day range
            "partition": tags.get("dagster/partition") or (first if first == last else None),
            "partition_range": [first, last] if first else None,
            "backfill": tags.get("dagster/backfill"),
            "message": (context.failure_event.message or "")[:1000],
            "failed_steps": {
                e.step_key: _step_error(e) for e in context.get_step_failure_events() if e.step_key
            },
        }
        written = deliver(alert, cfg.alert_log, cfg.alert_webhook, _slack(cfg))
        if "webhook_error" in written:
            context.log.warning(f"webhook delivery failed: {written['webhook_error']}")

    return [check_failure_alerts, run_failure_alerts]

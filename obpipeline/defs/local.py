"""In-process runs of a chain over a range of days (the demo, tests, scripts): no daemon needed.

``materialize_range`` runs an instrument's ``<chain>__daily`` job once over ``first..last``
through the ``dagster/asset_partition_range_*`` tags, exactly like a backfill run: the assets
loop the days in order inside the run.
"""

import contextlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.utils import make_new_run_id

from obpipeline.defs.config import REPO_ROOT, InstrumentConfig

TEMPLATE = REPO_ROOT / "dagster.yaml"


def dagster_home(default: Path | None = None) -> Path:
    """``$DAGSTER_HOME`` (else ``default`` or ``data/dagster``), created with the template."""
    home = Path(os.environ.get("DAGSTER_HOME") or default or REPO_ROOT / "data" / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists() and TEMPLATE.exists():
        shutil.copyfile(TEMPLATE, target)
    os.environ["DAGSTER_HOME"] = str(home.resolve())
    return home


def range_tags(first: date | str, last: date | str) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": str(first),
        "dagster/asset_partition_range_end": str(last),
    }


@dataclass
class RunSummary:
    success: bool
    run_id: str
    materialized: dict[str, list[str]] = field(default_factory=dict)  # asset → days
    metadata: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    failed_checks: list[dict[str, Any]] = field(default_factory=list)
    step_errors: dict[str, str] = field(default_factory=dict)
    skipped_steps: list[str] = field(default_factory=list)
    result: Any = field(default=None, repr=False)  # the ExecuteInProcessResult


def summarize(result: dg.ExecuteInProcessResult) -> RunSummary:
    out = RunSummary(success=result.success, run_id=result.run_id, result=result)
    for e in result.all_events:
        kind = e.event_type_value
        if kind == "ASSET_MATERIALIZATION":
            m = e.event_specific_data.materialization
            name = m.asset_key.path[-1]
            out.materialized.setdefault(name, []).append(m.partition)
            out.metadata[(name, m.partition)] = {
                k: getattr(v, "value", v) for k, v in m.metadata.items()
            }
        elif kind == "ASSET_CHECK_EVALUATION":
            ev = e.event_specific_data
            if not ev.passed:
                out.failed_checks.append(
                    {
                        "asset": ev.asset_key.path[-1],
                        "check": ev.check_name,
                        "partition": ev.partition,
                        "severity": ev.severity.value,
                        "description": ev.description,
                    }
                )
        elif kind == "STEP_FAILURE":
            out.step_errors[e.step_key] = e.event_specific_data.error.message
        elif kind == "STEP_SKIPPED":
            out.skipped_steps.append(e.step_key)
    return out


PROGRESS_EVENTS = {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.STEP_FAILURE}


@contextlib.contextmanager
def watching(
    instance: dg.DagsterInstance, run_id: str, on_event: Callable[[Any], None] | None
) -> Iterator[None]:
    """Call ``on_event`` with each materialization and step failure of ``run_id`` as it is
    stored (a thread reading the instance's event log once a second), and the rest at the end."""
    if on_event is None:
        yield
        return
    done = threading.Event()
    cursor: list[str | None] = [None]

    def drain() -> None:
        page = instance.get_records_for_run(run_id, cursor=cursor[0], of_type=PROGRESS_EVENTS)
        for record in page.records:
            on_event(record.event_log_entry.dagster_event)
        cursor[0] = page.cursor

    def loop() -> None:
        while not done.wait(1.0):
            drain()

    thread = threading.Thread(target=loop, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        drain()


def materialize_range(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    inst: InstrumentConfig,
    first: date | str,
    last: date | str | None = None,
    log_file: Path | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> RunSummary:
    """Run every asset and check of one instrument over ``first..last`` in one in-process run.

    ``log_file``: Dagster's event log lines (DEBUG) are appended there instead of the terminal.
    ``on_event``: called with each materialization and step failure while the run goes
    (``watching``), e.g. to print progress.
    """
    job = defs.resolve_job_def(f"{inst.slug}__daily")
    last = last or first
    kwargs: dict[str, Any] = (
        {"partition_key": str(first)}
        if str(first) == str(last)
        else {"tags": range_tags(first, last)}
    )
    kwargs |= {"instance": instance, "raise_on_error": False, "run_id": make_new_run_id()}
    with watching(instance, kwargs["run_id"], on_event):
        if log_file is None:
            result = job.execute_in_process(**kwargs)
        else:  # Dagster's console logger writes to whatever sys.stderr is when it emits
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            with open(log_file, "a", encoding="utf-8") as log, contextlib.redirect_stderr(log):
                result = job.execute_in_process(**kwargs)
    return summarize(result)


CHECK_STATUS_QUERY = """
query CheckStatuses {
  assetNodes {
    assetKey { path }
    assetChecksOrError {
      ... on AssetChecks {
        checks {
          name
          partitionStatuses {
            ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
          }
        }
      }
    }
  }
}
"""


def ui_check_statuses(
    instance: dg.DagsterInstance, definitions_file: Path | str
) -> dict[tuple[str, str], str]:
    """(check, day) → status as the Dagster UI shows it (its GraphQL, in process).

    The workspace is loaded from ``definitions_file`` (a module defining ``defs``) over
    ``instance``; ranges are expanded to days. A day without a status is absent (*Missing*).
    """
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            python_file=str(definitions_file), attribute="defs"
        ),
        location_name="obpipeline",
    )
    out: dict[tuple[str, str], str] = {}
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as process:
        result = execute_dagster_graphql(process.create_request_context(), CHECK_STATUS_QUERY)
    for node in result.data["assetNodes"]:
        for check in (node["assetChecksOrError"] or {}).get("checks", []):
            for r in (check["partitionStatuses"] or {}).get("ranges", []):
                first, last = date.fromisoformat(r["startKey"]), date.fromisoformat(r["endKey"])
                for n in range((last - first).days + 1):
                    out[(check["name"], str(first + timedelta(days=n)))] = r["status"]
    return out

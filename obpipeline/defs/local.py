"""In-process runs of a chain over a range of days (the demo, tests, scripts): no daemon needed.

``materialize_range`` runs an instrument's ``<chain>__daily`` job once over ``first..last``
through the ``dagster/asset_partition_range_*`` tags, exactly like a backfill run: the assets
loop the days in order inside the run.
"""

import os
import shutil
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg

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


def materialize_range(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    inst: InstrumentConfig,
    first: date | str,
    last: date | str | None = None,
) -> RunSummary:
    """Run every asset and check of one instrument over ``first..last`` in one in-process run."""
    job = defs.resolve_job_def(f"{inst.slug}__daily")
    last = last or first
    kwargs: dict[str, Any] = (
        {"partition_key": str(first)}
        if str(first) == str(last)
        else {"tags": range_tags(first, last)}
    )
    result = job.execute_in_process(instance=instance, raise_on_error=False, **kwargs)
    return summarize(result)

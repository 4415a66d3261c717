"""Incremental days: a daily schedule for yesterday's partition and a landing-folder sensor.

* ``<chain>__daily`` job: every asset and check of one instrument for a partition (or a range,
  via the ``dagster/asset_partition_range_*`` tags: days then run in order inside one run).
* ``<chain>__daily_schedule``: at ``schedule.delay`` after UTC midnight, materialise yesterday.
* ``<chain>__landing_sensor`` (landing sources only): when capture files appear or change, request
  the days they complete. Day D is complete once the file of D+1 has landed too, because the
  first seconds of D+1's file carry D's last messages (receive day ≠ exchange day); set
  ``edge_seconds: 0`` to take a day as soon as its own file lands.
"""

import json
import warnings
from datetime import date, timedelta
from typing import Any

import dagster as dg

from obpipeline.defs.assets import Chain
from obpipeline.sources.day import landing_files

TRIGGER_TAG = "obpipeline/trigger"
# On every run of an instrument's job: dagster.yaml may allow one run per instrument at a time.
INSTRUMENT_TAG = "obpipeline/instrument"


def build_job(chain: Chain, not_in_runs: list | tuple = ()) -> Any:
    """The chain's job; ``not_in_runs``: checks evaluated by their own sensor (freshness: a
    verdict on *now*, not on the days a run materialises, e.g. a backfill of last year)."""
    selection = dg.AssetSelection.groups(chain.group)
    if not_in_runs:
        selection = selection - dg.AssetSelection.checks(*not_in_runs)
    return dg.define_asset_job(
        f"{chain.group}__daily",
        selection=selection,
        partitions_def=chain.partitions,
        description=f"Every asset and check of {chain.inst.venue_id} {chain.inst.symbol}.",
        # ahead of queued backfill runs (the queue is FIFO within a priority): a new day is not
        # held back behind months of backfill
        tags={INSTRUMENT_TAG: chain.group, "dagster/priority": "1"},
    )


def build_schedule(chain: Chain, job: Any):
    hour, minute = chain.cfg.schedule_hour_minute
    return dg.build_schedule_from_partitioned_job(
        job,
        name=f"{chain.group}__daily_schedule",
        description=(
            f"Yesterday's partition of {chain.inst.symbol}, {hour:02d}:{minute:02d} after UTC "
            "midnight (schedule.delay in obpipeline.yaml)."
        ),
        hour_of_day=hour,
        minute_of_hour=minute,
        default_status=dg.DefaultScheduleStatus.RUNNING
        if chain.cfg.schedule_enabled
        else dg.DefaultScheduleStatus.STOPPED,
        tags={TRIGGER_TAG: "schedule"},
    )


def _signature(files: dict[date, list], day: date) -> str:
    parts = []
    for d in (day - timedelta(days=1), day, day + timedelta(days=1)):
        for p in files.get(d, []):
            st = p.stat()
            parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def complete_days(chain: Chain, files: dict[date, list]) -> list[date]:
    """Days of the window whose own file landed (and the next day's, when edges matter)."""
    keys = set(chain.partitions.get_partition_keys())
    wait_next = chain.inst.source.edge_seconds > 0
    return sorted(
        d
        for d in files
        if d.isoformat() in keys and (not wait_next or (d + timedelta(days=1)) in files)
    )


def _ranges(days: list[date], limit: int) -> list[tuple[date, date]]:
    out: list[tuple[date, date]] = []
    for d in days:
        if out and d == out[-1][1] + timedelta(days=1) and (d - out[-1][0]).days < limit:
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


def build_landing_sensor(chain: Chain, job: Any):
    @dg.sensor(
        name=f"{chain.group}__landing_sensor",
        description=(
            f"New or changed capture files under {chain.inst.source.path} "
            f"({chain.inst.source.pattern}) → runs of the days they complete, in order."
        ),
        job=job,
        minimum_interval_seconds=chain.cfg.landing_sensor_interval,
        default_status=dg.DefaultSensorStatus.RUNNING
        if chain.cfg.landing_sensor_enabled
        else dg.DefaultSensorStatus.STOPPED,
    )
    def landing_sensor(context: dg.SensorEvaluationContext) -> Any:
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        files = landing_files(chain.inst.source)
        changed = [
            d
            for d in complete_days(chain, files)
            if seen.get(d.isoformat()) != _signature(files, d)
        ]
        if not changed:
            return dg.SkipReason(f"no new complete day among {len(files)} dated file group(s)")
        requests = []
        for first, last in _ranges(changed, chain.cfg.days_per_run):
            sig = "+".join(_signature(files, d) for d in (first, last))
            tags = {TRIGGER_TAG: "landing_sensor"}
            if first == last:
                requests.append(
                    dg.RunRequest(
                        run_key=f"{first}:{sig}", partition_key=first.isoformat(), tags=tags
                    )
                )
            else:
                tags.update(
                    {
                        "dagster/asset_partition_range_start": first.isoformat(),
                        "dagster/asset_partition_range_end": last.isoformat(),
                    }
                )
                requests.append(dg.RunRequest(run_key=f"{first}..{last}:{sig}", tags=tags))
        for d in changed:
            seen[d.isoformat()] = _signature(files, d)
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))

    return landing_sensor


FRESHNESS_HOURS = 6  # the daily chain should have reported yesterday this long after its schedule


def build_freshness_checks(chains: list[Chain]) -> tuple[list, dg.SensorDefinition | None]:
    """A missed day is visible: each chain's fidelity_report must hold yesterday's partition
    ``FRESHNESS_HOURS`` after the schedule fires; the check fails otherwise, and the
    check_failure_alerts sensor alerts on it like on any other failed check.

    Only ``freshness_checks_sensor`` evaluates them (the daily jobs leave them out): whether a
    day is overdue is a question about the clock, answered again on every tick, and not a
    verdict on the partitions a run materialises.

    Dagster 1.13 marks these factories superseded by ``FreshnessPolicy``. A policy is judged by
    an opt-in daemon against the asset's latest materialization of *any* partition (a backfill of
    last year would look fresh) and yields a freshness state, not a check evaluation the
    check_failure_alerts sensor sees; these checks judge yesterday's partition itself.
    """
    from obpipeline.defs.assets import REPORT

    if not chains:
        return [], None
    warnings.filterwarnings("ignore", category=dg.SupersessionWarning)
    hour, minute = chains[0].cfg.schedule_hour_minute
    checks = dg.build_time_partition_freshness_checks(
        assets=[c.key(REPORT) for c in chains],
        deadline_cron=f"{minute} {(hour + FRESHNESS_HOURS) % 24} * * *",
        timezone="UTC",
        severity=dg.AssetCheckSeverity.ERROR,
    )
    sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=checks,
        name="freshness_checks_sensor",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    return list(checks), sensor

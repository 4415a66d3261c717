"""The Dagster layer: decides what runs when, on which partition, with which check.

All computation is a library call (``obpipeline.sources``, ``book``, ``features``, ``fidelity``,
``lake``); these modules only wire it. ``build_definitions(config)`` is the one constructor;
``obpipeline.definitions:defs`` calls it with ``obpipeline.yaml`` + environment overrides.

Modules: ``config`` (settings), ``resources`` (the day source seam: one UTC day comes from
``obpipeline.sources.day``), ``executor`` (in process or Celery workers), ``assets`` (the per-instrument factory), ``checks`` (Polars
invariants), ``expectations`` / ``ge_checks`` (Great Expectations suites), ``alerts`` (sensors),
``automation`` (jobs, schedule, landing sensor), ``local`` (in-process range runs: demo, tests).
"""

from __future__ import annotations

import warnings

import dagster as dg

from obpipeline.defs.config import InstrumentConfig, PlatformConfig, load_config

__all__ = ["build_definitions", "load_config", "PlatformConfig", "InstrumentConfig", "partitions"]


def partitions(cfg: PlatformConfig) -> dg.DailyPartitionsDefinition:
    """Daily UTC partitions over the configured window (open-ended when no end is set)."""
    end = cfg.window_end.isoformat() if cfg.window_end else None
    return dg.DailyPartitionsDefinition(start_date=cfg.start.isoformat(), end_date=end)


def build_definitions(cfg: PlatformConfig, day_source=None) -> dg.Definitions:
    """Assets, checks, jobs, schedules and sensors for every configured instrument."""
    from obpipeline.defs.alerts import build_alert_sensors
    from obpipeline.defs.assets import SOURCE_RESOURCE, Chain, build_assets
    from obpipeline.defs.automation import (
        build_freshness_checks,
        build_job,
        build_landing_sensor,
        build_schedule,
    )
    from obpipeline.defs.executor import run_executor
    from obpipeline.defs.ge_checks import build_ge_checks
    from obpipeline.defs.resources import DaySource

    # Partitioned checks are a preview feature in 1.13 (docs/DESIGN.md §8): pinned + tested.
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    daily = partitions(cfg)
    assets, asset_checks, jobs, schedules = [], [], [], []
    sensors = build_alert_sensors(cfg)
    chains = [Chain(cfg, inst, daily) for inst in cfg.instruments]
    freshness, freshness_sensor = build_freshness_checks(chains)
    asset_checks += freshness
    if freshness_sensor is not None:
        sensors.append(freshness_sensor)
    for chain in chains:
        inst = chain.inst
        assets += build_assets(chain)
        if cfg.great_expectations:
            asset_checks += build_ge_checks(chain)
        job = build_job(chain, not_in_runs=freshness)
        jobs.append(job)
        schedules.append(build_schedule(chain, job))
        if inst.source.kind == "landing":
            sensors.append(build_landing_sensor(chain, job))
    return dg.Definitions(
        assets=assets,
        asset_checks=asset_checks,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources={SOURCE_RESOURCE: day_source or DaySource()},
        # One process per run: steps share the imports (GE ~8-16 s, numba), parallelism comes
        # from concurrent runs (dagster.yaml), not from steps (docs/DESIGN.md §8); on a cluster
        # ($OBPIPELINE_EXECUTOR=celery) steps go to the workers.
        executor=run_executor(),
    )

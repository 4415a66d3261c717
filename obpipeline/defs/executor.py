"""Which executor runs the steps: in process (default), or Celery workers for a cluster.

``$OBPIPELINE_EXECUTOR=celery`` hands every step to ``dagster-celery`` workers through the broker
at ``$OBPIPELINE_CELERY_BROKER`` (results in ``$OBPIPELINE_CELERY_BACKEND``, default: the
broker), so the steps of one run may execute on other machines; the workers need the same
instance (PostgreSQL) and lake (``s3://``). Read when the definitions load: the webserver, the
daemon, the run workers and the Celery workers must all see the same setting
(``scripts/cluster/cluster.py`` sets it for every process it starts).
"""

from __future__ import annotations

import os

import dagster as dg

EXECUTORS = ("in_process", "celery")


def run_executor(env: dict[str, str] | None = None) -> dg.ExecutorDefinition:
    """The executor named by ``$OBPIPELINE_EXECUTOR`` (default ``in_process``)."""
    env = dict(os.environ if env is None else env)
    name = env.get("OBPIPELINE_EXECUTOR") or "in_process"
    if name == "in_process":
        # One process per run: steps share the imports (GE ~8-16 s, numba), parallelism comes
        # from concurrent runs (dagster.yaml), not from steps (docs/DESIGN.md §8).
        return dg.in_process_executor
    if name != "celery":
        raise ValueError(f"OBPIPELINE_EXECUTOR={name!r}: use one of {', '.join(EXECUTORS)}")
    broker = env.get("OBPIPELINE_CELERY_BROKER")
    if not broker:
        raise ValueError("OBPIPELINE_EXECUTOR=celery needs OBPIPELINE_CELERY_BROKER (redis://...)")
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {"broker": broker, "backend": env.get("OBPIPELINE_CELERY_BACKEND") or broker},
        name="celery",
    )

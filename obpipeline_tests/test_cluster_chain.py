"""The cluster end to end (PostgreSQL, Redis, two Celery workers, moto S3, daemon, webserver, all
started by scripts/cluster/cluster.py): a daemon backfill of two instruments x three days,
launched through GraphQL, keeps each instrument's book_checkpoint chain in day order while the
instruments' chains execute at the same time on different workers.

Slow and needs the ``cluster`` extra plus Debian's postgresql and redis-server (``make
cluster-setup`` installs them); it uses its own state folder and ports.
"""

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
pytest.importorskip("dagster_celery", reason="the `cluster` extra is not installed")
pytest.importorskip("dagster_postgres", reason="the `cluster` extra is not installed")

ROOT = Path(__file__).resolve().parents[1]
DAYS = ["2025-03-01", "2025-03-02", "2025-03-03"]
SMALL = {"event_rate": 2.0, "msg_ms": 10_000, "warmup_events": 20_000}
SYMBOLS = ("BTCUSDT", "ETHUSDT")


@pytest.fixture(scope="module")
def cluster():
    if shutil.which("redis-server") is None or not list(Path("/usr/lib/postgresql").glob("*")):
        pytest.fail("postgresql / redis-server missing: run `make cluster-setup`")
    # under data/ like the cluster's own state: PostgreSQL's user must reach its data folder
    tmp = ROOT / "data" / f"cluster-test-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = {
        "lake": "s3://obpipeline-lake/lake",
        "window": {"start": DAYS[0], "end": "2025-03-10"},
        "schedule": {"enabled": False},
        "checks": {"great_expectations": False},
        "instruments": [
            {"venue": "binance", "market": "usdm", "symbol": s,
             "source": {"kind": "simulator", "seed": k, "options": SMALL}}
            for k, s in enumerate(SYMBOLS)
        ],
    }  # fmt: skip
    (tmp / "obpipeline.yaml").write_text(yaml.safe_dump(config))
    env = {
        "OBPIPELINE_CLUSTER_STATE": str(tmp / "state"),
        "OBPIPELINE_CLUSTER_CONFIG": str(tmp / "obpipeline.yaml"),
        "OBPIPELINE_CLUSTER_PG_PORT": "55532",
        "OBPIPELINE_CLUSTER_REDIS_PORT": "56479",
        "OBPIPELINE_CLUSTER_S3_PORT": "56000",
        "OBPIPELINE_CLUSTER_WEB_PORT": "53100",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    spec = importlib.util.spec_from_file_location(
        "cluster_script", ROOT / "scripts" / "cluster" / "cluster.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        cluster_env = module.start()
        yield module, cluster_env
    finally:
        module.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_parallel_instruments_keep_each_checkpoint_chain_in_order(cluster):
    module, env = cluster
    slugs = [f"binance_usdm__{s.lower()}" for s in SYMBOLS]
    # the raw step (raw_book_events and what it writes alongside) and the checkpoint chain
    keys = module.instrument_assets(set(slugs), {"raw_book_events", "book_checkpoint"})
    assert len(keys) == len(slugs) * 6, keys
    backfill = module.launch_backfill(keys, DAYS)
    status, runs = module.wait_backfill(backfill, timeout=1500)
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), status
    assert runs and all(r["status"] == "SUCCESS" for r in runs), runs

    # read the instance the cluster wrote (PostgreSQL), as any process with its environment
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        import dagster as dg

        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            checkpoint_runs = {}
            for slug in slugs:
                key = dg.AssetKey(["binance_usdm", slug.split("__")[1], "book_checkpoint"])
                records = instance.fetch_materializations(key, limit=100).records
                by_day = sorted(records, key=lambda r: r.partition_key)
                assert [r.partition_key for r in by_day] == DAYS
                # materialised in day order, each day from the previous day's checkpoint
                stamps = [r.timestamp for r in by_day]
                assert stamps == sorted(stamps), (slug, stamps)
                meta = [r.asset_materialization.metadata for r in by_day]
                starts = [m["started_from"].value for m in meta]
                assert starts[1:] == ["D-1 checkpoint"] * (len(DAYS) - 1), starts
                ids = [m["last_update_id"].value for m in meta]
                assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
                checkpoint_runs[slug] = {r.run_id for r in by_day}
            # each chain ran as one step; the two instruments' steps overlapped in time
            windows = {}
            for slug in slugs:
                (run_id,) = checkpoint_runs[slug]
                step = f"{slug}__book_checkpoint"
                events = instance.all_logs(
                    run_id,
                    of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS},
                )
                stamps = [e.timestamp for e in events if e.step_key == step]
                assert len(stamps) == 2, (step, stamps)
                windows[slug] = (min(stamps), max(stamps), run_id, step)
        a, b = windows.values()
        assert a[0] < b[1] and b[0] < a[1], windows
    finally:
        os.environ.clear()
        os.environ.update(saved)

    workers = set()
    for r in runs:
        workers |= set(module.step_workers(r["runId"]).values())
    assert len(workers) == 2, workers
    # and on different workers
    assert len({module.step_workers(w[2])[w[3]] for w in windows.values()}) == 2
    objects = module.lake_objects(env)
    for symbol in SYMBOLS:
        for day in DAYS:
            key = (
                f"lake/book_checkpoint/venue=binance-usdm/symbol={symbol}/date={day}/part-0.parquet"
            )
            assert key in objects


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-m", "slow", "-q"]))

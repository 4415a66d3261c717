"""Backfill 12 months of every obpipeline asset the way the UI does, and measure it.

1. Starts ``dagster dev`` (webserver + daemon) on 127.0.0.1 with a fresh ``DAGSTER_HOME`` and lake
   under ``data/backfill_12m/`` (the instance template ``dagster.yaml`` is copied in), the
   platform's window set to the ``--days`` days ending ``--end`` (default: yesterday, UTC).
2. Submits one asset backfill of all assets of the first configured instrument over every
   partition through the GraphQL ``launchPartitionBackfill`` mutation (what the UI's
   "Materialize → backfill" sends), so the backfill daemon plans the runs with the assets'
   BackfillPolicy and the queue applies ``dagster.yaml``'s limits.
3. Polls until the backfill finishes, then reads the instance: wall time, runs, per-asset step
   time, the slowest asset, and whether book_checkpoint materialised its days in order.
4. Stops the dev server (by its process group) and writes ``data/backfill_12m/report.json``.

    uv run python scripts/backfill_12m.py                 # 365 days of the demo profile
    uv run python scripts/backfill_12m.py --days 7        # a quick rehearsal
    uv run python scripts/backfill_12m.py --days 3 --profile real   # real volume (~27 M updates a day)
    uv run python scripts/backfill_12m.py --days 3 --faults drop=0.01 --fault-day 2   # alert drill
    uv run python scripts/backfill_12m.py --landing /srv/rv --end 2026-01-02 --days 2  # capture files
    uv run python scripts/backfill_12m.py --landing /srv/rv12 --end 2026-01-12 --days 12 --days-per-run 6

A run of the real thing takes hours on 2 cores: ``--days`` rehearses the same path on fewer.
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MUTATION = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on ConflictingExecutionParamsError { message }
  }
}
"""
STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status numPartitions timestamp endTimestamp }
    ... on PythonError { message }
  }
}
"""
# the first asset of each step (the other assets of a step carry the same step figures)
STEP_HEADS = ("raw_book_events", "book_checkpoint", "book_snapshots", "book_features",
              "fidelity_metrics", "fidelity_report")  # fmt: skip
DONE = {"COMPLETED", "FAILED", "CANCELED", "COMPLETED_SUCCESS", "COMPLETED_FAILED"}


def graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            out = json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # the server's own message, not just "500"
        raise RuntimeError(f"GraphQL {exc.code}: {exc.read()[:2000]!r}") from None
    if out.get("errors"):
        raise RuntimeError(json.dumps(out["errors"])[:2000])
    return out["data"]


def port_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:``port`` (another dev server there would answer
    this script's GraphQL calls instead of its own)."""
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def start_dev(port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``dagster dev`` in its own process group, with default signal handling restored."""

    def reset_signals() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)

    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=reset_signals,
    )


def stop_dev(proc: subprocess.Popen) -> None:
    """SIGTERM to the dev server's process group (webserver, daemon, code server, runs)."""
    if proc.poll() is not None:
        return
    pgid = os.getpgid(proc.pid)
    os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=10)
    time.sleep(2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)  # stragglers (code server, run workers)


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    query = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {proc.returncode}")
        try:
            nodes = graphql(port, query)["repositoriesOrError"]["nodes"]
            if nodes:
                return
        except Exception:
            pass
        time.sleep(3)
    raise TimeoutError("dagster dev did not come up")


def instrument_assets(port: int, prefix: list[str]) -> list[list[str]]:
    """Every asset of the instrument's chain (``prefix``): a backfill must select all the assets
    a multi-asset step writes (golden_*, replay_counters, feature grids...), as the UI does."""
    nodes = graphql(port, "{ assetNodes { assetKey { path } } }")["assetNodes"]
    paths = [n["assetKey"]["path"] for n in nodes]
    return sorted(p for p in paths if p[: len(prefix)] == prefix)


def launch_backfill(port: int, asset_paths: list[list[str]], days: list[str], title: str) -> str:
    # one range per asset (what the UI sends for a range): with a list of partition names,
    # Dagster may build different subset types for the assets of one multi-asset and refuse
    # the backfill ("Targeted subset must match")
    span = {"range": {"start": days[0], "end": days[-1]}}
    params = {
        "partitionsByAssets": [{"assetKey": {"path": p}, "partitions": span} for p in asset_paths],
        "fromFailure": False,
        "title": title,
    }
    out = graphql(port, MUTATION, {"params": params})["launchPartitionBackfill"]
    if out["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"backfill not launched: {out}")
    return out["backfillId"]


def wait_backfill(port: int, backfill_id: str, poll: float, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        b = graphql(port, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        if b["__typename"] != "PartitionBackfill":
            raise RuntimeError(b)
        if b["status"] != last:
            print(
                f"  {datetime.now(UTC):%H:%M:%S} backfill {backfill_id}: {b['status']}", flush=True
            )
            last = b["status"]
        if b["status"] in DONE:
            return b
        time.sleep(poll)
    raise TimeoutError(f"backfill {backfill_id} still running after {timeout:.0f} s")


def analyse(home: Path, backfill_id: str, days: list[str], submitted: float) -> dict[str, Any]:
    """Runs, wall time, per-asset time and the order book_checkpoint materialised in."""
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg
    from dagster._core.storage.dagster_run import RunsFilter

    instance = dg.DagsterInstance.get()
    runs = instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": backfill_id}))
    per_asset = defaultdict(float)
    per_asset_runs: dict[str, int] = defaultdict(int)
    run_rows = []
    for run in runs:
        stats = instance.get_run_stats(run.run_id)
        steps = instance.get_run_step_stats(run.run_id)
        for s in steps:
            if s.start_time and s.end_time:
                name = s.step_key.split("__", 2)[-1]
                per_asset[name] += s.end_time - s.start_time
                per_asset_runs[name] += 1
        run_rows.append(
            {
                "run_id": run.run_id,
                "status": run.status.value,
                "start": stats.start_time,
                "end": stats.end_time,
                "range": [
                    run.tags.get("dagster/asset_partition_range_start"),
                    run.tags.get("dagster/asset_partition_range_end"),
                ],
                "partition": run.tags.get("dagster/partition"),
                "steps": sorted({s.step_key.split("__", 2)[-1] for s in steps}),
            }
        )
    run_rows.sort(key=lambda r: r["start"] or 0)
    ends = [r["end"] for r in run_rows if r["end"]]
    starts = [r["start"] for r in run_rows if r["start"]]
    materialized: dict[str, int] = {}
    order_ok = None
    run_peak_mb: dict[str, float] = defaultdict(float)  # the run process's VmHWM, from metadata
    cpu_seconds = 0.0  # CPU seconds of every step on every day (assets' cpu_seconds metadata)
    for key in instance.get_asset_keys():
        name = key.path[-1]
        parts = instance.get_materialized_partitions(key)
        materialized[name] = len(set(parts) & set(days))
        for rec in instance.fetch_materializations(key, limit=10_000).records:
            meta = rec.asset_materialization.metadata
            peak = meta.get("peak_rss_mb")
            if peak is not None:
                run_peak_mb[rec.run_id] = max(run_peak_mb[rec.run_id], float(peak.value))
            cpu = meta.get("cpu_seconds")
            if cpu is not None and name in STEP_HEADS and rec.partition_key in set(days):
                cpu_seconds += float(cpu.value)  # once per step and day: its first asset
        if name == "book_checkpoint":
            records = instance.fetch_materializations(key, limit=10_000, ascending=True).records
            seq = [r.partition_key for r in records if r.partition_key in set(days)]
            order_ok = seq == sorted(seq) and len(set(seq)) == len(days)
    for r in run_rows:
        r["peak_rss_mb"] = run_peak_mb.get(r["run_id"])
    wall = round(max(ends) - submitted, 1) if ends else None
    failed = [r for r in run_rows if r["status"] != "SUCCESS"]
    slowest = max(per_asset.items(), key=lambda kv: kv[1]) if per_asset else ("", 0.0)
    return {
        "backfill_id": backfill_id,
        "days": len(days),
        "first_day": days[0],
        "last_day": days[-1],
        "runs": len(run_rows),
        "failed_runs": len(failed),
        "wall_seconds_submit_to_last_run_end": wall,
        "wall_seconds_per_day": round(wall / len(days), 1) if wall else None,
        "step_cpu_seconds_per_day": round(cpu_seconds / len(days), 1),
        # 12 months at this backfill's rate a day, its per-run costs included (submission tick,
        # a tick per checkpoint range, run start-up): fewer, longer runs cost less a day
        "projected_365_days_hours": round(wall / len(days) * 365 / 3600, 2) if wall else None,
        "seconds_first_run_start_to_last_run_end": round(max(ends) - min(starts), 1)
        if ends and starts
        else None,
        "asset_step_seconds": {k: round(v, 1) for k, v in sorted(per_asset.items())},
        "asset_step_runs": dict(per_asset_runs),
        "asset_seconds_per_day": {k: round(v / len(days), 3) for k, v in per_asset.items()},
        "slowest_asset": {"name": slowest[0], "step_seconds": round(slowest[1], 1)},
        "materialized_partitions": materialized,
        "book_checkpoint_in_order": order_ok,
        "peak_rss_mb_max_run": max(run_peak_mb.values(), default=None),
        "run_list": run_rows,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--end", type=date.fromisoformat, help="last day (default: yesterday UTC)")
    p.add_argument("--port", type=int, default=3939)
    p.add_argument("--work", type=Path, default=REPO / "data" / "backfill_12m")
    p.add_argument("--timeout", type=float, default=48 * 3600)
    p.add_argument("--poll", type=float, default=20)
    p.add_argument("--days-per-run", type=int, help="override backfill.days_per_run")
    p.add_argument("--no-ge", action="store_true", help="disable the GE suites (config override)")
    p.add_argument(
        "--landing",
        type=Path,
        help="read Binance capture files (btcusdt_YYYYMMDD.gz) from this folder, not the simulator",
    )
    p.add_argument("--pattern", default="btcusdt_*", help="file pattern with --landing")
    p.add_argument("--profile", help="simulator profile (demo, real): real volume is `real`")
    p.add_argument("--faults", help="fault spec injected into the simulator (alert drill)")
    p.add_argument("--fault-day", type=int, action="append", default=[], help="1-based day")
    p.add_argument(
        "--sim-option",
        action="append",
        default=[],
        help="simulator override KEY=VALUE (YAML value), e.g. snapshot_every=null",
    )
    p.add_argument(
        "--analyse-only", action="store_true", help="re-read the finished backfill in --work"
    )
    args = p.parse_args()
    if args.analyse_only:
        launch = json.loads((args.work / "launch.json").read_text())
        report = analyse(
            args.work / "dagster_home", launch["backfill_id"], launch["days"], launch["submitted"]
        )
        report.update({k: v for k, v in launch.items() if k.startswith(("backfill_", "wall_"))})
        return finish(args.work, report, ok_anyway=True)

    if not port_free(args.port):
        p.error(f"port {args.port} is in use (another dagster dev?): pass --port")
    last = args.end or datetime.now(UTC).date() - timedelta(days=1)
    first = last - timedelta(days=args.days - 1)
    days = [(first + timedelta(days=k)).isoformat() for k in range(args.days)]
    work = args.work
    if work.exists():
        shutil.rmtree(work)
    home = work / "dagster_home"
    home.mkdir(parents=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")

    import yaml

    config = yaml.safe_load((REPO / "obpipeline.yaml").read_text())
    config["lake"] = str(work / "lake")
    config["alerts"] = {**(config.get("alerts") or {}), "log": str(work / "alerts.jsonl")}
    config["window"] = {"start": first.isoformat(), "end": (last + timedelta(days=1)).isoformat()}
    # nothing but the backfill runs: the landing sensor would request the same days itself
    config["schedule"] = {
        **(config.get("schedule") or {}),
        "enabled": False,
        "landing_sensor": False,
    }
    if args.no_ge:
        config["checks"] = {"great_expectations": False}
    if args.days_per_run:
        config["backfill"] = {"days_per_run": args.days_per_run}
    if args.landing:
        if args.profile or args.faults or args.sim_option:
            p.error("--landing reads capture files: --profile, --faults, --sim-option do not apply")
        config["instruments"][0]["source"] = {
            "kind": "landing", "path": str(args.landing.resolve()), "pattern": args.pattern,
            "format": "binance",
        }  # fmt: skip
    src = config["instruments"][0]["source"]
    if args.profile:
        src["profile"] = args.profile
    for item in args.sim_option:
        key, _, value = item.partition("=")
        src.setdefault("options", {})[key] = yaml.safe_load(value)
    if args.faults:
        src["faults"] = args.faults
        src["fault_days"] = [days[d - 1] for d in args.fault_day]
    (work / "obpipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    inst = config["instruments"][0]
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "OBPIPELINE_CONFIG": str(work / "obpipeline.yaml"),
    }
    for k in ("OBPIPELINE_LAKE", "OBPIPELINE_WINDOW_START", "OBPIPELINE_WINDOW_END"):
        env.pop(k, None)

    sys.path.insert(0, str(REPO))
    from obpipeline.defs.config import InstrumentConfig

    slug = InstrumentConfig(
        venue=inst["venue"], market=inst["market"], symbol=inst["symbol"].upper()
    ).slug
    prefix = slug.split("__")
    print(f"backfill_12m: {args.days} days {first} .. {last}, {slug}, work dir {work}", flush=True)
    proc = start_dev(args.port, env, work / "dagster_dev.log")
    report: dict[str, Any] = {}
    try:
        t0 = time.monotonic()
        wait_ready(args.port, proc)
        print(
            f"  dagster dev ready in {time.monotonic() - t0:.0f} s (port {args.port})", flush=True
        )
        submitted = time.time()
        backfill_id = launch_backfill(
            args.port, instrument_assets(args.port, prefix), days, f"backfill_12m {first}..{last}"
        )
        print(f"  launched backfill {backfill_id} through launchPartitionBackfill", flush=True)
        launch = {"backfill_id": backfill_id, "days": days, "submitted": submitted}
        (work / "launch.json").write_text(json.dumps(launch))
        status = wait_backfill(args.port, backfill_id, args.poll, args.timeout)
        finished = time.time()
        launch["backfill_status"] = status["status"]
        launch["wall_seconds_submit_to_backfill_done"] = round(finished - submitted, 1)
        (work / "launch.json").write_text(json.dumps(launch))
        time.sleep(40)  # let the alert sensors tick once more
        report = analyse(home, backfill_id, days, submitted)
        report["backfill_status"] = status["status"]
        report["wall_seconds_submit_to_backfill_done"] = round(finished - submitted, 1)
    finally:
        stop_dev(proc)
    return finish(work, report, ok_anyway=bool(args.faults))


def finish(work: Path, report: dict[str, Any], ok_anyway: bool) -> int:
    alerts = work / "alerts.jsonl"
    report["alerts"] = (
        [json.loads(x) for x in alerts.read_text().splitlines() if x.strip()]
        if alerts.exists()
        else []
    )
    (work / "report.json").write_text(json.dumps(report, indent=2, default=str))
    brief = {k: v for k, v in report.items() if k not in ("run_list", "alerts")}
    print(json.dumps(brief, indent=2, default=str))
    print(f"  alerts: {len(report['alerts'])} line(s); full report: {work / 'report.json'}")
    ok = report.get("backfill_status") in ("COMPLETED", "COMPLETED_SUCCESS") and report.get(
        "book_checkpoint_in_order"
    )
    return 0 if ok or ok_anyway else 1


if __name__ == "__main__":
    sys.exit(main())

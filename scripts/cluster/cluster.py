"""The obpipeline cluster on one machine: start, stop, status, and the end-to-end demo.

``python scripts/cluster/cluster.py start|stop|status|demo`` (``make cluster-demo`` runs
``demo``). Every server is started by this script, on 127.0.0.1, with its state under
``data/cluster/`` (no system service is assumed), and stopped by it:

=============== ============================================================================
postgres        PostgreSQL from Debian's package (``/usr/lib/postgresql/*/bin``), data dir
                ``data/cluster/pg``: the Dagster instance (runs, event logs, schedules)
redis           Redis from Debian's package: the Celery broker and result backend
s3              moto's S3-API server: the lake ``s3://obpipeline-lake/lake``
worker-1, -2    ``dagster-celery`` workers: execute the steps of every run
daemon          ``dagster-daemon``: queued runs, backfills, schedules, sensors
webserver       ``dagster-webserver``: the UI and its GraphQL API, through which the demo
                launches its backfill
=============== ============================================================================

Each process is started in its own session and recorded in ``data/cluster/pids/<name>.pid``
with its command line; ``stop`` signals exactly those process groups (after checking the pid
still runs that command), then stops PostgreSQL with ``pg_ctl``. Ports: ``OBPIPELINE_CLUSTER_*``
variables (see ``PORTS``). ``demo`` starts everything, backfills every configured instrument
(``deploy/obpipeline.cluster.yaml``) over the last ``--days`` days, waits, stops everything, and
prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("OBPIPELINE_CLUSTER_STATE") or ROOT / "data" / "cluster")
BIN = Path(sys.executable).parent  # the project's virtualenv
BUCKET, PREFIX = "obpipeline-lake", "lake"
PORTS = {  # name -> (environment variable, default)
    "postgres": ("OBPIPELINE_CLUSTER_PG_PORT", 55432),
    "redis": ("OBPIPELINE_CLUSTER_REDIS_PORT", 56379),
    "s3": ("OBPIPELINE_CLUSTER_S3_PORT", 55900),
    "webserver": ("OBPIPELINE_CLUSTER_WEB_PORT", 53000),
}
WORKERS = ("worker-1", "worker-2")
STARTUP_SECONDS = 120


class ClusterError(Exception):
    """A server did not start or answer; the message names it and its log."""


def port(name: str) -> int:
    var, default = PORTS[name]
    return int(os.environ.get(var) or default)


def cluster_env(window_start: date | None = None) -> dict[str, str]:
    """The environment of every process of the cluster (and of a client such as the tests)."""
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(STATE / "home"),
        OBPIPELINE_CONFIG=os.environ.get("OBPIPELINE_CLUSTER_CONFIG")
        or str(ROOT / "deploy" / "obpipeline.cluster.yaml"),
        OBPIPELINE_LAKE=f"s3://{BUCKET}/{PREFIX}",
        OBPIPELINE_LAKE_CACHE=str(STATE / "lake-cache"),
        OBPIPELINE_ALERT_LOG=str(STATE / "alerts.jsonl"),
        OBPIPELINE_PG_URL=f"postgresql+psycopg2://obpipeline@127.0.0.1:{port('postgres')}/dagster",
        OBPIPELINE_EXECUTOR="celery",
        OBPIPELINE_CELERY_BROKER=f"redis://127.0.0.1:{port('redis')}/0",
        OBPIPELINE_CELERY_BACKEND=f"redis://127.0.0.1:{port('redis')}/1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port('s3')}",
        AWS_ACCESS_KEY_ID="obpipeline",
        AWS_SECRET_ACCESS_KEY="obpipeline",
        AWS_REGION="us-east-1",
        DAGSTER_GRPC_TIMEOUT_SECONDS="300",  # a loaded machine: code-server calls take longer
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # dagster-celery runs `celery` from PATH
    )
    env.pop("OBPIPELINE_SOURCE", None)
    env.pop("OBPIPELINE_LANDING", None)
    window = STATE / "window_start"
    if window_start is not None:
        env["OBPIPELINE_WINDOW_START"] = window_start.isoformat()
    elif window.exists():
        env["OBPIPELINE_WINDOW_START"] = window.read_text().strip()
    return env


# ----------------------------------------------------------------------------- processes


def _pidfile(name: str) -> Path:
    return STATE / "pids" / f"{name}.pid"


def _alive(pid: int, marker: str) -> bool:
    """The pid runs and is still the command we started (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def _recorded(name: str) -> tuple[int, str] | None:
    try:
        pid, marker = _pidfile(name).read_text().split("\n", 1)
    except FileNotFoundError:
        return None
    return int(pid), marker.strip()


def spawn(name: str, argv: list[str], env: dict[str, str]) -> int:
    """Start ``argv`` in its own session (so ``stop`` can end its whole group), log to a file."""
    rec = _recorded(name)
    if rec and _alive(*rec):
        raise ClusterError(f"{name} already runs (pid {rec[0]}): run `cluster.py stop` first")
    log = STATE / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    _pidfile(name).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    _pidfile(name).write_text(f"{proc.pid}\n{argv[0]}\n")
    return proc.pid


def terminate(name: str, grace: float = 30.0) -> bool:
    """SIGTERM the recorded process group, SIGKILL it after ``grace`` s; True if it was running."""
    rec = _recorded(name)
    if rec is None:
        return False
    pid, marker = rec
    running = _alive(pid, marker)
    if running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    _pidfile(name).unlink(missing_ok=True)
    return running


def _group_alive(pgid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)  # our own child (start and stop in one process): reap it
    return bool(_group_members(pgid))


def _group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _wait(what: str, ok, log: Path, seconds: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if ok():
                return
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise ClusterError(f"{what} did not come up within {seconds:.0f} s; {log}:\n{tail}")


def _listening(p: int) -> bool:
    with socket.create_connection(("127.0.0.1", p), timeout=1):
        return True


# ----------------------------------------------------------------------------- PostgreSQL


def pg_bin() -> Path:
    """The newest PostgreSQL of Debian's packages (``apt-get install postgresql``)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise ClusterError("PostgreSQL is not installed: apt-get install postgresql")
    return found[-1].parent


def _as_postgres(argv: list[str], **kw: Any) -> subprocess.CompletedProcess:
    """PostgreSQL refuses to run as root: as root, run it as Debian's ``postgres`` user."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, **kw)
    if done.returncode:
        raise ClusterError(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
    return done


def start_postgres() -> None:
    data, logs = STATE / "pg", STATE / "pg-log"
    for folder in (data, logs):
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(folder, user.pw_uid, user.pw_gid)
    data.chmod(0o700)
    if not (data / "PG_VERSION").exists():
        _as_postgres(
            [str(pg_bin() / "initdb"), "-D", str(data), "-U", "obpipeline",
             "--auth=trust", "-E", "UTF8", "--no-instructions"],
        )  # fmt: skip
    options = (
        f"-p {port('postgres')} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
        "-c shared_buffers=64MB -c max_connections=200"
    )
    _as_postgres(
        [str(pg_bin() / "pg_ctl"), "-D", str(data), "-l", str(logs / "postgres.log"),
         "-o", options, "-w", "-t", "60", "start"],
    )  # fmt: skip
    psql = [str(pg_bin() / "psql"), "-h", "127.0.0.1", "-p", str(port("postgres"))]
    psql += ["-U", "obpipeline", "-d", "postgres", "-tAc"]
    have = subprocess.run(
        [*psql, "select 1 from pg_database where datname = 'dagster'"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    if have != "1":
        subprocess.run([*psql, "create database dagster"], check=True, capture_output=True)


def stop_postgres() -> bool:
    data = STATE / "pg"
    if not (data / "postmaster.pid").exists():
        return False
    with contextlib.suppress(subprocess.CalledProcessError):
        _as_postgres([str(pg_bin() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
    return True


# ----------------------------------------------------------------------------- start / stop


def start(window_start: date | None = None) -> dict[str, str]:
    """Start every server; returns the cluster environment. Stops what it started on failure."""
    STATE.mkdir(parents=True, exist_ok=True)
    if window_start is not None:
        (STATE / "window_start").write_text(window_start.isoformat())
    env = cluster_env(window_start)
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    logs = STATE / "logs"
    try:
        start_postgres()
        redis = shutil.which("redis-server")
        if redis is None:
            raise ClusterError("Redis is not installed: apt-get install redis-server")
        (STATE / "redis").mkdir(exist_ok=True)
        spawn("redis", [redis, "--bind", "127.0.0.1", "--port", str(port("redis")),
                        "--save", "", "--appendonly", "no", "--dir", str(STATE / "redis")], env)  # fmt: skip
        spawn("s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port("s3"))], env)
        _wait("redis", lambda: _listening(port("redis")), logs / "redis.log")
        _wait("s3", lambda: _listening(port("s3")), logs / "s3.log")
        _create_bucket(env)
        for name in WORKERS:
            spawn(name, [str(BIN / "dagster-celery"), "worker", "start", "-A",
                         "dagster_celery.app", "-y", str(ROOT / "deploy" / "celery.yaml"),
                         "-n", name, "--", "--concurrency", "1"], env)  # fmt: skip
        # the schema once, before two processes race to create it
        subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=env, cwd=ROOT,
                       check=True, capture_output=True, text=True)  # fmt: skip
        spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env)
        web = port("webserver")
        spawn("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web),
                            "-w", "workspace.yaml"], env)  # fmt: skip
        _wait("webserver", lambda: _http_ok(f"http://127.0.0.1:{web}/server_info"),
              logs / "webserver.log", 300)  # fmt: skip
        for name in WORKERS:
            _wait(name, lambda n=name: f"{n}@" in _celery_ping(env), logs / f"{name}.log", 300)
        _wait("daemon", _backfill_daemon_healthy, logs / "daemon.log", 300)
    except BaseException:
        stop()
        raise
    return env


def stop() -> list[str]:
    """Stop everything this script started (newest first); returns the names that were running."""
    stopped = [n for n in ("webserver", "daemon", *WORKERS, "s3", "redis") if terminate(n)]
    if stop_postgres():
        stopped.append("postgres")
    return stopped


def status() -> dict[str, bool]:
    out = {}
    for name in ("redis", "s3", *WORKERS, "daemon", "webserver"):
        rec = _recorded(name)
        out[name] = bool(rec and _alive(*rec))
    out["postgres"] = (STATE / "pg" / "postmaster.pid").exists()
    return out


def _backfill_daemon_healthy() -> bool:
    query = '{ instance { daemonHealth { daemonStatus(daemonType: "BACKFILL") { healthy } } } }'
    return bool(graphql(query)["instance"]["daemonHealth"]["daemonStatus"]["healthy"])


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status == 200


def _s3_client(env: dict[str, str]) -> Any:
    import boto3  # comes with moto (the `cluster` extra)

    return boto3.client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )  # fmt: skip


def _create_bucket(env: dict[str, str]) -> None:
    s3 = _s3_client(env)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET)


def _celery_ping(env: dict[str, str]) -> str:
    return subprocess.run(
        [str(BIN / "celery"), "-b", env["OBPIPELINE_CELERY_BROKER"], "inspect", "ping",
         "-t", "2"], env=env, capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip


# ----------------------------------------------------------------------------- GraphQL


def graphql(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """One request to the webserver's GraphQL API; errors raise with the server's message."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port('webserver')}/graphql", data=body,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            answer = json.loads(r.read())
    except urllib.error.HTTPError as exc:  # the server's own message, not only its status
        body = exc.read().decode(errors="replace")
        raise ClusterError(f"GraphQL: HTTP {exc.code}: {body}") from exc
    if answer.get("errors"):
        raise ClusterError(f"GraphQL: {answer['errors']}")
    return answer["data"]


LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}"""
BACKFILL = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on Error { message }
  }
}"""
RUNS = """
query($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}"""
LOGS = """
query($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    __typename
    ... on EventConnection {
      cursor hasMore
      events {
        __typename
        ... on MessageEvent { message stepKey timestamp }
        ... on EngineEvent { metadataEntries { label ... on TextMetadataEntry { text } } }
      }
    }
  }
}"""
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
RUN_DONE = {"SUCCESS", "FAILURE", "CANCELED"}


ASSETS = "{ assetNodes { assetKey { path } groupName opName isPartitioned } }"


def instrument_assets(groups: set[str], steps: set[str] | None = None) -> list[list[str]]:
    """The partitioned assets of the instruments' groups (of their ``steps`` only, if given).

    One step writes several assets (a multi-asset) and runs only as a whole, so a backfill
    selects steps, never single keys of a step: the keys come from the webserver's listing.
    """
    ops = None if steps is None else {f"{g}__{s}" for g in groups for s in steps}
    keys = [
        n["assetKey"]["path"]
        for n in graphql(ASSETS)["assetNodes"]
        if n["isPartitioned"] and n["groupName"] in groups and (ops is None or n["opName"] in ops)
    ]
    if not keys:
        raise ClusterError(f"the webserver lists no assets of {sorted(groups)} {steps or ''}")
    return keys


def launch_backfill(asset_keys: list[list[str]], days: list[str]) -> str:
    """An asset backfill of ``days`` (consecutive) for every key, each key given its range.

    Per-asset ranges, not ``partitionNames`` + ``assetSelection``: from the latter Dagster 1.13
    derives each asset's days through the dependency graph, and its launch check refuses a
    multi-asset whose keys got the same days by different paths ("Targeted subset must match
    between every key in a non-subsettable multi-asset": book_snapshots / replay_counters). It
    compares the subsets with ``!=``, and ``TimeWindowPartitionsSubset`` defines only ``__eq__``,
    so its cached partition count (set on one, not the other, by the process's hash order)
    decides. Given ranges, every key of a step gets the same subset.
    """
    span = {"range": {"start": days[0], "end": days[-1]}}
    params = {
        "partitionsByAssets": [{"assetKey": {"path": k}, "partitions": span} for k in asset_keys],
        "fromFailure": False,
    }
    result = graphql(LAUNCH, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise ClusterError(f"backfill not launched: {result}")
    return result["backfillId"]


def wait_backfill(backfill_id: str, timeout: float) -> tuple[str, list[dict[str, Any]]]:
    """Poll until the backfill and all its runs are done; returns (status, runs)."""
    deadline = time.monotonic() + timeout
    while True:
        bf = graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        runs = graphql(RUNS, {"id": backfill_id})["runsOrError"]["results"]
        if bf.get("status") in DONE and all(r["status"] in RUN_DONE for r in runs):
            return bf["status"], runs
        if time.monotonic() > deadline:
            raise ClusterError(f"backfill {backfill_id} not done after {timeout:.0f} s: {bf}")
        time.sleep(3)


def step_workers(run_id: str) -> dict[str, str]:
    """Step key -> the Celery worker that executed it (dagster-celery's engine event)."""
    out: dict[str, str] = {}
    cursor = None
    while True:
        conn = graphql(LOGS, {"runId": run_id, "cursor": cursor})["logsForRun"]
        for ev in conn.get("events", []):
            for entry in ev.get("metadataEntries") or []:
                if entry.get("label") == "Celery worker" and ev.get("stepKey"):
                    out[ev["stepKey"]] = entry["text"]
        if not conn.get("hasMore"):
            return out
        cursor = conn["cursor"]


def lake_objects(env: dict[str, str]) -> list[str]:
    s3 = _s3_client(env)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX + "/"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def worker_peaks_mb() -> dict[str, int]:
    """Peak RSS (VmHWM) of each worker's largest process: the memory one step needs."""
    out = {}
    for name in WORKERS:
        rec = _recorded(name)
        if not rec:
            continue
        peaks = []
        for pid in _group_members(rec[0]):
            with contextlib.suppress(OSError, StopIteration):
                status_text = Path(f"/proc/{pid}/status").read_text()
                line = next(x for x in status_text.splitlines() if x.startswith("VmHWM:"))
                peaks.append(int(line.split()[1]) // 1024)
        if peaks:
            out[name] = max(peaks)
    return out


def demo(days: int, timeout: float) -> int:
    """Start, backfill every instrument over the last ``days`` days via GraphQL, stop, report."""
    began = time.perf_counter()
    last = datetime.now(UTC).date() - timedelta(days=1)
    day_list = [(last - timedelta(days=k)).isoformat() for k in reversed(range(days))]
    summary: dict[str, Any] = {"storage": "postgres", "executor": "celery"}
    failed_reason = None
    try:
        env = start(window_start=date.fromisoformat(day_list[0]))
        sys.path.insert(0, str(ROOT))
        os.environ.update(env)
        from obpipeline.defs import load_config

        cfg = load_config()
        keys = instrument_assets({i.slug for i in cfg.instruments})
        print(f"cluster up in {time.perf_counter() - began:.0f} s; backfilling "
              f"{len(cfg.instruments)} instruments x {days} days", file=sys.stderr)  # fmt: skip
        started = time.perf_counter()
        backfill_id = launch_backfill(keys, day_list)
        state, runs = wait_backfill(backfill_id, timeout)
        seconds = time.perf_counter() - started
        steps: dict[str, str] = {}
        for r in runs:
            steps.update({f"{r['runId'][:8]}:{k}": w for k, w in step_workers(r["runId"]).items()})
        objects = lake_objects(env)
        expected = [
            f"{PREFIX}/{ds}/venue={i.venue_id}/symbol={i.symbol}/date={d}/part-0.parquet"
            for i in cfg.instruments
            for ds in ("raw_book_events", "book_checkpoint", "book_snapshots")
            for d in day_list
        ]
        missing = sorted(set(expected) - set(objects))
        failed = sum(r["status"] != "SUCCESS" for r in runs)
        summary.update(
            workers=sorted(set(steps.values())),
            steps_per_worker={
                w: list(steps.values()).count(w) for w in sorted(set(steps.values()))
            },
            lake=f"s3://{BUCKET}/{PREFIX}",
            objects=len(objects),
            missing_objects=len(missing),
            instruments=len(cfg.instruments),
            days=days,
            runs=len(runs),
            failed=failed,
            backfill=state,
            worker_peak_rss_mb=worker_peaks_mb(),
            seconds=round(seconds),
        )
        if failed or missing or len(summary["workers"]) < 2 or not runs:
            failed_reason = f"failed runs {failed}, missing objects {missing[:3]}"
    except (ClusterError, subprocess.CalledProcessError, urllib.error.URLError) as exc:
        failed_reason = str(exc)
        if isinstance(exc, subprocess.CalledProcessError):
            failed_reason += f"\n{exc.stdout}\n{exc.stderr}"
    finally:
        stopped = stop()
        print(f"stopped: {', '.join(stopped)}", file=sys.stderr)
    summary["total_seconds"] = round(time.perf_counter() - began)
    if failed_reason:
        summary["error"] = failed_reason[-2000:]
    print(json.dumps(summary))
    return 1 if failed_reason else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start every server (state under data/cluster)")
    s.add_argument("--window-start", type=date.fromisoformat, help="first daily partition")
    sub.add_parser("stop", help="stop everything started by `start`")
    sub.add_parser("status", help="which servers run")
    d = sub.add_parser("demo", help="start, backfill, stop; the last line is one JSON object")
    d.add_argument("--days", type=int, default=3)
    d.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the backfill")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "start":
            start(args.window_start)
            print(json.dumps(status()))
        elif args.cmd == "stop":
            print(json.dumps({"stopped": stop()}))
        elif args.cmd == "status":
            print(json.dumps(status()))
        else:
            return demo(args.days, args.timeout)
    except ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

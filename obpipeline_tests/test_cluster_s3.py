"""The lake on an S3-API server (moto, on 127.0.0.1): a killed write leaves no visible object,
the cache follows the published version, and re-materialising the chain gives the same bytes.

Marked slow: they need the ``cluster`` extra (moto, obstore) and run the Dagster chain twice.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from datetime import date

import dagster as dg
import polars as pl
import pytest

from obpipeline import lake, storage

pytestmark = pytest.mark.slow
moto_server = pytest.importorskip("moto.server", reason="the `cluster` extra is not installed")
pytest.importorskip("obstore", reason="the `cluster` extra is not installed")
boto3 = pytest.importorskip("boto3")
warnings.filterwarnings("ignore")

BUCKET = "lake"
SMALL = {"event_rate": 2.0, "msg_ms": 10_000, "warmup_events": 20_000}


@pytest.fixture(scope="module")
def s3_server():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    """A fresh bucket, the AWS_* variables pointing at it, a fresh cache folder."""
    env = {
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        storage.CACHE_ENV: str(tmp_path / "cache"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    storage.store.cache_clear()
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []) if _exists(client) else []:
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    if not _exists(client):
        client.create_bucket(Bucket=BUCKET)
    yield client, env
    storage.store.cache_clear()


def _exists(client) -> bool:
    return BUCKET in {b["Name"] for b in client.list_buckets()["Buckets"]}


def _objects(client, prefix: str = "") -> dict[str, str]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for o in page.get("Contents", []):
            body = client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
            out[o["Key"]] = hashlib.sha256(body).hexdigest()
    return out


KILLED_WRITER = """
import sys
import numpy as np, polars as pl
from obpipeline import lake
rng = np.random.default_rng(7)
frame = pl.DataFrame({f"c{i}": rng.integers(0, 2**62, 4_000_000) for i in range(4)})
print("writing", flush=True)
lake.write_parquet_atomic(frame, lake.partition_path("ds", "v", "S", "2026-01-01", lake.root_of(sys.argv[1])))
print("done", flush=True)
"""


def test_a_killed_write_leaves_no_visible_object_and_the_old_version_intact(s3, tmp_path):
    client, env = s3
    root = lake.root_of(f"s3://{BUCKET}/k")
    old = pl.DataFrame({"a": [1, 2, 3]})
    path = lake.write_partition(old, "ds", "v", "S", "2026-01-01", root)
    key = "k/ds/venue=v/symbol=S/date=2026-01-01/part-0.parquet"
    old_object = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert old_object == path.read_bytes()

    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, f"s3://{BUCKET}/k"],
        env={**os.environ, **env}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # the new version (~128 MB) goes up as a multipart upload: kill it once parts are going
        deadline = time.monotonic() + 300
        while not client.list_multipart_uploads(Bucket=BUCKET).get("Uploads"):
            assert proc.poll() is None, "the write ended before its upload could be killed"
            assert time.monotonic() < deadline, "no multipart upload started"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # the object store shows the old object only, never part of the new one
    listed = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert listed == [key]
    assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == old_object
    # and the cache still holds the published version (the rename comes after the upload)
    assert lake.partition_path("ds", "v", "S", "2026-01-01", root).read_bytes() == old_object
    # the next write removes the dead temporary file and publishes
    new = pl.DataFrame({"a": [4, 5]})
    lake.write_partition(new, "ds", "v", "S", "2026-01-01", root)
    assert not list(path.parent.glob(".*.tmp"))
    assert pl.read_parquet(client.get_object(Bucket=BUCKET, Key=key)["Body"].read()).equals(new)


def test_the_cache_follows_the_published_object(s3, tmp_path):
    client, _ = s3
    root = lake.root_of(f"s3://{BUCKET}/c")
    frame = pl.DataFrame({"x": list(range(100))})
    path = lake.write_partition(frame, "ds", "v", "S", "2026-01-02", root)
    published = path.read_bytes()
    # another machine: an empty cache reads the object
    shutil.rmtree(storage.cache_base())
    again = lake.partition_path("ds", "v", "S", "2026-01-02", root)
    assert again == path and again.read_bytes() == published
    # another writer replaced the object: the next resolution fetches the new version
    other = pl.DataFrame({"x": [7]})
    other.write_parquet(tmp_path / "other.parquet")
    body = (tmp_path / "other.parquet").read_bytes()
    client.put_object(Bucket=BUCKET, Key=storage.remote_of(path)[1], Body=body)
    assert pl.read_parquet(lake.partition_path("ds", "v", "S", "2026-01-02", root)).equals(other)
    # a listing reader sees every object of the dataset
    shutil.rmtree(storage.cache_base())
    assert lake.scan_dataset("ds", root).collect().height == 1


def test_rematerialising_gives_identical_objects_and_reads_d1_from_the_store(s3, tmp_path):
    """Two chained days on the S3 lake; then, from an empty cache (another machine), day 2 alone:
    its D-1 checkpoint comes from the object store, and every object is byte-identical."""
    from obpipeline.defs import build_definitions
    from obpipeline.defs.config import InstrumentConfig, PlatformConfig, SourceConfig
    from obpipeline.defs.local import materialize_range

    client, _ = s3
    cfg = PlatformConfig(
        instruments=(InstrumentConfig(source=SourceConfig(options=SMALL)),),
        lake=lake.root_of(f"s3://{BUCKET}/chain"),
        alert_log=tmp_path / "alerts.jsonl",
        window_start=date(2025, 3, 1),
        window_end=date(2025, 3, 10),
        great_expectations=False,
    )
    defs = build_definitions(cfg)
    inst = cfg.instruments[0]
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        first = materialize_range(defs, instance, inst, "2025-03-01", "2025-03-02")
        assert first.success, first.step_errors
        before = _objects(client, "chain/")
        datasets = {k.split("/")[1] for k in before}
        assert {"raw_book_events", "book_checkpoint", "book_snapshots", "book_features"} <= datasets
        assert len([k for k in before if "/book_checkpoint/" in k]) == 2

        shutil.rmtree(storage.cache_base())
        second = materialize_range(defs, instance, inst, "2025-03-02")
        assert second.success, second.step_errors
        started = second.metadata[("book_checkpoint", "2025-03-02")]["started_from"]
        assert started == "D-1 checkpoint"
        after = _objects(client, "chain/")
    assert after == before
    day2 = [k for k in after if "date=2025-03-02" in k]
    assert len(day2) >= 8  # every dataset of day 2 was written again, to the same bytes

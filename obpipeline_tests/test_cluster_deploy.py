"""The cluster's configuration files and seams, without servers: the instance file validates
against Dagster's schema, the Helm values are well-formed and name what the code reads, the
executor and the storage layer choose what they are told and refuse what they cannot do."""

import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config_schema

from obpipeline import lake, storage
from obpipeline.defs.automation import INSTRUMENT_TAG, TRIGGER_TAG
from obpipeline.defs.config import apply_env, load_config, parse_config
from obpipeline.defs.executor import run_executor

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def test_instance_file_validates_against_dagsters_schema():
    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    result = validate_config(dagster_instance_config_schema(), raw)
    assert result.success, [e.message for e in result.errors]
    assert raw["storage"]["postgres"]["postgres_url"] == {"env": "OBPIPELINE_PG_URL"}
    limits = {t["key"] for t in raw["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert {INSTRUMENT_TAG, TRIGGER_TAG, "dagster/backfill"} <= limits


def test_instance_file_rejects_a_misspelt_key():
    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    raw["concurrency"]["runs"]["max_concurent_runs"] = 1
    assert not validate_config(dagster_instance_config_schema(), raw).success


def test_helm_values_are_wellformed_and_match_the_code():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    module = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    (dep,) = values["dagster-user-deployments"]["deployments"]
    args = dep["dagsterApiGrpcArgs"]
    assert args[args.index("--module-name") + 1] == module
    env = {e["name"]: e["value"] for e in dep["env"]}
    storage.split_url(env["OBPIPELINE_LAKE"])  # a valid object-store lake
    assert env["OBPIPELINE_EXECUTOR"] in ("in_process", "celery")
    assert (ROOT / Path(env["OBPIPELINE_CONFIG"]).relative_to("/app")).exists()
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    resources = launcher["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]
    assert _gib(resources["resources"]["limits"]["memory"]) >= 1.5 * 2.9  # per-run peak x 1.5
    assert values["postgresql"]["enabled"] is False and values["postgresql"]["postgresqlHost"]
    queue = values["dagsterDaemon"]["runCoordinator"]
    assert queue["type"] == "QueuedRunCoordinator"
    tags = queue["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    assert {t["key"] for t in tags} >= {INSTRUMENT_TAG, "dagster/backfill"}


def _gib(quantity: str) -> float:
    units = {"Gi": 1.0, "Mi": 1 / 1024}
    for suffix, scale in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * scale
    raise AssertionError(f"unexpected memory quantity {quantity}")


def test_cluster_config_has_several_instruments_on_an_s3_lake(monkeypatch, tmp_path):
    monkeypatch.setenv("OBPIPELINE_LAKE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OBPIPELINE_LAKE", raising=False)
    cfg = load_config(DEPLOY / "obpipeline.cluster.yaml")
    assert len(cfg.instruments) >= 2
    assert len({i.slug for i in cfg.instruments}) == len(cfg.instruments)
    assert cfg.lake == tmp_path / "cache" / "s3" / "obpipeline-lake" / "lake"
    assert storage.url_of(cfg.lake / "x") == "s3://obpipeline-lake/lake/x"


def test_executor_is_in_process_unless_told():
    assert run_executor({}) is dg.in_process_executor
    assert run_executor({"OBPIPELINE_EXECUTOR": "in_process"}) is dg.in_process_executor
    with pytest.raises(ValueError, match="one of in_process, celery"):
        run_executor({"OBPIPELINE_EXECUTOR": "dask"})
    with pytest.raises(ValueError, match="OBPIPELINE_CELERY_BROKER"):
        run_executor({"OBPIPELINE_EXECUTOR": "celery"})


def test_celery_executor_and_worker_config():
    pytest.importorskip("dagster_celery", reason="the `cluster` extra is not installed")
    from dagster_celery.cli import get_validated_config

    ex = run_executor(
        {"OBPIPELINE_EXECUTOR": "celery", "OBPIPELINE_CELERY_BROKER": "redis://127.0.0.1:1/0"}
    )
    assert ex.name == "celery"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OBPIPELINE_CELERY_BROKER", "redis://127.0.0.1:1/0")
        mp.setenv("OBPIPELINE_CELERY_BACKEND", "redis://127.0.0.1:1/1")
        config = get_validated_config(str(DEPLOY / "celery.yaml"))
    assert config["broker"] == "redis://127.0.0.1:1/0"
    assert config["backend"] == "redis://127.0.0.1:1/1"


@pytest.mark.parametrize(
    "url", ["s3://", "s3:///x", "s3://b/../x", "s3://b//x", "file:///tmp/x", "/tmp/x"]
)
def test_bad_object_store_urls_are_refused(url):
    with pytest.raises(ValueError, match=r"s3://bucket\[/prefix\]"):
        storage.split_url(url)


def test_s3_lake_maps_to_a_cache_folder_and_back(monkeypatch, tmp_path):
    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path))
    root = lake.root_of("s3://bucket/a/b")
    assert root == tmp_path / "s3" / "bucket" / "a" / "b"
    path = lake.partition_dir("book_snapshots", "binance-usdm", "BTCUSDT", "2026-01-01", root)
    key = "a/b/book_snapshots/venue=binance-usdm/symbol=BTCUSDT/date=2026-01-01/part-0.parquet"
    assert storage.remote_of(path / lake.PART) == ("bucket", key)
    assert lake.root_of("s3://bucket") == tmp_path / "s3" / "bucket"
    assert storage.remote_of(tmp_path / "elsewhere" / "x") is None
    assert lake.root_of("data/lake") == Path("data/lake")  # plain paths stay as they were


def test_config_and_environment_accept_an_s3_lake(monkeypatch, tmp_path):
    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path))
    cfg = parse_config({"lake": "s3://bkt/pre"}, tmp_path)
    assert cfg.lake == tmp_path / "s3" / "bkt" / "pre"
    env_cfg = apply_env(parse_config({}, tmp_path), {"OBPIPELINE_LAKE": "s3://other"})
    assert env_cfg.lake == tmp_path / "s3" / "other"
    monkeypatch.setenv("OBPIPELINE_LAKE", "s3://third/p")
    assert lake.lake_root() == tmp_path / "s3" / "third" / "p"


def test_local_lake_publish_and_localise_are_plain_file_operations(tmp_path):
    """No object store involved: publish(source=) is the rename, localise is exists()."""
    src, dst = tmp_path / ".x.tmp", tmp_path / "x"
    src.write_bytes(b"abc")
    storage.publish(dst, source=src)
    assert dst.read_bytes() == b"abc" and not src.exists()
    assert storage.localise(dst) and not storage.localise(tmp_path / "missing")
    assert storage.localise_prefix(tmp_path) == 0

"""The definitions load, from the CLI as Dagster does, and have the shape the platform relies on."""

import os
import socket
import subprocess
import sys
import warnings
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
import yaml

from obpipeline.defs import build_definitions, partitions
from obpipeline.defs.assets import Chain
from obpipeline.defs.automation import complete_days
from obpipeline.defs.config import (
    REPO_ROOT,
    InstrumentConfig,
    PlatformConfig,
    SourceConfig,
    apply_env,
    load_config,
    parse_config,
)

warnings.filterwarnings("ignore")


def test_definitions_validate_from_the_cli():
    """`dagster definitions validate -w workspace.yaml`, i.e. what `make ui` loads."""
    env = {**os.environ, "DAGSTER_HOME": ""}
    env.pop("DAGSTER_HOME")
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All code locations passed validation" in proc.stdout + proc.stderr


def test_default_config_is_the_simulator_over_the_last_year():
    cfg = load_config(REPO_ROOT / "obpipeline.yaml")
    (inst,) = cfg.instruments
    assert (inst.venue_id, inst.symbol, inst.source.kind) == (
        "binance-usdm",
        "BTCUSDT",
        "simulator",
    )
    keys = partitions(cfg).get_partition_keys()
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    assert keys[-1] == yesterday.isoformat()  # open-ended: grows by one key a day
    assert 365 <= len(keys) <= 366
    dg.Definitions.validate_loadable(build_definitions(cfg))


def test_yaml_and_environment_overrides(tmp_path):
    raw = yaml.safe_load((REPO_ROOT / "obpipeline.yaml").read_text())
    raw["window"] = {"start": "2024-07-18", "end": "2024-07-20"}
    raw["instruments"].append(
        {
            "venue": "binance",
            "market": "spot",
            "symbol": "btcusdt",
            "source": {"kind": "landing", "path": "landing", "pattern": "btcusdt_*"},
        }
    )
    cfg = parse_config(raw, tmp_path)
    assert partitions(cfg).get_partition_keys() == ["2024-07-18", "2024-07-19"]
    assert cfg.instruments[1].source.path == tmp_path / "landing"
    assert cfg.lake == tmp_path / "data" / "lake"
    env = apply_env(
        cfg,
        {
            "OBPIPELINE_LAKE": str(tmp_path / "elsewhere"),
            "OBPIPELINE_ALERT_WEBHOOK": "http://127.0.0.1:1/x",
            "OBPIPELINE_WINDOW_END": "open",
        },
    )
    assert env.lake == tmp_path / "elsewhere" and env.alert_webhook == "http://127.0.0.1:1/x"
    assert env.window_end is None
    with pytest.raises(ValueError, match="source kind"):
        SourceConfig(kind="ftp")


def test_one_chain_per_instrument_with_the_documented_shape(tmp_path):
    cfg = PlatformConfig(
        instruments=(
            InstrumentConfig(),
            InstrumentConfig(
                market="spot",
                source=SourceConfig(kind="landing", path=tmp_path, pattern="*"),
            ),
        ),
        lake=tmp_path / "lake",
        window_start=date(2025, 1, 1),
        window_end=date(2026, 1, 1),
    )
    defs = build_definitions(cfg)
    graph = defs.resolve_asset_graph()
    datasets = {
        "raw_book_events", "golden_bbo", "golden_depth", "trades", "quarantine",
        "book_checkpoint", "book_snapshots", "replay_counters", "golden_results",
        "book_features", "book_features_1s", "fidelity_metrics", "fidelity_report",
    }  # fmt: skip
    for chain in ("binance_usdm", "binance_spot"):
        keys = {k.path[-1] for k in graph.get_all_asset_keys() if k.path[0] == chain}
        assert keys == datasets, chain  # every dataset the chain writes is an asset
    assert len(list(graph.get_all_asset_keys())) == 26
    ck = dg.AssetKey(["binance_usdm", "btcusdt", "book_checkpoint"])
    node = graph.get(ck)
    assert node.backfill_policy == dg.BackfillPolicy.multi_run(31)
    mapping = graph.get_partition_mapping(ck, ck)
    assert mapping == dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
    snaps = dg.AssetKey(["binance_usdm", "btcusdt", "book_snapshots"])
    key = lambda name: dg.AssetKey(["binance_usdm", "btcusdt", name])  # noqa: E731
    assert graph.get(snaps).parent_keys == {
        ck, key("raw_book_events"), key("golden_bbo"), key("golden_depth")
    }  # fmt: skip
    reads = {"raw_book_events", "golden_bbo", "golden_depth", "quarantine", "book_snapshots",
             "replay_counters", "golden_results", "book_features", "book_features_1s",
             "book_checkpoint"}  # fmt: skip
    assert graph.get(key("fidelity_metrics")).parent_keys == set(map(key, reads))
    for name in datasets:  # catalog metadata on every dataset
        spec = graph.get(key(name))
        assert spec.owners == ["team:market-data"], name
        assert "dagster/code_references" in spec.metadata, name
    schema = graph.get(snaps).metadata["dagster/column_schema"]
    assert [c.name for c in schema.columns][:3] == ["ts_event", "ts_local", "msg_id"]
    assert (
        ck not in graph.get(dg.AssetKey(["binance_usdm", "btcusdt", "raw_book_events"])).parent_keys
    )
    # every check is partitioned like its asset, so a later good day cannot hide a failure
    specs = [spec for a in [*defs.assets, *defs.asset_checks] for spec in a.check_specs]
    assert len(specs) == len(graph.asset_check_keys) >= 2 * 13
    daily = [s for s in specs if s.name != "freshness_check"]
    assert all(spec.partitions_def == partitions(cfg) for spec in daily)
    # a missed day is visible: one freshness check per chain, on its last asset
    fresh = {s.asset_key.path[0] for s in specs if s.name == "freshness_check"}
    assert fresh == {"binance_usdm", "binance_spot"}
    names = {s.name for s in defs.sensors}
    assert {
        "check_failure_alerts",
        "run_failure_alerts",
        "binance_spot__btcusdt__landing_sensor",
        "freshness_checks_sensor",
    } <= names
    schedules = {s.name: s for s in defs.schedules}
    assert schedules["binance_usdm__btcusdt__daily_schedule"].cron_schedule == "30 0 * * *"


def test_landing_sensor_requests_complete_days_as_ordered_ranges(tmp_path):
    for day in ("20250102", "20250103", "20250104", "20250107"):
        (tmp_path / f"btcusdt_{day}.gz").write_bytes(b"")
    inst = InstrumentConfig(source=SourceConfig(kind="landing", path=tmp_path, pattern="btcusdt_*"))
    cfg = PlatformConfig(
        instruments=(inst,),
        lake=tmp_path / "lake",
        window_start=date(2025, 1, 1),
        window_end=date(2025, 2, 1),
    )
    defs = build_definitions(cfg)
    sensor = defs.resolve_sensor_def("binance_usdm__btcusdt__landing_sensor")
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        with dg.build_sensor_context(instance=instance, definitions=defs) as context:
            result = sensor(context)
        # 01-04 waits for 01-05 (its last messages arrive in the next receive-day file), 01-07 too
        (request,) = result.run_requests
        assert request.tags["dagster/asset_partition_range_start"] == "2025-01-02"
        assert request.tags["dagster/asset_partition_range_end"] == "2025-01-03"
        (tmp_path / "btcusdt_20250105.gz").write_bytes(b"")
        with dg.build_sensor_context(
            instance=instance, definitions=defs, cursor=result.cursor
        ) as context:
            again = sensor(context)
        assert [r.partition_key for r in again.run_requests] == ["2025-01-04"]
    assert complete_days(Chain(cfg, inst, partitions(cfg)), {date(2025, 3, 9): []}) == []


def test_report_links_open_from_the_ui(tmp_path):
    """With reports.url the report links are http addresses the reports server answers (a
    browser follows no file:// link from the UI); without it they are file:// URLs."""
    import threading
    import urllib.request

    from obpipeline.defs.reports import report_url, reports_dir, server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = PlatformConfig(lake=tmp_path / "lake", reports_url=f"http://127.0.0.1:{port}/")
    html = (
        reports_dir(cfg) / "binance-usdm" / "BTCUSDT" / "fidelity_report_2025-03-01_2025-03-03.html"
    )
    html.parent.mkdir(parents=True)
    html.write_text("<h1>fidelity</h1>")
    url = report_url(cfg, html)
    assert url == f"http://127.0.0.1:{port}/binance-usdm/BTCUSDT/{html.name}"
    httpd = server(cfg)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == b"<h1>fidelity</h1>"
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert report_url(cfg.with_(reports_url=None), html) == html.resolve().as_uri()
    env = {"OBPIPELINE_REPORTS_URL": "file"}
    assert apply_env(cfg, env).reports_url is None

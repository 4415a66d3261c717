"""Bad input on the Dagster path: a damaged landing file fails its days' blocking check with the
reason in the check's metadata and an alert line; a wrong D-1 checkpoint fails loudly and the
chain does not move on from it (real captures from ../shared/data; skipped without them)."""

import shutil
import warnings
from datetime import date

import dagster as dg

from obpipeline.book import checkpoint as ckpt
from obpipeline.defs import build_definitions
from obpipeline.defs.alerts import read_alerts
from obpipeline.defs.config import InstrumentConfig, PlatformConfig, SourceConfig
from obpipeline.defs.local import materialize_range
from obpipeline.instruments import get_instrument
from obpipeline_tests.conftest import require_binance_data

warnings.filterwarnings("ignore")

DAY1, DAY2 = date(2024, 7, 18), date(2024, 7, 19)


def _platform(tmp_path, landing, accept=()) -> PlatformConfig:
    source = SourceConfig(
        kind="landing", path=landing, pattern="btcusdt_2024071*", accept_damaged_days=accept
    )
    return PlatformConfig(
        instruments=(InstrumentConfig(source=source),),
        lake=tmp_path / "lake",
        alert_log=tmp_path / "alerts.jsonl",
        window_start=DAY1,
        window_end=date(2024, 7, 20),
        great_expectations=False,
    )


def _landing(tmp_path):
    data = require_binance_data() / "usdm"
    landing = tmp_path / "landing"
    landing.mkdir()
    for day in (DAY1, DAY2):
        name = f"btcusdt_{day:%Y%m%d}.gz"
        shutil.copyfile(data / name, landing / name)
    return landing


def _truncated(tmp_path):
    landing = _landing(tmp_path)
    damaged = landing / f"btcusdt_{DAY1:%Y%m%d}.gz"
    raw = damaged.read_bytes()
    damaged.write_bytes(raw[: len(raw) * 2 // 3])  # a collector killed mid-write
    return landing


def test_a_truncated_capture_fails_its_days_with_the_reason_and_an_alert(tmp_path):
    cfg = _platform(tmp_path, _truncated(tmp_path))
    defs = build_definitions(cfg)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        run = materialize_range(defs, instance, cfg.instruments[0], DAY1, DAY2)
        with dg.build_sensor_context(instance=instance, definitions=defs) as context:
            defs.resolve_sensor_def("check_failure_alerts")(context)
    assert not run.success
    failed = {(c["check"], c["partition"]): c for c in run.failed_checks}
    # day 1's own file is cut; day 2 needs day 1's last two minutes, which are in the lost tail
    for day in (DAY1, DAY2):
        check = failed[("raw_schema", day.isoformat())]
        assert check["severity"] == "ERROR" and "damaged_files: 1" in check["description"]
    assert not list(cfg.lake.glob("raw_book_events/*/*/*/*.parquet"))  # nothing landed
    alerts = [a for a in read_alerts(cfg.alert_log) if a["check"] == "raw_schema"]
    assert {a["partition"] for a in alerts} == {DAY1.isoformat(), DAY2.isoformat()}
    assert all(a["metadata"]["damaged_files"] == 1 for a in alerts)
    quarantined = [a for a in read_alerts(cfg.alert_log) if a["check"] == "raw_quarantine"]
    assert any("gzip stream truncated" in str(a["metadata"]) for a in quarantined)


def test_an_operator_can_accept_a_damaged_day(tmp_path):
    cfg = _platform(tmp_path, _truncated(tmp_path), accept=(DAY1,))
    defs = build_definitions(cfg)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        run = materialize_range(defs, instance, cfg.instruments[0], DAY1, DAY1)
    failed = {(c["check"], c["partition"]) for c in run.failed_checks}
    assert ("raw_schema", DAY1.isoformat()) not in failed
    assert run.metadata[("raw_book_events", DAY1.isoformat())]["quarantined"] == 1  # the tail
    assert DAY1.isoformat() in run.materialized["raw_book_events"]


def test_a_checkpoint_of_another_day_fails_the_next_day_loudly(tmp_path):
    cfg = _platform(tmp_path, _landing(tmp_path))
    defs = build_definitions(cfg)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        first = materialize_range(defs, instance, cfg.instruments[0], DAY1, DAY1)
        assert first.success, (first.step_errors, first.failed_checks)
        # the D-1 file now claims to close another day (a copy from elsewhere in the lake)
        path = next(cfg.lake.glob(f"book_checkpoint/*/*/date={DAY1}/*.parquet"))
        instrument = get_instrument("binance", "usdm", "BTCUSDT")
        ckpt.write(ckpt.read(path), instrument, path, day=date(2024, 7, 10))
        second = materialize_range(defs, instance, cfg.instruments[0], DAY2, DAY2)
    assert not second.success
    error = second.step_errors["binance_usdm__btcusdt__book_checkpoint"]
    assert "2024-07-10" in error and str(DAY1) in error
    assert not list(cfg.lake.glob(f"book_checkpoint/*/*/date={DAY2}/*"))

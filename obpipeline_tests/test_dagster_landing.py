"""The platform pointed at a landing folder of real captures (../shared/data; skipped without it).

The 2024-07-18 file opens minutes before midnight with a REST snapshot and continues into
2024-07-19 with none: day 1 syncs on its own snapshot, day 2 must chain from the D-1 checkpoint,
and every aligned bookTicker must equal the book.
"""

import warnings
from datetime import date

import dagster as dg
import pytest

from obpipeline.defs import build_definitions
from obpipeline.defs.config import InstrumentConfig, PlatformConfig, SourceConfig
from obpipeline.defs.local import materialize_range
from obpipeline_tests.conftest import require_binance_data

warnings.filterwarnings("ignore")

CASES = [
    pytest.param("usdm", "BTCUSDT", "btcusdt_2024071*", date(2024, 7, 18), None, id="usdm"),
    pytest.param(
        "spot",
        "BTCUSDT",
        "btcusdt_2024080*",
        date(2024, 8, 8),
        None,
        id="spot",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "cm",
        "BTCUSD_PERP",
        "btcusd_perp_*",
        date(2024, 8, 8),
        (1.0, 10.0, 100.0),  # COIN-M sizes are contracts
        id="cm",
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize(("market", "symbol", "pattern", "first", "walk"), CASES)
def test_real_captures_chain_across_midnight(tmp_path, market, symbol, pattern, first, walk):
    data = require_binance_data() / market
    second = date.fromordinal(first.toordinal() + 1)
    source = SourceConfig(kind="landing", path=data, pattern=pattern)
    cfg = PlatformConfig(
        instruments=(
            InstrumentConfig(market=market, symbol=symbol, source=source, walk_sizes=walk),
        ),
        lake=tmp_path / "lake",
        alert_log=tmp_path / "alerts.jsonl",
        window_start=first,
        window_end=date.fromordinal(second.toordinal() + 1),
        great_expectations=False,
    )
    defs = build_definitions(cfg)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        run = materialize_range(defs, instance, cfg.instruments[0], first, second)
    assert run.success, (run.step_errors, run.failed_checks)
    days = [first.isoformat(), second.isoformat()]
    started = [run.metadata[("book_checkpoint", d)]["started_from"] for d in days]
    assert started == ["own snapshot", "D-1 checkpoint"]
    compared = 0
    for day in days:
        m = run.metadata[("fidelity_metrics", day)]
        assert m["golden_mismatched"] == 0 and m["gaps"] == 0 and m["integrity_ok"]
        compared += m["golden_compared"]
        assert run.metadata[("raw_book_events", day)]["quarantined"] == 0
    assert compared > 500

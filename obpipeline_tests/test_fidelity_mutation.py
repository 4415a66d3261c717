"""Gate B: Gate A passes clean input and fails every mutant (fast subset here, full matrix slow)."""

from __future__ import annotations

import pytest

from obpipeline.drills import mutation as M
from obpipeline_tests.conftest import require_binance_data


@pytest.fixture(scope="module")
def real_day1() -> list[M.Dataset]:
    return M.real_datasets(require_binance_data(), ["usdm/btcusdt_20240718"])


def check(results: list[M.RunResult]) -> None:
    table = M.table(results)
    s = M.summary(results)
    assert s["false_alarms"] == 0, table
    assert s["missed"] == 0, table
    for r in results:
        if r.mutant != "clean" and r.applicable and not r.undetectable:
            assert r.detected and r.first_check, r
            assert r.latency_seconds is not None and r.latency_seconds >= 0, r


def test_fast_subset_on_a_real_capture(real_day1) -> None:
    fast = [m for m in M.MUTANTS if m.fast]
    assert {m.name for m in fast} >= {"drop_msg_1%", "size_x1.01", "tick_1%", "ts_+1ms"}
    results = M.run_matrix(real_day1, fast)
    check(results)
    by = {r.mutant: r for r in results}
    assert by["clean"].passed and by["clean"].golden_aligned > 100
    # each mutant is caught by the detector built for it
    assert "A0:gaps" in by["drop_msg_1%"].failed_checks
    assert "A1:bookTicker" in by["size_x1.01"].failed_checks
    assert "A0:duplicates" in by["duplicate_1%"].failed_checks
    assert by["ts_+1ms"].failed_checks == ["A1:bookTicker_time"]  # no book changed
    assert "A0:snapshot_consistency" in by["stale_snapshot"].failed_checks


def test_spot_time_shift_is_reported_undetectable_by_design() -> None:
    [spot] = M.real_datasets(require_binance_data(), ["spot/btcusdt_20240808.gz"])
    [r] = M.run_matrix([spot], [M.mutant("ts_+1ms")])[1:]
    assert r.applicable and r.passed and not r.detected
    assert "no golden record carries an exchange time" in r.undetectable
    assert not r.missed and M.summary([r])["undetectable_by_design"] == 1


def test_mutants_cover_fidelity_md() -> None:
    names = {m.name for m in M.MUTANTS}
    assert names == {
        "drop_msg_1%", "drop_msg_0.1%", "drop_msg_0.01%", "drop_level_1%", "size_x1.01",
        "size_x1.001", "tick_1%", "tick_0.1%", "duplicate_1%", "reorder_1%", "stale_snapshot",
        "ts_+1ms",
    }  # fmt: skip


@pytest.mark.slow
def test_full_matrix_on_every_real_capture() -> None:
    results = M.run_matrix(M.real_datasets(require_binance_data()))
    check(results)
    assert sum(r.mutant == "clean" for r in results) == 9


@pytest.mark.slow
def test_full_matrix_on_a_simulated_day() -> None:
    results = M.run_matrix(M.sim_datasets(1))
    check(results)
    assert all(r.detected for r in results if r.mutant != "clean")


@pytest.mark.slow
def test_no_false_alarm_on_seven_chained_simulated_days() -> None:
    days = M.sim_datasets(7, chain=True)
    results = M.run_matrix(days, [])
    assert len(results) == 7 and all(r.passed for r in results), M.table(results)

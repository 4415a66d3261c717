"""The replay is exact on real exchange captures: 0 gaps, 0 crossed books, every aligned bookTicker matches."""

from __future__ import annotations

import pytest

from obpipeline import book
from obpipeline.fidelity import exact
from obpipeline.sources.binance import read_capture
from obpipeline_tests.conftest import CONTINUATIONS, STANDALONE, require_binance_data

DAY1 = [a for a, _ in CONTINUATIONS] + STANDALONE


def _check(result, capture, *, expect_snapshot: bool) -> None:
    c = result.counters
    assert capture.quarantine.height == 0, capture.quarantine
    assert c.gaps == 0 and c.crossed == 0 and c.duplicates == 0
    assert c.unsynced_at_end == 0
    assert c.snapshots == (1 if expect_snapshot else 0)
    cmp = exact.compare_bbo(result.snapshots, capture.golden_bbo)
    assert cmp.compared > 0, "no bookTicker aligned with the book: nothing was proven"
    assert cmp.mismatched == 0, cmp.mismatches
    # every row after sync is valid; only pre-snapshot buffered diffs may be invalid
    invalid = result.snapshots.filter(~result.snapshots["is_valid"])
    assert invalid.height == c.invalid_rows
    if invalid.height:
        first_valid = result.snapshots["is_valid"].arg_true()[0]
        assert invalid.height <= first_valid


@pytest.mark.parametrize("engine", book.ENGINES)
@pytest.mark.parametrize("name", DAY1)
def test_day_file_matches_every_aligned_book_ticker(name: str, engine: str) -> None:
    capture = read_capture([require_binance_data() / name])
    result = book.replay(capture.events, capture.instrument, engine=engine)
    _check(result, capture, expect_snapshot=True)


@pytest.mark.parametrize("engine", book.ENGINES)
@pytest.mark.parametrize(("day1", "day2"), CONTINUATIONS)
def test_continuation_day_replays_from_checkpoint(day1: str, day2: str, engine: str) -> None:
    data = require_binance_data()
    first = read_capture([data / day1])
    r1 = book.replay(first.events, first.instrument, engine=engine)
    _check(r1, first, expect_snapshot=True)
    assert r1.checkpoint.is_valid

    second = read_capture([data / day2])
    assert second.instrument == first.instrument
    r2 = book.replay(second.events, second.instrument, checkpoint=r1.checkpoint, engine=engine)
    _check(r2, second, expect_snapshot=False)
    assert r2.counters.invalid_rows == 0
    assert r2.snapshots["last_update_id"][0] > r1.checkpoint.last_update_id

    # The same pair as one stream gives the same books for day 2.
    both = read_capture([data / day1, data / day2])
    r = book.replay(both.events, both.instrument, engine=engine)
    tail = r.snapshots.tail(r2.snapshots.height).drop("msg_id")
    assert tail.equals(r2.snapshots.drop("msg_id"))


def test_continuation_without_checkpoint_is_flagged_not_silently_good() -> None:
    data = require_binance_data()
    capture = read_capture([data / CONTINUATIONS[1][1]])
    result = book.replay(capture.events, capture.instrument)
    assert result.counters.unsynced_at_end == 1
    assert not result.snapshots["is_valid"].any()
    assert exact.compare_bbo(result.snapshots, capture.golden_bbo).compared == 0

"""One rule for an unhandled gap (fidelity.integrity.unhandled_gaps), used by the CLI ``verify``,
the Dagster checks and Gate A0: a day that the old ``gaps > resyncs`` rule passed fails now."""

from __future__ import annotations

import json

import pytest

from obpipeline.book.stream import ReplayCounters
from obpipeline.cli import main
from obpipeline.fidelity.integrity import unhandled_gaps
from obpipeline_tests.conftest import FuturesStream

BIDS = [("100.0", "1.000"), ("99.9", "2.000"), ("99.8", "3.000")]
ASKS = [("100.1", "1.500"), ("100.2", "2.500"), ("100.3", "3.500")]
MIDNIGHT_MS = 1_720_051_200_000  # 2024-07-04T00:00:00Z


def _old_rule_fails(c: dict) -> bool:
    """The rule the CLI and the Dagster checks used before (kept here only to show the case)."""
    return c["gaps"] > c["resyncs"] or bool(c["unsynced_at_end"])


def counters(**kw: int) -> ReplayCounters:
    return ReplayCounters(**kw)


@pytest.mark.parametrize(
    ("kw", "expect"),
    [
        ({}, 0),
        ({"gaps": 1, "resyncs": 1}, 0),  # a gap, resynced by the next snapshot
        ({"gaps": 1, "unsynced_at_end": 1}, 1),  # a gap, never resynced
        ({"unsynced_at_end": 1}, 1),  # never synced at all
        ({"resyncs": 1, "snapshot_mismatches": 1}, 0),  # a mismatch: replaced, no gap
        # a gap left open on day 1, a mismatch on day 2 (counters summed over the two days):
        # the mismatch's resync must not count as the recovery of the gap
        ({"gaps": 1, "resyncs": 1, "snapshot_mismatches": 1}, 1),
        ({"gaps": 3, "resyncs": 3, "snapshot_mismatches": 1, "unsynced_at_end": 1}, 1),
    ],
)
def test_unhandled_gaps_over_replay_counters(kw, expect):
    c = counters(**kw)
    assert unhandled_gaps(c) == expect
    assert unhandled_gaps(c.to_dict()) == expect  # the CLI summary is a dict of the same names


def _two_days() -> FuturesStream:
    """Day 1 loses a diff and ends out of sync; day 2 resyncs from its opening snapshot, and
    later a REST snapshot disagrees with the book (a mismatch, replaced at once)."""
    s = FuturesStream(t0_ms=MIDNIGHT_MS - 60_000)
    s.snapshot(BIDS, ASKS)
    s.diff(bids=[("100.0", "2.000")])
    s.diff(bids=[("100.0", "3.000")], emit=False)  # lost on the wire: a gap
    s.diff(bids=[("100.0", "4.000")])
    s.t_ms = MIDNIGHT_MS + 60_000
    book_bids = [("100.0", "4.000"), *BIDS[1:]]
    s.snapshot(book_bids, ASKS)  # day 2 opens from its own snapshot
    s.diff(asks=[("100.1", "2.000")])
    s.snapshot(book_bids, [("100.1", "9.000"), *ASKS[1:]])  # aligned, but not the book
    s.diff(asks=[("100.2", "1.000")])
    return s


def test_cli_verify_fails_a_gap_that_a_later_mismatch_used_to_hide(tmp_path, capsys):
    path = tmp_path / "btcusdt_20240703.txt"
    path.write_text("\n".join(_two_days().lines) + "\n")
    code = main(["verify", str(path), "--engine", "reference"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    c = {k: summary[k] for k in ("gaps", "resyncs", "snapshot_mismatches", "unsynced_at_end")}
    assert c == {"gaps": 1, "resyncs": 1, "snapshot_mismatches": 1, "unsynced_at_end": 0}
    assert not _old_rule_fails(c)  # what the CLI said before: pass
    assert code == 1 and summary["verdict"] == "fail"
    assert any("1 unhandled sequence gap" in f for f in summary["failures"]), summary["failures"]

"""Gate B on the checksum venues: each FIDELITY mutant (from ``mutation.MUTANTS``) injected into
the real OKX, Bitget and Kraken recordings is caught by the checksum at the first corrupted
checksum message (the first whose top-of-book is wrong); the clean recordings are never flagged
(test_checksum_venues)."""

from __future__ import annotations

import pytest

from obpipeline.drills.checksum_mutants import MUTANTS, run_mutant
from obpipeline.drills.mutation import mutant
from obpipeline.sources.checksum_venues.recording import read_recording
from obpipeline.sources.faults import FaultSpec
from obpipeline_tests.test_checksum_venues import FILES, recording_path


@pytest.mark.parametrize("venue", list(FILES))
@pytest.mark.parametrize("name", MUTANTS)
def test_mutant_caught_at_first_corrupted_message(venue: str, name: str) -> None:
    rec = read_recording([recording_path(venue)])
    spec = FaultSpec.parse(mutant(name).spec)
    caught = 0
    for symbol in rec.symbols:
        run = run_mutant(rec, symbol, name, spec, seed=7)
        assert run.injected >= 1
        if run.first_wrong_msg is None:  # the fault never reached the checksummed top levels
            assert run.detected_msg is None, run
            continue
        assert run.detected_msg == run.first_wrong_msg, run
        assert run.latency_messages == 0
        assert run.first_fault_msg is not None and run.detected_msg >= run.first_fault_msg
        assert run.fault_to_detection_messages == run.detected_msg - run.first_fault_msg
        caught += 1
    assert caught >= 1, f"{name} never reached the top levels on {venue}"

"""Fault injection: exact reports, determinism, and every 1 % mutant visible to ``obpipeline verify``.

Gate B of FIDELITY.md: the clean stream must pass with nothing flagged, and each mutant must
show up as a gap, a golden mismatch, a quarantine entry (or, for duplicates, the duplicate
counter: dropping them is the correct handling, and counting them is what makes them visible).
"""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import pytest

from obpipeline.sources import faults as F
from obpipeline.sources import synthetic as S
from obpipeline_tests.conftest import require_binance_data

# A small day (~8.6k messages) so that the nine mutants replay in a few seconds each.
SMALL = {"event_rate": 3.0, "msg_ms": 10_000, "d20_ms": 30_000, "warmup_events": 20_000}


@pytest.fixture(scope="module")
def day() -> S.SimulatedDay:
    return S.simulate_day(date(2024, 3, 1), **SMALL)


@pytest.fixture(scope="module")
def lines(day: S.SimulatedDay) -> list[bytes]:
    return day.lines()


def verify(tmp_path: Path, lines: list[bytes], name: str) -> dict:
    """Run ``obpipeline verify`` on the lines written as a capture file; its JSON summary."""
    import contextlib
    import io

    from obpipeline.cli import main

    path = tmp_path / f"{name}.gz"
    path.write_bytes(gzip.compress(b"".join(x + b"\n" for x in lines), compresslevel=1))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["verify", str(path)])
    summary = json.loads(buf.getvalue().strip().splitlines()[-1])
    summary["exit_code"] = code
    return summary


def test_spec_parse() -> None:
    spec = F.FaultSpec.parse(
        "drop=0.01, scale_size=0.02:1.001,shift_price=0.01:2,stale_snapshot=1:7"
    )
    assert (spec.drop, spec.scale_size, spec.scale_factor) == (0.01, 0.02, 1.001)
    assert (spec.shift_ticks, spec.stale_snapshot, spec.stale_by) == (2, 1, 7)
    every = F.FaultSpec.parse("all=0.01")
    assert set(every.active()) == set(F.KINDS)
    with pytest.raises(ValueError):
        F.FaultSpec.parse("explode=0.5")


def test_report_is_exact_and_deterministic(lines: list[bytes]) -> None:
    out, rep = F.inject(lines, "all=0.01", seed=7)
    out2, rep2 = F.inject(lines, "all=0.01", seed=7)
    assert out == out2 and rep.to_dict() == rep2.to_dict()
    assert F.inject(lines, "all=0.01", seed=8)[0] != out
    counts = rep.counts()
    assert all(counts[k] > 0 for k in F.KINDS), counts
    n_depth = sum(1 for x in lines if b"@depth@0ms" in x)
    for kind in F.MESSAGE_KINDS:  # 1 % of the depth messages, up to dropped overlapping swaps
        assert 0.008 * n_depth <= counts[kind] <= round(0.01 * n_depth)
    assert len(out) == len(lines) - counts["drop"] + counts["duplicate"]

    mutated = set()
    for inj in rep.injections:
        src = lines[inj.line]
        mutated.add(inj.line)
        if inj.kind == "drop":
            assert inj.out_line is None
        elif inj.kind == "duplicate":
            assert out[inj.out_line] == out[inj.out_line - 1] == src
        elif inj.kind == "reorder":
            partner = inj.detail["with_line"]
            mutated.add(partner)
            assert out[inj.out_line] == src and out[inj.detail["with_out_line"]] == lines[partner]
            assert inj.detail["with_out_line"] < inj.out_line
        elif inj.kind == "malformed":
            bad = out[inj.out_line]
            assert bad != src
            with pytest.raises(ValueError):
                ts, js = bad.split(b" ", 1)
                int(ts)
                json.loads(js)
        elif inj.kind == "shift_ts":
            new = json.loads(out[inj.out_line].split(b" ", 1)[1])["data"]
            assert (new["E"], new["T"]) == (inj.detail["E"] + 1, inj.detail["T"] + 1)
        elif inj.kind == "stale_snapshot":
            new = json.loads(out[inj.out_line].split(b" ", 1)[1])
            old = json.loads(src.split(b" ", 1)[1])
            assert new["lastUpdateId"] == inj.detail["claimed"] > old["lastUpdateId"]
            assert new["bids"] == old["bids"]
        else:  # level faults: the named level changed, nothing else in the message did
            new = json.loads(out[inj.out_line].split(b" ", 1)[1])["data"]
            old = json.loads(src.split(b" ", 1)[1])["data"]
            side = inj.detail["side"]
            before = {p: q for p, q in old[side]}
            after = {p: q for p, q in new[side]}
            if inj.kind == "drop_level":
                assert inj.detail["price"] in before and inj.detail["price"] not in after
            elif inj.kind == "scale_size":
                assert after[inj.detail["price"]] == inj.detail["new_size"] != inj.detail["size"]
            else:
                assert after[inj.detail["new_price"]] == inj.detail["size"]
    # lines nobody touched come through unchanged and in order
    untouched = [x for i, x in enumerate(lines) if i not in mutated]
    survivors = set(untouched)
    kept = [x for x in out if x in survivors]
    assert kept[: len(untouched)] == untouched[: len(kept)]


def test_clean_stream_is_not_flagged(tmp_path: Path, lines: list[bytes]) -> None:
    s = verify(tmp_path, lines, "clean")
    assert s["exit_code"] == 0 and s["verdict"] == "pass"
    flags = ("gaps", "duplicates", "stale", "crossed", "quarantined", "golden_mismatched")
    assert {k: s[k] for k in flags} == dict.fromkeys(flags, 0)
    assert s["golden_compared"] > 1000


@pytest.mark.parametrize(
    "spec, flag",
    [
        ("drop=0.01", "gaps"),
        ("duplicate=0.01", "duplicates"),
        ("reorder=0.01", "gaps"),
        ("drop_level=0.01", "golden_mismatched"),
        ("scale_size=0.01:1.01", "golden_mismatched"),
        ("scale_size=0.01:1.001", "golden_mismatched"),
        ("shift_price=0.01:1", "golden_mismatched"),
        ("stale_snapshot=1:5", "golden_mismatched"),
        ("malformed=0.01", "quarantined"),
    ],
)
def test_each_fault_is_visible_to_verify(
    tmp_path: Path, lines: list[bytes], spec: str, flag: str
) -> None:
    out, rep = F.inject(lines, spec, seed=1)
    assert sum(rep.counts().values()) > 0
    s = verify(tmp_path, out, "mutant")
    assert s[flag] > 0, {
        k: s[k] for k in ("gaps", "duplicates", "golden_mismatched", "quarantined")
    }
    # every fault fails the day, a dropped duplicate and a resynced gap too (Gate A0's counted
    # checks: the capture is not what the exchange published)
    assert s["exit_code"] == 1 and s["verdict"] == "fail", s["failures"]


def test_shifted_exchange_times_are_caught_by_the_time_check(lines: list[bytes]) -> None:
    """+1 ms on 1 % of diffs: goldens stamped with the same ``u`` carry the original T."""
    from obpipeline import book
    from obpipeline.fidelity import exact
    from obpipeline.sources.binance import lines_frame, parse_lines

    out, _ = F.inject(lines, "shift_ts=0.01:1", seed=1)
    cap = parse_lines(lines_frame(b"".join(x + b"\n" for x in out), "m"), market="usdm")
    res = book.replay(cap.events, cap.instrument, 20)
    bbo = exact.compare_bbo(res.snapshots, cap.golden_bbo, cap.events)
    depth = exact.compare_depth(res.snapshots, cap.golden_depth, cap.events)
    assert bbo.time_mismatched + depth.time_mismatched > 0
    assert bbo.mismatched == depth.mismatched == 0


def test_shifted_exchange_times_fail_verify(tmp_path: Path, lines: list[bytes]) -> None:
    out, _ = F.inject(lines, "shift_ts=0.01:1", seed=1)
    assert verify(tmp_path, out, "shift_ts")["verdict"] == "fail"


def test_faults_apply_to_a_real_capture(tmp_path: Path) -> None:
    data = require_binance_data() / "usdm" / "btcusdt_20240808.gz"
    with gzip.open(data, "rb") as f:
        real = f.read().splitlines()
    out, rep = F.inject(real, "all=0.01", seed=3)
    counts = rep.counts()
    assert all(counts[k] > 0 for k in F.KINDS), counts
    # the real tick (0.1) is used for price shifts, printed with the file's two decimals
    shift = next(i for i in rep.injections if i.kind == "shift_price")
    assert abs(float(shift.detail["new_price"]) - float(shift.detail["price"])) == pytest.approx(
        0.1
    )
    assert len(shift.detail["new_price"].split(".")[1]) == 2
    s = verify(tmp_path, out, "real_mutant")
    assert s["verdict"] == "fail" and s["quarantined"] >= counts["malformed"]

"""Gates A0/A1 on checksum venues, and Gate B's mutants injected into their recordings.

**Gates.** Per instrument-day: A0 counts gaps (OKX ``seqId`` breaks), unhandled gaps and crossed
books; A1 ``checksum`` fails on any mismatch and certifies, with the one-sided Clopper–Pearson
bound, the rate of messages whose top-of-book was wrong (every compared message is a trial:
the venue's CRC covers the top 25 / 10 levels after that message). The bound is graded like
the other partial-book references (``max_mismatch_rate_top``); ``insufficient`` when too few
messages were compared to certify it.

**Mutants.** The FIDELITY mutants (``mutation.MUTANTS``: drop 1 % of messages, drop 1 % of level
updates, every size × 1.001, ±1 tick on 1 %) are applied to the venue's own strings before
sequencing, as a corrupted feed would deliver them. A mutant is caught when the first checksum
mismatch is the first message whose top-of-book differs from the clean replay's: the latency in
messages is the distance between the two (0 expected), and in seconds of receive time from the
first injected fault.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np

from obpipeline import schemas
from obpipeline.book import checksum as ck
from obpipeline.book.stream import ReplayResult
from obpipeline.book.venue_sequence import VenueDay, sequence
from obpipeline.fidelity import stats
from obpipeline.fidelity.config import Thresholds
from obpipeline.fidelity.gates import FAIL, INSUFFICIENT, PASS, GateResult
from obpipeline.sources.checksum_venues.message import BookMessage
from obpipeline.sources.checksum_venues.recording import Located, Recording
from obpipeline.sources.faults import FaultSpec


def checksum_results(
    result: ReplayResult, report: ck.ChecksumReport, thresholds: Thresholds | None = None
) -> list[GateResult]:
    """A0 (gaps, unhandled gaps, crossed) and A1 (checksum) for one replayed venue day."""
    t = thresholds or Thresholds()
    c = result.counters
    out = [
        _count("A0", "gaps", c.gaps, t.max_gaps),
        _count("A0", "unhandled_gaps", c.unsynced_at_end, t.max_unhandled_gaps),
        _count("A0", "crossed", c.crossed, t.max_crossed),
    ]
    n, bad = report.compared, report.mismatched
    upper = stats.clopper_pearson_upper(bad, n, t.confidence)
    first = report.mismatches[0] if report.mismatches else None
    status = FAIL if bad else (PASS if upper < t.max_mismatch_rate_top else INSUFFICIENT)
    out.append(
        GateResult(
            "A1",
            "checksum",
            status,
            value=bad / n if n else None,
            threshold=t.max_mismatch_rate_top,
            detail=f"{n - bad}/{n} {report.venue} checksums matched ({report.symbol})",
            first_failure_ns=first["ts_event"] if first else None,
            first_failure_msg_id=first["msg_id"] if first else None,
            metrics={
                "compared": float(n),
                "matched": float(n - bad),
                "mismatched": float(bad),
                "cp_upper": upper,
                "messages_with_checksum": float(report.messages_with_checksum),
            },
        )
    )
    return out


def _count(gate: str, check: str, value: int, limit: int) -> GateResult:
    return GateResult(gate, check, FAIL if value > limit else PASS, float(value), float(limit))


# ----------------------------------------------------------------------------- mutants


@dataclass
class MutantRun:
    venue: str
    symbol: str
    mutant: str
    injected: int
    first_fault_msg: int | None  # index (clean stream) of the first corrupted message
    first_wrong_msg: int | None  # first checksum message whose top-of-book truly differs
    detected_msg: int | None  # first checksum mismatch (index in the clean stream)
    latency_messages: int | None
    latency_seconds: float | None


def _scaled(size: str, factor: float) -> str:
    d = len(size) - size.index(".") - 1 if "." in size else 0
    unit = Decimal(1).scaleb(-d)
    old = Decimal(size)
    new = (old * Decimal(str(factor))).quantize(unit, rounding=ROUND_HALF_EVEN)
    if new == old:
        new = old + unit
    return f"{new:.{d}f}"


def _shifted(price: str, ticks: int) -> str:
    d = len(price) - price.index(".") - 1 if "." in price else 0
    new = Decimal(price) + ticks * Decimal(1).scaleb(-d)
    return f"{new:.{d}f}" if new > 0 else price


def mutate(
    rec: Recording, symbol: str, spec: FaultSpec, seed: int = 0
) -> tuple[Recording, list[int]]:
    """A copy of ``rec`` whose ``symbol`` messages carry ``spec``'s faults; the indices hit.

    Messages are dropped among updates only (a dropped snapshot is a resubscribe that never
    happened, not a corruption); level faults touch non-zero levels of updates.
    """
    g = random.Random(seed)
    located = rec.messages[symbol]
    updates = [i for i, loc in enumerate(located) if not loc.message.is_snapshot]
    hit: set[int] = set()
    drop: set[int] = set()
    if spec.drop:
        drop = set(g.sample(updates, max(1, round(spec.drop * len(updates)))))
        hit |= drop
    out: list[Located] = []
    level_pop = [
        (i, j)
        for i in updates
        for j, (_, _, s) in enumerate(located[i].message.levels)
        if Decimal(s) != 0
    ]

    def chosen(frac: float) -> set[tuple[int, int]]:
        if not frac or not level_pop:
            return set()
        return set(g.sample(level_pop, max(1, round(frac * len(level_pop)))))

    drop_level, scale, shift = (
        chosen(spec.drop_level),
        chosen(spec.scale_size),
        chosen(spec.shift_price),
    )
    for i, loc in enumerate(located):
        if i in drop:
            continue
        m = loc.message
        levels = []
        for j, (side, p, s) in enumerate(m.levels):
            if (i, j) in drop_level:
                hit.add(i)
                continue
            if (i, j) in scale:
                s = _scaled(s, spec.scale_factor)
                hit.add(i)
            if (i, j) in shift:
                p = _shifted(p, spec.shift_ticks * g.choice((-1, 1)))
                hit.add(i)
            levels.append((side, p, s))
        out.append(dataclasses.replace(loc, message=_with_levels(m, levels)))
    copy = dataclasses.replace(rec, messages={**rec.messages, symbol: out}, quarantine=[])
    return copy, sorted(hit)


def _with_levels(m: BookMessage, levels: list[tuple[int, str, str]]) -> BookMessage:
    return dataclasses.replace(m, levels=levels)


def _tops(result: ReplayResult, day: VenueDay) -> dict[tuple[int, int], tuple]:
    """Top-of-book (checksum depth) after each message, keyed by (file, line)."""
    depth = ck.rule_for(day.venue).depth
    names = [n for group in schemas.level_names(depth) for n in group]
    snaps = result.snapshots
    rows = snaps.select(names).rows()
    out = {}
    for k, row in zip(snaps["msg_id"].to_list(), rows, strict=True):
        out[(int(day.file[k]), int(day.line[k]))] = row
    return out


def run_mutant(
    rec: Recording, symbol: str, name: str, spec: FaultSpec, seed: int = 0, engine: str = "engine"
) -> MutantRun:
    """Replay ``symbol`` clean and mutated; where the first wrong top-of-book is and was caught."""
    clean_day = sequence(rec, symbol)
    clean, _ = ck.replay_checked(clean_day, ck.rule_for(rec.venue).depth, engine)
    bad_rec, hit = mutate(rec, symbol, spec, seed)
    day = sequence(bad_rec, symbol)
    result, report = ck.replay_checked(day, ck.rule_for(rec.venue).depth, engine)
    clean_tops = _tops(clean, clean_day)
    index = {(int(clean_day.file[k]), int(clean_day.line[k])): k for k in range(clean_day.messages)}
    wrong = None
    for k, row in zip(
        result.snapshots["msg_id"].to_list(), _tops(result, day).items(), strict=True
    ):
        key, top = row
        if day.checksum[k] != ck.NO_CHECKSUM and clean_tops.get(key) != top:
            wrong = index[key]
            break
    detected = None
    if report.mismatches:
        first = report.mismatches[0]
        detected = index[(day.files.index(first["file"]), first["line"])]
    local = _local(clean_day)
    first_fault = None
    if hit:
        key = (int(rec.messages[symbol][hit[0]].file), int(rec.messages[symbol][hit[0]].line))
        first_fault = index[key]
    latency_s = None
    if detected is not None and first_fault is not None:
        latency_s = (int(local[detected]) - int(local[first_fault])) / 1e9
    return MutantRun(
        rec.venue,
        symbol,
        name,
        len(hit),
        first_fault,
        wrong,
        detected,
        None if detected is None or wrong is None else detected - wrong,
        latency_s,
    )


def _local(day: VenueDay) -> np.ndarray:
    first = day.events.unique("msg_id", keep="first", maintain_order=True)
    return first["ts_local"].dt.epoch("ns").to_numpy()

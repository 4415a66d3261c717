"""Gate B on the checksum venues: the FIDELITY mutants injected into OKX / Bitget / Kraken
recordings, judged by the ChecksumValidator.

The mutants (``mutation.MUTANTS``: drop 1 % of update messages, drop 1 % of level updates, every
size × 1.001, ±1 tick on 1 %) are applied to the venue's own strings before sequencing, as a
corrupted feed would deliver them. A fault may stay below the checksummed top levels (25 / 10)
for a while, or forever when it is overwritten first: the *first corrupted checksum message* is
the first message with a checksum whose top-of-book differs from the clean replay's. A mutant
is caught there when the first checksum mismatch is that message (latency 0 messages); the
latency from the first injected fault is given in messages and in seconds of receive time.

``python -m obpipeline.drills.checksum_mutants FILE...`` prints the table of docs/CHECKSUM_VENUES.md.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import sys
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np

from obpipeline import schemas
from obpipeline.book import checksum as ck
from obpipeline.book.stream import ReplayResult
from obpipeline.book.venue_day import VenueDay
from obpipeline.drills.mutation import mutant
from obpipeline.sources.checksum_venues.message import BookMessage
from obpipeline.sources.checksum_venues.recording import Located, Recording, read_recording
from obpipeline.sources.checksum_venues.sequence import sequence
from obpipeline.sources.faults import FaultSpec

MUTANTS = ("drop_msg_1%", "drop_level_1%", "size_x1.001", "tick_1%")


@dataclass
class MutantRun:
    venue: str
    symbol: str
    mutant: str
    injected: int
    first_fault_msg: int | None  # index (clean stream) of the first corrupted message
    first_wrong_msg: int | None  # first checksum message whose top-of-book truly differs
    detected_msg: int | None  # first checksum mismatch (index in the clean stream)
    latency_messages: int | None  # detected - first wrong: 0 = caught at the first corrupted
    fault_to_detection_messages: int | None  # detected - first injected fault
    latency_seconds: float | None  # receive time, first injected fault → detection


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
        None if detected is None or first_fault is None else detected - first_fault,
        latency_s,
    )


def _local(day: VenueDay) -> np.ndarray:
    first = day.events.unique("msg_id", keep="first", maintain_order=True)
    return first["ts_local"].dt.epoch("ns").to_numpy()


def run_recording(path: Path, names: tuple[str, ...] = MUTANTS, seed: int = 7) -> list[MutantRun]:
    """Every mutant on every instrument of one recording."""
    rec = read_recording([path])
    return [
        run_mutant(rec, symbol, name, FaultSpec.parse(mutant(name).spec), seed)
        for name in names
        for symbol in rec.symbols
    ]


def table(runs: list[MutantRun]) -> str:
    """Per venue and mutant: how many instruments were reached and caught, and the latencies."""
    head = (
        "| venue | mutant | instruments | faults | reached | caught at first corrupted | "
        "latency (messages) | fault → detection (messages, median / max) | "
        "fault → detection (s, median / max) |"
    )
    out = [head, "|" + "---|" * 9]
    groups: dict[tuple[str, str], list[MutantRun]] = {}
    for r in runs:
        groups.setdefault((r.venue, r.mutant), []).append(r)
    for (venue, name), rs in groups.items():
        reached = [r for r in rs if r.first_wrong_msg is not None]
        caught = [r for r in reached if r.latency_messages == 0]
        msgs = [
            r.fault_to_detection_messages
            for r in caught
            if r.fault_to_detection_messages is not None
        ]
        secs = [r.latency_seconds for r in caught if r.latency_seconds is not None]
        lat = sorted({r.latency_messages for r in reached})
        out.append(
            f"| {venue} | {name} | {len(rs)} | {sum(r.injected for r in rs):,} | {len(reached)} "
            f"| {len(caught)} | {', '.join(map(str, lat)) or '-'} | {_spread(msgs, 'g')} "
            f"| {_spread(secs, '.3f')} |"
        )
    return "\n".join(out)


def _spread(values: list, spec: str) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):{spec}} / {max(values):{spec}}"


if __name__ == "__main__":
    print(table([r for f in sys.argv[1:] for r in run_recording(Path(f))]))

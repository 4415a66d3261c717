"""Gate B: the mutation test. Gate A must pass on clean input and fail on every mutant.

Each FIDELITY.md mutant is injected into the capture *lines* with ``sources.faults.inject`` (the
same on simulated days and on the real captures), the lines are parsed
(``binance.parse_lines``), replayed and judged by ``evaluate_day``. A mutant is **detected** when
a blocking check fails; its **latency** is measured from the exchange time of the first injected
fault to the first failing record: in seconds of exchange time, in depth messages, and in golden
records aligned in between.

Mutants and what catches them (the table in ``docs/FIDELITY_GATES.md``):

* dropped / reordered messages break the ``pu``/``U`` chain → A0 gaps (and, where no later
  snapshot resyncs, an out-of-sync book at the end of the day);
* duplicated messages → A0 duplicates (the replayer drops and counts them);
* dropped level updates, sizes × 1.01 / × 1.001 and ±1 tick → A1 mismatches against bookTicker /
  depth20 / REST (and uncross repairs when a stale level crosses the book);
* a stale REST snapshot (its book is older than the ``lastUpdateId`` it claims) → A1 REST
  mismatch, or a wrong book after the sync it drives → A1 / A0;
* exchange timestamps + 1 ms → A1 ``bookTicker_time``: the bookTicker's transaction time must
  equal the depth message's with the same update id. Spot bookTickers carry no time and spot REST
  snapshots none either: on spot nothing pairs an update id with an exchange time, so a uniform
  shift is **undetectable by design** there and reported as such.

Trade lines are removed before mutating (Gate A never reads them; on the simulator they are 80 %
of the lines).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from obpipeline import book
from obpipeline.book.stream import Book, ReplayResult
from obpipeline.fidelity.config import Thresholds, thresholds_for
from obpipeline.fidelity.evaluate import DayFidelity, evaluate_day
from obpipeline.fidelity.gates import first_failure
from obpipeline.sources import faults
from obpipeline.sources.binance import lines_frame, parse_lines
from obpipeline.sources.capture import Capture


@dataclass(frozen=True)
class Mutant:
    name: str
    spec: str  # faults.FaultSpec text
    description: str
    fast: bool = False  # part of the fast subset run by ``make test``


MUTANTS: tuple[Mutant, ...] = (
    Mutant("drop_msg_1%", "drop=0.01", "drop 1 % of depth messages", fast=True),
    Mutant("drop_msg_0.1%", "drop=0.001", "drop 0.1 % of depth messages"),
    Mutant("drop_msg_0.01%", "drop=0.0001", "drop 0.01 % of depth messages (at least one)"),
    Mutant("drop_level_1%", "drop_level=0.01", "drop 1 % of level updates inside messages", True),
    Mutant("size_x1.01", "scale_size=1.0:1.01", "every size × 1.01 (≥ 1 lot off)", fast=True),
    Mutant("size_x1.001", "scale_size=1.0:1.001", "every size × 1.001 (≥ 1 lot off)"),
    Mutant("tick_1%", "shift_price=0.01:1", "±1 tick on 1 % of level updates", fast=True),
    Mutant("tick_0.1%", "shift_price=0.001:1", "±1 tick on 0.1 % of level updates"),
    Mutant("duplicate_1%", "duplicate=0.01", "duplicate 1 % of depth messages", fast=True),
    Mutant("reorder_1%", "reorder=0.01", "swap 1 % of depth messages with their successor"),
    Mutant(
        "stale_snapshot",
        "stale_snapshot=1:5",
        "a REST snapshot 5 messages older than it claims",
        True,
    ),
    Mutant("ts_+1ms", "shift_ts=1.0:1", "exchange time (E, T) of every depth message + 1 ms", True),
)


def mutant(name: str) -> Mutant:
    for m in MUTANTS:
        if m.name == name:
            return m
    raise KeyError(f"unknown mutant {name!r}; known: {[m.name for m in MUTANTS]}")


@dataclass
class Dataset:
    """A clean input window to mutate: capture lines (+ the checkpoint it starts from)."""

    name: str
    kind: str  # "sim" | "real"
    lines: list[bytes]
    checkpoint: Book | None = None
    market: str | None = None
    symbol: str | None = None


@dataclass
class RunResult:
    dataset: str
    kind: str
    mutant: str  # "clean" for the unmutated run
    injected: int
    applicable: bool
    passed: bool  # Gate A verdict
    failed_checks: list[str]
    detected: bool | None  # None for clean runs and inapplicable mutants
    undetectable: str = ""  # why, when a mutant cannot be detected by design
    latency_seconds: float | None = None
    latency_messages: int | None = None
    latency_golden: int | None = None
    first_check: str = ""
    golden_aligned: int = 0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def false_alarm(self) -> bool:
        return self.mutant == "clean" and not self.passed

    @property
    def missed(self) -> bool:
        return self.applicable and not self.undetectable and self.detected is False

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# one run


def without_trades(lines: Iterable[bytes]) -> list[bytes]:
    """Drop trade lines: Gate A never reads them."""
    return [ln for ln in lines if b'@trade"' not in ln]


def parse(lines: Sequence[bytes], name: str, market=None, symbol=None) -> Capture:
    raw = b"\n".join(lines) + b"\n" if lines else b""
    return parse_lines(lines_frame(raw, name), market=market, symbol=symbol)


def evaluate_lines(
    lines: Sequence[bytes],
    name: str,
    checkpoint: Book | None = None,
    market: str | None = None,
    symbol: str | None = None,
    thresholds: Thresholds | None = None,
    engine: str = book.DEFAULT_ENGINE,
) -> tuple[DayFidelity, Capture, ReplayResult]:
    """Parse, replay and judge capture lines (Gate A)."""
    capture = parse(lines, name, market, symbol)
    result = book.replay(capture.events, capture.instrument, checkpoint=checkpoint, engine=engine)
    day = evaluate_day(
        result.snapshots,
        capture.instrument,
        events=capture.events,
        golden_bbo=capture.golden_bbo,
        golden_depth=capture.golden_depth,
        counters=result.counters,
        checkpoint_in=checkpoint,
        quarantined=capture.quarantine.height,
        thresholds=thresholds or thresholds_for(capture.instrument.venue_id),
    )
    return day, capture, result


def _line_time_ns(line: bytes) -> int | None:
    """Exchange time of a capture line (T, else E), else its receive time."""
    ts, _, js = line.partition(b" ")
    try:
        obj = json.loads(js)
        data = obj.get("data", obj)
        for key in ("T", "E"):
            if isinstance(data.get(key), int):
                return int(data[key]) * 1_000_000
    except (ValueError, AttributeError):
        pass
    try:
        v = int(ts)
    except ValueError:
        return None
    digits = len(ts)
    return v if digits >= 18 else v * 1_000 if digits >= 15 else v * 1_000_000


def undetectable_reason(capture: Capture, m: Mutant) -> str:
    """Why a mutant cannot be detected on this input by design ("" when it can)."""
    if m.name.startswith("ts_"):
        bbo = capture.golden_bbo
        depth = capture.golden_depth
        timed = (bbo.height and (bbo["ts_event"] != bbo["ts_local"]).any()) or (
            depth.height and (depth["ts_event"] != depth["ts_local"]).any()
        )
        if not timed:
            return (
                "no golden record carries an exchange time (spot bookTicker has none): a uniform "
                "time shift changes no book and nothing pairs an update id with a time"
            )
    return ""


def _latency(
    day: DayFidelity, capture: Capture, t_fault: int | None
) -> tuple[float | None, int | None, int | None, str]:
    first = first_failure(day.results)
    if first is None:
        return None, None, None, ""
    label = f"{first.gate}:{first.check}"
    if first.first_failure_ns is None or t_fault is None:
        return None, None, None, label
    t_detect = first.first_failure_ns
    lo, hi = min(t_fault, t_detect), t_detect
    msgs = (
        capture.events.filter(~pl.col("is_snapshot"))
        .select(pl.col("msg_id"), pl.col("ts_event").dt.epoch("ns").alias("t"))
        .unique("msg_id")
    )
    n_msgs = int(msgs.filter((pl.col("t") >= lo) & (pl.col("t") <= hi)).height)
    n_golden = 0
    for c in day.comparisons:
        t = c.pairs["ts_ns"]
        n_golden += int(((t >= lo) & (t <= hi)).sum())
    return max(0.0, (t_detect - t_fault) / 1e9), n_msgs, n_golden, label


def run_one(
    ds: Dataset,
    m: Mutant | None,
    seed: int = 0,
    thresholds: Thresholds | None = None,
    engine: str = book.DEFAULT_ENGINE,
) -> RunResult:
    """Inject one mutant (or none: the clean run) into a dataset and judge it."""
    started = time.perf_counter()
    lines = ds.lines
    injected, counts, t_fault = 0, {}, None
    if m is not None:
        lines, report = faults.inject(ds.lines, m.spec, seed=seed)
        counts = {k: v for k, v in report.counts().items() if v}
        injected = sum(counts.values())
        if report.injections:
            first_line = min(i.line for i in report.injections)
            t_fault = _line_time_ns(ds.lines[first_line])
    day, capture, _ = evaluate_lines(
        lines, ds.name, ds.checkpoint, ds.market, ds.symbol, thresholds, engine
    )
    failed = [f"{r.gate}:{r.check}" for r in day.failures]
    aligned = sum(c.aligned for c in day.comparisons)
    if m is None:
        return RunResult(
            ds.name, ds.kind, "clean", 0, True, day.passed, failed, None,
            golden_aligned=aligned, seconds=time.perf_counter() - started,
        )  # fmt: skip
    applicable = injected > 0
    reason = undetectable_reason(capture, m) if applicable else ""
    lat_s, lat_m, lat_g, first = _latency(day, capture, t_fault)
    return RunResult(
        ds.name,
        ds.kind,
        m.name,
        injected,
        applicable,
        day.passed,
        failed,
        (not day.passed) if applicable else None,
        reason if day.passed else "",
        lat_s,
        lat_m,
        lat_g,
        first,
        aligned,
        time.perf_counter() - started,
        counts,
    )


def run_matrix(
    datasets: Sequence[Dataset],
    mutants: Sequence[Mutant] = MUTANTS,
    seed: int = 0,
    thresholds: Thresholds | None = None,
    engine: str = book.DEFAULT_ENGINE,
    progress=None,
) -> list[RunResult]:
    """The clean run and every mutant on every dataset."""
    out: list[RunResult] = []
    for ds in datasets:
        for m in (None, *mutants):
            r = run_one(ds, m, seed, thresholds, engine)
            out.append(r)
            if progress is not None:
                progress(r)
    return out


# --------------------------------------------------------------------------------------------
# inputs


CONTINUATIONS = (
    ("usdm/btcusdt_20230404.dat.gz", "usdm/btcusdt_20230405.dat.gz"),
    ("usdm/btcusdt_20240718.gz", "usdm/btcusdt_20240719.gz"),
    ("spot/btcusdt_20240808.gz", "spot/btcusdt_20240809.gz"),
    ("cm/btcusd_perp_20240808.gz", "cm/btcusd_perp_20240809.gz"),
)
STANDALONE = ("usdm/btcusdt_20240808.gz",)


def _file_lines(path: Path) -> list[bytes]:
    import gzip

    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return [ln for ln in raw.split(b"\n") if ln.strip()]


def real_datasets(
    data_dir: Path | str, names: Sequence[str] | None = None, engine: str = book.DEFAULT_ENGINE
) -> list[Dataset]:
    """The real Binance captures: day-1 files, and each continuation day from the clean day-1
    checkpoint (its replay must chain across midnight without a snapshot)."""
    base = Path(data_dir)

    def wanted(name: str) -> bool:
        return not names or any(n in name for n in names)

    out: list[Dataset] = []
    for day1, day2 in CONTINUATIONS:
        label1, label2 = f"real {day1}", f"real {day2} (from checkpoint)"
        if not (wanted(label1) or wanted(label2)):
            continue
        lines1 = without_trades(_file_lines(base / day1))
        if wanted(label1):
            out.append(Dataset(label1, "real", lines1))
        if wanted(label2):
            cap = parse(lines1, day1)
            start = book.replay(cap.events, cap.instrument, engine=engine).checkpoint
            out.append(Dataset(label2, "real", without_trades(_file_lines(base / day2)), start))
    for name in STANDALONE:
        if wanted(f"real {name}"):
            out.append(Dataset(f"real {name}", "real", without_trades(_file_lines(base / name))))
    return out


def sim_datasets(
    days: int = 1,
    start: date | str = "2024-03-05",
    hours: float | None = None,
    profile: str = "demo",
    seed: int = 0,
    chain: bool = False,
    engine: str = book.DEFAULT_ENGINE,
) -> list[Dataset]:
    """Simulated days (trades removed), optionally only their first ``hours``.

    With ``chain`` each day after the first starts from the previous day's clean checkpoint while
    still opening with its own REST snapshot, so the carried-book check (A0) is exercised.
    """
    from obpipeline.sources import synthetic as S

    first = date.fromisoformat(str(start))
    out: list[Dataset] = []
    checkpoint: Book | None = None
    for k in range(days):
        sim = S.simulate_day(first + timedelta(days=k), profile=profile, seed=seed)
        lines = without_trades(sim.lines())
        label = f"sim {sim.day}"
        if hours is not None:
            limit = _first_local_ns(lines) + int(hours * 3600e9)
            lines = [ln for ln in lines if _local_ns(ln) <= limit]
            label += f" first {hours:g} h"
        ds = Dataset(label, "sim", lines, checkpoint if chain else None)
        out.append(ds)
        if chain:
            cap = parse(lines, label)
            checkpoint = book.replay(
                cap.events, cap.instrument, checkpoint=ds.checkpoint, engine=engine
            ).checkpoint
    return out


def _local_ns(line: bytes) -> int:
    ts = line.split(b" ", 1)[0]
    v = int(ts)
    return v if len(ts) >= 18 else v * 1_000 if len(ts) >= 15 else v * 1_000_000


def _first_local_ns(lines: Sequence[bytes]) -> int:
    return min(_local_ns(ln) for ln in lines[:100]) if lines else 0


# --------------------------------------------------------------------------------------------
# reporting


def _fmt(v: float | int | None, spec: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, spec)


def table(results: Sequence[RunResult]) -> str:
    """The mutant × dataset table (markdown): detected, by which check, latency."""
    head = (
        "| dataset | mutant | injected | verdict | first detector | latency s | latency msgs "
        "| latency golden | failed checks |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in results:
        if r.mutant == "clean":
            verdict = "pass (no false alarm)" if r.passed else "**FALSE ALARM**"
        elif not r.applicable:
            verdict = "n/a (nothing to mutate)"
        elif r.detected:
            verdict = "detected"
        elif r.undetectable:
            verdict = "undetectable by design"
        else:
            verdict = "**MISSED**"
        lines.append(
            f"| {r.dataset} | {r.mutant} | {r.injected} | {verdict} | {r.first_check or '–'} "
            f"| {_fmt(r.latency_seconds, '.3f')} | {_fmt(r.latency_messages)} "
            f"| {_fmt(r.latency_golden)} | {', '.join(r.failed_checks[:6]) or '–'} |"
        )
    return "\n".join(lines)


def summary(results: Sequence[RunResult]) -> dict[str, int]:
    muts = [r for r in results if r.mutant != "clean"]
    return {
        "clean_runs": sum(r.mutant == "clean" for r in results),
        "false_alarms": sum(r.false_alarm for r in results),
        "mutant_runs": len(muts),
        "detected": sum(bool(r.detected) for r in muts),
        "missed": sum(r.missed for r in muts),
        "undetectable_by_design": sum(bool(r.undetectable) for r in muts if not r.detected),
        "not_applicable": sum(not r.applicable for r in muts),
    }

"""One UTC day of canonical frames from the configured source (simulator or landing folder).

Pure functions over the library (no Dagster here), so they can move into ``obpipeline.sources``
unchanged. A day is the UTC date of exchange time (DESIGN §3): captures are cut per *receive*
day and a collector's clock may be off by a second or more, so a landing day reads its own file
plus the lines of its neighbours' files within ``edge_seconds`` of midnight, parses them as one
stream, and keeps the records whose exchange time falls on the day. ``msg_id`` is renumbered
from 0 within the day.
"""

from __future__ import annotations

import gzip
import inspect
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from obpipeline import schemas
from obpipeline.defs.config import InstrumentConfig, SourceConfig
from obpipeline.sources.binance import Capture, CaptureError, lines_frame, parse_lines

NS = 1_000_000_000
_DATE_IN_NAME = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)")


class SourceUnavailable(RuntimeError):
    """The configured source has nothing for this day (no file landed, simulator missing...)."""


# ----------------------------------------------------------------------------- landing folder


def file_date(path: Path) -> date | None:
    """The UTC date a capture file is named after (``..._20240718.gz``, ``...2024-07-18...``)."""
    for m in _DATE_IN_NAME.finditer(path.name):
        try:
            return date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            continue
    return None


def landing_files(source: SourceConfig) -> dict[date, list[Path]]:
    """Files of the landing folder matching the pattern, grouped by the date in their name."""
    assert source.path is not None
    out: dict[date, list[Path]] = {}
    for p in sorted(Path(source.path).glob(source.pattern)):
        if p.is_file() and not p.name.startswith("."):
            d = file_date(p)
            if d is not None:
                out.setdefault(d, []).append(p)
    return out


def _day_bounds_ns(day: date) -> tuple[int, int]:
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * NS
    return start, start + 86_400 * NS


def _receive_ns(text: pl.Expr) -> pl.Expr:
    """Receive timestamp of a capture line in ns (ns, µs or ms told apart by digit count)."""
    ts = text.str.extract(r"^(\d+) ", 1)
    digits = ts.str.len_chars()
    value = ts.cast(pl.Int64, strict=False)
    return (
        pl.when(digits >= 18)
        .then(value)
        .when(digits >= 15)
        .then(value * 1_000)
        .when(digits >= 12)
        .then(value * 1_000_000)
    )


def _binance_lines(path: Path, lo_ns: int | None, hi_ns: int | None) -> pl.DataFrame:
    """``file, line, text`` of a capture, keeping only lines received in ``[lo, hi)`` if given."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    frame = lines_frame(raw, str(path))
    if lo_ns is None and hi_ns is None:
        return frame
    ts = _receive_ns(pl.col("text"))
    keep = pl.lit(True)
    if lo_ns is not None:
        keep = keep & (ts >= lo_ns)
    if hi_ns is not None:
        keep = keep & (ts < hi_ns)
    return frame.filter(keep.fill_null(False))


def landing_day(inst: InstrumentConfig, day: date, depth: int) -> Capture:
    """Capture frames of ``day`` from the landing folder (own file + neighbours' edges)."""
    source = inst.source
    files = landing_files(source)
    if not files.get(day):
        raise SourceUnavailable(
            f"no capture for {day} in {source.path} (pattern {source.pattern!r}); "
            "file names must carry the UTC date, e.g. btcusdt_20240718.gz"
        )
    start, end = _day_bounds_ns(day)
    edge = source.edge_seconds * NS
    if source.format == "tardis":
        return _tardis_day(inst, day, files, depth)
    parts = [_binance_lines(p, start - edge, None) for p in files.get(day - timedelta(days=1), [])]
    parts += [_binance_lines(p, None, None) for p in files[day]]
    parts += [_binance_lines(p, None, end + edge) for p in files.get(day + timedelta(days=1), [])]
    lines = pl.concat([p for p in parts if p.height] or parts[:1])
    capture = parse_lines(lines, market=inst.market, symbol=inst.symbol, depth=depth)
    return restrict_to_day(capture, day)


def tardis_day_base(day: date) -> int:
    """First synthetic update id of a Tardis day: per-day ranges never overlap or repeat."""
    return (day - date(1970, 1, 1)).days * 10**10


def _tardis_day(
    inst: InstrumentConfig, day: date, files: dict[date, list[Path]], depth: int
) -> Capture:
    """Tardis files are cut by exchange day already: read the day's files only.

    Synthetic update ids start at a per-day base (``tardis_day_base``), so raw_book_events of a
    day do not depend on the D-1 checkpoint; the replay re-stamps the carried D-1 book at that
    base, so the day's opening snapshot is compared with it (``opening_book_agrees``).
    """
    from obpipeline.sources import tardis

    capture = tardis.read_tardis(
        files[day], symbol=inst.symbol, depth=depth, start_update_id=tardis_day_base(day)
    )
    return restrict_to_day(capture, day)


# ----------------------------------------------------------------------------- simulator


def _simulator():
    try:
        from obpipeline.sources import synthetic
    except ImportError as exc:  # pragma: no cover - depends on the simulator landing
        raise SourceUnavailable(
            f"the simulator (obpipeline.sources.synthetic) is missing: {exc}"
        ) from exc
    fn = getattr(synthetic, "simulate_day", None)
    if fn is None:
        raise SourceUnavailable(
            "obpipeline.sources.synthetic has no simulate_day() yet; "
            "configure a landing source (obpipeline.yaml) meanwhile"
        )
    return fn


def _capture_bytes(result: Any) -> bytes:
    """The capture text out of whatever ``simulate_day`` returns (bytes, str, lines, object)."""
    for attr in ("capture", "lines", "data", "text"):
        if hasattr(result, attr) and not callable(getattr(result, attr)):
            return _capture_bytes(getattr(result, attr))
    if isinstance(result, tuple) and result:
        return _capture_bytes(result[0])
    if isinstance(result, bytes | bytearray | memoryview):
        raw = bytes(result)
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    if isinstance(result, str):
        return result.encode()
    if isinstance(result, list | tuple):
        return "\n".join(x.decode() if isinstance(x, bytes) else str(x) for x in result).encode()
    raise TypeError(f"cannot read a capture out of {type(result).__name__}")


def simulator_lines(inst: InstrumentConfig, day: date) -> pl.DataFrame:
    """The simulated exchange's capture of ``day`` as ``file, line, text`` rows.

    ``source.options`` go to ``simulate_day`` as profile overrides (e.g. ``event_rate``); a
    ``source.faults`` spec (``obpipeline.sources.faults``) is injected into the lines of the days
    in ``source.fault_days`` (all days when empty) — for alerting drills.
    """
    fn = _simulator()
    source = inst.source
    kwargs: dict[str, Any] = {
        "symbol": inst.symbol,
        "profile": source.profile,
        "seed": source.seed,
        "venue": inst.venue,
        "market": inst.market,
    }
    params = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in kwargs.items() if k in params or _has_var_kw(params)}
    result = fn(day, **kwargs, **source.options)
    name = f"simulator/{inst.venue_id}/{inst.symbol.lower()}_{day:%Y%m%d}"
    raw = _capture_bytes(result)
    if source.faults and (not source.fault_days or day in source.fault_days):
        from obpipeline.sources.faults import inject

        lines, _ = inject(raw.split(b"\n"), source.faults, seed=source.seed)
        raw = b"\n".join(lines) + b"\n"
    return lines_frame(raw, name)


def inject_faults(lines: pl.DataFrame, spec: str, seed: int = 0) -> pl.DataFrame:
    """``file, line, text`` rows with ``obpipeline.sources.faults`` applied (a ``lines_hook``)."""
    from obpipeline.sources.faults import inject

    texts = [t for t in lines["text"].to_list() if t is not None]
    out, _ = inject(texts, spec, seed=seed)
    file = lines["file"][0] if lines.height else "faulty"
    return lines_frame(b"\n".join(out) + b"\n", file)


def _has_var_kw(params: Any) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def simulator_day(inst: InstrumentConfig, day: date, depth: int, lines: pl.DataFrame | None = None):
    lines = simulator_lines(inst, day) if lines is None else lines
    capture = parse_lines(lines, market=inst.market, symbol=inst.symbol, depth=depth)
    return restrict_to_day(capture, day)


# ----------------------------------------------------------------------------- the day


def day_lines(inst: InstrumentConfig, day: date) -> pl.DataFrame:
    """Raw capture lines of a simulator day (fault-injection tests corrupt these)."""
    if inst.source.kind != "simulator":
        raise ValueError("day_lines is for simulator sources; landing days read files")
    return simulator_lines(inst, day)


def load_day(
    inst: InstrumentConfig, day: date, depth: int = schemas.DEFAULT_DEPTH, lines_hook=None
) -> Capture:
    """Canonical frames of one UTC day for one configured instrument.

    ``lines_hook(lines, day) -> lines`` rewrites the capture lines before parsing (fault
    injection in tests and drills); landing sources ignore it.
    """
    if inst.source.kind == "simulator":
        lines = simulator_lines(inst, day)
        if lines_hook is not None:
            lines = lines_hook(lines, day)
        return simulator_day(inst, day, depth, lines)
    if inst.source.kind == "landing":
        return landing_day(inst, day, depth)
    raise ValueError(f"unknown source kind {inst.source.kind!r}")


def restrict_to_day(capture: Capture, day: date) -> Capture:
    """Records whose exchange time is on ``day``; ``msg_id`` renumbered from 0 in arrival order."""
    start, end = _day_bounds_ns(day)
    lo = pl.lit(start).cast(schemas.TS)
    hi = pl.lit(end).cast(schemas.TS)

    def on_day(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter((pl.col("ts_event") >= lo) & (pl.col("ts_event") < hi))

    events = on_day(capture.events)
    events = events.with_columns(
        (pl.col("msg_id").rank("dense") - 1).cast(pl.Int64).alias("msg_id")
    )
    q = capture.quarantine
    if q.height:
        recv = _receive_ns(pl.col("record"))
        q = q.filter(recv.is_null() | ((recv >= start) & (recv < end)))
    stats = dict(capture.stats)
    stats.update(
        messages=int(events["msg_id"].n_unique()) if events.height else 0,
        level_updates=int(events["side"].is_not_null().sum()),
        quarantined=q.height,
    )
    if events.height == 0 and capture.events.height:
        raise CaptureError(f"the capture holds no depth messages on {day}")
    return replace(
        capture,
        events=events,
        golden_bbo=on_day(capture.golden_bbo),
        golden_depth=on_day(capture.golden_depth),
        trades=on_day(capture.trades),
        quarantine=q,
        stats=stats,
    )


def opens_with_snapshot(events: pl.DataFrame, within_seconds: int) -> bool:
    """True when a REST snapshot arrives within ``within_seconds`` of the day's first message.

    Such a day can start without the D-1 checkpoint: the replayer syncs on the snapshot and the
    few diffs received before it are emitted invalid and counted, never silently as good.
    """
    if events.height == 0:
        return False
    first = events["ts_local"].min()
    snaps = events.filter(pl.col("is_snapshot"))
    if snaps.height == 0:
        return False
    return (snaps["ts_local"].min() - first).total_seconds() <= within_seconds

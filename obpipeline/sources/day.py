"""One instrument-day from any source (simulator, landing Binance captures, landing Tardis files),
streamed into the lake's ingest datasets; and the book the day starts from.

This is what an asset does for a day, callable from a notebook: ``ingest_day`` stages
raw_book_events, golden_bbo, golden_depth, trades and quarantine for one UTC day (the day of
exchange time, DESIGN §3) and returns them unpublished, so the caller can check them first.

Captures are cut per *receive* day and a collector's clock may be off by a second or more, so a
landing day reads its own file plus the lines of its neighbours' files received within
``edge_seconds`` of midnight, and keeps the records whose exchange time falls on the day.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from obpipeline import lake, schemas
from obpipeline.book import checkpoint as ckpt
from obpipeline.book.stream import Book
from obpipeline.errors import MissingStartBook, SourceUnavailable
from obpipeline.instruments import CHECKSUM_VENUES, Instrument
from obpipeline.sources.ingest import (
    MESSAGE_COLUMNS,
    NS,
    Ingest,
    LinesHook,
    Part,
    day_bounds_ns,
    ingest,
    stage_capture,
)

SOURCE_KINDS = ("simulator", "landing")
LANDING_FORMATS = ("binance", "tardis", *CHECKSUM_VENUES)
_DATE_IN_NAME = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)")


@dataclass(frozen=True)
class SourceConfig:
    """Where raw_book_events of one instrument come from.

    ``simulator``: the embedded simulated exchange (``profile``, ``seed``, ``options`` are passed
    through). ``landing``: capture files under ``path`` whose names match ``pattern`` and carry
    their UTC date (``YYYYMMDD`` or ``YYYY-MM-DD``); a day reads its own file plus the edges of its
    neighbours (captures spill across midnight by up to ``edge_seconds``).
    """

    kind: str = "simulator"
    profile: str = "demo"
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    pattern: str = "*"
    format: str = "binance"
    edge_seconds: int = 120
    faults: str | None = None  # simulator only: obpipeline.sources.faults spec, for drills
    fault_days: tuple[date, ...] = ()
    # days an operator accepts although a file was damaged (what could be read is used; the
    # unreadable rest stays in the quarantine)
    accept_damaged_days: tuple[date, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"source kind {self.kind!r}: choose from {SOURCE_KINDS}")
        if self.format not in LANDING_FORMATS:
            raise ValueError(f"landing format {self.format!r}: choose from {LANDING_FORMATS}")
        if self.kind == "landing" and self.path is None:
            raise ValueError("a landing source needs a path")

    @property
    def is_tardis(self) -> bool:
        return self.kind == "landing" and self.format == "tardis"

    @property
    def is_checksum_venue(self) -> bool:
        """OKX / Bitget / Kraken recordings (sources/checksum_venues): per-day synthetic ids."""
        return self.kind == "landing" and self.format in CHECKSUM_VENUES


@dataclass(frozen=True)
class DayRequest:
    """One instrument-day: what to read and where it goes."""

    source: SourceConfig
    venue: str  # "binance"
    market: str  # "usdm"
    symbol: str
    day: date
    lake_root: Path
    depth: int = schemas.DEFAULT_DEPTH

    @property
    def venue_id(self) -> str:
        return f"{self.venue}-{self.market}"

    def path(self, dataset: str, day: date | None = None) -> Path:
        return lake.partition_path(
            dataset, self.venue_id, self.symbol, day or self.day, self.lake_root
        )


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


def landing_parts(source: SourceConfig, day: date) -> list[Part]:
    """The day's own files plus its neighbours' lines received within ``edge_seconds``."""
    files = landing_files(source)
    if not files.get(day):
        raise SourceUnavailable(
            f"no capture for {day} in {source.path} (pattern {source.pattern!r}); "
            "file names must carry the UTC date, e.g. btcusdt_20240718.gz"
        )
    start, end = day_bounds_ns(day)
    edge = source.edge_seconds * NS
    before = files.get(day - timedelta(days=1), []) if edge else []
    after = files.get(day + timedelta(days=1), []) if edge else []
    return [
        *(Part.file(p, lo_ns=start - edge) for p in before),
        *(Part.file(p) for p in files[day]),
        *(Part.file(p, hi_ns=end + edge) for p in after),
    ]


def tardis_day_base(day: date) -> int:
    """First synthetic update id of a Tardis day: per-day ranges never overlap or repeat."""
    return (day - date(1970, 1, 1)).days * 10**10


# ----------------------------------------------------------------------------- simulator


def simulator_part(req: DayRequest) -> Part:
    """The simulated exchange's capture of the day, rendered chunk by chunk."""
    from obpipeline.sources import synthetic

    source = req.source

    def pieces():
        return synthetic.iter_capture_chunks(
            req.day,
            symbol=req.symbol,
            profile=source.profile,
            seed=source.seed,
            venue=req.venue,
            market=req.market,
            **source.options,
        )

    return Part(f"simulator/{req.venue_id}/{req.symbol.lower()}_{req.day:%Y%m%d}", pieces)


def fault_hook(spec: str, seed: int = 0) -> LinesHook:
    """A ``lines_hook`` applying ``obpipeline.sources.faults`` to each batch of capture lines."""
    from obpipeline.sources.binance import lines_frame
    from obpipeline.sources.faults import inject

    def hook(lines: pl.DataFrame) -> pl.DataFrame:
        texts = [t for t in lines["text"].to_list() if t is not None]
        out, _ = inject(texts, spec, seed=seed)
        first = int(lines["line"][0]) - 1 if lines.height else 0
        frame = lines_frame(b"\n".join(o if isinstance(o, bytes) else o.encode() for o in out)
                            + b"\n", lines["file"][0] if lines.height else "faulty")  # fmt: skip
        return frame.with_columns(pl.col("line") + first)

    return hook


# ----------------------------------------------------------------------------- the day


def ingest_day(req: DayRequest, lines_hook: LinesHook | None = None) -> Ingest:
    """Stage the day's ingest datasets (unpublished): simulator, landing Binance or Tardis.

    ``lines_hook`` rewrites capture lines before parsing (fault drills); the source's own
    ``faults`` spec applies to the days in ``fault_days`` (all days when empty).
    """
    source = req.source
    if source.kind == "simulator":
        parts = [simulator_part(req)]
        if source.faults and (not source.fault_days or req.day in source.fault_days):
            drill = fault_hook(source.faults, source.seed)
            lines_hook = drill if lines_hook is None else _chain(drill, lines_hook)
    elif source.is_tardis:
        return _tardis_day(req)
    elif source.is_checksum_venue:
        return _checksum_venue_day(req)
    else:
        parts = landing_parts(source, req.day)
    return ingest(
        parts,
        lambda dataset, d: req.path(dataset, d),
        market=req.market,
        symbol=req.symbol,
        depth=req.depth,
        only_day=req.day,
        lines_hook=lines_hook,
    )


def _chain(first: LinesHook, second: LinesHook) -> LinesHook:
    return lambda lines: second(first(lines))


def _tardis_day(req: DayRequest) -> Ingest:
    """Tardis files are cut by exchange day already: the day's files only.

    Synthetic update ids start at a per-day base (``tardis_day_base``), so raw_book_events of a
    day do not depend on the D-1 checkpoint; ``start_book`` re-stamps the carried D-1 book at
    that base, so the day's opening snapshot is compared with it.
    """
    from obpipeline.sources import tardis

    files = landing_files(req.source)
    if not files.get(req.day):
        raise SourceUnavailable(f"no Tardis file for {req.day} in {req.source.path}")
    capture = tardis.read_tardis(
        files[req.day],
        symbol=req.symbol,
        depth=req.depth,
        start_update_id=tardis_day_base(req.day),
    )
    return stage_capture(capture, lambda dataset, d: req.path(dataset, d), req.depth, req.day)


def _checksum_venue_day(req: DayRequest) -> Ingest:
    """The day's OKX / Bitget / Kraken recordings, ids from the day's base as for Tardis, and
    their checksums (``golden_checksum``)."""
    from obpipeline.sources.checksum_venues.landing import stage_day

    files = landing_files(req.source)
    if not files.get(req.day):
        raise SourceUnavailable(
            f"no {req.source.format} recording for {req.day} in {req.source.path}"
        )
    return stage_day(
        files[req.day], req.source.format, req.symbol, req.depth, req.day,
        tardis_day_base(req.day), lambda dataset, d: req.path(dataset, d),
    )  # fmt: skip


def opens_with_snapshot(messages: pl.DataFrame, within_seconds: int) -> bool:
    """True when a REST snapshot arrives within ``within_seconds`` of the day's first message.

    Such a day can start without the D-1 checkpoint: the replayer syncs on the snapshot and the
    few diffs received before it are emitted invalid and counted, never silently as good.
    """
    if messages.height == 0:
        return False
    first = messages["ts_local"].min()
    snaps = messages.filter(pl.col("is_snapshot"))
    if snaps.height == 0:
        return False
    return (snaps["ts_local"].min() - first).total_seconds() <= within_seconds


def start_book(
    req: DayRequest,
    instrument: Instrument,
    messages: Callable[[], pl.DataFrame],
    snapshot_open_seconds: int,
    carried: Book | None = None,
) -> Book | None:
    """The book day D starts from: ``carried`` or the D-1 checkpoint (which must be this
    instrument's book at the end of D-1: ``CheckpointMismatch`` otherwise), else None when D
    opens with its own exchange snapshot; anything else is a loud ``MissingStartBook``.

    A missing checkpoint is never silently an empty book. ``messages()`` gives the day's message
    table (msg_id, ts_local, is_snapshot...), read only when needed.
    """
    prev = req.day - timedelta(days=1)
    path = req.path("book_checkpoint", prev)
    if carried is None and path.exists():
        carried = ckpt.read(path, expect_instrument=instrument, expect_day=prev)
    if carried is not None:
        if req.source.is_tardis or req.source.is_checksum_venue:
            # Tardis ids are synthetic and restart at each day's base: the opening snapshot of
            # D carries that base, so the carried book must too to be compared with it.
            carried = dataclasses.replace(carried, last_update_id=tardis_day_base(req.day))
        return carried
    if opens_with_snapshot(messages(), snapshot_open_seconds):
        return None
    raise MissingStartBook(
        f"{req.symbol} {req.day}: the D-1 book_checkpoint ({prev}) is missing and the day "
        f"does not open with its own exchange snapshot (none within {snapshot_open_seconds} s "
        f"of its first message). Materialise book_checkpoint for {prev} first (or backfill the "
        "range in order)."
    )


def message_table(events_path: Path) -> pl.DataFrame:
    """One row per message of a raw_book_events file (its first row), read lazily."""
    return (
        pl.scan_parquet(events_path)
        .select(MESSAGE_COLUMNS)
        .unique("msg_id", keep="first", maintain_order=True)
        .collect(engine="streaming")
    )

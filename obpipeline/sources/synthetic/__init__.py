"""The simulated exchange: the platform's embedded default data source.

A deterministic order-flow exchange for one symbol (Binance USD-M BTCUSDT by default) that
publishes its book exactly the way Binance does, in the capture format of
``../shared/data/binance/usdm`` (one ``<local_receive_ns> <json>`` line per record; depth@0ms diffs
with U/u/pu, REST snapshots, bookTicker, depth20@100ms, trades), and that knows its true book.

Design, in one paragraph per layer (details in each module):

* ``paths``: day D's open price and volatility come from a per-block seeded daily series, so any
  day of any range is computed on its own; the intraday fundamental price runs on a 1-second
  grid driven by a Hawkes-type self-exciting activity with multi-scale stochastic volatility
  (fat tails, volatility clustering) and is bridged to D+1's open.
* ``engine``: one compiled loop of order events (limit orders quoted around the fundamental,
  per-order cancellations, market orders walking the book, informed flow), batched into
  fixed-window messages, with truth, depth20, REST snapshots and bookTicker taken on the way;
  it runs in stretches of ~1 M events, each carrying the whole engine state on.
* ``day``: chaining (D's last message moves the book onto D+1's deterministic opening book and
  jumps ``u`` to D+1's base id), exchange/receive timestamps and arrival order, msg_id,
  published stretch by stretch (``iter_batches``).
* ``render``: compiled byte writer of the capture lines (no Python loop per line or level).

Streaming: ``iter_capture_chunks`` (the capture text) and ``write_day_streaming`` (the .gz and
the truth parquet) never hold a whole day; ``simulate_day`` builds it in memory.

Everything is a function of (venue, symbol, date, seed, profile): same inputs, same bytes.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from obpipeline import schemas
from obpipeline.instruments import Instrument, get_instrument, resolve_instrument
from obpipeline.sources.synthetic import render as RD
from obpipeline.sources.synthetic.day import (
    Batch,
    Book,
    DayRecords,
    iter_batches,
    opening_book,
    print_format,
    simulate_records,
    uid_base,
)
from obpipeline.sources.synthetic.profiles import PROFILES, Model, Profile, get_profile

__all__ = [
    "PROFILES",
    "Book",
    "Model",
    "Profile",
    "SimulatedDay",
    "capture_path",
    "day_range",
    "get_profile",
    "instrument_for",
    "iter_capture_chunks",
    "opening_book",
    "raw_book_events",
    "real_volume_events_parquet",
    "simulate_day",
    "simulate_days",
    "truth_path",
    "uid_base",
    "write_day",
    "write_day_streaming",
]

CHUNK_BYTES = 48 << 20


def instrument_for(symbol: str = "BTCUSDT", market: str = "usdm") -> Instrument:
    """The simulated instrument: the registered one, else Binance-style 0.01 tick / 0.001 lot."""
    inst = get_instrument("binance", market, symbol)
    if inst is not None:
        return inst
    return resolve_instrument("binance", market, symbol, ["1.00"], ["1.000"])


def _as_date(day: date | datetime | str) -> date:
    if isinstance(day, datetime):
        return day.date()
    if isinstance(day, date):
        return day
    return (
        date.fromisoformat(str(day))
        if "-" in str(day)
        else datetime.strptime(str(day), "%Y%m%d").date()
    )


@dataclass
class SimulatedDay:
    """One simulated UTC day: the capture (rendered lazily) and the true book after each message.

    ``capture`` is the whole uncompressed day file (bytes); ``lines()`` the same split per line;
    ``iter_chunks()`` streams it without holding it (the real-volume profile is ~3 GB of text).
    ``truth`` is a ``book_snapshots`` frame (see ``day.py`` for the msg_id convention).
    """

    day: date
    instrument: Instrument
    profile: Profile
    seed: int
    records: DayRecords = field(repr=False)
    _capture: bytes | None = field(default=None, repr=False)
    _truth: pl.DataFrame | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ sizes
    @property
    def n_lines(self) -> int:
        return int(self.records.kinds.shape[0])

    @property
    def n_messages(self) -> int:
        """Depth-diff messages (the REST snapshots are not counted here)."""
        return int(self.records.msgs.shape[0])

    @property
    def n_level_updates(self) -> int:
        return int(self.records.lv.shape[0])

    def stats(self) -> dict[str, int]:
        r = self.records
        return {
            "lines": self.n_lines,
            "messages": self.n_messages,
            "level_updates": self.n_level_updates,
            "snapshots": int(r.snaps.shape[0]),
            "book_tickers": int(r.bbo.shape[0]),
            "trades": int(r.trades.shape[0]),
            "depth20": int(r.d20.shape[0]),
            "first_update_id": int(r.msgs[0, 2]),
            "last_update_id": int(r.msgs[-1, 3]),
            "prev_update_id": int(r.msgs[0, 4]),
        }

    # ------------------------------------------------------------------ text
    def iter_chunks(self, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The capture text in chunks of whole lines (compiled rendering, bounded memory)."""
        return render_chunks([self.records], self.instrument, chunk_bytes)

    @property
    def capture(self) -> bytes:
        """The whole uncompressed capture file."""
        if self._capture is None:
            self._capture = b"".join(self.iter_chunks())
        return self._capture

    def lines(self) -> list[bytes]:
        """One bytes object per line, without the trailing newline."""
        return self.capture.split(b"\n")[:-1]

    # ------------------------------------------------------------------ truth
    @property
    def truth(self) -> pl.DataFrame:
        if self._truth is None:
            self._truth = truth_frame(self.records, self.instrument, self.profile.truth_depth)
        return self._truth

    def raw_book_events(self) -> pl.DataFrame:
        """Canonical ``raw_book_events`` of the capture, built without parsing it."""
        return raw_book_events(self.records, self.instrument)

    @property
    def snapshot_msg_ids(self) -> list[int]:
        """msg_id of each REST snapshot line (book rows a replayer emits that truth has not)."""
        return self.records.snap_msg_id.tolist()

    @property
    def opening_book(self) -> Book:
        """The exchange's book at 00:00 (what D-1's last message moved it onto)."""
        return self.records.open_book

    @property
    def closing_book(self) -> Book:
        """The book after the day's last message: D+1's opening book."""
        return self.records.close_book

    def file_name(self) -> str:
        return f"{self.instrument.symbol.lower()}_{self.day:%Y%m%d}.gz"


def raw_book_events(records: DayRecords, inst: Instrument) -> pl.DataFrame:
    """The day's ``raw_book_events`` built from the simulator's columns (no JSON round trip).

    Identical to what the Binance adapter produces from the capture: diffs and REST snapshots
    in arrival order (msg_id), levels in the order the lines list them.
    """
    m, lv = records.msgs, records.lv
    nm = m.shape[0]
    counts = m[:, 6] + m[:, 7]
    rows = np.maximum(counts, 1)
    msg = np.repeat(np.arange(nm), rows)
    pos = np.arange(msg.size) - np.repeat(np.cumsum(rows) - rows, rows)
    has = np.repeat(counts > 0, rows)
    lv_idx = np.where(has, m[msg, 5] + pos, 0)
    d_side = np.where(pos < m[msg, 6], schemas.BID, schemas.ASK).astype(np.int8)
    d_px = lv[lv_idx, 0] if lv.shape[0] else np.zeros(msg.size, np.int64)
    d_q = lv[lv_idx, 1] if lv.shape[0] else np.zeros(msg.size, np.int64)
    sn, sl = records.snaps, records.snap_lv
    s_rows = sn[:, 4] + sn[:, 5]
    s_msg = np.repeat(np.arange(sn.shape[0]), s_rows)
    s_pos = np.arange(s_msg.size) - np.repeat(np.cumsum(s_rows) - s_rows, s_rows)
    s_lv = sn[s_msg, 3] + s_pos
    s_side = np.where(s_pos < sn[s_msg, 4], schemas.BID, schemas.ASK).astype(np.int8)
    snap_local = records.local_ns[records.kinds == RD.K_SNAP]
    snap_local = snap_local[np.argsort(records.idxs[records.kinds == RD.K_SNAP])]
    ids = np.concatenate([records.msg_id[msg], records.snap_msg_id[s_msg]])
    order = np.argsort(ids, kind="stable")
    n_d = msg.size
    cat = lambda a, b: np.concatenate([a, b])[order]  # noqa: E731
    su = sn[s_msg, 2]
    present = cat(has, np.ones(s_msg.size, dtype=bool))
    frame = pl.DataFrame(
        [
            pl.Series("ts_event", cat(m[msg, 1], sn[s_msg, 1]) * 1_000_000).cast(schemas.TS),
            pl.Series("ts_local", cat(records.msg_local_ns[msg], snap_local[s_msg])).cast(
                schemas.TS
            ),
            pl.Series("msg_id", ids[order]),
            pl.Series("first_update_id", cat(m[msg, 2], su)),
            pl.Series("last_update_id", cat(m[msg, 3], su)),
            pl.Series("prev_update_id", cat(m[msg, 4], su), dtype=pl.Int64).scatter(
                np.flatnonzero(order >= n_d), None
            ),
            pl.Series("is_snapshot", order >= n_d),
            pl.Series("side", cat(d_side, s_side)).scatter(np.flatnonzero(~present), None),
            schemas.from_unscaled(
                cat(d_px, sl[s_lv, 0]) * inst.tick_units, inst.price_scale, present, "price"
            ),
            schemas.from_unscaled(
                cat(d_q, sl[s_lv, 1]) * inst.lot_units, inst.size_scale, present, "size"
            ),
        ]
    )
    return schemas.conform(frame, schemas.raw_book_events(inst), "raw_book_events")


def real_volume_events_parquet(out_dir: Path | str, day: date | str = "2024-03-01") -> Path:
    """A real-profile day's ``raw_book_events`` as parquet under ``out_dir`` (made once)."""
    d = _as_date(day)
    path = Path(out_dir) / f"simulator_real_raw_book_events_{d:%Y%m%d}.parquet"
    if not path.exists():
        from obpipeline.lake import write_parquet_atomic

        sim = simulate_day(d, profile="real", truth_depth=0)
        write_parquet_atomic(sim.raw_book_events(), path)
    return path


def truth_frame(records: DayRecords | Batch, inst: Instrument, depth: int) -> pl.DataFrame:
    """The true top-``depth`` book after every depth-diff message, as ``book_snapshots``."""
    t = records.truth
    if t.ndim != 3 or t.shape[2] < depth:
        raise ValueError(
            f"this day was simulated with truth depth {t.shape[2] if t.ndim == 3 else 0}"
        )
    m = records.msgs
    tick_units, lot_units = inst.tick_units, inst.lot_units
    ps, ss = inst.price_scale, inst.size_scale
    bp, bs, ap, asz = schemas.level_names(depth)
    cols: list[pl.Series] = [
        pl.Series("ts_event", m[:, 1] * 1_000_000).cast(schemas.TS),
        pl.Series("ts_local", records.msg_local_ns).cast(schemas.TS),
        pl.Series("msg_id", records.msg_id),
        pl.Series("last_update_id", m[:, 3]),
    ]
    for names, row, units, scale in (
        (bp, 0, tick_units, ps),
        (bs, 1, lot_units, ss),
        (ap, 2, tick_units, ps),
        (asz, 3, lot_units, ss),
    ):
        present_row = 1 if row < 2 else 3
        for i, name in enumerate(names):
            vals = t[:, row, i].astype(np.int64) * units
            cols.append(schemas.from_unscaled(vals, scale, t[:, present_row, i] > 0, name))
    n = m.shape[0]
    cols += [
        pl.Series("is_valid", np.ones(n, dtype=bool)),
        pl.Series("crossed_repaired", np.zeros(n, dtype=bool)),
        pl.Series("resynced", np.zeros(n, dtype=bool)),
    ]
    return schemas.conform(pl.DataFrame(cols), schemas.book_snapshots(inst, depth), "truth")


def render_chunks(
    parts: Iterable[DayRecords | Batch], inst: Instrument, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """Capture text of consecutive line tables in chunks of whole lines, each ending in b"\\n".

    A chunk holds as many lines as fit in ``chunk_bytes`` of *upper-bound* line lengths (at
    least one line): the cut points depend on the lines only, never on how they are grouped
    into tables, so a day rendered whole or batch by batch gives the same chunks (and the same
    gzip members).
    """
    frag, foff = RD.fragments(inst.symbol)
    fmt = print_format(inst)
    buf = np.empty(0, dtype=np.uint8)
    used = 0  # upper-bound bytes of the lines in the open chunk
    pos = 0  # bytes written into it
    for r in parts:
        n = r.kinds.shape[0]
        if n == 0:
            continue
        cum = np.cumsum(RD.line_bounds(r.kinds, r.idxs, r.msgs, r.snaps, r.d20b.shape[2]))
        start = 0
        while start < n:
            before = cum[start - 1] if start else 0
            stop = int(np.searchsorted(cum, before + chunk_bytes - used, side="right"))
            if used == 0:
                stop = max(stop, start + 1)
            stop = min(stop, n)
            if stop > start:
                need = int(cum[stop - 1] - before)
                if used == 0:
                    buf = np.empty(max(chunk_bytes, need), dtype=np.uint8)
                pos += RD.render(
                    r.kinds, r.idxs, r.local_ns, start, stop, buf[pos:], frag, foff, fmt,
                    r.msgs, r.lv, r.bbo, r.trades, r.d20, r.d20b, r.snaps, r.snap_lv,
                )  # fmt: skip
                used += need
                start = stop
            if start < n:  # the next line does not fit: the chunk is complete
                yield buf[:pos].tobytes()
                used = pos = 0
    if pos:
        yield buf[:pos].tobytes()


def simulate_day(
    day: date | datetime | str,
    symbol: str = "BTCUSDT",
    profile: str | Profile = "demo",
    seed: int = 0,
    venue: str = "binance",
    market: str = "usdm",
    opening_snapshot: bool = True,
    snapshot_every: float | str | None = "profile",
    **overrides: Any,
) -> SimulatedDay:
    """Simulate one UTC day of the exchange.

    ``opening_snapshot``: publish a REST snapshot right after the day's first diffs (else the day
    must chain from D-1's checkpoint). ``snapshot_every``: minutes between intraday snapshots,
    ``None``/"none" for none, "profile" for the profile's default. ``overrides``: any ``Profile``
    or ``Model`` field (``event_rate=``, ``msg_ms=``, ``window_ticks=``...).
    """
    d, prof, inst, venue_id, seconds = _resolve(
        day, symbol, profile, venue, market, snapshot_every, overrides
    )
    records = simulate_records(
        d, inst, prof, seed=seed, venue=venue_id, opening_snapshot=opening_snapshot,
        _seconds=seconds,
    )  # fmt: skip
    return SimulatedDay(d, inst, prof, seed, records)


def _resolve(
    day: date | datetime | str,
    symbol: str,
    profile: str | Profile,
    venue: str,
    market: str,
    snapshot_every: float | str | None,
    overrides: dict[str, Any],
) -> tuple[date, Profile, Instrument, str, int]:
    """(day, profile, instrument, venue id, seconds of order flow) of a simulate call.

    ``_seconds`` (an override for tests) stops the order flow early; the day still settles.
    """
    overrides = dict(overrides)
    seconds = int(overrides.pop("_seconds", 86_400))
    if snapshot_every != "profile":
        overrides["snapshot_every_min"] = (
            None if snapshot_every in (None, "none") else float(snapshot_every)
        )  # type: ignore[arg-type]
    prof = get_profile(profile, **overrides)
    inst = instrument_for(symbol, market)
    venue_id = venue if "-" in venue else f"{venue}-{market}"
    return _as_date(day), prof, inst, venue_id, seconds


def _day_batches(
    day: date | datetime | str,
    symbol: str,
    profile: str | Profile,
    seed: int,
    venue: str,
    market: str,
    opening_snapshot: bool,
    snapshot_every: float | str | None,
    overrides: dict[str, Any],
) -> tuple[date, Profile, Instrument, Iterator[Batch]]:
    d, prof, inst, venue_id, seconds = _resolve(
        day, symbol, profile, venue, market, snapshot_every, overrides
    )
    batches = iter_batches(
        d, inst, prof, seed=seed, venue=venue_id, opening_snapshot=opening_snapshot,
        _seconds=seconds,
    )  # fmt: skip
    return d, prof, inst, batches


def iter_capture_chunks(
    day: date | datetime | str,
    *,
    symbol: str = "BTCUSDT",
    profile: str | Profile = "demo",
    seed: int = 0,
    venue: str = "binance",
    market: str = "usdm",
    chunk_bytes: int = CHUNK_BYTES,
    opening_snapshot: bool = True,
    snapshot_every: float | str | None = "profile",
    **overrides: Any,
) -> Iterator[bytes]:
    """The day's capture text (the bytes ``write_day`` gzips), streamed in bounded memory.

    Same arguments as ``simulate_day``. Each chunk is whole lines ending in b"\\n"; their
    concatenation is ``simulate_day(...).capture``, and the chunks are the ones ``iter_chunks``
    cuts. Memory does not grow with the day: the order flow runs in stretches (twice: once to
    count the day's records, once to publish), so a day costs about twice the engine time.
    """
    _, _, inst, batches = _day_batches(
        day, symbol, profile, seed, venue, market, opening_snapshot, snapshot_every, overrides
    )
    return render_chunks(batches, inst, chunk_bytes)


def day_range(start: date | str, days: int) -> list[date]:
    first = _as_date(start)
    return [first + timedelta(days=k) for k in range(days)]


def simulate_days(start: date | str, days: int, **kwargs: Any) -> Iterator[SimulatedDay]:
    """Consecutive days from ``start``; with ``opening_snapshot="first"`` only day 1 has one."""
    first = _as_date(start)
    opening = kwargs.pop("opening_snapshot", True)
    for k in range(days):
        op = (k == 0) if opening == "first" else bool(opening)
        yield simulate_day(first + timedelta(days=k), opening_snapshot=op, **kwargs)


def capture_path(out: Path | str, symbol: str, day: date) -> Path:
    return Path(out) / f"{symbol.lower()}_{day:%Y%m%d}.gz"


def truth_path(out: Path | str, symbol: str, day: date) -> Path:
    return Path(out) / "truth" / f"{symbol.upper()}_{day:%Y%m%d}.parquet"


def _gzip_member(chunk: bytes, level: int) -> bytes:
    """One complete gzip member (no name, mtime 0: deterministic bytes)."""
    comp = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    xfl = b"\x02" if level >= 9 else b"\x04" if level == 1 else b"\x00"
    head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + xfl + b"\xff"
    tail = zlib.crc32(chunk).to_bytes(4, "little") + (len(chunk) & 0xFFFFFFFF).to_bytes(4, "little")
    return head + comp.compress(chunk) + comp.flush() + tail


def _gzip_stream(chunks: Iterator[bytes], path: Path, level: int, workers: int = 2) -> int:
    """Write chunks as consecutive gzip members, compressed by ``workers`` threads.

    A multi-member gzip file is one valid gzip stream (RFC 1952; ``gzip``, ``zcat`` and the
    Binance adapter read it whole). Chunk boundaries are fixed by byte counts, so the file is
    deterministic; zlib releases the GIL, and so does the compiled renderer.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    size = 0
    with open(tmp, "wb") as f, ThreadPoolExecutor(workers) as pool:
        pending: list = []
        for chunk in chunks:
            size += len(chunk)
            pending.append(pool.submit(_gzip_member, chunk, level))
            while len(pending) > workers:
                f.write(pending.pop(0).result())
        for fut in pending:
            f.write(fut.result())
    tmp.replace(path)
    return size


def write_day(
    sim: SimulatedDay,
    out: Path | str,
    lines: list[bytes] | None = None,
    report: dict | None = None,
    truth: bool = True,
) -> dict[str, Path]:
    """Write ``<out>/<symbol>_<YYYYMMDD>.gz`` (+ ``truth/...parquet``, + fault report JSON).

    ``lines`` replaces the rendered capture (e.g. after fault injection); the truth stays the
    clean exchange's truth, which is the point of a mutation test.
    """
    out = Path(out)
    paths: dict[str, Path] = {}
    cap = capture_path(out, sim.instrument.symbol, sim.day)
    level = sim.profile.gzip_level
    if lines is None:
        _gzip_stream(sim.iter_chunks(), cap, level)
    else:
        _gzip_stream(iter([b"".join(x + b"\n" for x in lines)]), cap, level)
    paths["capture"] = cap
    if truth:
        tp = truth_path(out, sim.instrument.symbol, sim.day)
        tp.parent.mkdir(parents=True, exist_ok=True)
        from obpipeline.lake import write_parquet_atomic

        write_parquet_atomic(sim.truth, tp)
        paths["truth"] = tp
    if report is not None:
        rp = out / "faults" / f"{sim.instrument.symbol.upper()}_{sim.day:%Y%m%d}.json"
        rp.parent.mkdir(parents=True, exist_ok=True)
        rp.write_text(json.dumps(report, indent=1, sort_keys=True))
        paths["faults"] = rp
    return paths


def write_day_streaming(
    day: date | datetime | str,
    out: Path | str,
    *,
    symbol: str = "BTCUSDT",
    profile: str | Profile = "demo",
    seed: int = 0,
    venue: str = "binance",
    market: str = "usdm",
    truth: bool = True,
    opening_snapshot: bool = True,
    snapshot_every: float | str | None = "profile",
    **overrides: Any,
) -> tuple[dict[str, Path], dict[str, int]]:
    """``write_day`` without holding the day: capture and truth written batch by batch.

    Returns the written paths and the day's ``stats()``. The capture file is byte-identical to
    ``write_day``'s; the truth parquet has the same rows and values (row groups per batch, so
    not the same file bytes).
    """
    d, prof, inst, batches = _day_batches(
        day, symbol, profile, seed, venue, market, opening_snapshot, snapshot_every, overrides
    )
    out = Path(out)
    cap = capture_path(out, inst.symbol, d)
    paths = {"capture": cap}
    stats = dict.fromkeys(
        ("lines", "messages", "level_updates", "snapshots", "book_tickers", "trades", "depth20"),
        0,
    )
    ids: dict[str, int] = {}
    writer = (
        _TruthWriter(truth_path(out, inst.symbol, d), inst, prof.truth_depth) if truth else None
    )

    def tap(batches: Iterator[Batch]) -> Iterator[Batch]:
        for b in batches:
            if b.msgs.shape[0]:
                ids.setdefault("first_update_id", int(b.msgs[0, 2]))
                ids["last_update_id"] = int(b.msgs[-1, 3])
                ids.setdefault("prev_update_id", int(b.msgs[0, 4]))
            for key, arr in (
                ("lines", b.kinds),
                ("messages", b.msgs),
                ("level_updates", b.lv),
                ("snapshots", b.snaps),
                ("book_tickers", b.bbo),
                ("trades", b.trades),
                ("depth20", b.d20),
            ):
                stats[key] += arr.shape[0]
            if writer is not None:
                writer.write(b)
            yield b

    try:
        _gzip_stream(render_chunks(tap(batches), inst), cap, prof.gzip_level)
        if writer is not None:
            paths["truth"] = writer.close()
    finally:
        if writer is not None:
            writer.abort()
    return paths, {**stats, **ids}


class _TruthWriter:
    """The truth parquet written one batch at a time (a temporary file renamed when complete)."""

    def __init__(self, path: Path, inst: Instrument, depth: int) -> None:
        self.path, self.inst, self.depth = path, inst, depth
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.writer: Any = None

    def write(self, batch: Batch) -> None:
        import pyarrow.parquet as pq

        if batch.msgs.shape[0] == 0:
            return
        table = truth_frame(batch, self.inst, self.depth).to_arrow()
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(
                self.tmp, table.schema, compression="zstd", compression_level=3
            )
        self.writer.write_table(table)

    def close(self) -> Path:
        if self.writer is None:
            raise RuntimeError("the simulated day published no depth message")
        self.writer.close()
        self.writer = None
        self.tmp.replace(self.path)
        return self.path

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.tmp.unlink(missing_ok=True)

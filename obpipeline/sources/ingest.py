"""Capture bytes → the lake's ingest datasets, streamed in bounded memory.

A real BTC-USDT day is ~11 M capture lines (~2.3 GB of text, ~27 M level updates). Nothing here
holds the day: gzip is inflated in pieces, whole lines are cut into batches of ``batch_bytes``,
each batch is parsed by the one parser (``binance.parse_lines``: the same rules, the same
quarantine) and its frames are appended to streaming parquet writers, one per dataset and UTC
day. A message is one line, so it never straddles two batches. What the day's checks need is
accumulated as it goes: counts, the one-row-per-message table (``messages``, ~50 B a message) and
the quarantine's reasons.

Damage is quarantined, never fatal: a line that is not UTF-8, a line longer than
``max_line_bytes`` (counted, not materialised), a truncated gzip tail, a corrupt deflate block or
trailing garbage each become one quarantine entry naming the file, the line and, for gzip damage,
the compressed byte offset; everything before the damage is ingested.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from isal import isal_zlib  # zlib's API, ISA-L's inflate: half the CPU on a real day

from obpipeline import schemas, storage
from obpipeline.instruments import Instrument
from obpipeline.sources.binance import lines_frame, parse_lines
from obpipeline.sources.capture import Capture, CaptureError

NS = 1_000_000_000
READ_BYTES = 1 << 20  # bytes read per piece of a plain file (gzip: the text of one step)
PREFETCH_PIECES = 16  # pieces read ahead of the parser, on the inflate thread
INFLATE_STEP = 256 << 10  # compressed bytes per inflate call
# capture text per parsed batch (~50 k lines): below glibc's 32 MB mmap ceiling a batch's freed
# buffers are reused by the next, not unmapped and faulted in again (a 1.5 M-line real-volume
# slice: 0.47 s of system time and 590 MB peak, against 1.20 s and 920 MB with 64 MB batches)
BATCH_BYTES = 16 << 20
PARSE_THREADS = 2
MAX_LINE_BYTES = 64 << 20  # a longer line is quarantined without being held
RECORD_PREVIEW = 2_000  # characters of an over-long or undecodable line kept in quarantine
LinesHook = Callable[[pl.DataFrame], pl.DataFrame]


# ----------------------------------------------------------------------------- bytes → lines


@dataclass(frozen=True)
class Damage:
    """The unreadable rest of a file: where it starts and why (one quarantine entry)."""

    offset: int  # compressed byte offset where inflating failed
    reason: str


def inflate(path: Path | str) -> Iterator[bytes | Damage]:
    """A capture file's text in pieces (gzip, multi-member gzip or plain); damage as ``Damage``.

    Inflating stops at the first damage: a deflate stream cannot be resumed past a corrupt
    block, so the rest of the file is one quarantine entry, not silently skipped.
    """
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        if not gzipped:
            while piece := f.read(READ_BYTES):
                yield piece
            return
        d = isal_zlib.decompressobj(31)
        fed = 0  # compressed bytes consumed before the current step
        member_started = False
        # small compressed steps: an error loses the output of its step only (<= ~1 MB of text);
        # each step's text is handed on as it is (joined once, into a batch, by LineBatcher)
        while buf := f.read(INFLATE_STEP):
            while buf:
                try:
                    out = d.decompress(buf, READ_BYTES * 8)
                except isal_zlib.error as exc:
                    yield Damage(fed, f"gzip data damaged ({exc})")
                    return
                member_started = True
                fed += len(buf) - len(d.unconsumed_tail) - len(d.unused_data)
                if out:
                    yield out
                if d.eof:
                    buf = d.unused_data
                    d = isal_zlib.decompressobj(31)
                    member_started = False
                    if buf.strip(b"\x00") == b"" and not f.peek(1):
                        break  # zero padding at the very end (some writers add it)
                else:
                    buf = d.unconsumed_tail
        if member_started:
            yield Damage(fed, "gzip stream truncated (file cut short)")


class LineBatcher:
    """Whole lines of one file in ``file, line, text`` batches, plus quarantine for damage."""

    def __init__(
        self,
        file: str,
        batch_bytes: int = BATCH_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.file = file
        self.batch_bytes = batch_bytes
        self.max_line_bytes = max_line_bytes
        self.damaged = False  # the file's rest could not be read (gzip damage)
        self.skip_before_ns: int | None = None  # batches received wholly before: counted only
        self.skipped = 0

    def batches(
        self, pieces: Iterable[bytes | Damage]
    ) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
        """(lines, quarantine) per batch; line numbers are 1-based and count every line."""
        pending: list[bytes] = []
        size = 0
        open_len = 0  # bytes of the last, unfinished line in ``pending``
        line = 0  # lines emitted so far
        skipping = 0  # bytes of an over-long line seen so far (0: not skipping)
        preview = b""

        def flush() -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
            """Emit the complete lines of ``pending``; keep the unfinished one. The text is
            copied once: only the piece holding the last newline is cut."""
            nonlocal pending, size, line
            last = len(pending) - 1
            while last >= 0 and (nl := pending[last].rfind(b"\n")) < 0:
                last -= 1
            if last < 0:
                return
            piece = pending[last]
            text = b"".join([*pending[:last], piece[: nl + 1]])
            n = text.count(b"\n")
            yield self._batch(text, line, n)
            line += n
            rest = piece[nl + 1 :]
            pending = ([rest] if rest else []) + pending[last + 1 :]
            size = sum(map(len, pending))

        for piece in pieces:
            if isinstance(piece, Damage):
                self.damaged = True
                yield from flush()
                tail = b"".join(pending) if not skipping else preview
                yield self._quarantine_only(
                    line + 1,
                    f"{piece.reason} at compressed byte {piece.offset}; the rest of the file "
                    f"cannot be read (last line incomplete: {skipping or size} bytes)",
                    tail[:RECORD_PREVIEW],
                )
                return
            if skipping:
                nl = piece.find(b"\n")
                if nl < 0:
                    skipping += len(piece)
                    continue
                line += 1
                yield self._too_long(line, skipping + nl, preview)
                skipping, preview = 0, b""
                piece = piece[nl + 1 :]
            nl = piece.rfind(b"\n")
            open_len = len(piece) - nl - 1 if nl >= 0 else open_len + len(piece)
            pending.append(piece)
            size += len(piece)
            if open_len > self.max_line_bytes:  # count the over-long line, never hold it
                yield from flush()
                skipping, preview = (
                    size,
                    b"".join(p[:RECORD_PREVIEW] for p in pending)[:RECORD_PREVIEW],
                )
                pending, size, open_len = [], 0, 0
            elif size >= self.batch_bytes:
                yield from flush()
        if skipping:
            yield self._too_long(line + 1, skipping, preview)
            return
        yield from flush()
        if pending:  # a last line without its newline
            yield self._batch(b"".join([*pending, b"\n"]), line, 1)

    def _batch(self, text: bytes, first_line: int, n: int) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The ``n`` lines of ``text`` (each ends with a newline) after line ``first_line``."""
        if self.skip_before_ns is not None:
            last = _receive_ns_of(text[text.rfind(b"\n", 0, len(text) - 1) + 1 :])
            if last is not None and last < self.skip_before_ns:
                self.skipped += n  # a neighbour day's file before its edge: not even split
                return _no_lines(), _no_quarantine()
        try:
            frame = lines_frame(text, self.file)
        except pl.exceptions.ComputeError:
            frame = None  # not UTF-8 somewhere: find the lines below
        if frame is None or frame.height != n:
            frame, bad = self._line_by_line(text, first_line)
        else:
            frame, bad = _shift(frame, first_line), _no_quarantine()
        too_long = frame["text"].str.len_bytes() > self.max_line_bytes
        if too_long.any():  # longer lines than one inflated piece never get here (skipped)
            long = frame.filter(too_long)
            bad = pl.concat([bad, self._too_long_rows(long)]).sort("line")
            frame = frame.filter(~too_long.fill_null(False))
        return frame, bad

    def _too_long_rows(self, rows: pl.DataFrame) -> pl.DataFrame:
        return rows.select(
            "file",
            "line",
            pl.format(
                "line of {} bytes is longer than the {}-byte limit (first {} bytes kept)",
                pl.col("text").str.len_bytes(),
                pl.lit(self.max_line_bytes),
                pl.lit(RECORD_PREVIEW),
            ).alias("reason"),
            pl.col("text").str.slice(0, RECORD_PREVIEW).alias("record"),
        )

    def _line_by_line(self, text: bytes, first_line: int) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The slow path for a batch with undecodable bytes: quarantine just those lines."""
        good_lines: list[str | None] = []
        numbers: list[int] = []
        bad: list[dict] = []
        for i, raw in enumerate(text.split(b"\n")[:-1], start=first_line + 1):
            try:
                s = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad.append(
                    {
                        "file": self.file,
                        "line": i,
                        "reason": f"not UTF-8 text (byte {exc.start} of the line)",
                        "record": raw[:RECORD_PREVIEW].decode("utf-8", "backslashreplace"),
                    }
                )
                continue
            good_lines.append(s.rstrip("\r") if s.strip() else None)
            numbers.append(i)
        frame = pl.DataFrame(
            {"file": [self.file] * len(numbers), "line": numbers, "text": good_lines},
            schema={"file": pl.String, "line": pl.Int64, "text": pl.String},
        )
        return frame, pl.DataFrame(bad, schema=schemas.quarantine())

    def _too_long(self, line: int, size: int, preview: bytes) -> tuple[pl.DataFrame, pl.DataFrame]:
        return self._quarantine_only(
            line,
            f"line of {size} bytes is longer than the {self.max_line_bytes}-byte limit "
            f"(first {RECORD_PREVIEW} bytes kept)",
            preview,
        )

    def _quarantine_only(
        self, line: int, reason: str, record: bytes
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        q = pl.DataFrame(
            [
                {
                    "file": self.file,
                    "line": line,
                    "reason": reason,
                    "record": record.decode("utf-8", "backslashreplace"),
                }
            ],
            schema=schemas.quarantine(),
        )
        return _no_lines(), q


def _receive_ns_of(line: bytes) -> int | None:
    """A line's receive time in ns, by the digit-count rule of ``receive_ns``."""
    head = line.split(b" ", 1)[0]
    if not head.isdigit():
        return None
    n = len(head)
    scale = 1 if n >= 18 else 1_000 if n >= 15 else 1_000_000 if n >= 12 else None
    return None if scale is None else int(head) * scale


def _shift(frame: pl.DataFrame, first_line: int) -> pl.DataFrame:
    return frame.with_columns(pl.col("line") + first_line) if first_line else frame


def _no_lines() -> pl.DataFrame:
    return pl.DataFrame(schema={"file": pl.String, "line": pl.Int64, "text": pl.String})


def _no_quarantine() -> pl.DataFrame:
    return schemas.empty(schemas.quarantine())


def prefetch(items: Iterable, depth: int = 2) -> Iterator:
    """Iterate ``items`` on a background thread (inflating releases the GIL: it overlaps parsing).

    Leaving the loop early (or an error) stops the thread and closes ``items``: no reader is
    left behind holding a file and its buffers.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as exc:  # re-raised in the consumer
            failure.append(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            q.put(done)

    t = threading.Thread(target=work, name="capture-inflate", daemon=True)
    t.start()
    try:
        while (item := q.get()) is not done:
            yield item
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                continue
        t.join()
    if failure:
        raise failure[0]


# ----------------------------------------------------------------------------- parquet out


def parquet_options(schema: pa.Schema) -> dict:
    """Fast, compact and deterministic: integers (and decimals stored as integers) delta-packed,
    then zstd-1; statistics on every column (replay builds its price grid from them)."""
    delta = [
        f.name
        for f in schema
        if pa.types.is_integer(f.type)
        or pa.types.is_timestamp(f.type)
        or pa.types.is_decimal(f.type)
    ]
    return {
        "compression": "zstd",
        "compression_level": 1,
        "use_dictionary": [f.name for f in schema if pa.types.is_string(f.type)],
        "column_encoding": dict.fromkeys(delta, "DELTA_BINARY_PACKED"),
        "store_decimal_as_integer": True,
        "store_schema": False,
    }


class StagedParquet:
    """A parquet file written batch by batch to a hidden temporary file beside ``path``;
    ``publish`` makes it appear whole (fsync, rename), ``discard`` removes it.

    The encoding and compression run on a writer thread (they release the GIL: they overlap
    inflating and parsing), at most ``WRITE_AHEAD`` batches behind ``write``, in order, so the
    bytes are those of a synchronous write. A failed write is raised by the next ``write`` or
    by ``close`` (``Ingest.finish`` closes its files: errors surface inside the ingest).
    """

    def __init__(self, path: Path, schema: pl.Schema) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        os.close(fd)
        self.tmp = Path(tmp)
        self.arrow_schema = schemas.empty(schema).to_arrow().schema
        self.rows = 0
        self._writer = pq.ParquetWriter(
            tmp, self.arrow_schema, **parquet_options(self.arrow_schema)
        )
        self._batches: queue.Queue = queue.Queue(maxsize=WRITE_AHEAD)
        self._failure: list[BaseException] = []
        self._dropped = threading.Event()
        # the thread holds no reference to self: an owner that is never published or discarded
        # is collected, and its finalizer ends the thread
        self._thread = threading.Thread(
            target=_drain,
            args=(self._batches, self._writer, self.arrow_schema, self._failure, self._dropped),
            name=f"write-{self.path.stem}",
            daemon=True,
        )
        self._thread.start()
        self._stop = weakref.finalize(self, self._batches.put, None)

    def write(self, frame: pl.DataFrame) -> None:
        if self._failure:
            raise self._failure[0]
        if not self._thread.is_alive():
            raise RuntimeError(f"{self.path.name}: written after it was closed")
        if frame.height:
            self._batches.put(frame)
            self.rows += frame.height

    def publish(self) -> Path:
        """Make the file appear whole at ``path`` (which may have changed since it was staged:
        a staged file in another folder is first moved beside it, then renamed)."""
        self.close()
        if self.tmp.parent != self.path.parent:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            beside = self.path.parent / self.tmp.name
            shutil.move(self.tmp, beside)
            self.tmp = beside
        os.chmod(self.tmp, 0o666 & ~_umask())
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        storage.publish(self.path, source=self.tmp)  # rename; object-store lakes: PUT first
        return self.path

    def discard(self) -> None:
        self._dropped.set()  # batches still queued are not written
        try:
            self.close()
        except Exception:  # the file is removed whatever failed while writing it
            pass
        finally:
            self.tmp.unlink(missing_ok=True)

    def close(self) -> None:
        """Wait for the queued batches, end the thread, close the file; a failed write raises."""
        self._stop()  # queues the end marker once
        self._thread.join()
        try:
            self._writer.close()
        finally:
            if self._failure:
                raise self._failure[0]


WRITE_AHEAD = 1  # batches queued for a staged file's writer thread (one more is being written)


def _drain(
    batches: queue.Queue,
    writer: pq.ParquetWriter,
    schema: pa.Schema,
    failure: list[BaseException],
    dropped: threading.Event,
) -> None:
    """A staged file's writer thread: one row group per batch, until the end marker (None).
    After a failure (or a discard) it keeps taking batches so the producer never blocks."""
    while (frame := batches.get()) is not None:
        if failure or dropped.is_set():
            continue
        try:
            table = frame.to_arrow()
            if table.schema != schema:
                table = table.cast(schema)
            writer.write_table(table, row_group_size=len(table))
        except BaseException as exc:  # raised on the producer's thread by write/publish
            failure.append(exc)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------- the ingest


@dataclass
class Part:
    """One input of a stream: a capture file, or bytes from a generator (the simulator), with an
    optional receive-time window (a neighbour day's file contributes only its edge)."""

    name: str
    pieces: Callable[[], Iterable[bytes | Damage]]
    lo_ns: int | None = None
    hi_ns: int | None = None

    @classmethod
    def file(cls, path: Path | str, lo_ns: int | None = None, hi_ns: int | None = None) -> Part:
        return cls(str(path), lambda: inflate(path), lo_ns, hi_ns)


class MessageSpill:
    """A day's message table written as it arrives to a scratch parquet file ($TMPDIR), read
    back whole when a check needs it: held in memory, every day of a multi-day input would stay
    resident until the end (~100 MB a real day), so memory would grow with the input."""

    def __init__(self) -> None:
        fd, tmp = tempfile.mkstemp(prefix="obpipeline-messages-", suffix=".parquet")
        os.close(fd)
        self.path = Path(tmp)
        self.rows = 0
        schema = _MESSAGES_EMPTY.to_arrow().schema
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
            tmp, schema, **parquet_options(schema)
        )
        # the file goes with its owner, whichever way the owner ends
        self._cleanup = weakref.finalize(self, MessageSpill._remove, self.path, self._writer)

    def append(self, heads: pl.DataFrame) -> None:
        if self._writer is None:
            raise RuntimeError("messages appended after the table was read")
        if heads.height:
            self._writer.write_table(heads.to_arrow(), row_group_size=heads.height)
            self.rows += heads.height

    def table(self) -> pl.DataFrame:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return pl.read_parquet(self.path) if self.rows else _MESSAGES_EMPTY

    def remove(self) -> None:
        self._cleanup()

    @staticmethod
    def _remove(path: Path, writer: pq.ParquetWriter) -> None:
        try:
            writer.close()
        finally:
            path.unlink(missing_ok=True)


@dataclass
class DayOut:
    """One UTC day's staged files and what its checks read (counts, the message table)."""

    day: date
    writers: dict[str, StagedParquet]
    messages: MessageSpill = field(default_factory=lambda: MessageSpill())
    audit: dict[str, int] = field(default_factory=dict)
    level_updates: int = 0
    next_msg_id: int = 0

    def rows(self, dataset: str) -> int:
        return self.writers[dataset].rows

    def message_table(self) -> pl.DataFrame:
        """One row per message of the day (msg_id, ts_event, ids, is_snapshot), in order."""
        return self.messages.table()

    def publish(self) -> dict[str, Path]:
        return {name: w.publish() for name, w in self.writers.items()}

    def discard(self) -> None:
        try:
            for w in self.writers.values():
                w.discard()
        finally:
            self.messages.remove()


MESSAGE_COLUMNS = (
    "msg_id",
    "ts_event",
    "ts_local",
    "first_update_id",
    "last_update_id",
    "prev_update_id",
    "is_snapshot",
)
_MESSAGES_EMPTY = pl.DataFrame(
    schema={
        "msg_id": pl.Int64,
        "ts_event": schemas.TS,
        "ts_local": schemas.TS,
        "first_update_id": pl.Int64,
        "last_update_id": pl.Int64,
        "prev_update_id": pl.Int64,
        "is_snapshot": pl.Boolean,
    }
)


class Ingest:
    """Staged per-day outputs of one stream, its quarantine, instrument and line accounting.

    Parsed batches are added in arrival order (``add``); records go to the UTC day of their
    exchange time (with ``only_day``, other days are dropped: a neighbour file's edge, and so
    are quarantined lines received on another day). ``msg_id`` counts each day's messages from
    0. The quarantine is one staged file: its day is chosen at ``publish``.
    """

    def __init__(
        self,
        path_for: Callable[[str, date], Path],
        depth: int = schemas.DEFAULT_DEPTH,
        only_day: date | None = None,
    ) -> None:
        self.path_for, self.depth, self.only_day = path_for, depth, only_day
        self.instrument: Instrument | None = None
        self.days: dict[date, DayOut] = {}
        self.stats: dict[str, int] = {}
        self.reasons: dict[str, int] = {}
        self._sample: list[pl.DataFrame] = []
        self.quarantine = StagedParquet(
            path_for("quarantine", only_day or date(1970, 1, 1)), schemas.quarantine()
        )

    def add(self, capture: Capture, where: str = "") -> None:
        """A parsed batch: its frames to their days, its quarantine, its counts."""
        if self.instrument is None:
            self.instrument = capture.instrument
        elif capture.instrument != self.instrument:
            a, b = capture.instrument, self.instrument
            raise CaptureError(
                f"{where}: decimal scales {a.price_scale}/{a.size_scale} differ from those "
                f"inferred from the first lines ({b.price_scale}/{b.size_scale}); register the "
                "instrument in obpipeline/instruments.py"
            )
        _add(self.stats, {k: v for k, v in capture.stats.items() if k not in _RECOUNTED})
        frames = {
            "raw_book_events": capture.events,
            "golden_bbo": capture.golden_bbo,
            "golden_depth": capture.golden_depth,
            "trades": capture.trades,
        }
        for name, frame in frames.items():
            for d, part in self._by_day(frame):
                out = self._day(d)
                out.writers[name].write(_renumber(part, out) if name == "raw_book_events" else part)
        self.add_quarantine(capture.quarantine)

    def add_quarantine(self, q: pl.DataFrame) -> None:
        if self.only_day is not None and q.height:
            start, end = day_bounds_ns(self.only_day)
            recv = receive_ns(pl.col("record"))
            q = q.filter(recv.is_null() | ((recv >= start) & (recv < end)))
        if q.height == 0:
            return
        self.quarantine.write(q)
        for reason, n in q.group_by("reason").len().iter_rows():
            key = reason.split(":")[0][:120]
            self.reasons[key] = self.reasons.get(key, 0) + n
        if sum(x.height for x in self._sample) < 20:
            self._sample.append(q.head(20))

    @property
    def quarantine_sample(self) -> pl.DataFrame:
        return pl.concat(self._sample).head(20) if self._sample else _no_quarantine()

    def finish(self) -> Ingest:
        """The counts, once every staged file is written and closed (a failed write raises
        here, where the ingest's errors are handled, and the staged files are removed)."""
        try:
            for d in self.days.values():
                for w in d.writers.values():
                    w.close()
            self.quarantine.close()
        except BaseException:
            self.discard()
            raise
        self.stats["quarantined"] = self.quarantine.rows
        self.stats["messages"] = sum(d.next_msg_id for d in self.days.values())
        self.stats["level_updates"] = sum(d.level_updates for d in self.days.values())
        return self

    def publish(self, day: date, quarantine_path: Path) -> dict[str, Path]:
        """Publish ``day``'s files and the quarantine (at ``quarantine_path``)."""
        out = self.days[day].publish() if day in self.days else {}
        out["quarantine"] = self.publish_quarantine(quarantine_path)
        return out

    def publish_quarantine(self, path: Path) -> Path:
        self.quarantine.path = Path(path)
        return self.quarantine.publish()

    def discard(self) -> None:
        for d in self.days.values():
            d.discard()
        self.quarantine.discard()

    def _by_day(self, frame: pl.DataFrame) -> Iterator[tuple[date, pl.DataFrame]]:
        if frame.height == 0:
            return
        if self.only_day is not None:
            start, end = (pl.lit(x).cast(schemas.TS) for x in day_bounds_ns(self.only_day))
            part = frame.filter((pl.col("ts_event") >= start) & (pl.col("ts_event") < end))
            if part.height:
                yield self.only_day, part
            return
        days = frame.select(pl.col("ts_event").min().alias("lo"), pl.col("ts_event").max())
        lo, hi = (days.item(0, c).date() for c in (0, 1))
        if lo == hi:  # the common case: a batch within one day is not split
            yield lo, frame
            return
        tagged = frame.with_columns(pl.col("ts_event").dt.date().alias("_day"))
        for (d,), g in tagged.group_by("_day", maintain_order=True):
            yield d, g.drop("_day")

    def _day(self, d: date) -> DayOut:
        if d not in self.days:
            inst = self.instrument
            assert inst is not None
            schema_of = {
                "raw_book_events": schemas.raw_book_events(inst),
                "golden_bbo": schemas.golden_bbo(inst),
                "golden_depth": schemas.golden_depth(inst, self.depth),
                "trades": schemas.trades(inst),
            }
            self.days[d] = DayOut(
                d, {n: StagedParquet(self.path_for(n, d), s) for n, s in schema_of.items()}
            )
        return self.days[d]


def day_bounds_ns(day: date) -> tuple[int, int]:
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * NS
    return start, start + 86_400 * NS


def receive_ns(text: pl.Expr) -> pl.Expr:
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


def ingest(
    parts: Iterable[Part],
    path_for: Callable[[str, date], Path],
    market: str | None = None,
    symbol: str | None = None,
    depth: int = schemas.DEFAULT_DEPTH,
    only_day: date | None = None,
    lines_hook: LinesHook | None = None,
    batch_bytes: int = BATCH_BYTES,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Ingest:
    """Stream capture ``parts`` (one market and symbol, in time order) into staged per-day files.

    Records go to the UTC day of their exchange time; with ``only_day`` the other days are read
    and dropped (a neighbour file's edge), and so are quarantined lines received on another day.
    ``msg_id`` counts each day's messages from 0 in arrival order. ``path_for(dataset, day)``
    names the final files. Nothing is published: the caller checks, then publishes or discards.
    """
    staged = Ingest(path_for, depth, only_day)

    def take(name: str, lines: pl.DataFrame, parsed: Future | None, damage: pl.DataFrame) -> None:
        nonlocal market, symbol
        if parsed is not None:
            staged.add(parsed.result(), f"{name} lines {lines['line'][0]}–{lines['line'][-1]}")
            assert staged.instrument is not None
            market, symbol = staged.instrument.market, staged.instrument.symbol
        staged.add_quarantine(damage)

    # Batches are parsed two at a time (the compiled scanner releases the GIL) and taken in order.
    inflight: deque = deque()
    try:
        with ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix="parse") as pool:
            for part in parts:
                batcher = LineBatcher(part.name, batch_bytes, max_line_bytes)
                batcher.skip_before_ns = part.lo_ns
                for lines, damage in batcher.batches(prefetch(part.pieces(), PREFETCH_PIECES)):
                    _add(staged.stats, {"lines": lines.height + damage.height})
                    past_window = _starts_after(lines, part.hi_ns)
                    if lines.height and (part.lo_ns is not None or part.hi_ns is not None):
                        lines = _in_window(lines, part.lo_ns, part.hi_ns)
                    if lines_hook is not None and lines.height:
                        lines = lines_hook(lines)
                    parsed = (
                        pool.submit(parse_lines, lines, market, symbol, depth)
                        if lines.height
                        else None
                    )
                    inflight.append((part.name, lines, parsed, damage))
                    if len(inflight) >= PARSE_THREADS:
                        take(*inflight.popleft())
                    if past_window:  # a capture is written in receive order: nothing later fits
                        break
                _add(
                    staged.stats,
                    {"damaged_files": int(batcher.damaged), "lines": batcher.skipped},
                )
            while inflight:
                take(*inflight.popleft())
    except BaseException:
        staged.discard()
        raise
    return staged.finish()


def stage_capture(
    capture: Capture,
    path_for: Callable[[str, date], Path],
    depth: int = schemas.DEFAULT_DEPTH,
    only_day: date | None = None,
) -> Ingest:
    """A whole in-memory ``Capture`` (the Tardis reader) staged like a streamed ingest."""
    staged = Ingest(path_for, depth, only_day)
    try:
        staged.add(capture)
    except BaseException:
        staged.discard()
        raise
    staged.stats["lines"] = capture.stats.get("lines", 0)
    return staged.finish()


# counted per day after routing (a batch's own figures include other days' records)
_RECOUNTED = ("lines", "messages", "level_updates", "quarantined")


def _add(total: dict[str, int], part: dict[str, int]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + int(v)


def _starts_after(lines: pl.DataFrame, hi: int | None) -> bool:
    """True when a whole batch was received at or after ``hi`` (its first line is)."""
    if hi is None or lines.height == 0:
        return False
    first = lines.head(1).select(receive_ns(pl.col("text")))[0, 0]
    return first is not None and first >= hi


def _in_window(lines: pl.DataFrame, lo: int | None, hi: int | None) -> pl.DataFrame:
    ts = receive_ns(pl.col("text"))
    keep = pl.lit(True)
    if lo is not None:
        keep = keep & (ts >= lo)
    if hi is not None:
        keep = keep & (ts < hi)
    return lines.filter(keep.fill_null(False))


def _renumber(events: pl.DataFrame, out: DayOut) -> pl.DataFrame:
    """msg_id from the day's running count, in arrival order; audit and message table kept."""
    ids = events["msg_id"]
    if not ids.null_count() and ids.is_sorted():  # as parsed: a message starts where ids change
        starts = np.r_[True, ids.to_numpy()[1:] != ids.to_numpy()[:-1]]
        dense = np.cumsum(starts) - 1 + out.next_msg_id
        events = events.with_columns(pl.Series("msg_id", dense, pl.Int64))
        heads = events.filter(pl.Series(starts)).select(MESSAGE_COLUMNS)
    else:
        events = events.with_columns(
            (pl.col("msg_id").rank("dense") - 1 + out.next_msg_id).cast(pl.Int64).alias("msg_id")
        )
        heads = events.unique("msg_id", keep="first", maintain_order=True).select(MESSAGE_COLUMNS)
    out.messages.append(heads)
    out.next_msg_id += heads.height
    out.level_updates += int(events["side"].is_not_null().sum())
    _add(out.audit, audit_events(events))
    return events


def audit_events(events: pl.DataFrame) -> dict[str, int]:
    """Counts of rows that break raw_book_events' value rules (every one must be 0)."""
    level = pl.col("side").is_not_null()
    keys = ("ts_event", "ts_local", "msg_id", "first_update_id", "last_update_id", "is_snapshot")
    row = events.select(
        pl.any_horizontal(pl.col(c).is_null() for c in keys).sum().alias("null_keys"),
        (level & ~pl.col("side").is_in([schemas.BID, schemas.ASK])).sum().alias("bad_side"),
        (level & (pl.col("price").is_null() | (pl.col("price") <= 0))).sum().alias("bad_price"),
        (level & (pl.col("size").is_null() | (pl.col("size") < 0))).sum().alias("bad_size"),
        (pl.col("first_update_id") > pl.col("last_update_id")).sum().alias("u_before_U"),
    ).row(0, named=True)
    return {k: int(v or 0) for k, v in row.items()}

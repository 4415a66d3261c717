"""Columnar message arrays in, book_snapshots frame out: the contract every replayer shares.

A replayer reads ``raw_book_events`` as flat numpy arrays (``EventArrays``), produces one output
row per processed message into ``SnapshotArrays``, and reports ``ReplayCounters``. Keeping the
conversion here means the reference replayer and the compiled engine differ only in their loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
from numba import njit

from obpipeline import schemas
from obpipeline.instruments import Instrument

NO_ID = -1  # stands for a null update id (spot has no pu; snapshots have none)


@dataclass
class EventArrays:
    """raw_book_events as arrays; message ``k`` spans rows ``msg_start[k]:msg_start[k+1]``."""

    msg_start: np.ndarray
    msg_id: np.ndarray
    first_u: np.ndarray
    last_u: np.ndarray
    prev_u: np.ndarray
    is_snapshot: np.ndarray
    ts_event: np.ndarray
    ts_local: np.ndarray
    side: np.ndarray  # int8: 1 bid, -1 ask, 0 for the placeholder row of an empty message
    price: np.ndarray  # int64 unscaled
    size: np.ndarray  # int64 unscaled

    @property
    def n_messages(self) -> int:
        return len(self.msg_id)


@njit(cache=True, nogil=True)
def _message_starts(msg):
    """Row offsets where ``msg`` changes (plus the end); ok=False if ids do not strictly increase."""
    n = len(msg)
    count = 1
    for r in range(1, n):
        if msg[r] != msg[r - 1]:
            count += 1
    starts = np.empty(count + 1, np.int64)
    starts[0] = 0
    k = 1
    increasing = True
    for r in range(1, n):
        if msg[r] != msg[r - 1]:
            if msg[r] < msg[r - 1]:
                increasing = False
            starts[k] = r
            k += 1
    starts[count] = n
    return starts, increasing


def message_starts(msg: np.ndarray) -> np.ndarray:
    """Offsets of each message's first row (+ the end), checking that messages are contiguous."""
    if len(msg) == 0:
        return np.zeros(1, np.int64)
    starts, increasing = _message_starts(np.ascontiguousarray(msg, np.int64))
    # Strictly increasing ids at the boundaries prove contiguity; otherwise check uniqueness.
    if not increasing and len(np.unique(msg[starts[:-1]])) != len(starts) - 1:
        raise ValueError("raw_book_events: rows of one message are not contiguous")
    return starts


def event_arrays(events: pl.DataFrame) -> EventArrays:
    """Split raw_book_events (rows grouped by ``msg_id`` in arrival order) into flat arrays.

    Per-message columns are gathered at each message's first row before leaving Polars, so a
    30 M-row day costs only its level columns (side, price, size) in full.
    """
    msg = events["msg_id"].to_numpy()
    starts = message_starts(msg)
    first = pl.Series(starts[:-1])
    head = events.select(
        pl.col(
            "msg_id",
            "first_update_id",
            "last_update_id",
            "prev_update_id",
            "is_snapshot",
            "ts_event",
            "ts_local",
        ).gather(first)
    )

    def ids(col: str) -> np.ndarray:
        return head[col].fill_null(NO_ID).to_numpy().astype(np.int64)

    return EventArrays(
        msg_start=starts,
        msg_id=ids("msg_id"),
        first_u=ids("first_update_id"),
        last_u=ids("last_update_id"),
        prev_u=ids("prev_update_id"),
        is_snapshot=head["is_snapshot"].to_numpy().astype(np.bool_),
        ts_event=head["ts_event"].dt.epoch("ns").to_numpy().astype(np.int64),
        ts_local=head["ts_local"].dt.epoch("ns").to_numpy().astype(np.int64),
        side=events["side"].fill_null(0).to_numpy().astype(np.int8),
        price=schemas.unscaled(events["price"]),
        size=schemas.unscaled(events["size"]),
    )


@dataclass
class ReplayCounters:
    """What a replay saw and did; every dropped or doubtful message is counted somewhere."""

    messages: int = 0  # book messages in the input (diffs + REST snapshots)
    level_updates: int = 0  # level changes carried by the input's diff messages
    snapshots: int = 0  # REST snapshots in the input
    rows: int = 0  # book_snapshots rows emitted
    gaps: int = 0  # sequence breaks detected while in sync
    resyncs: int = (
        0  # times a snapshot brought an invalid book back in sync (after a gap or mismatch)
    )
    crossed: int = (
        0  # valid-book messages after which the book was crossed or locked (then repaired)
    )
    duplicates: int = 0  # diffs already applied (u <= current id), dropped
    stale: int = 0  # diffs older than the snapshot that synced the book, dropped
    invalid_rows: int = 0  # rows emitted while the book was out of sync
    snapshot_checks: int = 0  # REST snapshots aligned with the book (same update id) and compared
    snapshot_mismatches: int = 0  # of those, how many differed (the book was then resynced)
    unsynced_at_end: int = 0  # 1 if the stream ended with the book out of sync
    checksum_mismatched: int = 0  # venue checksums that did not match (book/checksum.py)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Book:
    """A full book state (unscaled ints), used for checkpoints."""

    bid_price: np.ndarray
    bid_size: np.ndarray
    ask_price: np.ndarray
    ask_size: np.ndarray
    last_update_id: int
    is_valid: bool
    ts_event: int = 0
    ts_local: int = 0


@dataclass
class SnapshotArrays:
    """Output rows, preallocated for ``capacity`` rows of ``depth`` levels."""

    depth: int
    capacity: int
    ts_event: np.ndarray = field(init=False)
    ts_local: np.ndarray = field(init=False)
    msg_id: np.ndarray = field(init=False)
    last_update_id: np.ndarray = field(init=False)
    bid_price: np.ndarray = field(init=False)
    bid_size: np.ndarray = field(init=False)
    ask_price: np.ndarray = field(init=False)
    ask_size: np.ndarray = field(init=False)
    n_bid: np.ndarray = field(init=False)
    n_ask: np.ndarray = field(init=False)
    is_valid: np.ndarray = field(init=False)
    crossed_repaired: np.ndarray = field(init=False)
    resynced: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        c, d = self.capacity, self.depth
        for name in ("ts_event", "ts_local", "msg_id", "last_update_id"):
            setattr(self, name, np.zeros(c, np.int64))
        for name in ("bid_price", "bid_size", "ask_price", "ask_size"):
            setattr(self, name, np.zeros((c, d), np.int64))
        self.n_bid = np.zeros(c, np.int32)
        self.n_ask = np.zeros(c, np.int32)
        for name in ("is_valid", "crossed_repaired", "resynced"):
            setattr(self, name, np.zeros(c, np.bool_))


@njit(cache=True, nogil=True)
def _decimal128_columns(values, present, rows, out):
    """(rows, depth) int64 levels → per level an Arrow decimal128 buffer (lo word, sign word).

    Polars holds decimals as 128-bit integers: handing it that layout makes the Series zero-copy
    (converting from decimal64 costs ~30 ns a value inside Polars). Absent levels are written 0.
    """
    depth = values.shape[1]
    for r in range(rows):
        n = present[r]
        for i in range(depth):
            v = values[r, i] if i < n else 0
            out[i, r, 0] = v
            out[i, r, 1] = v >> 63


@njit(cache=True, nogil=True)
def level_validity(present, rows, depth):
    """Arrow validity bitmaps (little-endian bits) per level and each level's null count.

    Level i of row r is present when ``i < present[r]``. Levels every row has (usually all of
    them) get no bitmap work: their null count is 0 and their bitmap is not read.
    """
    nbytes = (rows + 7) // 8
    nulls = np.zeros(depth, np.int64)
    full = depth
    for r in range(rows):
        if present[r] < full:
            full = max(present[r], 0)
    bits = np.zeros((depth, nbytes), np.uint8)
    for i in range(full, depth):
        count = 0
        for b in range(nbytes):
            v = 0
            for k in range(min(8, rows - 8 * b)):
                if present[8 * b + k] > i:
                    v |= 1 << k
                else:
                    count += 1
            bits[i, b] = v
        nulls[i] = count
    return bits, nulls


def _decimal_series(
    names: list[str], values: np.ndarray, present: np.ndarray, rows: int, scale: int
) -> list[pl.Series]:
    d = values.shape[1]
    buf = np.empty((d, rows, 2), np.int64)
    _decimal128_columns(values, present, rows, buf)
    bits, nulls = level_validity(present, rows, d)
    dtype = pa.decimal128(18, scale)
    series = []
    for i, name in enumerate(names):
        validity = pa.py_buffer(bits[i]) if nulls[i] else None
        arr = pa.Array.from_buffers(dtype, rows, [validity, pa.py_buffer(buf[i])])
        series.append(pl.Series(name, arr))
    return series


def snapshots_frame(out: SnapshotArrays, rows: int, instrument: Instrument) -> pl.DataFrame:
    """The first ``rows`` output rows as a book_snapshots frame (exact decimals, nulls past the book)."""
    d = out.depth
    ps, ss = instrument.price_scale, instrument.size_scale
    bp, bs, ap, asz = schemas.level_names(d)
    n_bid = np.ascontiguousarray(out.n_bid[:rows])
    n_ask = np.ascontiguousarray(out.n_ask[:rows])
    columns: list[pl.Series] = [
        pl.Series("ts_event", out.ts_event[:rows]).cast(schemas.TS),
        pl.Series("ts_local", out.ts_local[:rows]).cast(schemas.TS),
        pl.Series("msg_id", out.msg_id[:rows]),
        pl.Series("last_update_id", out.last_update_id[:rows]),
    ]
    columns += _decimal_series(bp, out.bid_price, n_bid, rows, ps)
    columns += _decimal_series(bs, out.bid_size, n_bid, rows, ss)
    columns += _decimal_series(ap, out.ask_price, n_ask, rows, ps)
    columns += _decimal_series(asz, out.ask_size, n_ask, rows, ss)
    columns += [
        pl.Series("is_valid", out.is_valid[:rows]),
        pl.Series("crossed_repaired", out.crossed_repaired[:rows]),
        pl.Series("resynced", out.resynced[:rows]),
    ]
    return schemas.conform(
        pl.DataFrame(columns), schemas.book_snapshots(instrument, d), "book_snapshots"
    )


@dataclass
class ReplayResult:
    snapshots: pl.DataFrame
    checkpoint: Book
    counters: ReplayCounters

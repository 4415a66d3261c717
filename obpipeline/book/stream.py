"""Columnar message arrays in, book_snapshots frame out: the contract every replayer shares.

A replayer reads ``raw_book_events`` as flat numpy arrays (``EventArrays``), produces one output
row per processed message into ``SnapshotArrays``, and reports ``ReplayCounters``. Keeping the
conversion here means the reference replayer and the compiled engine differ only in their loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

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


def event_arrays(events: pl.DataFrame) -> EventArrays:
    """Split raw_book_events (rows grouped by ``msg_id`` in arrival order) into flat arrays."""
    n = events.height
    msg = events["msg_id"].to_numpy()
    if n:
        boundaries = np.flatnonzero(np.diff(msg) != 0) + 1
        starts = np.concatenate(([0], boundaries, [n])).astype(np.int64)
        if len(np.unique(msg[starts[:-1]])) != len(starts) - 1:
            raise ValueError("raw_book_events: rows of one message are not contiguous")
    else:
        starts = np.zeros(1, np.int64)
    first = starts[:-1]

    def ids(col: str) -> np.ndarray:
        return events[col].fill_null(NO_ID).to_numpy()[first].astype(np.int64)

    price, _ = schemas.to_unscaled(events["price"])
    size, _ = schemas.to_unscaled(events["size"])
    return EventArrays(
        msg_start=starts,
        msg_id=msg[first].astype(np.int64),
        first_u=ids("first_update_id"),
        last_u=ids("last_update_id"),
        prev_u=ids("prev_update_id"),
        is_snapshot=events["is_snapshot"].to_numpy()[first].astype(np.bool_),
        ts_event=events["ts_event"].dt.epoch("ns").to_numpy()[first].astype(np.int64),
        ts_local=events["ts_local"].dt.epoch("ns").to_numpy()[first].astype(np.int64),
        side=events["side"].fill_null(0).to_numpy().astype(np.int8),
        price=price,
        size=size,
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


def snapshots_frame(out: SnapshotArrays, rows: int, instrument: Instrument) -> pl.DataFrame:
    """The first ``rows`` output rows as a book_snapshots frame (exact decimals, nulls past the book)."""
    d = out.depth
    ps, ss = instrument.price_scale, instrument.size_scale
    levels = np.arange(d)
    bid_present = levels[None, :] < out.n_bid[:rows, None]
    ask_present = levels[None, :] < out.n_ask[:rows, None]
    bp, bs, ap, asz = schemas.level_names(d)
    columns: list[pl.Series] = [
        pl.Series("ts_event", out.ts_event[:rows]).cast(schemas.TS),
        pl.Series("ts_local", out.ts_local[:rows]).cast(schemas.TS),
        pl.Series("msg_id", out.msg_id[:rows]),
        pl.Series("last_update_id", out.last_update_id[:rows]),
    ]
    for names, values, present, scale in (
        (bp, out.bid_price, bid_present, ps),
        (bs, out.bid_size, bid_present, ss),
        (ap, out.ask_price, ask_present, ps),
        (asz, out.ask_size, ask_present, ss),
    ):
        for i, name in enumerate(names):
            columns.append(schemas.from_unscaled(values[:rows, i], scale, present[:, i], name))
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

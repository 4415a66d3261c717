"""Full-depth book state in and out (the book_checkpoint dataset): what day D+1 starts from.

A checkpoint carries its identity in the parquet footer (key ``obpipeline.checkpoint``: venue,
market, symbol, the day it closes, last update id, schema version), so a book of another
instrument or another day is refused on load, naming both sides, instead of silently replaying
a day from the wrong book (docs/DECISIONS.md, "Checkpoint identity").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from obpipeline import lake, schemas
from obpipeline.book.stream import Book
from obpipeline.errors import CheckpointMismatch
from obpipeline.instruments import Instrument

SCHEMA_VERSION = 2  # 1: the legacy file without identity
IDENTITY_KEY = "obpipeline.checkpoint"


@dataclass(frozen=True)
class Identity:
    """What a checkpoint file is the book of."""

    venue: str
    market: str
    symbol: str
    day: str | None  # ISO date of the day whose end this book is; None if the writer did not say
    last_update_id: int
    schema_version: int = SCHEMA_VERSION

    def names(self) -> str:
        return f"{self.venue}-{self.market} {self.symbol} closing {self.day or 'an unknown day'}"


def to_frame(book: Book, instrument: Instrument) -> pl.DataFrame:
    """Bids (best first) then asks (best first); an empty book keeps one null-side row."""
    side = np.concatenate(
        [
            np.full(len(book.bid_price), schemas.BID, np.int8),
            np.full(len(book.ask_price), schemas.ASK, np.int8),
        ]
    )
    price = np.concatenate([book.bid_price, book.ask_price]).astype(np.int64)
    size = np.concatenate([book.bid_size, book.ask_size]).astype(np.int64)
    present = np.ones(len(side), np.bool_)
    if len(side) == 0:
        side, price, size, present = (
            np.zeros(1, np.int8),
            np.zeros(1, np.int64),
            np.zeros(1, np.int64),
            np.zeros(1, np.bool_),
        )
    n = len(side)
    frame = pl.DataFrame(
        [
            pl.Series("side", side).set(pl.Series(~present), None)
            if not present.all()
            else pl.Series("side", side),
            schemas.from_unscaled(price, instrument.price_scale, present, "price"),
            schemas.from_unscaled(size, instrument.size_scale, present, "size"),
            pl.Series("last_update_id", np.full(n, book.last_update_id, np.int64)),
            pl.Series("is_valid", np.full(n, book.is_valid, np.bool_)),
            pl.Series("ts_event", np.full(n, book.ts_event, np.int64)).cast(schemas.TS),
            pl.Series("ts_local", np.full(n, book.ts_local, np.int64)).cast(schemas.TS),
        ]
    )
    return schemas.conform(frame, schemas.book_checkpoint(instrument), "book_checkpoint")


def from_frame(frame: pl.DataFrame) -> Book:
    if frame.height == 0:
        raise ValueError("book_checkpoint is empty: it must hold at least its state row")
    for col in ("last_update_id", "is_valid"):
        if frame[col].n_unique() != 1:
            raise ValueError(f"book_checkpoint: {col} differs between rows")
    price, _ = schemas.to_unscaled(frame["price"])
    size, _ = schemas.to_unscaled(frame["size"])
    side = frame["side"].fill_null(0).to_numpy()
    bids, asks = side == schemas.BID, side == schemas.ASK
    bid_order = np.argsort(-price[bids], kind="stable")
    ask_order = np.argsort(price[asks], kind="stable")
    return Book(
        bid_price=price[bids][bid_order],
        bid_size=size[bids][bid_order],
        ask_price=price[asks][ask_order],
        ask_size=size[asks][ask_order],
        last_update_id=int(frame["last_update_id"][0]),
        is_valid=bool(frame["is_valid"][0]),
        ts_event=int(frame["ts_event"].dt.epoch("ns")[0]),
        ts_local=int(frame["ts_local"].dt.epoch("ns")[0]),
    )


def write(
    book: Book, instrument: Instrument, path: Path | str, day: date | str | None = None
) -> Path:
    """Write the book with its identity; ``day`` is the day it closes (pass it: a checkpoint
    without a day cannot be checked as the D-1 book of day D)."""
    ident = Identity(
        instrument.venue,
        instrument.market,
        instrument.symbol,
        None if day is None else date.fromisoformat(str(day)).isoformat(),
        int(book.last_update_id),
    )
    metadata = {IDENTITY_KEY: json.dumps(asdict(ident), sort_keys=True)}
    return lake.write_parquet_atomic(to_frame(book, instrument), Path(path), metadata=metadata)


def identity(path: Path | str) -> Identity | None:
    """The identity stored in a checkpoint file; None for a legacy file (written without one)."""
    raw = pl.read_parquet_metadata(Path(path)).get(IDENTITY_KEY)
    if raw is None:
        return None
    try:
        fields = json.loads(raw)
        return Identity(**fields)
    except (ValueError, TypeError) as exc:
        raise CheckpointMismatch(f"book checkpoint {path}: unreadable identity ({exc})") from None


def read(
    path: Path | str,
    expect_instrument: Instrument | None = None,
    expect_day: date | str | None = None,
) -> Book:
    """The book in a checkpoint file, checked against what the caller expects.

    ``expect_instrument``: venue, market and symbol must match. ``expect_day``: the checkpoint
    must close that day (day D's replay passes D-1). A mismatch, or a legacy checkpoint without
    identity when anything is expected, raises CheckpointMismatch naming both sides.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"book checkpoint not found: {path}")
    ident = identity(path)
    book = from_frame(pl.read_parquet(path))
    if expect_instrument is None and expect_day is None:
        return book
    if ident is None:
        raise CheckpointMismatch(
            f"book checkpoint {path} carries no identity (written before checkpoints named their "
            "instrument and day): it cannot be checked; re-materialise it, or start the day "
            "from its own exchange snapshot"
        )
    if ident.schema_version > SCHEMA_VERSION:
        raise CheckpointMismatch(
            f"book checkpoint {path}: schema version {ident.schema_version} is newer than "
            f"this program's {SCHEMA_VERSION}"
        )
    if ident.last_update_id != book.last_update_id:
        raise CheckpointMismatch(
            f"book checkpoint {path}: identity says last update id {ident.last_update_id}, "
            f"the book says {book.last_update_id}"
        )
    if expect_instrument is not None:
        want = (expect_instrument.venue, expect_instrument.market, expect_instrument.symbol)
        have = (ident.venue, ident.market, ident.symbol)
        if want != have:
            raise CheckpointMismatch(
                f"book checkpoint {path} is the book of {ident.names()}, not of "
                f"{'-'.join(want[:2])} {want[2]}"
            )
    if expect_day is not None:
        want_day = date.fromisoformat(str(expect_day)).isoformat()
        if ident.day != want_day:
            raise CheckpointMismatch(
                f"book checkpoint {path} is the book of {ident.names()}, expected the book "
                f"closing {want_day}"
            )
    return book


def continuation_failures(counters: dict[str, int], started_from: Book | None) -> list[str]:
    """Why a replay's result cannot be trusted as a day's book, from its counters
    (``ReplayCounters.to_dict()``): it applied no message at all, or every diff was older than
    the checkpoint it started from (the checkpoint is not the previous day's book)."""
    failures = []
    diffs = counters["messages"] - counters["snapshots"]
    applied = counters["rows"] - counters["invalid_rows"]
    if started_from is not None and diffs > 0 and counters["duplicates"] == diffs:
        failures.append(
            f"every one of the {diffs} diffs is older than the checkpoint (last update id "
            f"{started_from.last_update_id}): the checkpoint is not the previous day's book"
        )
    if applied <= 0:
        failures.append(
            f"no message was applied to a valid book ({counters['messages']} messages, "
            f"{counters['duplicates']} duplicates, {counters['stale']} stale)"
        )
    return failures

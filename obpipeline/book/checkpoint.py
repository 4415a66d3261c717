"""Full-depth book state in and out (the book_checkpoint dataset): what day D+1 starts from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from obpipeline import lake, schemas
from obpipeline.book.stream import Book
from obpipeline.instruments import Instrument


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


def write(book: Book, instrument: Instrument, path: Path | str) -> Path:
    return lake.write_parquet_atomic(to_frame(book, instrument), Path(path))


def read(path: Path | str) -> Book:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"book checkpoint not found: {path}")
    return from_frame(pl.read_parquet(path))

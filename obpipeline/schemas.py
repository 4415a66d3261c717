"""The Polars schema of every dataset: one source of truth for writers, readers and checks.

Conventions shared by all datasets:

* Times are ``Datetime("ns", "UTC")``: ``ts_event`` is the exchange's time, ``ts_local`` the
  receive time of the line that carried the record.
* Prices and sizes are ``Decimal(18, scale)`` with the instrument's scales, so they compare
  exactly equal to the exchange's decimal strings. In memory the engines work on the unscaled
  int64 values (``to_unscaled`` / ``from_unscaled`` convert without copying through floats).
* ``side`` is ``Int8``: ``BID = 1``, ``ASK = -1``.

raw_book_events has one row per price-level change, in exchange arrival order. A message with no
level changes (Binance sends them) keeps one row with null ``side``/``price``/``size`` so that
the update-id chain stays complete. Snapshot messages (REST depth) have ``is_snapshot`` true,
``first_update_id == last_update_id == lastUpdateId`` and null ``prev_update_id``.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from obpipeline import book
from obpipeline.instruments import Instrument

BID: int = 1
ASK: int = -1
DEFAULT_DEPTH = book.DEFAULT_DEPTH
TS = pl.Datetime("ns", "UTC")


def price_dtype(instrument: Instrument) -> pl.Decimal:
    return pl.Decimal(18, instrument.price_scale)


def size_dtype(instrument: Instrument) -> pl.Decimal:
    return pl.Decimal(18, instrument.size_scale)


def raw_book_events(instrument: Instrument) -> pl.Schema:
    return pl.Schema(
        {
            "ts_event": TS,
            "ts_local": TS,
            "msg_id": pl.Int64,
            "first_update_id": pl.Int64,
            "last_update_id": pl.Int64,
            "prev_update_id": pl.Int64,
            "is_snapshot": pl.Boolean,
            "side": pl.Int8,
            "price": price_dtype(instrument),
            "size": size_dtype(instrument),
        }
    )


def golden_bbo(instrument: Instrument) -> pl.Schema:
    """The exchange's own best bid/offer (bookTicker), stamped with the update id it reflects."""
    return pl.Schema(
        {
            "ts_event": TS,
            "ts_local": TS,
            "update_id": pl.Int64,
            "bid_price": price_dtype(instrument),
            "bid_size": size_dtype(instrument),
            "ask_price": price_dtype(instrument),
            "ask_size": size_dtype(instrument),
        }
    )


def golden_depth(instrument: Instrument, depth: int = DEFAULT_DEPTH) -> pl.Schema:
    """Partial-book streams (depth5/10/20) stamped with their update id, wide like book_snapshots."""
    return pl.Schema(
        {
            "ts_event": TS,
            "ts_local": TS,
            "update_id": pl.Int64,
            "levels": pl.Int16,
            **_level_columns(instrument, depth),
        }
    )


def trades(instrument: Instrument) -> pl.Schema:
    return pl.Schema(
        {
            "ts_event": TS,
            "ts_local": TS,
            "trade_id": pl.Int64,
            "price": price_dtype(instrument),
            "size": size_dtype(instrument),
            "is_buyer_maker": pl.Boolean,  # true: the aggressor sold
        }
    )


def golden_checksum() -> pl.Schema:
    """The venue's CRC32 of its top levels after a message (OKX, Bitget, Kraken), one row per
    message that carried one: ``msg_id`` is the day's raw_book_events message. The checksum
    string prints the venue's own decimals: the day's widest printed ones are kept per row (one
    value a day, nothing once encoded), ``file``/``line`` locate a mismatch in the recording."""
    return pl.Schema(
        {
            "msg_id": pl.Int64,
            "ts_event": TS,
            "ts_local": TS,
            "checksum": pl.Int64,  # unsigned 32-bit value (OKX/Bitget's signed int32 mod 2**32)
            "price_decimals": pl.Int8,
            "size_decimals": pl.Int8,
            "file": pl.String,
            "line": pl.Int64,
        }
    )


def book_checkpoint(instrument: Instrument) -> pl.Schema:
    """Full book at the end of a replay; one row per level (one null-side row if empty).

    ``last_update_id`` / ``is_valid`` / ``ts_*`` repeat on every row: the state to resume from.
    """
    return pl.Schema(
        {
            "side": pl.Int8,
            "price": price_dtype(instrument),
            "size": size_dtype(instrument),
            "last_update_id": pl.Int64,
            "is_valid": pl.Boolean,
            "ts_event": TS,
            "ts_local": TS,
        }
    )


def book_snapshots(instrument: Instrument, depth: int = DEFAULT_DEPTH) -> pl.Schema:
    """Top-N book after every applied exchange message (levels absent → null)."""
    return pl.Schema(
        {
            "ts_event": TS,
            "ts_local": TS,
            "msg_id": pl.Int64,
            "last_update_id": pl.Int64,
            **_level_columns(instrument, depth),
            "is_valid": pl.Boolean,
            "crossed_repaired": pl.Boolean,
            "resynced": pl.Boolean,
        }
    )


def quarantine() -> pl.Schema:
    """Records that could not be ingested: kept verbatim with where they came from and why."""
    return pl.Schema(
        {
            "file": pl.String,
            "line": pl.Int64,
            "reason": pl.String,
            "record": pl.String,
        }
    )


def level_names(depth: int) -> tuple[list[str], list[str], list[str], list[str]]:
    """(bid_price_i, bid_size_i, ask_price_i, ask_size_i) column names for levels 1..depth."""
    r = range(1, depth + 1)
    return (
        [f"bid_price_{i}" for i in r],
        [f"bid_size_{i}" for i in r],
        [f"ask_price_{i}" for i in r],
        [f"ask_size_{i}" for i in r],
    )


def _level_columns(instrument: Instrument, depth: int) -> dict[str, pl.DataType]:
    bp, bs, ap, asz = level_names(depth)
    p, s = price_dtype(instrument), size_dtype(instrument)
    return {
        **dict.fromkeys(bp, p),
        **dict.fromkeys(bs, s),
        **dict.fromkeys(ap, p),
        **dict.fromkeys(asz, s),
    }


def depth_of(schema_or_frame: pl.Schema | pl.DataFrame | pl.LazyFrame) -> int:
    """Number of levels in a book_snapshots / golden_depth frame."""
    names = (
        schema_or_frame.collect_schema().names()
        if isinstance(schema_or_frame, pl.LazyFrame)
        else list(
            schema_or_frame.columns
            if isinstance(schema_or_frame, pl.DataFrame)
            else schema_or_frame.names()
        )
    )
    return sum(1 for n in names if n.startswith("bid_price_"))


def from_unscaled(
    values: np.ndarray, scale: int, valid: np.ndarray | None = None, name: str = ""
) -> pl.Series:
    """int64 fixed-point values → exact ``Decimal(18, scale)`` Series (zero-copy via Arrow decimal64).

    ``valid`` (bool array) marks non-null entries; None means all present.
    """
    values = np.ascontiguousarray(values, dtype=np.int64)
    validity = None
    if valid is not None and not valid.all():
        validity = pa.py_buffer(np.packbits(valid.astype(np.uint8), bitorder="little"))
    arr = pa.Array.from_buffers(
        pa.decimal64(18, scale), len(values), [validity, pa.py_buffer(values)]
    )
    return pl.Series(name, arr)


def decimal_view(series: pl.Series) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The one int64 view of a Decimal column, without copying: ``(words, bits, offset, nulls)``.

    ``words`` is read-only, one row per value and ``width / 8`` int64 words per row; column 0 is
    the unscaled value (little-endian: the low word of a decimal128 is its value when
    |value| < 2**63, always true at precision 18). ``bits`` is the Arrow validity bitmap, value
    ``i`` at bit ``offset + i`` (all ones when there is no null), ``nulls`` the null count.
    Every int64 reading of decimals (``to_unscaled``, ``unscaled``, the feature kernels) is this.
    """
    if not isinstance(series.dtype, pl.Decimal):
        raise TypeError(f"{series.name}: expected a Decimal column, got {series.dtype}")
    arr = series.to_arrow()  # one chunk: zero-copy
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    width = arr.type.byte_width
    if width not in (8, 16):
        raise TypeError(f"{series.name}: unsupported decimal width {width}")
    n = len(arr)
    data = arr.buffers()[1]
    if n == 0 or data is None:
        words = np.zeros((n, 1), dtype=np.int64)
        words.setflags(write=False)
    else:
        words = np.frombuffer(data, dtype=np.int64).reshape(-1, width // 8)
        words = words[arr.offset : arr.offset + n]
    validity = arr.buffers()[0]
    if validity is None or arr.null_count == 0:
        bits = np.full((n + arr.offset + 7) // 8 + 1, 255, dtype=np.uint8)
        bits.setflags(write=False)
    else:
        bits = np.frombuffer(validity, dtype=np.uint8)
    return words, bits, arr.offset, arr.null_count


def unscaled(series: pl.Series) -> np.ndarray:
    """Decimal Series → writable int64 unscaled values, 0 for nulls (one copy; no validity array
    is built when there is no null, which matters on a 30 M-row day)."""
    values, _ = _unscaled(series, want_valid=False)
    return values


def to_unscaled(series: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Decimal Series → (int64 unscaled values with 0 for nulls, bool validity)."""
    values, valid = _unscaled(series, want_valid=True)
    assert valid is not None
    return values, valid


def _unscaled(series: pl.Series, want_valid: bool) -> tuple[np.ndarray, np.ndarray | None]:
    words, bits, offset, nulls = decimal_view(series)
    n = len(words)
    values = np.empty(n, np.int64)
    values[:] = words[:, 0]  # one copy (strided for decimal128) into writable memory
    if nulls == 0:
        return values, np.ones(n, np.bool_) if want_valid else None
    valid = np.unpackbits(bits, bitorder="little")[offset : offset + n].astype(np.bool_)
    values[~valid] = 0
    return values, valid


def empty(schema: pl.Schema) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def conform(frame: pl.DataFrame, schema: pl.Schema, dataset: str) -> pl.DataFrame:
    """Select the schema's columns in order and check their types; a mismatch is a clear error."""
    missing = [c for c in schema.names() if c not in frame.columns]
    if missing:
        raise ValueError(f"{dataset}: missing columns {missing}")
    out = frame.select(schema.names())
    have = out.schema  # built once: a wide frame (golden_depth) has ~80 columns
    wrong = {c: (str(have[c]), str(t)) for c, t in schema.items() if have[c] != t}
    if wrong:
        raise ValueError(f"{dataset}: column types differ from the schema (got, want): {wrong}")
    return out

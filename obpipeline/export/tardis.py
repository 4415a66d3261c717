"""Binance captures (real or simulated) → Tardis.dev CSV.gz files with known truth.

Why: no full Tardis day is available here, and a Tardis file whose every book state is known is
what proves the Tardis path (adapter + synthetic ids + time-based golden matching) exact. The
capture is replayed with ``obpipeline.book.replay``; the messages applied to a *valid* book are
written in the order they were applied:

* ``incremental_book_L2``: a REST snapshot that (re)synced the book → ``is_snapshot=true`` rows
  (it replaces the book, as in Tardis); every diff applied in sync → its level rows. Diffs before
  the first sync, duplicates, stale diffs and snapshots that were only checks are left out (Tardis
  files carry what rebuilds the book, nothing else). Messages with no level change have no rows.
  With a checkpoint (a continuation capture), the file opens with the checkpoint's full book as
  a snapshot, as a Tardis day file opens with one.
* ``book_snapshot_<depth>`` (25 by default): the top ``depth`` levels after each exported message,
  written only when they changed (Tardis's rule); ``quotes``: the top of book, only on change.
* ``trades`` (aggressor side from ``is_buyer_maker``) and ``book_ticker`` (the capture's own
  bookTicker stream).

``local_timestamp`` is the message's receive time in µs, made strictly increasing across
messages (+1 µs on a tie or a step back, e.g. the diffs replayed right after a snapshot that
arrived later than they did), so that grouping rows by ``local_timestamp`` gives back exactly the
exported messages. ``timestamp`` is the exchange time in µs. Numbers are plain decimals without
trailing zeros (Tardis writes shortest float strings: the same text for on-grid values).

Files are written to a temporary name and renamed, gzip with mtime 0 and no name: same input,
same bytes.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from obpipeline import book, schemas
from obpipeline.book.stream import Book, ReplayResult
from obpipeline.instruments import TARDIS_EXCHANGES, Instrument
from obpipeline.sources.binance import read_capture
from obpipeline.sources.capture import Capture
from obpipeline.sources.tardis import L2_COLUMNS, QUOTES_COLUMNS, TRADES_COLUMNS, snapshot_columns

DEFAULT_DEPTH = 25
CHUNK_ROWS = 500_000


@dataclass
class TardisExport:
    """What was written, and the book after every exported message (for exactness tests)."""

    exchange: str
    symbol: str
    instrument: Instrument
    files: dict[str, Path]
    # book_snapshots rows (``depth`` levels) of the exported messages in file order, with the
    # ``local_timestamp`` (µs) they were given; row 0 is the checkpoint's book when one opened it.
    rows: pl.DataFrame
    replay: ReplayResult
    stats: dict[str, int] = field(default_factory=dict)


def export_capture(
    paths: Sequence[Path | str],
    out_dir: Path | str,
    checkpoint: Book | None = None,
    depth: int = DEFAULT_DEPTH,
    market: str | None = None,
    symbol: str | None = None,
    engine: str = book.DEFAULT_ENGINE,
    compresslevel: int = 6,
) -> TardisExport:
    """Replay Binance capture files (one stream, time order) and write them as Tardis CSV.gz."""
    capture = read_capture(paths, market=market, symbol=symbol)
    result = book.replay(capture.events, capture.instrument, depth, checkpoint, engine=engine)
    return export_replay(capture, result, out_dir, checkpoint, compresslevel)


def export_replay(
    capture: Capture,
    result: ReplayResult,
    out_dir: Path | str,
    checkpoint: Book | None = None,
    compresslevel: int = 6,
) -> TardisExport:
    """Write the Tardis files of an already replayed capture (see the module docstring)."""
    inst = capture.instrument
    exchange = TARDIS_EXCHANGES[inst.market]
    depth = schemas.depth_of(result.snapshots)
    names = [n for group in schemas.level_names(depth) for n in group]
    messages = capture.events.group_by("msg_id", maintain_order=True).agg(
        pl.col("is_snapshot").first(), pl.col("side").is_not_null().sum().alias("n_levels")
    )
    rows = (
        result.snapshots.join(messages, on="msg_id", how="left", maintain_order="left")
        .filter(
            pl.col("is_valid")
            & (pl.col("n_levels") > 0)
            & (~pl.col("is_snapshot") | pl.col("resynced"))
        )
        .select(
            "msg_id",
            "is_snapshot",
            pl.col("ts_event").dt.epoch("us").alias("timestamp"),
            pl.col("ts_local").dt.epoch("us").alias("local_timestamp"),
            *names,
        )
    )
    if rows["msg_id"].n_unique() != rows.height:
        raise ValueError("a message was applied twice to a valid book: cannot export it once")
    opening = None
    if checkpoint is not None and checkpoint.is_valid:
        # Stamped with the first message's arrival (a Tardis day file opens with its snapshot).
        first_local = rows["local_timestamp"][0] if rows.height else checkpoint.ts_local // 1000
        opening = _checkpoint_row(checkpoint, inst, depth, names, first_local)
        rows = pl.concat([opening, rows], how="vertical")
    raw = rows["local_timestamp"].to_numpy()
    k = np.arange(len(raw), dtype=np.int64)
    rows = rows.with_columns(
        pl.Series("local_timestamp", np.maximum.accumulate(raw - k) + k if len(raw) else raw)
    )
    stats = {
        "messages": rows.height,
        "snapshot_messages": int(rows["is_snapshot"].sum()),
        "local_timestamps_shifted": int((rows["local_timestamp"].to_numpy() != raw).sum()),
    }
    l2 = _l2_rows(capture, rows, checkpoint if opening is not None else None, inst)
    stats["incremental_book_L2_rows"] = l2.height
    snap = _changed(rows, names)
    quotes = _changed(rows, ["bid_price_1", "bid_size_1", "ask_price_1", "ask_size_1"])
    stats.update(book_snapshot_rows=snap.height, quotes_rows=quotes.height)
    start = rows["local_timestamp"][0] if rows.height else 0
    day = pl.Series([start]).cast(pl.Datetime("us", "UTC")).dt.date()[0]
    out_dir = Path(out_dir)
    sym = inst.symbol

    def path(kind: str) -> Path:
        return out_dir / f"{exchange}_{kind}_{day}_{sym}.csv.gz"

    head = [pl.lit(exchange).alias("exchange"), pl.lit(sym).alias("symbol")]
    files: dict[str, Path] = {}
    files["incremental_book_L2"] = write_csv_gz(
        l2.select(
            *head,
            "timestamp",
            "local_timestamp",
            pl.when(pl.col("is_snapshot"))
            .then(pl.lit("true"))
            .otherwise(pl.lit("false"))
            .alias("is_snapshot"),
            pl.when(pl.col("side") == schemas.BID)
            .then(pl.lit("bid"))
            .otherwise(pl.lit("ask"))
            .alias("side"),
            number("price").alias("price"),
            number("size").alias("amount"),
        ),
        path("incremental_book_L2"),
        L2_COLUMNS,
        compresslevel,
    )
    snap_cols: list[pl.Expr] = []
    for i in range(1, depth + 1):
        snap_cols += [
            number(f"ask_price_{i}").alias(f"asks[{i - 1}].price"),
            number(f"ask_size_{i}").alias(f"asks[{i - 1}].amount"),
            number(f"bid_price_{i}").alias(f"bids[{i - 1}].price"),
            number(f"bid_size_{i}").alias(f"bids[{i - 1}].amount"),
        ]
    files[f"book_snapshot_{depth}"] = write_csv_gz(
        snap.select(*head, "timestamp", "local_timestamp", *snap_cols),
        path(f"book_snapshot_{depth}"),
        snapshot_columns(depth),
        compresslevel,
    )
    bbo_cols = [
        ("ask_size", "ask_amount"),
        ("ask_price", "ask_price"),
        ("bid_price", "bid_price"),
        ("bid_size", "bid_amount"),
    ]
    files["quotes"] = write_csv_gz(
        quotes.select(
            *head, "timestamp", "local_timestamp", *(number(f"{c}_1").alias(a) for c, a in bbo_cols)
        ),
        path("quotes"),
        QUOTES_COLUMNS,
        compresslevel,
    )
    files["book_ticker"] = write_csv_gz(
        capture.golden_bbo.select(
            *head,
            pl.col("ts_event").dt.epoch("us").alias("timestamp"),
            pl.col("ts_local").dt.epoch("us").alias("local_timestamp"),
            *(number(c).alias(a) for c, a in bbo_cols),
        ),
        path("book_ticker"),
        QUOTES_COLUMNS,
        compresslevel,
    )
    files["trades"] = write_csv_gz(
        capture.trades.select(
            *head,
            pl.col("ts_event").dt.epoch("us").alias("timestamp"),
            pl.col("ts_local").dt.epoch("us").alias("local_timestamp"),
            pl.col("trade_id").cast(pl.String).alias("id"),
            pl.when(pl.col("is_buyer_maker"))
            .then(pl.lit("sell"))
            .when(~pl.col("is_buyer_maker"))
            .then(pl.lit("buy"))
            .otherwise(pl.lit("unknown"))
            .alias("side"),
            number("price").alias("price"),
            number("size").alias("amount"),
        ),
        path("trades"),
        TRADES_COLUMNS,
        compresslevel,
    )
    stats.update(trades_rows=capture.trades.height, book_ticker_rows=capture.golden_bbo.height)
    return TardisExport(exchange, sym, inst, files, rows, result, stats)


def _checkpoint_row(
    cp: Book, inst: Instrument, depth: int, names: list[str], local_us: int
) -> pl.DataFrame:
    """The checkpoint's top ``depth`` levels as one exported-rows row (the opening snapshot)."""
    bp, bs, ap, asz = schemas.level_names(depth)
    cols: dict[str, pl.Series] = {}
    for prices, sizes, pn, sn in (
        (cp.bid_price, cp.bid_size, bp, bs),
        (cp.ask_price, cp.ask_size, ap, asz),
    ):
        for i in range(depth):
            present = np.array([i < len(prices)])
            p = np.array([prices[i] if i < len(prices) else 0], np.int64)
            s = np.array([sizes[i] if i < len(sizes) else 0], np.int64)
            cols[pn[i]] = schemas.from_unscaled(p, inst.price_scale, present, pn[i])
            cols[sn[i]] = schemas.from_unscaled(s, inst.size_scale, present, sn[i])
    return pl.DataFrame(
        [
            pl.Series("msg_id", [-1], pl.Int64),
            pl.Series("is_snapshot", [True]),
            pl.Series("timestamp", [cp.ts_event // 1000], pl.Int64),
            pl.Series("local_timestamp", [local_us], pl.Int64),
            *(cols[n] for n in names),
        ]
    )


def _l2_rows(
    capture: Capture, rows: pl.DataFrame, opening: Book | None, inst: Instrument
) -> pl.DataFrame:
    """Level rows of the exported messages in file order (checkpoint levels first, if any)."""
    order = rows.select(
        "msg_id", "is_snapshot", "timestamp", "local_timestamp", pl.int_range(pl.len()).alias("k")
    )
    levels = capture.events.filter(pl.col("side").is_not_null()).select(
        "msg_id", "side", "price", "size"
    )
    out = order.join(levels, on="msg_id", how="inner", maintain_order="right").sort(
        "k", maintain_order=True
    )
    if opening is not None:
        first = rows.row(0, named=True)
        side = np.concatenate(
            [
                np.full(len(opening.bid_price), schemas.BID, np.int8),
                np.full(len(opening.ask_price), schemas.ASK, np.int8),
            ]
        )
        n = len(side)
        ones = np.ones(n, np.bool_)
        cp = pl.DataFrame(
            [
                pl.Series("msg_id", np.full(n, -1, np.int64)),
                pl.Series("is_snapshot", ones),
                pl.Series("timestamp", np.full(n, first["timestamp"], np.int64)),
                pl.Series("local_timestamp", np.full(n, first["local_timestamp"], np.int64)),
                pl.Series("k", np.zeros(n, np.int64)),
                pl.Series("side", side),
                schemas.from_unscaled(
                    np.concatenate([opening.bid_price, opening.ask_price]),
                    inst.price_scale,
                    ones,
                    "price",
                ),
                schemas.from_unscaled(
                    np.concatenate([opening.bid_size, opening.ask_size]),
                    inst.size_scale,
                    ones,
                    "size",
                ),
            ]
        )
        out = pl.concat([cp, out.filter(pl.col("msg_id") != -1)], how="vertical_relaxed")
    return out


def _changed(rows: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    """Rows whose ``cols`` differ from the previous row's (the first row always)."""
    if rows.height == 0:
        return rows
    same = pl.all_horizontal(pl.col(c).eq_missing(pl.col(c).shift(1)) for c in cols)
    return rows.filter(~same.fill_null(False) | (pl.int_range(pl.len()) == 0))


def number(col: str) -> pl.Expr:
    """Exact decimal → the shortest plain decimal string (``61800.20`` → ``61800.2``), null → null."""
    text = pl.col(col).cast(pl.String)
    stripped = text.str.strip_chars_end("0").str.strip_chars_end(".")
    return pl.when(text.str.contains(".", literal=True)).then(stripped).otherwise(text)


def write_csv_gz(
    frame: pl.DataFrame, path: Path, header: list[str], compresslevel: int = 6
) -> Path:
    """Write ``frame`` (columns in ``header`` order) as CSV.gz atomically and reproducibly."""
    if frame.columns != header:
        raise ValueError(
            f"{path.name}: columns {frame.columns[:8]}... differ from the Tardis header"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, compresslevel=compresslevel, mtime=0
            ) as gz:
                if frame.height == 0:
                    gz.write((",".join(header) + "\n").encode())
                for start in range(0, frame.height, CHUNK_ROWS):
                    frame.slice(start, CHUNK_ROWS).write_csv(
                        gz, include_header=start == 0, quote_style="never"
                    )
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

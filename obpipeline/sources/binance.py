"""Binance websocket captures → canonical frames (raw_book_events, golden_bbo, golden_depth, trades).

Capture format (see ``../shared/data/README.md``): gzip (or plain) text, one record per line,
``<local_receive_timestamp> <json>``; the timestamp is in ns, µs or ms (told apart by its number of
digits). The JSON is the combined-stream envelope ``{"stream": ..., "data": {...}}``, except the
REST depth snapshot, which is the bare ``GET /depth`` response.

Parsing is columnar (Polars ``json_decode`` per record kind, ``explode`` for levels): no Python
loop per line or level. A line that cannot be used is *quarantined*, never dropped: the
``quarantine`` frame keeps file, line number, reason and the line itself. One bad line does not
fail the others: when a batch does not decode, it is bisected down to the bad lines.

Record kinds, by stream name: ``<sym>@depth[@Nms]`` diffs; ``<sym>@depth<N>[@Nms]`` partial books
(golden_depth); ``<sym>@bookTicker`` (golden_bbo); ``<sym>@trade``; a bare object with
``lastUpdateId`` is a REST snapshot. Other streams (markPrice, ...) are counted and ignored.

``ts_event`` is the exchange's transaction time ``T`` where present, else event time ``E``, else
the receive time (spot REST snapshots and spot bookTickers carry no exchange time).
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from obpipeline import schemas
from obpipeline.instruments import Instrument, resolve_instrument

MS = 1_000_000
_HI_PRECISION = pl.Decimal(38, 12)

_LEVELS = pl.List(pl.List(pl.String))
_DIFF = pl.Struct(
    {
        "data": pl.Struct(
            {
                "E": pl.Int64,
                "T": pl.Int64,
                "s": pl.String,
                "U": pl.Int64,
                "u": pl.Int64,
                "pu": pl.Int64,
                "b": _LEVELS,
                "a": _LEVELS,
            }
        ),
    }
)
_SNAPSHOT = pl.Struct(
    {"lastUpdateId": pl.Int64, "E": pl.Int64, "T": pl.Int64, "bids": _LEVELS, "asks": _LEVELS}
)
_PARTIAL = pl.Struct(
    {
        "data": pl.Struct(
            {
                "E": pl.Int64,
                "T": pl.Int64,
                "u": pl.Int64,
                "b": _LEVELS,
                "a": _LEVELS,
                "lastUpdateId": pl.Int64,
                "bids": _LEVELS,
                "asks": _LEVELS,
            }
        ),
    }
)
_BBO = pl.Struct(
    {
        "data": pl.Struct(
            {
                "u": pl.Int64,
                "b": pl.String,
                "B": pl.String,
                "a": pl.String,
                "A": pl.String,
                "E": pl.Int64,
                "T": pl.Int64,
            }
        ),
    }
)
_TRADE = pl.Struct(
    {
        "data": pl.Struct(
            {
                "E": pl.Int64,
                "T": pl.Int64,
                "t": pl.Int64,
                "p": pl.String,
                "q": pl.String,
                "m": pl.Boolean,
            }
        ),
    }
)


@dataclass
class Capture:
    """One market/symbol's canonical frames from a sequence of capture files (one stream)."""

    instrument: Instrument
    events: pl.DataFrame
    golden_bbo: pl.DataFrame
    golden_depth: pl.DataFrame
    trades: pl.DataFrame
    quarantine: pl.DataFrame
    stats: dict[str, int] = field(default_factory=dict)


class CaptureError(ValueError):
    """The input as a whole cannot be interpreted (e.g. several symbols mixed in one stream)."""


def read_lines(path: Path | str) -> pl.DataFrame:
    """A capture file as ``file, line, text`` rows (1-based line numbers; blank lines kept as null)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return lines_frame(raw, str(path))


def lines_frame(raw: bytes, file: str) -> pl.DataFrame:
    """Capture bytes (already decompressed) → ``file, line, text``."""
    if not raw:
        return pl.DataFrame(schema={"file": pl.String, "line": pl.Int64, "text": pl.String})
    text = pl.read_csv(
        io.BytesIO(raw),
        has_header=False,
        separator="\x1f",
        quote_char=None,
        new_columns=["text"],
        schema={"text": pl.String},
        truncate_ragged_lines=True,
    )
    return text.select(
        pl.lit(file).alias("file"),
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("line"),
        pl.col("text"),
    )


def read_capture(
    paths: Sequence[Path | str],
    market: str | None = None,
    symbol: str | None = None,
    depth: int = schemas.DEFAULT_DEPTH,
) -> Capture:
    """Parse capture files of one market and symbol, concatenated in the given (time) order."""
    if not paths:
        raise CaptureError("no capture files given")
    lines = pl.concat([read_lines(p) for p in paths])
    return parse_lines(lines, market=market, symbol=symbol, depth=depth)


def parse_lines(
    lines: pl.DataFrame,
    market: str | None = None,
    symbol: str | None = None,
    depth: int = schemas.DEFAULT_DEPTH,
) -> Capture:
    """Canonical frames from ``file, line, text`` rows (see ``read_lines``)."""
    quarantined: list[pl.DataFrame] = []
    stats: dict[str, int] = {"lines": lines.height}

    nonblank = lines.filter(pl.col("text").is_not_null() & (pl.col("text").str.strip_chars() != ""))
    stats["blank_lines"] = lines.height - nonblank.height
    split = nonblank.with_columns(
        pl.col("text").str.splitn(" ", 2).struct.rename_fields(["ts", "json"]).alias("parts")
    ).unnest("parts")
    digits = pl.col("ts").str.len_chars()
    ts_int = pl.col("ts").cast(pl.Int64, strict=False)
    split = split.with_columns(
        pl.when(digits >= 18)
        .then(ts_int)
        .when(digits >= 15)
        .then(ts_int * 1_000)
        .when(digits >= 12)
        .then(ts_int * MS)
        .alias("ts_local"),
        pl.col("json").str.extract(r'^\s*\{\s*"stream"\s*:\s*"([^"]*)"', 1).alias("stream"),
    )
    bad_ts = split.filter(pl.col("ts_local").is_null() | pl.col("json").is_null())
    quarantined.append(
        _quarantine(
            bad_ts,
            pl.when(pl.col("json").is_null())
            .then(pl.lit("no JSON after the receive timestamp"))
            .otherwise(
                pl.format("receive timestamp '{}' is not an integer in ns, µs or ms", pl.col("ts"))
            ),
        )
    )
    split = split.filter(pl.col("ts_local").is_not_null() & pl.col("json").is_not_null())

    stream_kind = pl.col("stream").str.extract(r"@(depth\d*|bookTicker|trade)(@\d+ms)?$", 1)
    split = split.with_columns(
        pl.when(
            pl.col("stream").is_null() & pl.col("json").str.contains('"lastUpdateId"', literal=True)
        )
        .then(pl.lit("snapshot"))
        .when(stream_kind == "depth")
        .then(pl.lit("diff"))
        .when(stream_kind.str.starts_with("depth"))
        .then(pl.lit("partial"))
        .when(stream_kind == "bookTicker")
        .then(pl.lit("bbo"))
        .when(stream_kind == "trade")
        .then(pl.lit("trade"))
        .when(pl.col("stream").is_not_null())
        .then(pl.lit("other"))
        .alias("kind")
    )
    unknown = split.filter(pl.col("kind").is_null())
    quarantined.append(
        _quarantine(
            unknown,
            pl.lit("unrecognised record: neither a stream envelope nor a REST depth snapshot"),
        )
    )
    stats["ignored_other_streams"] = split.filter(pl.col("kind") == "other").height

    def decoded(kind: str, dtype: pl.Struct) -> pl.DataFrame:
        rows = split.filter(pl.col("kind") == kind)
        good, bad = _decode(rows, dtype)
        quarantined.append(bad)
        stats[f"{kind}_lines"] = good.height
        return good

    diffs = decoded("diff", _DIFF).unnest("decoded").unnest("data")
    snaps = decoded("snapshot", _SNAPSHOT).unnest("decoded")
    partial = decoded("partial", _PARTIAL).unnest("decoded").unnest("data")
    bbo = decoded("bbo", _BBO).unnest("decoded").unnest("data")
    trade = decoded("trade", _TRADE).unnest("decoded").unnest("data")

    market, symbol = _detect_market_symbol(diffs, split, market, symbol)

    # Messages: diffs and REST snapshots in arrival order, one row each.
    msg_cols = [
        "file",
        "line",
        "text",
        "ts_local",
        "ts_event",
        "U",
        "u",
        "pu",
        "is_snapshot",
        "b",
        "a",
    ]
    diff_msgs = diffs.with_columns(
        _exchange_ts(), pl.lit(False).alias("is_snapshot"), pl.col("pu").alias("pu")
    )
    snap_msgs = snaps.with_columns(
        _exchange_ts(),
        pl.col("lastUpdateId").alias("U"),
        pl.col("lastUpdateId").alias("u"),
        pl.lit(None, pl.Int64).alias("pu"),
        pl.lit(True).alias("is_snapshot"),
        pl.col("bids").alias("b"),
        pl.col("asks").alias("a"),
    )
    messages = pl.concat([diff_msgs.select(msg_cols), snap_msgs.select(msg_cols)]).sort(
        "file", "line", maintain_order=True
    )
    futures = market != "spot"
    missing = (
        pl.when(pl.col("U").is_null() | pl.col("u").is_null())
        .then(pl.lit("depth message without U/u (lastUpdateId)"))
        .when(pl.col("b").is_null() | pl.col("a").is_null())
        .then(pl.lit("depth message without bid or ask list"))
        .when(pl.col("pu").is_null() & ~pl.col("is_snapshot") & pl.lit(futures))
        .then(pl.lit("futures depth message without pu"))
        .when(pl.col("U") > pl.col("u"))
        .then(
            pl.format("first update id U={} is after last update id u={}", pl.col("U"), pl.col("u"))
        )
    )
    messages = messages.with_columns(missing.alias("reason"))
    quarantined.append(
        _quarantine(messages.filter(pl.col("reason").is_not_null()), pl.col("reason"))
    )
    messages = messages.filter(pl.col("reason").is_null()).drop("reason")

    levels = _explode_levels(messages)
    instrument = _instrument(market, symbol, levels, bbo, trade)
    levels, bad_levels = _parse_levels(levels, instrument)
    quarantined.append(bad_levels)
    bad_lines = bad_levels.select("file", "line")
    messages = messages.join(bad_lines, on=["file", "line"], how="anti", maintain_order="left")
    messages = messages.with_row_index("msg_id").with_columns(pl.col("msg_id").cast(pl.Int64))
    levels = levels.join(bad_lines, on=["file", "line"], how="anti", maintain_order="left")

    events = _events(messages, levels, instrument)
    golden_bbo, bad_bbo = _golden_bbo(bbo, instrument)
    golden_depth, bad_depth = _golden_depth(partial, instrument, depth)
    trades, bad_trades = _trades(trade, instrument)
    quarantined += [bad_bbo, bad_depth, bad_trades]

    quarantine = (
        pl.concat([q for q in quarantined if q.height], how="vertical")
        if any(q.height for q in quarantined)
        else schemas.empty(schemas.quarantine())
    )
    quarantine = quarantine.sort("file", "line", maintain_order=True)
    stats.update(
        messages=messages.height,
        level_updates=int(events["side"].is_not_null().sum()),
        golden_bbo=golden_bbo.height,
        golden_depth=golden_depth.height,
        trades=trades.height,
        quarantined=quarantine.height,
    )
    return Capture(instrument, events, golden_bbo, golden_depth, trades, quarantine, stats)


# ----------------------------------------------------------------------------- decoding


def _decode(rows: pl.DataFrame, dtype: pl.Struct) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decode ``rows["json"]``; lines that do not decode are bisected out and quarantined."""
    good: list[pl.DataFrame] = []
    bad: list[pl.DataFrame] = []
    pending = [rows]
    while pending:
        chunk = pending.pop()
        if chunk.height == 0:
            continue
        try:
            good.append(chunk.with_columns(pl.col("json").str.json_decode(dtype).alias("decoded")))
        except pl.exceptions.PolarsError as exc:
            if chunk.height == 1:
                reason = "invalid JSON or field types: " + str(exc).strip().splitlines()[0][:200]
                bad.append(_quarantine(chunk, pl.lit(reason)))
            else:
                half = chunk.height // 2
                pending += [chunk.slice(half), chunk.slice(0, half)]
    empty = rows.head(0).with_columns(pl.lit(None, dtype).alias("decoded"))
    good_frame = pl.concat(good).sort("file", "line", maintain_order=True) if good else empty
    bad_frame = pl.concat(bad) if bad else schemas.empty(schemas.quarantine())
    return good_frame, bad_frame


def _quarantine(rows: pl.DataFrame, reason: pl.Expr) -> pl.DataFrame:
    if rows.height == 0:
        return schemas.empty(schemas.quarantine())
    return rows.select(
        pl.col("file"),
        pl.col("line"),
        reason.cast(pl.String).alias("reason"),
        pl.col("text").alias("record"),
    )


def _exchange_ts() -> pl.Expr:
    return (
        pl.coalesce(pl.col("T") * MS, pl.col("E") * MS, pl.col("ts_local"))
        .cast(pl.Datetime("ns", "UTC"))
        .alias("ts_event")
    )


def _detect_market_symbol(
    diffs: pl.DataFrame, split: pl.DataFrame, market: str | None, symbol: str | None
) -> tuple[str, str]:
    """Symbol from the stream names, market from the message shape (pu → futures; '_' → COIN-M)."""
    streams = split.filter(pl.col("stream").is_not_null())["stream"]
    names = sorted(
        set(streams.str.split("@").list.first().str.to_uppercase().drop_nulls().to_list())
    )
    if symbol is None:
        if len(names) != 1:
            raise CaptureError(
                f"cannot tell the symbol from the stream names {names}; pass --symbol"
            )
        symbol = names[0]
    elif names and names != [symbol.upper()]:
        raise CaptureError(f"streams of other symbols {names} in a {symbol} replay")
    if market is None:
        if diffs.height == 0:
            raise CaptureError("no depth diff messages to tell the market from; pass --market")
        futures = diffs["pu"].is_not_null().any()
        market = ("cm" if "_" in symbol else "usdm") if futures else "spot"
    return market, symbol.upper()


def _explode_levels(messages: pl.DataFrame) -> pl.DataFrame:
    """One row per level (bids then asks, in message order); an empty message keeps one null row."""
    keys = ["file", "line", "text"]
    bids = messages.select(
        *keys, pl.col("b").alias("level"), pl.lit(schemas.BID, pl.Int8).alias("side")
    )
    asks = messages.select(
        *keys, pl.col("a").alias("level"), pl.lit(schemas.ASK, pl.Int8).alias("side")
    )
    empty = messages.filter((pl.col("b").list.len() + pl.col("a").list.len()) == 0).select(
        *keys, pl.lit(None, _LEVELS).alias("level"), pl.lit(None, pl.Int8).alias("side")
    )
    exploded = pl.concat([bids.explode("level"), asks.explode("level")]).filter(
        pl.col("level").is_not_null()
    )
    return (
        pl.concat([exploded, empty.explode("level")])
        .with_columns(
            pl.col("level").list.len().alias("n"),
            pl.col("level").list.get(0, null_on_oob=True).alias("price_str"),
            pl.col("level").list.get(1, null_on_oob=True).alias("size_str"),
        )
        .sort("file", "line", maintain_order=True)
    )


def _instrument(
    market: str, symbol: str, levels: pl.DataFrame, bbo: pl.DataFrame, trade: pl.DataFrame
) -> Instrument:
    prices = levels["price_str"].drop_nulls().head(10_000).to_list()
    sizes = levels["size_str"].drop_nulls().head(10_000).to_list()
    return resolve_instrument("binance", market, symbol, prices, sizes)


def exact_decimal(col: str, dtype: pl.Decimal) -> tuple[pl.Expr, pl.Expr]:
    """(value, ok): the string as ``dtype``, and whether that conversion was exact (on-grid, no overflow)."""
    value = pl.col(col).cast(dtype, strict=False)
    ok = value.is_not_null() & (pl.col(col).cast(_HI_PRECISION, strict=False) == value).fill_null(
        False
    )
    return value, ok


def _parse_levels(
    levels: pl.DataFrame, instrument: Instrument
) -> tuple[pl.DataFrame, pl.DataFrame]:
    price, price_ok = exact_decimal("price_str", schemas.price_dtype(instrument))
    size, size_ok = exact_decimal("size_str", schemas.size_dtype(instrument))
    is_level = pl.col("side").is_not_null()
    reason = (
        pl.when(is_level & (pl.col("n") != 2))
        .then(
            pl.format(
                "level {} has {} fields, expected [price, qty]",
                pl.col("level").cast(pl.String),
                pl.col("n"),
            )
        )
        .when(is_level & ~price_ok)
        .then(
            pl.format(
                "price '{}' is not a decimal on the {} tick grid",
                pl.col("price_str"),
                pl.lit(str(instrument.tick_size)),
            )
        )
        .when(is_level & ~size_ok)
        .then(
            pl.format(
                "size '{}' is not a decimal on the {} lot grid",
                pl.col("size_str"),
                pl.lit(str(instrument.lot_size)),
            )
        )
        .when(is_level & (price <= 0))
        .then(pl.format("non-positive price '{}'", pl.col("price_str")))
        .when(is_level & (size < 0))
        .then(pl.format("negative size '{}'", pl.col("size_str")))
    )
    parsed = levels.with_columns(price.alias("price"), size.alias("size"), reason.alias("reason"))
    bad = parsed.filter(pl.col("reason").is_not_null()).unique(
        ["file", "line"], keep="first", maintain_order=True
    )
    return parsed.select("file", "line", "side", "price", "size"), _quarantine(
        bad, pl.col("reason")
    )


def _events(messages: pl.DataFrame, levels: pl.DataFrame, instrument: Instrument) -> pl.DataFrame:
    header = messages.select(
        "file",
        "line",
        pl.col("ts_event"),
        pl.col("ts_local").cast(pl.Datetime("ns", "UTC")),
        "msg_id",
        pl.col("U").alias("first_update_id"),
        pl.col("u").alias("last_update_id"),
        pl.col("pu").alias("prev_update_id"),
        "is_snapshot",
    )
    joined = header.join(levels, on=["file", "line"], how="inner", maintain_order="left")
    return schemas.conform(joined, schemas.raw_book_events(instrument), "raw_book_events")


def _golden_bbo(bbo: pl.DataFrame, instrument: Instrument) -> tuple[pl.DataFrame, pl.DataFrame]:
    p, s = schemas.price_dtype(instrument), schemas.size_dtype(instrument)
    cols = {
        "bid_price": ("b", p),
        "bid_size": ("B", s),
        "ask_price": ("a", p),
        "ask_size": ("A", s),
    }
    exprs, checks = [], []
    for name, (src, dtype) in cols.items():
        value, ok = exact_decimal(src, dtype)
        exprs.append(value.alias(name))
        checks.append(
            pl.when(~ok).then(
                pl.format(
                    "bookTicker {} '{}' is not exact on the instrument grid",
                    pl.lit(src),
                    pl.col(src),
                )
            )
        )
    reason = (
        pl.when(pl.col("u").is_null())
        .then(pl.lit("bookTicker without u"))
        .otherwise(pl.coalesce(checks))
    )
    frame = bbo.with_columns(
        _exchange_ts(), pl.col("ts_local").cast(schemas.TS), *exprs, reason.alias("reason")
    )
    bad = _quarantine(frame.filter(pl.col("reason").is_not_null()), pl.col("reason"))
    good = frame.filter(pl.col("reason").is_null()).rename({"u": "update_id"})
    return schemas.conform(good, schemas.golden_bbo(instrument), "golden_bbo"), bad


def _golden_depth(
    partial: pl.DataFrame, instrument: Instrument, depth: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    schema = schemas.golden_depth(instrument, depth)
    bp, bs, ap, asz = schemas.level_names(depth)
    frame = partial.with_columns(
        _exchange_ts(),
        pl.col("ts_local").cast(schemas.TS),
        pl.coalesce("u", "lastUpdateId").alias("update_id"),
        pl.coalesce("b", "bids").alias("bids_"),
        pl.coalesce("a", "asks").alias("asks_"),
        pl.col("stream").str.extract(r"@depth(\d+)", 1).cast(pl.Int16).alias("levels"),
    )
    exprs, checks = [], []
    for i in range(depth):
        for side, (pn, sn) in (("bids_", (bp[i], bs[i])), ("asks_", (ap[i], asz[i]))):
            lvl = pl.col(side).list.get(i, null_on_oob=True)
            frame = frame.with_columns(
                lvl.list.get(0, null_on_oob=True).alias(pn + "_s"),
                lvl.list.get(1, null_on_oob=True).alias(sn + "_s"),
            )
            for name, dtype in (
                (pn, schemas.price_dtype(instrument)),
                (sn, schemas.size_dtype(instrument)),
            ):
                value, ok = exact_decimal(name + "_s", dtype)
                exprs.append(value.alias(name))
                checks.append(
                    pl.when(pl.col(name + "_s").is_not_null() & ~ok).then(
                        pl.format(
                            "partial depth {} '{}' is not exact", pl.lit(name), pl.col(name + "_s")
                        )
                    )
                )
    reason = (
        pl.when(pl.col("update_id").is_null())
        .then(pl.lit("partial depth without an update id"))
        .when(pl.col("bids_").is_null() | pl.col("asks_").is_null())
        .then(pl.lit("partial depth without bids or asks"))
        .otherwise(pl.coalesce(checks))
    )
    frame = frame.with_columns(*exprs, reason.alias("reason"))
    bad = _quarantine(frame.filter(pl.col("reason").is_not_null()), pl.col("reason"))
    good = frame.filter(pl.col("reason").is_null())
    return schemas.conform(good, schema, "golden_depth"), bad


def _trades(trade: pl.DataFrame, instrument: Instrument) -> tuple[pl.DataFrame, pl.DataFrame]:
    price, price_ok = exact_decimal("p", schemas.price_dtype(instrument))
    size, size_ok = exact_decimal("q", schemas.size_dtype(instrument))
    reason = (
        pl.when(pl.col("t").is_null() | pl.col("m").is_null())
        .then(pl.lit("trade without id t or maker flag m"))
        .when(~price_ok)
        .then(pl.format("trade price '{}' is not exact on the tick grid", pl.col("p")))
        .when(~size_ok)
        .then(pl.format("trade size '{}' is not exact on the lot grid", pl.col("q")))
    )
    frame = trade.with_columns(
        _exchange_ts(),
        pl.col("ts_local").cast(schemas.TS),
        price.alias("price"),
        size.alias("size"),
        pl.col("t").alias("trade_id"),
        pl.col("m").alias("is_buyer_maker"),
        reason.alias("reason"),
    )
    bad = _quarantine(frame.filter(pl.col("reason").is_not_null()), pl.col("reason"))
    good = frame.filter(pl.col("reason").is_null())
    return schemas.conform(good, schemas.trades(instrument), "trades"), bad


def utc_days(frame: pl.DataFrame, column: str = "ts_event") -> list:
    """The UTC dates (of exchange time) present in a frame, sorted."""
    return frame.select(pl.col(column).dt.date().unique().sort()).to_series().to_list()

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

import numpy as np
import polars as pl
import pyarrow as pa
from numba import njit

from obpipeline import schemas
from obpipeline.instruments import (
    MARKETS,
    CaptureError,
    Instrument,
    check_name,
    get_instrument,
    resolve_instrument,
)

MS = 1_000_000
FAST_PATH = True  # use the compiled pass when it applies (tests compare it with the Polars path)
_HI_PRECISION = pl.Decimal(38, 12)

_LEVELS = pl.List(pl.List(pl.String))
# Integers are decoded as their JSON text and converted strictly (see _integers): the decoder
# would otherwise truncate 1.5 to 1 and read true as 1.
_INT = pl.String
_INT_FIELDS = ("E", "T", "U", "u", "pu", "t", "lastUpdateId")
_DIFF = pl.Struct(
    {
        "data": pl.Struct(
            {
                "E": _INT,
                "T": _INT,
                "s": pl.String,
                "U": _INT,
                "u": _INT,
                "pu": _INT,
                "b": _LEVELS,
                "a": _LEVELS,
            }
        ),
    }
)
_SNAPSHOT = pl.Struct(
    {"lastUpdateId": _INT, "E": _INT, "T": _INT, "bids": _LEVELS, "asks": _LEVELS}
)
_PARTIAL = pl.Struct(
    {
        "data": pl.Struct(
            {
                "E": _INT,
                "T": _INT,
                "u": _INT,
                "b": _LEVELS,
                "a": _LEVELS,
                "lastUpdateId": _INT,
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
                "u": _INT,
                "b": pl.String,
                "B": pl.String,
                "a": pl.String,
                "A": pl.String,
                "E": _INT,
                "T": _INT,
            }
        ),
    }
)
_TRADE = pl.Struct(
    {
        "data": pl.Struct(
            {
                "E": _INT,
                "T": _INT,
                "t": _INT,
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


_LINES_CSV = {
    "has_header": False,
    "separator": "\x1f",
    "quote_char": None,
    "new_columns": ["text"],
    "schema": {"text": pl.String},
    "truncate_ragged_lines": True,
}


def read_lines(path: Path | str) -> pl.DataFrame:
    """A capture file as ``file, line, text`` rows (1-based line numbers; blank lines kept as null)."""
    path = Path(path)
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if gzipped:
        # Polars inflates gzip (all members) faster than the zlib module; anything it refuses
        # or an empty file takes the byte path below, which also defines the errors
        try:
            text = pl.read_csv(path, **_LINES_CSV)
        except Exception:  # noqa: BLE001 - the byte path below raises the real error
            text = None
        if text is not None and text.height:
            return _numbered(text, str(path))
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return lines_frame(raw, str(path))


def lines_frame(raw: bytes, file: str) -> pl.DataFrame:
    """Capture bytes (already decompressed) → ``file, line, text``."""
    if not raw:
        return pl.DataFrame(schema={"file": pl.String, "line": pl.Int64, "text": pl.String})
    return _numbered(pl.read_csv(io.BytesIO(raw), **_LINES_CSV), file)


def _numbered(text: pl.DataFrame, file: str) -> pl.DataFrame:
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
    """Canonical frames from ``file, line, text`` rows (see ``read_lines``).

    A compiled pass handles clean captures of registered instruments (see "fast path" below);
    any other input goes through the columnar Polars path, which defines the results.
    """
    if FAST_PATH:
        fast = _parse_fast(lines, market, symbol, depth)
        if fast is not None:
            return fast
    return _parse_lines_polars(lines, market, symbol, depth)


def _parse_lines_polars(
    lines: pl.DataFrame,
    market: str | None = None,
    symbol: str | None = None,
    depth: int = schemas.DEFAULT_DEPTH,
) -> Capture:
    """The columnar path: every rule and quarantine reason is defined here."""
    quarantined: list[pl.DataFrame] = []
    stats: dict[str, int] = {"lines": lines.height}

    nonblank = lines.filter(pl.col("text").is_not_null() & (pl.col("text").str.strip_chars() != ""))
    stats["blank_lines"] = lines.height - nonblank.height
    split = nonblank.with_columns(
        pl.col("text").str.splitn(" ", 2).struct.rename_fields(["ts", "json"]).alias("parts")
    ).unnest("parts")
    digits = pl.col("ts").str.len_chars()
    ts_int = pl.col("ts").cast(pl.Int64, strict=False)
    ns_per_unit = (
        pl.when(digits >= 18)
        .then(pl.lit(1, pl.Int64))
        .when(digits >= 15)
        .then(pl.lit(1_000, pl.Int64))
        .when(digits >= 12)
        .then(pl.lit(MS, pl.Int64))
    )
    in_window = (ts_int >= MIN_TIME_NS // ns_per_unit) & (ts_int < MAX_TIME_NS // ns_per_unit)
    split = split.with_columns(
        pl.when(in_window).then(ts_int * ns_per_unit).alias("ts_local"),
        pl.col("json").str.extract(r'^\s*\{\s*"stream"\s*:\s*"([^"]*)"', 1).alias("stream"),
    )
    bad_ts = split.filter(pl.col("ts_local").is_null() | pl.col("json").is_null())
    quarantined.append(
        _quarantine(
            bad_ts,
            pl.when(pl.col("json").is_null())
            .then(pl.lit("no JSON after the receive timestamp"))
            .when(ts_int.is_null() | ns_per_unit.is_null())
            .then(
                pl.format("receive timestamp '{}' is not an integer in ns, µs or ms", _show("ts"))
            )
            .otherwise(pl.format("receive timestamp '{}' is outside {}", _show("ts"), _WINDOW)),
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
        .alias("kind"),
        pl.col("stream").str.split("@").list.first().str.to_uppercase().alias("stream_symbol"),
    )
    unknown = split.filter(pl.col("kind").is_null())
    quarantined.append(
        _quarantine(
            unknown,
            pl.lit("unrecognised record: neither a stream envelope nor a REST depth snapshot"),
        )
    )
    stats["ignored_other_streams"] = split.filter(pl.col("kind") == "other").height

    # Lines of another symbol than the stream's are quarantined one by one (see _stream_symbol).
    symbol = _stream_symbol(split, symbol)
    foreign = (pl.col("kind") != "other") & (pl.col("stream_symbol") != symbol).fill_null(False)
    quarantined.append(
        _quarantine(
            split.filter(foreign),
            pl.format("other instrument: stream '{}' in a {} replay", "stream", pl.lit(symbol)),
        )
    )
    split = split.filter(~foreign)

    def decoded(kind: str, dtype: pl.Struct, envelope: bool = True) -> pl.DataFrame:
        rows = split.filter(pl.col("kind") == kind)
        good, bad = _decode(rows, dtype)
        quarantined.append(bad)
        good = good.unnest("decoded")
        if envelope:
            good = good.unnest("data")
        good, bad = _integers(good, [n for n in _INT_FIELDS if n in good.columns])
        quarantined.append(bad)
        stats[f"{kind}_lines"] = good.height
        return good

    diffs = decoded("diff", _DIFF)
    snaps = decoded("snapshot", _SNAPSHOT, envelope=False)
    partial = decoded("partial", _PARTIAL)
    bbo = decoded("bbo", _BBO)
    trade = decoded("trade", _TRADE)

    market = _detect_market(diffs, market, symbol)
    futures = market != "spot"

    # Messages: diffs and REST snapshots in arrival order, one row each.
    msg_cols = [
        "file",
        "line",
        "text",
        "ts_local",
        "E",
        "T",
        "U",
        "u",
        "pu",
        "is_snapshot",
        "b",
        "a",
    ]
    diff_msgs = diffs.with_columns(pl.lit(False).alias("is_snapshot"))
    snap_msgs = snaps.with_columns(
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
    snapshot = pl.col("is_snapshot")
    needs_time = pl.lit(futures) | ~snapshot  # a diff always carries E; futures also T
    missing = _first_reason(
        (
            pl.col("U").is_null() | pl.col("u").is_null(),
            pl.lit("depth message without U/u (lastUpdateId)"),
        ),
        (
            pl.col("b").is_null() | pl.col("a").is_null(),
            pl.lit("depth message without bid or ask list"),
        ),
        (
            pl.col("b").list.eval(pl.element().is_null()).list.any()
            | pl.col("a").list.eval(pl.element().is_null()).list.any(),
            pl.lit("null level in the bid or ask list"),
        ),
        (
            pl.col("pu").is_null() & ~snapshot & pl.lit(futures),
            pl.lit("futures depth message without pu"),
        ),
        (
            (pl.col("U") < 0) | (pl.col("u") < 0) | (pl.col("pu") < 0).fill_null(False),
            pl.format(
                "negative update id (U={}, u={}, pu={})", _show("U"), _show("u"), _show("pu")
            ),
        ),
        (
            pl.col("U") > pl.col("u"),
            pl.format("first update id U={} is after last update id u={}", "U", "u"),
        ),
        (
            snapshot & ((pl.col("b").list.len() == 0) | (pl.col("a").list.len() == 0)),
            pl.lit("REST snapshot with an empty bid or ask side"),
        ),
    )
    messages = messages.with_columns(missing.alias("reason"))
    quarantined.append(
        _quarantine(messages.filter(pl.col("reason").is_not_null()), pl.col("reason"))
    )
    messages = messages.filter(pl.col("reason").is_null()).drop("reason")

    levels = _explode_levels(messages)
    instrument = _instrument(market, symbol, levels, bbo, trade)
    levels, bad_levels = _parse_levels(levels, instrument)
    bad_levels = pl.concat([bad_levels, _snapshot_duplicates(messages, levels, bad_levels)])
    late = messages.join(bad_levels, on=["file", "line"], how="anti").filter(
        _first_reason(*_time_checks(needs_time, futures)).is_not_null()
    )
    bad_levels = pl.concat(
        [bad_levels, _quarantine(late, _first_reason(*_time_checks(needs_time, futures)))]
    )
    quarantined.append(bad_levels)
    bad_lines = bad_levels.select("file", "line")
    messages = messages.join(bad_lines, on=["file", "line"], how="anti", maintain_order="left")
    messages = messages.with_row_index("msg_id").with_columns(
        pl.col("msg_id").cast(pl.Int64), _exchange_ts()
    )
    levels = levels.join(bad_lines, on=["file", "line"], how="anti", maintain_order="left")

    events = _events(messages, levels, instrument)
    golden_bbo, bad_bbo = _golden_bbo(bbo, instrument, futures)
    golden_depth, bad_depth = _golden_depth(partial, instrument, depth, futures)
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


# ----------------------------------------------------------------------------- checks

# Receive and exchange times outside this window are quarantined: they are corrupt, and would
# otherwise overflow int64 nanoseconds or open a partition decades away (docs/DECISIONS.md).
MIN_TIME_MS = 1_262_304_000_000  # 2010-01-01T00:00:00Z
MAX_TIME_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z (exclusive)
MIN_TIME_NS, MAX_TIME_NS = MIN_TIME_MS * MS, MAX_TIME_MS * MS
_WINDOW = pl.lit("the sane window 2010-01-01..2100-01-01")


def _show(col: str) -> pl.Expr:
    """A column as text for a reason, ``null`` when null (``pl.format`` yields null otherwise)."""
    return pl.col(col).cast(pl.String).fill_null("null")


def _first_reason(*checks: tuple[pl.Expr, pl.Expr]) -> pl.Expr:
    """The reason of the first failing (condition, reason) pair, null when all pass."""
    return pl.coalesce([pl.when(cond.fill_null(False)).then(reason) for cond, reason in checks])


def _time_checks(required: pl.Expr, futures: bool) -> list[tuple[pl.Expr, pl.Expr]]:
    """Exchange times: E (and T on futures) present where ``required``; any present in window."""
    out = [
        (
            required & (pl.col("E").is_null() | (pl.lit(futures) & pl.col("T").is_null())),
            pl.lit("record without its exchange time " + ("E/T" if futures else "E")),
        )
    ]
    for name in ("E", "T"):
        value = pl.col(name)
        out.append(
            (
                (value < MIN_TIME_MS) | (value >= MAX_TIME_MS),
                pl.format("exchange time {}={} ms is outside {}", pl.lit(name), value, _WINDOW),
            )
        )
    return out


def _integers(frame: pl.DataFrame, names: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """JSON integer fields (decoded as text) → Int64; a value that is not an integer (1.5, true,
    "x", beyond int64) quarantines its line. Null stays null (absence is checked per kind)."""
    if not names:
        return frame, schemas.empty(schemas.quarantine())
    as_int = {n: pl.col(n).cast(pl.Int64, strict=False) for n in names}
    reason = _first_reason(
        *(
            (
                pl.col(n).is_not_null() & as_int[n].is_null(),
                pl.format("{} '{}' is not an integer", pl.lit(n), pl.col(n)),
            )
            for n in names
        )
    )
    frame = frame.with_columns(reason.alias("_reason"))
    bad = _quarantine(frame.filter(pl.col("_reason").is_not_null()), pl.col("_reason"))
    good = frame.filter(pl.col("_reason").is_null()).drop("_reason")
    return good.with_columns(v.alias(n) for n, v in as_int.items()), bad


def _stream_symbol(split: pl.DataFrame, symbol: str | None) -> str:
    """The replay's symbol: the one given, else the symbol of more than half of the book-stream
    lines (depth, bookTicker, trade; of all stream lines if there are none); lines of any other
    symbol are then quarantined."""
    if symbol is None:
        book = split.filter(pl.col("kind").is_in(["diff", "partial", "bbo", "trade"]))
        if book.height == 0:
            book = split.filter(pl.col("stream_symbol").is_not_null())
        names = book["stream_symbol"].drop_nulls().value_counts(sort=True, name="n")
        if names.height == 0:
            raise CaptureError("no stream names to tell the symbol from; pass --symbol")
        top, n = names.row(0)
        if 2 * n <= book.height:
            shown = names.head(5).rows()
            raise CaptureError(
                f"cannot tell the symbol: no symbol has most of the stream lines {shown}; "
                "pass --symbol"
            )
        symbol = top
    return check_name("symbol", symbol.upper())


def _detect_market(diffs: pl.DataFrame, market: str | None, symbol: str) -> str:
    """Market from the message shape (pu → futures; '_' in the symbol → COIN-M)."""
    if market is None:
        if diffs.height == 0:
            raise CaptureError("no depth diff messages to tell the market from; pass --market")
        futures = diffs["pu"].is_not_null().any()
        market = ("cm" if "_" in symbol else "usdm") if futures else "spot"
    return market


def _snapshot_duplicates(
    messages: pl.DataFrame, levels: pl.DataFrame, already: pl.DataFrame
) -> pl.DataFrame:
    """REST snapshots listing a price twice on one side: which level is the book's is unknown."""
    snap_lines = messages.filter(pl.col("is_snapshot")).select("file", "line", "text")
    if snap_lines.height == 0:
        return schemas.empty(schemas.quarantine())
    dup = (
        levels.join(snap_lines, on=["file", "line"], how="semi")
        .join(already, on=["file", "line"], how="anti")
        .filter(pl.col("side").is_not_null())
        .group_by("file", "line", "side", maintain_order=True)
        .agg(pl.col("price").is_duplicated().any().alias("dup"), pl.col("price").first())
        .filter(pl.col("dup"))
        .unique(["file", "line"], keep="first", maintain_order=True)
        .join(snap_lines, on=["file", "line"])
    )
    return _quarantine(
        dup,
        pl.format(
            "REST snapshot lists a price twice on the {} side",
            pl.when(pl.col("side") == schemas.BID).then(pl.lit("bid")).otherwise(pl.lit("ask")),
        ),
    )


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
    reason = _first_reason(
        (
            is_level & (pl.col("n") != 2),
            pl.format(
                "level {} has {} fields, expected [price, qty]",
                pl.lit("[")
                + pl.col("level").list.eval(pl.element().fill_null("null")).list.join(", ")
                + pl.lit("]"),
                pl.col("n"),
            ),
        ),
        (
            is_level & ~price_ok,
            pl.format(
                "price '{}' is not a decimal on the {} tick grid",
                _show("price_str"),
                pl.lit(str(instrument.tick_size)),
            ),
        ),
        (
            is_level & ~size_ok,
            pl.format(
                "size '{}' is not a decimal on the {} lot grid",
                _show("size_str"),
                pl.lit(str(instrument.lot_size)),
            ),
        ),
        (is_level & (price <= 0), pl.format("non-positive price '{}'", "price_str")),
        (is_level & (size < 0), pl.format("negative size '{}'", "size_str")),
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


def _golden_bbo(
    bbo: pl.DataFrame, instrument: Instrument, futures: bool
) -> tuple[pl.DataFrame, pl.DataFrame]:
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
            (
                ~ok,
                pl.format(
                    "bookTicker {} '{}' is not exact on the instrument grid",
                    pl.lit(src),
                    _show(src),
                ),
            )
        )
        checks.append((value < 0, pl.format("bookTicker {} '{}' is negative", pl.lit(src), src)))
    reason = _first_reason(
        (pl.col("u").is_null(), pl.lit("bookTicker without u")),
        (pl.col("u") < 0, pl.format("negative update id u={}", "u")),
        *_time_checks(pl.lit(futures), futures),
        *checks,
    )
    frame = bbo.with_columns(reason.alias("reason"))
    bad = _quarantine(frame.filter(pl.col("reason").is_not_null()), pl.col("reason"))
    good = (
        frame.filter(pl.col("reason").is_null())
        .with_columns(_exchange_ts(), pl.col("ts_local").cast(schemas.TS), *exprs)
        .rename({"u": "update_id"})
    )
    return schemas.conform(good, schemas.golden_bbo(instrument), "golden_bbo"), bad


def _levels_malformed(col: str) -> pl.Expr:
    """Any level of a list that is null or not exactly two non-null strings."""
    return (
        pl.col(col)
        .list.eval(
            pl.element().is_null()
            | (pl.element().list.len() != 2)
            | pl.element().list.eval(pl.element().is_null()).list.any()
        )
        .list.any()
    )


def _golden_depth(
    partial: pl.DataFrame, instrument: Instrument, depth: int, futures: bool
) -> tuple[pl.DataFrame, pl.DataFrame]:
    schema = schemas.golden_depth(instrument, depth)
    bp, bs, ap, asz = schemas.level_names(depth)
    frame = partial.with_columns(
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
                    (
                        pl.col(name + "_s").is_not_null() & ~ok,
                        pl.format(
                            "partial depth {} '{}' is not exact", pl.lit(name), _show(name + "_s")
                        ),
                    )
                )
                checks.append(
                    (value < 0, pl.format("partial depth {} '{}' is negative", pl.lit(name), value))
                )
    reason = _first_reason(
        (pl.col("update_id").is_null(), pl.lit("partial depth without an update id")),
        (pl.col("update_id") < 0, pl.format("negative update id {}", "update_id")),
        (
            pl.col("bids_").is_null() | pl.col("asks_").is_null(),
            pl.lit("partial depth without bids or asks"),
        ),
        (
            _levels_malformed("bids_") | _levels_malformed("asks_"),
            pl.lit("partial depth level that is null or not [price, qty]"),
        ),
        *_time_checks(pl.lit(futures), futures),
        *checks,
    )
    frame = frame.with_columns(*exprs, reason.alias("reason"))
    bad = _quarantine(frame.filter(pl.col("reason").is_not_null()), pl.col("reason"))
    good = frame.filter(pl.col("reason").is_null()).with_columns(_exchange_ts())
    return schemas.conform(good, schema, "golden_depth"), bad


def _trades(trade: pl.DataFrame, instrument: Instrument) -> tuple[pl.DataFrame, pl.DataFrame]:
    price, price_ok = exact_decimal("p", schemas.price_dtype(instrument))
    size, size_ok = exact_decimal("q", schemas.size_dtype(instrument))
    reason = _first_reason(
        (
            pl.col("t").is_null() | pl.col("m").is_null(),
            pl.lit("trade without id t or maker flag m"),
        ),
        (pl.col("t") < 0, pl.format("negative trade id t={}", "t")),
        *_time_checks(pl.lit(True), True),
        (~price_ok, pl.format("trade price '{}' is not exact on the tick grid", _show("p"))),
        (~size_ok, pl.format("trade size '{}' is not exact on the lot grid", _show("q"))),
        (price <= 0, pl.format("non-positive trade price '{}'", "p")),
        (size <= 0, pl.format("non-positive trade size '{}'", "q")),
    )
    frame = trade.with_columns(reason.alias("reason"))
    bad = _quarantine(frame.filter(pl.col("reason").is_not_null()), pl.col("reason"))
    good = frame.filter(pl.col("reason").is_null()).with_columns(
        _exchange_ts(),
        pl.col("ts_local").cast(schemas.TS),
        price.alias("price"),
        size.alias("size"),
        pl.col("t").alias("trade_id"),
        pl.col("m").alias("is_buyer_maker"),
    )
    return schemas.conform(good, schemas.trades(instrument), "trades"), bad


def utc_days(frame: pl.DataFrame, column: str = "ts_event") -> list:
    """The UTC dates (of exchange time) present in a frame, sorted."""
    return frame.select(pl.col(column).dt.date().unique().sort()).to_series().to_list()


# ----------------------------------------------------------------------------- fast path
#
# ``parse_lines`` first tries a compiled single pass over the lines' bytes (numba), which is ~5x
# faster than the columnar path above, for the common case: a capture of a registered instrument
# in which *every* line is clean (strict JSON of the expected shapes, exact decimals, ids present).
# The fast pass is deliberately stricter than the Polars path: anything it does not recognise
# with certainty (a line to quarantine, a lenient-JSON construct such as a number where a string
# is expected or a duplicate key, an unusual decimal spelling, an unknown symbol, lines out of
# (file, line) order, ...) makes it give up, and the whole input then goes through the Polars
# path, whose output is the reference. So outputs are identical by construction on every input
# the fast pass accepts, and unchanged otherwise (see obpipeline_tests/test_engine.py).

_K_DIFF, _K_SNAP, _K_PARTIAL, _K_BBO, _K_TRADE, _K_OTHER, _K_BLANK = 1, 2, 3, 4, 5, 6, 7
# JSON keys the fast pass extracts
_KEY_E, _KEY_T, _KEY_s, _KEY_U, _KEY_u, _KEY_pu, _KEY_b, _KEY_a = 1, 2, 3, 4, 5, 6, 7, 8
_KEY_B, _KEY_A, _KEY_t, _KEY_p, _KEY_q, _KEY_m = 9, 10, 11, 12, 13, 14
_KEY_data, _KEY_bids, _KEY_asks, _KEY_stream, _KEY_lastUpdateId = 15, 16, 17, 18, 19
_NKEYS = 20
# the columns of the fast pass's per-line outputs (ints, decimals) and their keys
_INT_KEYS = (_KEY_E, _KEY_T, _KEY_U, _KEY_u, _KEY_pu, _KEY_t, _KEY_lastUpdateId)
_I_E, _I_T, _I_U, _I_u, _I_pu, _I_t, _I_LID = range(7)
_DEC_KEYS = (_KEY_b, _KEY_B, _KEY_a, _KEY_A, _KEY_p, _KEY_q)
_D_b, _D_B, _D_a, _D_A, _D_p, _D_q = range(6)
_NULL = -(2**63)  # "field absent or JSON null" in the int columns of the fast pass
_MAX_NESTING = 64


@njit(cache=True, inline="always")
def _ws(c):
    return c == 32 or c == 9 or c == 10 or c == 13


@njit(cache=True, inline="always")
def _skip_ws(b, i, end):
    while i < end and _ws(b[i]):
        i += 1
    return i


@njit(cache=True, inline="always")
def _skip_string(b, i, end):
    """Strict JSON string at b[i] == '"'; returns the index after it, or -1."""
    i += 1
    while i < end:
        c = b[i]
        if c == 34:
            return i + 1
        if c < 32 or c >= 128:
            return -1
        if c == 92:
            i += 1
            if i >= end:
                return -1
            e = b[i]
            if e == 117:  # \uXXXX
                if i + 4 >= end:
                    return -1
                for k in range(1, 5):
                    h = b[i + k]
                    if not ((48 <= h <= 57) or (65 <= h <= 70) or (97 <= h <= 102)):
                        return -1
                i += 4
            elif not (e == 34 or e == 92 or e == 47 or e == 98 or e == 102 or e == 110
                      or e == 114 or e == 116):  # fmt: skip
                return -1
        i += 1
    return -1


@njit(cache=True)
def _skip_number(b, i, end):
    """A JSON number in the plain form ``-?(0|[1-9]d*)(.d+)?`` with at most 18 digits in each
    part (exponents and longer numbers are valid JSON but left to the Polars path)."""
    if i < end and b[i] == 45:
        i += 1
    if i >= end:
        return -1
    start = i
    if b[i] == 48:
        i += 1
    elif 49 <= b[i] <= 57:
        while i < end and 48 <= b[i] <= 57:
            i += 1
    else:
        return -1
    if i - start > 18:
        return -1
    if i < end and b[i] == 46:
        i += 1
        start = i
        while i < end and 48 <= b[i] <= 57:
            i += 1
        if i == start or i - start > 18:
            return -1
    if i < end and (b[i] == 101 or b[i] == 69):
        return -1
    return i


@njit(cache=True, inline="always")
def _literal(b, i, end, word):
    n = len(word)
    if i + n > end:
        return -1
    for k in range(n):
        if b[i + k] != word[k]:
            return -1
    return i + n


_TRUE = np.frombuffer(b"true", np.uint8)
_FALSE = np.frombuffer(b"false", np.uint8)
_NULLW = np.frombuffer(b"null", np.uint8)
_LUID = np.frombuffer(b'"lastUpdateId"', np.uint8)


@njit(cache=True)
def _skip_value(b, i, end):
    """Any strict JSON value (iteratively, bounded nesting); returns the index after it or -1."""
    i = _skip_ws(b, i, end)
    if i >= end:
        return -1
    c = b[i]
    if c == 34:  # scalars first: no container stack needed
        return _skip_string(b, i, end)
    if c == 116:
        return _literal(b, i, end, _TRUE)
    if c == 102:
        return _literal(b, i, end, _FALSE)
    if c == 110:
        return _literal(b, i, end, _NULLW)
    if c != 123 and c != 91:
        return _skip_number(b, i, end)
    stack = np.empty(_MAX_NESTING, np.uint8)  # 1 object, 2 array
    top = 0
    while True:
        i = _skip_ws(b, i, end)
        if i >= end:
            return -1
        c = b[i]
        if c == 123 or c == 91:  # open a container
            if top == _MAX_NESTING:
                return -1
            stack[top] = 1 if c == 123 else 2
            top += 1
            i = _skip_ws(b, i + 1, end)
            if i < end and b[i] == (125 if c == 123 else 93):  # empty
                top -= 1
                i += 1
            elif c == 123:  # first key
                if i >= end or b[i] != 34:
                    return -1
                i = _skip_string(b, i, end)
                if i < 0:
                    return -1
                i = _skip_ws(b, i, end)
                if i >= end or b[i] != 58:
                    return -1
                i += 1
                continue
            else:
                continue
        elif c == 34:
            i = _skip_string(b, i, end)
        elif c == 116:
            i = _literal(b, i, end, _TRUE)
        elif c == 102:
            i = _literal(b, i, end, _FALSE)
        elif c == 110:
            i = _literal(b, i, end, _NULLW)
        else:
            i = _skip_number(b, i, end)
        if i < 0:
            return -1
        # after a value: close containers or go to the next element
        while True:
            if top == 0:
                return i
            i = _skip_ws(b, i, end)
            if i >= end:
                return -1
            c = b[i]
            if c == 44:  # ','
                i = _skip_ws(b, i + 1, end)
                if stack[top - 1] == 1:
                    if i >= end or b[i] != 34:
                        return -1
                    i = _skip_string(b, i, end)
                    if i < 0:
                        return -1
                    i = _skip_ws(b, i, end)
                    if i >= end or b[i] != 58:
                        return -1
                    i += 1
                break
            if (c == 125 and stack[top - 1] == 1) or (c == 93 and stack[top - 1] == 2):
                top -= 1
                i += 1
                continue
            return -1


@njit(cache=True, inline="always")
def _key_id(b, s, e):
    n = e - s
    if n == 1:
        c = b[s]
        if c == 69:
            return _KEY_E
        if c == 84:
            return _KEY_T
        if c == 115:
            return _KEY_s
        if c == 85:
            return _KEY_U
        if c == 117:
            return _KEY_u
        if c == 98:
            return _KEY_b
        if c == 97:
            return _KEY_a
        if c == 66:
            return _KEY_B
        if c == 65:
            return _KEY_A
        if c == 116:
            return _KEY_t
        if c == 112:
            return _KEY_p
        if c == 113:
            return _KEY_q
        if c == 109:
            return _KEY_m
        return 0
    if n == 2 and b[s] == 112 and b[s + 1] == 117:
        return _KEY_pu
    if n == 4:
        w = (b[s], b[s + 1], b[s + 2], b[s + 3])
        if w == (100, 97, 116, 97):
            return _KEY_data
        if w == (98, 105, 100, 115):
            return _KEY_bids
        if w == (97, 115, 107, 115):
            return _KEY_asks
        return 0
    if n == 6:
        for k, c in enumerate((115, 116, 114, 101, 97, 109)):
            if b[s + k] != c:
                return 0
        return _KEY_stream
    if n == 12:
        for k, c in enumerate((108, 97, 115, 116, 85, 112, 100, 97, 116, 101, 73, 100)):
            if b[s + k] != c:
                return 0
        return _KEY_lastUpdateId
    return 0


@njit(cache=True, inline="always")
def _parse_int(b, i, end):
    """A plain JSON integer (<= 18 digits) or null: (next index or -1, value or ``_NULL``)."""
    if i < end and b[i] == 110:
        return _literal(b, i, end, _NULLW), _NULL
    neg = False
    if i < end and b[i] == 45:
        neg = True
        i += 1
    start = i
    v = 0
    while i < end and 48 <= b[i] <= 57:
        v = v * 10 + (b[i] - 48)
        i += 1
    n = i - start
    if n == 0 or n > 18 or (n > 1 and b[start] == 48):
        return -1, 0
    if i < end and (b[i] == 46 or b[i] == 101 or b[i] == 69):
        return -1, 0  # a float: Polars would coerce it; leave it to the Polars path
    return i, (-v if neg else v)


@njit(cache=True, inline="always")
def _parse_dec(b, i, end):
    """A JSON string holding a plain decimal ``-?(0|[1-9]d*)(.d+)?`` (<= 18 digits):
    (next index or -1, all digits as an integer, number of digits after the point)."""
    if i >= end or b[i] != 34:
        return -1, 0, 0
    i += 1
    neg = False
    if i < end and b[i] == 45:
        neg = True
        i += 1
    start = i
    v = 0
    while i < end and 48 <= b[i] <= 57:
        v = v * 10 + (b[i] - 48)
        i += 1
    n_int = i - start
    if n_int == 0 or (n_int > 1 and b[start] == 48):
        return -1, 0, 0
    n_frac = 0
    if i < end and b[i] == 46:
        i += 1
        while i < end and 48 <= b[i] <= 57:
            v = v * 10 + (b[i] - 48)
            i += 1
            n_frac += 1
        if n_frac == 0:
            return -1, 0, 0
    if n_int + n_frac > 18 or i >= end or b[i] != 34:
        return -1, 0, 0
    return i + 1, (-v if neg else v), n_frac


@njit(cache=True)
def _scan_levels(b, i, end, lv, k0, cap):
    """``[["p","q"], ...]`` into lv[:, 2k], lv[:, 2k+1] (digits, point) from k0: (next, count),
    next index -1 when the list is not exactly that shape (null included)."""
    if i >= end or b[i] != 91:
        return -1, 0
    i = _skip_ws(b, i + 1, end)
    k = k0
    if i < end and b[i] == 93:
        return i + 1, 0
    while True:
        if i >= end or b[i] != 91 or k >= cap:
            return -1, 0
        i = _skip_ws(b, i + 1, end)
        i, m, f = _parse_dec(b, i, end)
        if i < 0:
            return -1, 0
        lv[0, 2 * k] = m
        lv[1, 2 * k] = f
        i = _skip_ws(b, i, end)
        if i >= end or b[i] != 44:
            return -1, 0
        i = _skip_ws(b, i + 1, end)
        i, m, f = _parse_dec(b, i, end)
        if i < 0:
            return -1, 0
        lv[0, 2 * k + 1] = m
        lv[1, 2 * k + 1] = f
        i = _skip_ws(b, i, end)
        if i >= end or b[i] != 93:
            return -1, 0
        k += 1
        i = _skip_ws(b, i + 1, end)
        if i < end and b[i] == 44:
            i = _skip_ws(b, i + 1, end)
            continue
        if i < end and b[i] == 93:
            return i + 1, k - k0
        return -1, 0


# rows of the per-object field table filled by _parse_object
_F_INT, _F_MANT, _F_FRAC, _F_FLAG, _F_START, _F_COUNT = 0, 1, 2, 3, 4, 5


@njit(cache=True)
def _parse_object(b, i, end, f, lv, k0, cap, bbo):
    """One JSON object at b[i]: the known keys (_KEY_*) into the field table ``f`` (ints,
    decimal strings as digits/point, level lists as start/count into ``lv``, seen flags: 1, 2 for
    ``m`` true, 3 for a null list), the other keys skipped but validated. ``bbo``: b/a are decimal
    strings (bookTicker), not level lists. Returns the next index, or -1 to give up."""
    if i >= end or b[i] != 123:
        return -1
    i = _skip_ws(b, i + 1, end)
    if i < end and b[i] == 125:
        return i + 1
    k = k0
    while True:
        if i >= end or b[i] != 34:
            return -1
        ks = i + 1
        j = _skip_string(b, i, end)
        if j < 0:
            return -1
        key = _key_id(b, ks, j - 1)
        i = _skip_ws(b, j, end)
        if i >= end or b[i] != 58:
            return -1
        i = _skip_ws(b, i + 1, end)
        if key:
            if f[_F_FLAG, key]:
                return -1  # duplicate key: Polars keeps the first; leave it to that path
            f[_F_FLAG, key] = 1
        if key in (_KEY_E, _KEY_T, _KEY_U, _KEY_u, _KEY_pu, _KEY_t, _KEY_lastUpdateId):
            i, v = _parse_int(b, i, end)
            f[_F_INT, key] = v
        elif key in (_KEY_B, _KEY_A, _KEY_p, _KEY_q) or (bbo and key in (_KEY_b, _KEY_a)):
            i, m, fr = _parse_dec(b, i, end)
            f[_F_MANT, key] = m
            f[_F_FRAC, key] = fr
        elif key in (_KEY_b, _KEY_a, _KEY_bids, _KEY_asks):
            if i < end and b[i] == 110:  # null list
                i = _literal(b, i, end, _NULLW)
                f[_F_FLAG, key] = 3
            else:
                i, n = _scan_levels(b, i, end, lv, k, cap)
                f[_F_START, key] = k
                f[_F_COUNT, key] = n
                k += n
        elif key == _KEY_m:
            if i < end and b[i] == 116:
                i = _literal(b, i, end, _TRUE)
                f[_F_FLAG, key] = 2
            else:
                i = _literal(b, i, end, _FALSE)
        elif key == _KEY_s:
            i = _skip_string(b, i, end) if i < end and b[i] == 34 else -1
        else:
            i = _skip_value(b, i, end)
        if i < 0:
            return -1
        i = _skip_ws(b, i, end)
        if i < end and b[i] == 44:
            i = _skip_ws(b, i + 1, end)
            continue
        if i < end and b[i] == 125:
            return i + 1
        return -1


@njit(cache=True)
def _parse_envelope(b, i, end, f, lv, k0, cap, bbo):
    """``{"stream": "...", "data": {...}, ...}``: the data object parsed into ``f`` (see
    _parse_object), the other keys validated. Returns the next index, or -1 to give up."""
    if i >= end or b[i] != 123:
        return -1
    i = _skip_ws(b, i + 1, end)
    seen_data = False
    seen_stream = False
    if i < end and b[i] == 125:
        return -1  # no data
    while True:
        if i >= end or b[i] != 34:
            return -1
        ks = i + 1
        j = _skip_string(b, i, end)
        if j < 0:
            return -1
        key = _key_id(b, ks, j - 1)
        i = _skip_ws(b, j, end)
        if i >= end or b[i] != 58:
            return -1
        i = _skip_ws(b, i + 1, end)
        if key == _KEY_data:
            if seen_data:
                return -1
            seen_data = True
            i = _parse_object(b, i, end, f, lv, k0, cap, bbo)
        elif key == _KEY_stream:
            if seen_stream:
                return -1
            seen_stream = True
            i = _skip_string(b, i, end) if i < end and b[i] == 34 else -1
        else:
            i = _skip_value(b, i, end)
        if i < 0:
            return -1
        i = _skip_ws(b, i, end)
        if i < end and b[i] == 44:
            i = _skip_ws(b, i + 1, end)
            continue
        if i < end and b[i] == 125:
            return i + 1 if seen_data else -1
        return -1


@njit(cache=True)
def _kind_of_stream(b, s, e):
    """Kind from a stream name as ``@(depth\\d*|bookTicker|trade)(@\\d+ms)?$`` (first match)."""
    for at in range(s, e):
        if b[at] != 64:
            continue
        j = at + 1
        kind = 0
        if j + 5 <= e and b[j] == 100 and b[j + 1] == 101 and b[j + 2] == 112 \
                and b[j + 3] == 116 and b[j + 4] == 104:  # fmt: skip
            j += 5
            d0 = j
            while j < e and 48 <= b[j] <= 57:
                j += 1
            kind = _K_DIFF if j == d0 else _K_PARTIAL
            # "depth\d*" is greedy; the regex may backtrack digits into "(@\d+ms)?" only if
            # an '@' follows, which digits never are: no other split is possible.
        elif j + 10 <= e and b[j] == 98 and b[j + 1] == 111 and b[j + 2] == 111 \
                and b[j + 3] == 107 and b[j + 4] == 84 and b[j + 5] == 105 and b[j + 6] == 99 \
                and b[j + 7] == 107 and b[j + 8] == 101 and b[j + 9] == 114:  # fmt: skip
            j += 10
            kind = _K_BBO
        elif j + 5 <= e and b[j] == 116 and b[j + 1] == 114 and b[j + 2] == 97 \
                and b[j + 3] == 100 and b[j + 4] == 101:  # fmt: skip
            j += 5
            kind = _K_TRADE
        else:
            continue
        if j == e:
            return kind
        if b[j] == 64:  # "@\d+ms" then end
            k = j + 1
            while k < e and 48 <= b[k] <= 57:
                k += 1
            if k > j + 1 and k + 2 == e and b[k] == 109 and b[k + 1] == 115:
                return kind
    return _K_OTHER


@njit(cache=True, inline="always")
def _is_space(c):
    return c == 32 or 9 <= c <= 13


@njit(cache=True)
def _stream_name(data, js, e):
    """``^\\s*\\{\\s*"stream"\\s*:\\s*"([^"]*)"`` on the JSON text: (start, end) or (-1, -1)."""
    j = js
    while j < e and _is_space(data[j]):
        j += 1
    if j >= e or data[j] != 123:
        return -1, -1
    j += 1
    while j < e and _is_space(data[j]):
        j += 1
    if not (j + 8 <= e and data[j] == 34 and _key_id(data, j + 1, j + 7) == _KEY_stream
            and data[j + 7] == 34):  # fmt: skip
        return -1, -1
    j += 8
    while j < e and _is_space(data[j]):
        j += 1
    if j >= e or data[j] != 58:
        return -1, -1
    j += 1
    while j < e and _is_space(data[j]):
        j += 1
    if j >= e or data[j] != 34:
        return -1, -1
    q = j + 1
    while q < e and data[q] != 34:
        q += 1
    return (j + 1, q) if q < e else (-1, -1)


@njit(cache=True)
def _contains(data, s, e, word):
    for p in range(s, e - len(word) + 1):
        if data[p] == word[0]:
            ok = True
            for q in range(1, len(word)):
                if data[p + q] != word[q]:
                    ok = False
                    break
            if ok:
                return True
    return False


@njit(cache=True)
def _depth_levels(data, s, e):
    """N of the first ``@depth(\\d+)`` in a stream name (as an Int16 cast), -1 to give up."""
    for q in range(s, e - 6):
        if data[q] == 64 and data[q + 1] == 100 and data[q + 2] == 101 and data[q + 3] == 112 \
                and data[q + 4] == 116 and data[q + 5] == 104 and 48 <= data[q + 6] <= 57:  # fmt: skip
            r = q + 6
            v = 0
            while r < e and 48 <= data[r] <= 57:
                v = v * 10 + (data[r] - 48)
                r += 1
                if v > 9999:
                    return -1
            return v
    return -1


@njit(cache=True, nogil=True)
def _scan(data, offsets, valid, cap_levels):
    """The fast pass over every line (see the section comment). Returns per-line arrays and a
    status: 0, or the 1-based row where it gave up (the input then takes the Polars path)."""
    n = len(offsets) - 1
    kind = np.zeros(n, np.int8)
    ts_local = np.zeros(n, np.int64)
    ints = np.full((n, len(_INT_KEYS)), _NULL, np.int64)  # _INT_KEYS per line
    mant = np.zeros((n, len(_DEC_KEYS)), np.int64)  # _DEC_KEYS (bookTicker, trade): digits
    frac = np.zeros((n, len(_DEC_KEYS)), np.int8)  # ... and digits after the point
    span = np.full((n, 4), -1, np.int64)  # level lists: bids (start, count), asks (start, count)
    flag_m = np.zeros(n, np.int8)
    sym = np.full((n, 2), -1, np.int64)  # symbol bytes (before the first '@') of stream names
    dig = np.zeros(n, np.int64)  # partial depth: N of "@depthN"
    lv = np.zeros((2, 2 * cap_levels + 2), np.int64)  # level strings: digits, point position
    f = np.empty((6, _NKEYS), np.int64)  # the field table of the object being parsed
    k = 0  # level slots used
    status = 0
    for ln in range(n):
        status = ln + 1  # until the line is accepted
        if not valid[ln]:
            kind[ln] = _K_BLANK
            status = 0
            continue
        s = offsets[ln]
        e = offsets[ln + 1]
        if s == e or _is_space(data[s]):  # blank (only whitespace), or not "<ts> <json>"
            blank = True
            for i in range(s, e):
                if not _is_space(data[i]):
                    blank = False
                    break
            if not blank:
                break
            kind[ln] = _K_BLANK
            status = 0
            continue
        # (no other byte check: JSON strings reject non-ASCII bytes, structure needs ASCII)
        # receive timestamp: the digits before the first space (ns, µs or ms by their number)
        i = s
        v = 0
        overflow = False
        while i < e and 48 <= data[i] <= 57 and i - s < 20:
            d = data[i] - 48
            if v > (9223372036854775807 - d) // 10:
                overflow = True
            else:
                v = v * 10 + d
            i += 1
        nd = i - s
        if i >= e or data[i] != 32 or nd < 12 or nd > 19 or overflow:
            break
        if nd >= 18:
            ts_local[ln] = v
        elif nd >= 15:
            if v > 9223372036854775807 // 1000:
                break
            ts_local[ln] = v * 1000
        else:
            if v > 9223372036854775807 // 1_000_000:
                break
            ts_local[ln] = v * 1_000_000
        js = i + 1
        stream_s, stream_e = _stream_name(data, js, e)
        if stream_s < 0:  # a REST snapshot if '"lastUpdateId"' occurs, else unknown
            if not _contains(data, js, e, _LUID):
                break
            kd = _K_SNAP
        else:
            first_at = stream_e
            escaped = False
            for q in range(stream_s, stream_e):
                if data[q] == 92 or data[q] >= 128:  # escapes, non-ASCII: Polars path
                    escaped = True
                if data[q] == 64 and first_at == stream_e:
                    first_at = q
            if escaped:
                break
            sym[ln, 0] = stream_s
            sym[ln, 1] = first_at
            kd = _kind_of_stream(data, stream_s, stream_e)
            if kd == _K_PARTIAL:
                dig[ln] = _depth_levels(data, stream_s, stream_e)
                if dig[ln] < 0:
                    break
        kind[ln] = kd
        if kd == _K_OTHER:  # counted, never decoded
            status = 0
            continue
        # strict JSON: the top-level object (envelope or bare snapshot), nothing around it
        f[_F_FLAG, :] = 0
        f[_F_INT, :] = _NULL
        f[_F_START, :] = -1
        if kd == _K_SNAP:
            end_at = _parse_object(data, js, e, f, lv, k, cap_levels, False)
        else:
            end_at = _parse_envelope(data, js, e, f, lv, k, cap_levels, kd == _K_BBO)
        if end_at != e:
            break
        null_list = False
        for key in (_KEY_b, _KEY_a, _KEY_bids, _KEY_asks):  # a null list is quarantined
            if f[_F_FLAG, key] == 3:
                null_list = True
        if null_list:
            break
        for c in range(len(_INT_KEYS)):
            ints[ln, c] = f[_F_INT, _INT_KEYS[c]]
        if kd in (_K_BBO, _K_TRADE):
            for c in range(len(_DEC_KEYS)):
                mant[ln, c] = f[_F_MANT, _DEC_KEYS[c]]
                frac[ln, c] = f[_F_FRAC, _DEC_KEYS[c]]
        flag_m[ln] = f[_F_FLAG, _KEY_m]
        if kd == _K_BBO:
            if not (f[_F_FLAG, _KEY_b] and f[_F_FLAG, _KEY_B] and f[_F_FLAG, _KEY_a]
                    and f[_F_FLAG, _KEY_A]):  # fmt: skip
                break
        elif kd == _K_TRADE:
            if not (f[_F_FLAG, _KEY_p] and f[_F_FLAG, _KEY_q] and f[_F_FLAG, _KEY_t]
                    and f[_F_FLAG, _KEY_m]):  # fmt: skip
                break
        else:
            kb, ka = (_KEY_bids, _KEY_asks) if kd == _K_SNAP else (_KEY_b, _KEY_a)
            if kd == _K_PARTIAL and f[_F_START, kb] < 0:  # partial depth: coalesce(b, bids)
                kb = _KEY_bids
            if kd == _K_PARTIAL and f[_F_START, ka] < 0:
                ka = _KEY_asks
            if f[_F_START, kb] < 0 or f[_F_START, ka] < 0:
                break
            span[ln, 0] = f[_F_START, kb]
            span[ln, 1] = f[_F_COUNT, kb]
            span[ln, 2] = f[_F_START, ka]
            span[ln, 3] = f[_F_COUNT, ka]
            for key in (_KEY_b, _KEY_a, _KEY_bids, _KEY_asks):  # keep every parsed list
                if f[_F_START, key] >= 0:
                    k = max(k, f[_F_START, key] + f[_F_COUNT, key])
        status = 0
    return kind, ts_local, ints, mant, frac, span, flag_m, sym, dig, lv, status


@njit(cache=True, nogil=True)
def _to_scale(mant, frac, scale):
    """Unscaled values at ``scale`` of decimals given as (all digits, digits after the point);
    ok=False unless every one converts exactly and fits Decimal(18, scale)."""
    out = np.empty(len(mant), np.int64)
    for k in range(len(mant)):
        f = np.int64(frac[k])
        m = mant[k]
        if f > 12:
            return out, False
        if f <= scale:
            p = np.int64(10) ** (scale - f)
            a = m if m >= 0 else -m
            if a > (10**18 - 1) // p:
                return out, False
            out[k] = m * p
        else:
            p = np.int64(10) ** (f - scale)
            if m % p != 0:
                return out, False
            out[k] = m // p
    return out, True


@njit(cache=True, nogil=True)
def _message_levels(lines, span, lv_mant, lv_frac):
    """Level rows of the messages on ``lines``: bids then asks, one null-side row when empty.
    Returns (row counts per message, side, price (mant, frac), size (mant, frac))."""
    n = 0
    for ln in lines:
        n += max(1, span[ln, 1] + span[ln, 3])
    counts = np.empty(len(lines), np.int64)
    side = np.zeros(n, np.int8)
    pm = np.zeros(n, np.int64)
    pf = np.zeros(n, np.int8)
    sm = np.zeros(n, np.int64)
    sf = np.zeros(n, np.int8)
    r = 0
    for j in range(len(lines)):
        ln = lines[j]
        r0 = r
        for g in range(2):
            start, count = span[ln, 2 * g], span[ln, 2 * g + 1]
            for q in range(start, start + count):
                side[r] = 1 if g == 0 else -1
                pm[r] = lv_mant[2 * q]
                pf[r] = lv_frac[2 * q]
                sm[r] = lv_mant[2 * q + 1]
                sf[r] = lv_frac[2 * q + 1]
                r += 1
        if r == r0:
            r += 1  # empty message: its placeholder row (side 0 → null)
        counts[j] = r - r0
    return counts, side, pm, pf, sm, sf


@njit(cache=True, nogil=True)
def _same_symbols(data, sym):
    """Index of the first stream whose symbol differs (case-insensitively) from the first one's,
    -1 if all agree, -2 if there are no streams."""
    first = -1
    for ln in range(sym.shape[0]):
        s, e = sym[ln, 0], sym[ln, 1]
        if s < 0:
            continue
        if first < 0:
            first = ln
            continue
        s0, e0 = sym[first, 0], sym[first, 1]
        if e - s != e0 - s0:
            return ln
        for q in range(e - s):
            a, b = data[s + q], data[s0 + q]
            if 97 <= a <= 122:
                a -= 32
            if 97 <= b <= 122:
                b -= 32
            if a != b:
                return ln
    return -2 if first < 0 else -1


def _decimal_col(values: np.ndarray, scale: int, valid: np.ndarray | None, name: str) -> pl.Series:
    """int64 unscaled → Decimal(18, scale) Series via a decimal128 buffer (zero-copy in Polars)."""
    wide = np.empty((len(values), 2), np.int64)
    wide[:, 0] = values
    wide[:, 1] = values >> 63
    bits = None
    if valid is not None and not valid.all():
        bits = pa.py_buffer(np.packbits(valid, bitorder="little"))
    arr = pa.Array.from_buffers(pa.decimal128(18, scale), len(values), [bits, pa.py_buffer(wide)])
    return pl.Series(name, arr)


def _ts(values: np.ndarray, name: str) -> pl.Series:
    return pl.Series(name, values).cast(pl.Datetime("ns", "UTC"))


def _exchange_ts_fast(ints: np.ndarray, ts_local: np.ndarray) -> np.ndarray | None:
    """coalesce(T * 1e6, E * 1e6, receive time), or None if a product would overflow."""
    T, E = ints[:, _I_T], ints[:, _I_E]
    limit = np.iinfo(np.int64).max // MS
    for x in (T, E):
        present = x != _NULL
        if (np.abs(x[present]) > limit).any():
            return None
    return np.where(T != _NULL, T * MS, np.where(E != _NULL, E * MS, ts_local))


def _fast_fields_sane(kind: np.ndarray, ints: np.ndarray, futures: bool) -> bool:
    """The Polars path's field rules (_time_checks, negative ids) hold on every decoded line."""
    decoded = (kind >= _K_DIFF) & (kind <= _K_TRADE)
    for col in (_I_E, _I_T):
        x = ints[decoded, col]
        x = x[x != _NULL]
        if ((x < MIN_TIME_MS) | (x >= MAX_TIME_MS)).any():
            return False
    ids = ints[decoded][:, [_I_U, _I_u, _I_pu, _I_t, _I_LID]]
    if ((ids < 0) & (ids != _NULL)).any():
        return False
    need_e = (kind == _K_DIFF) | (kind == _K_TRADE) | (decoded & futures)
    need_t = (kind == _K_TRADE) | (decoded & futures)
    return not ((ints[need_e, _I_E] == _NULL).any() or (ints[need_t, _I_T] == _NULL).any())


def _fast_snapshots_sane(
    counts: np.ndarray, side: np.ndarray, price: np.ndarray, level: np.ndarray, snap: np.ndarray
) -> bool:
    """REST snapshots have both sides and no price twice on a side (as _snapshot_duplicates)."""
    ends = np.cumsum(counts)
    level_price = np.zeros(len(side), np.int64)
    level_price[level] = price
    for j in np.flatnonzero(snap):
        rows = slice(ends[j] - counts[j], ends[j])
        for s in (1, -1):
            p = level_price[rows][side[rows] == s]
            if len(p) == 0 or len(np.unique(p)) != len(p):
                return False
    return True


def _lines_in_order(lines: pl.DataFrame) -> bool:
    """Rows already sorted by (file, line), as every output of the Polars path is."""
    if lines["file"].null_count() or lines["line"].null_count():
        return False
    f = lines["file"]
    same = f.head(-1) == f.tail(-1)
    ln = lines["line"]
    return bool(((f.head(-1) < f.tail(-1)) | (same & (ln.head(-1) < ln.tail(-1)))).all())


def _parse_fast(
    lines: pl.DataFrame, market: str | None, symbol: str | None, depth: int
) -> Capture | None:
    """The compiled pass (see above); None when it does not apply to this input."""
    n = lines.height
    if n == 0 or not _lines_in_order(lines):
        return None
    text = lines["text"].to_arrow()
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if not pa.types.is_large_string(text.type):
        text = text.cast(pa.large_string())
    offsets = np.frombuffer(text.buffers()[1], np.int64)[text.offset : text.offset + n + 1]
    data = (
        np.frombuffer(text.buffers()[2], np.uint8)
        if text.buffers()[2] is not None
        else np.zeros(0, np.uint8)
    )
    valid = text.is_valid().to_numpy(zero_copy_only=False)
    cap = int(np.count_nonzero(data == 91)) + 1
    kind, ts_local, ints, mant, frac, span, flag_m, sym, dig, lv, status = _scan(
        data, offsets, valid, cap
    )
    lv_mant, lv_frac = lv[0], lv[1]
    if status:
        return None
    nonblank = kind != _K_BLANK
    if ((ts_local[nonblank] < MIN_TIME_NS) | (ts_local[nonblank] >= MAX_TIME_NS)).any():
        return None
    count = {k: int(np.count_nonzero(kind == k)) for k in range(1, 8)}
    # market and symbol, as _detect_market_symbol
    first = _same_symbols(data, sym)
    if first >= 0:
        return None  # several symbols: the Polars path raises the error
    names = []
    if first == -1:
        ln0 = int(np.flatnonzero(sym[:, 0] >= 0)[0])
        names = [bytes(data[sym[ln0, 0] : sym[ln0, 1]]).decode().upper()]
    if symbol is None:
        if len(names) != 1:
            return None
        symbol = names[0]
    elif names and names != [symbol.upper()]:
        return None
    is_diff = kind == _K_DIFF
    if market is None:
        if not is_diff.any():
            return None
        futures_seen = bool((ints[is_diff, _I_pu] != _NULL).any())
        market = ("cm" if "_" in symbol else "usdm") if futures_seen else "spot"
    if market not in MARKETS:
        return None
    if not _fast_fields_sane(kind, ints, market != "spot"):
        return None
    instrument = get_instrument("binance", market, symbol)
    if instrument is None:
        return None  # inferred scales depend on the strings: the Polars path infers them
    symbol = symbol.upper()
    ps, ss = instrument.price_scale, instrument.size_scale

    # --- messages: diffs and REST snapshots, in line order
    msg_lines = np.flatnonzero(is_diff | (kind == _K_SNAP))
    snap = kind[msg_lines] == _K_SNAP
    mi = ints[msg_lines]
    first_u = np.where(snap, mi[:, _I_LID], mi[:, _I_U])
    last_u = np.where(snap, mi[:, _I_LID], mi[:, _I_u])
    prev_u = np.where(snap, _NULL, mi[:, _I_pu])
    if (first_u == _NULL).any() or (last_u == _NULL).any() or (first_u > last_u).any():
        return None
    if market != "spot" and (prev_u[~snap] == _NULL).any():
        return None
    counts, side, pm, pf, sm, sf = _message_levels(msg_lines, span, lv_mant, lv_frac)
    level = side != 0
    price, ok_p = _to_scale(pm[level], pf[level], ps)
    size, ok_s = _to_scale(sm[level], sf[level], ss)
    if not (ok_p and ok_s) or (price <= 0).any() or (size < 0).any():
        return None
    if snap.any() and not _fast_snapshots_sane(counts, side, price, level, snap):
        return None
    ts_event = _exchange_ts_fast(mi, ts_local[msg_lines])
    if ts_event is None:
        return None
    full_price = np.zeros(len(side), np.int64)
    full_size = np.zeros(len(side), np.int64)
    full_price[level] = price
    full_size[level] = size

    def rep(a: np.ndarray) -> np.ndarray:
        return np.repeat(a, counts)

    prev_rows = rep(prev_u)
    events = pl.DataFrame(
        [
            _ts(rep(ts_event), "ts_event"),
            _ts(rep(ts_local[msg_lines]), "ts_local"),
            pl.Series("msg_id", rep(np.arange(len(msg_lines), dtype=np.int64))),
            pl.Series("first_update_id", rep(first_u)),
            pl.Series("last_update_id", rep(last_u)),
            pl.Series("prev_update_id", prev_rows).set(pl.Series(prev_rows == _NULL), None),
            pl.Series("is_snapshot", rep(snap)),
            pl.Series("side", side).set(pl.Series(~level), None),
            _decimal_col(full_price, ps, level, "price"),
            _decimal_col(full_size, ss, level, "size"),
        ]
    )
    events = schemas.conform(events, schemas.raw_book_events(instrument), "raw_book_events")

    # --- golden_bbo
    bl = np.flatnonzero(kind == _K_BBO)
    bi = ints[bl]
    if (bi[:, _I_u] == _NULL).any():
        return None
    bts = _exchange_ts_fast(bi, ts_local[bl])
    if bts is None:
        return None
    cols = [_ts(bts, "ts_event"), _ts(ts_local[bl], "ts_local")]
    cols.append(pl.Series("update_id", bi[:, _I_u]))
    for name, key, scale in (
        ("bid_price", _D_b, ps),
        ("bid_size", _D_B, ss),
        ("ask_price", _D_a, ps),
        ("ask_size", _D_A, ss),
    ):
        v, ok = _to_scale(mant[bl, key], frac[bl, key], scale)
        if not ok or (v < 0).any():
            return None
        cols.append(_decimal_col(v, scale, None, name))
    golden_bbo = schemas.conform(pl.DataFrame(cols), schemas.golden_bbo(instrument), "golden_bbo")

    # --- trades
    tl = np.flatnonzero(kind == _K_TRADE)
    ti = ints[tl]
    if (ti[:, _I_t] == _NULL).any():
        return None
    tp, ok_p = _to_scale(mant[tl, _D_p], frac[tl, _D_p], ps)
    tq, ok_q = _to_scale(mant[tl, _D_q], frac[tl, _D_q], ss)
    if not (ok_p and ok_q) or (tp <= 0).any() or (tq <= 0).any():
        return None
    tts = _exchange_ts_fast(ti, ts_local[tl])
    if tts is None:
        return None
    trades = pl.DataFrame(
        [
            _ts(tts, "ts_event"),
            _ts(ts_local[tl], "ts_local"),
            pl.Series("trade_id", ti[:, _I_t]),
            _decimal_col(tp, ps, None, "price"),
            _decimal_col(tq, ss, None, "size"),
            pl.Series("is_buyer_maker", flag_m[tl] == 2),
        ]
    )
    trades = schemas.conform(trades, schemas.trades(instrument), "trades")

    # --- golden_depth (partial book streams)
    dl = np.flatnonzero(kind == _K_PARTIAL)
    di = ints[dl]
    update_id = np.where(di[:, _I_u] != _NULL, di[:, _I_u], di[:, _I_LID])
    if (update_id == _NULL).any():
        return None
    dts = _exchange_ts_fast(di, ts_local[dl])
    if dts is None:
        return None
    cols = [
        _ts(dts, "ts_event"),
        _ts(ts_local[dl], "ts_local"),
        pl.Series("update_id", update_id),
        pl.Series("levels", dig[dl]).cast(pl.Int16),
    ]
    bp, bs, ap, asz = schemas.level_names(depth)
    for g, (pnames, snames) in enumerate(((bp, bs), (ap, asz))):
        start, cnt = span[dl, 2 * g], span[dl, 2 * g + 1]
        for i in range(depth):
            present = cnt > i
            q = np.where(present, start + i, 0)
            p, ok_p = _to_scale(lv_mant[2 * q][present], lv_frac[2 * q][present], ps)
            z, ok_z = _to_scale(lv_mant[2 * q + 1][present], lv_frac[2 * q + 1][present], ss)
            if not (ok_p and ok_z) or (p < 0).any() or (z < 0).any():
                return None
            for values, scale, name in ((p, ps, pnames[i]), (z, ss, snames[i])):
                full = np.zeros(len(dl), np.int64)
                full[present] = values
                cols.append(_decimal_col(full, scale, present, name))
    golden_depth = schemas.conform(
        pl.DataFrame(cols).select(schemas.golden_depth(instrument, depth).names()),
        schemas.golden_depth(instrument, depth),
        "golden_depth",
    )

    quarantine = schemas.empty(schemas.quarantine()).sort("file", "line", maintain_order=True)
    stats = {
        "lines": n,
        "blank_lines": count[_K_BLANK],
        "ignored_other_streams": count[_K_OTHER],
        "diff_lines": count[_K_DIFF],
        "snapshot_lines": count[_K_SNAP],
        "partial_lines": count[_K_PARTIAL],
        "bbo_lines": count[_K_BBO],
        "trade_lines": count[_K_TRADE],
        "messages": len(msg_lines),
        "level_updates": int(level.sum()),
        "golden_bbo": golden_bbo.height,
        "golden_depth": golden_depth.height,
        "trades": trades.height,
        "quarantined": 0,
    }
    return Capture(instrument, events, golden_bbo, golden_depth, trades, quarantine, stats)

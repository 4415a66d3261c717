"""Binance websocket captures → canonical frames (raw_book_events, golden_bbo, golden_depth, trades).

Capture format (see ``docs/DESIGN.md`` §9): gzip (or plain) text, one record per line,
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
from pathlib import Path

import polars as pl

from obpipeline import schemas
from obpipeline.instruments import (
    Instrument,
    check_name,
    resolve_instrument,
)
from obpipeline.sources import binance_scan
from obpipeline.sources.binance_scan import MAX_TIME_NS, MIN_TIME_NS, MS
from obpipeline.sources.capture import MAX_TIME_MS, MIN_TIME_MS, Capture, CaptureError

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

# The sane time window is sources.capture's (MIN_TIME_MS, MAX_TIME_MS); binance_scan gives up on it.
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


def _parse_fast(
    lines: pl.DataFrame, market: str | None, symbol: str | None, depth: int
) -> Capture | None:
    """The compiled pass (``binance_scan``); None when it does not apply to this input."""
    parts = binance_scan.parse_fast(lines, market, symbol, depth)
    return None if parts is None else Capture(*parts)

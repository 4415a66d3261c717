"""Tardis.dev CSV files → canonical frames (raw_book_events, golden_depth, golden_bbo, trades).

Formats (docs.tardis.dev, "Downloadable CSV files"; pinned by ``../shared/data/tardis-excerpts``):
comma-separated, header row, times in µs since the epoch (``timestamp`` = exchange time,
``local_timestamp`` = arrival time), an empty cell where a value is absent. The data type of a
file is told from its header, never from its name:

* ``incremental_book_L2``: ``exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount``
  — one row per level, ``amount`` is the new absolute size (0 removes the level).
* ``book_snapshot_N``: the four common columns then ``asks[i].price, asks[i].amount, bids[i].price,
  bids[i].amount`` for i < N → ``golden_depth`` (``levels`` = N, ``update_id`` null).
* ``quotes`` and ``book_ticker`` (same columns: ``ask_amount,ask_price,bid_price,bid_amount``) →
  ``golden_bbo`` (``update_id`` null). ``quotes`` is Tardis's top of *its* rebuilt book;
  ``book_ticker`` is the exchange's own BBO stream, not aligned with book messages.
* ``trades``: ``id,side,price,amount`` → ``trades`` (``side`` is the aggressor: ``sell`` →
  ``is_buyer_maker`` true; a non-integer trade id becomes null and is counted).

Messages. Rows of one exchange message share ``local_timestamp``; a message is a maximal run of
consecutive rows with the same ``local_timestamp`` and the same ``is_snapshot``. So an
``is_snapshot=true`` row after non-snapshot rows starts a new snapshot, which replaces the whole
book, and a change of ``local_timestamp`` inside snapshot rows starts another one (snapshot-only
feeds such as Bitget publish every message as a snapshot). Non-snapshot rows before the first
snapshot cannot be applied to anything: they are skipped and counted (``stats``).

Synthetic update ids (Tardis has none), so the update-id replayers work unchanged: every diff
message takes the next integer (``first == last``), ``prev_update_id`` is the previous id; a
snapshot takes the id of the book it describes, i.e. the id of the message before it
(``start_update_id`` for the first one; pass a D-1 checkpoint's ``last_update_id`` there so the
day's opening snapshot is *compared* with the carried book). Under the contiguous-id rule that
Tardis instruments use (``binance_spot``: ``U == previous u + 1``; a snapshot at L is bridged by
``U <= L + 1 <= u``) that gives exactly Tardis's semantics: the first snapshot syncs the book,
later snapshots equal to the book are checks, a later snapshot that differs is counted as a
snapshot mismatch and resyncs (it replaces the book). ``pu`` chains too, so the futures rule
gives the same result where a replayer accepts ``pu == L`` as a bridge. A quarantined message still uses up an id, so the next message does not chain: the
replay reports a gap and keeps the book invalid until the next snapshot, never silently wrong.

Numbers. Tardis writes JSON numbers (shortest round-trip float64 strings, e.g. ``61800.2``, ``1e-7``),
so values are parsed as float64 and converted to the instrument's fixed-point scale with an
exactness check (``round(x·10^s) / 10^s == x``): off-grid values are quarantined, never rounded.
An unregistered symbol's scales are the smallest that represent every value of the input
exactly (the maximum number of decimals seen, over the whole input, not a sample).

Streaming: files are read with ``pl.scan_csv`` and a fixed schema on the streaming engine (polars
decompresses ``.gz`` in chunks), projecting away the text columns, so memory holds the parsed
numeric columns and the canonical frame, not the file. A bad value does not fail the file: it is
read as null and the row's message is quarantined; the line itself is fetched again (only for
bad lines) for the quarantine record.
"""

from __future__ import annotations

import gzip
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numba
import numpy as np
import polars as pl

from obpipeline import schemas
from obpipeline.instruments import Instrument, check_name, get_instrument, infer_instrument
from obpipeline.sources.capture import MAX_TIME_MS, Capture, CaptureError

VENUE = "tardis"
COMMON = ["exchange", "symbol", "timestamp", "local_timestamp"]
L2_COLUMNS = [*COMMON, "is_snapshot", "side", "price", "amount"]
TRADES_COLUMNS = [*COMMON, "id", "side", "price", "amount"]
QUOTES_COLUMNS = [*COMMON, "ask_amount", "ask_price", "bid_price", "bid_amount"]
MAX_SCALE = 12  # decimals tried when inferring a scale; beyond that a value is off-grid
_SNAPSHOT_HEADER = re.compile(r"^(asks|bids)\[(\d+)\]\.(price|amount)$")


def snapshot_columns(levels: int) -> list[str]:
    """Header of a ``book_snapshot_<levels>`` file (Tardis interleaves asks and bids per level)."""
    cols = list(COMMON)
    for i in range(levels):
        cols += [f"asks[{i}].price", f"asks[{i}].amount", f"bids[{i}].price", f"bids[{i}].amount"]
    return cols


@dataclass(frozen=True)
class TardisFile:
    path: Path
    kind: str  # "incremental_book_L2" | "book_snapshot" | "quotes" | "trades"
    levels: int = 0  # book_snapshot_N: N
    exchange: str | None = None  # from the first data row (None: file has no rows)
    symbol: str | None = None


def read_head(path: Path | str, lines: int = 2) -> list[str]:
    """The first ``lines`` lines of a plain or gzip file (for the header and the first row)."""
    path = Path(path)
    with open(path, "rb") as raw:
        magic = raw.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    out: list[str] = []
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        for _ in range(lines):
            line = f.readline()
            if not line:
                break
            out.append(line.rstrip("\r\n"))
    return out


def classify(path: Path | str) -> TardisFile:
    """Tell a Tardis file's data type from its header row."""
    path = Path(path)
    head = read_head(path)
    if not head or not head[0]:
        raise CaptureError(f"{path}: empty file, expected a Tardis CSV header")
    header = head[0].split(",")
    exchange = symbol = None
    if len(head) > 1 and head[1]:
        first = head[1].split(",")
        exchange, symbol = (first + ["", ""])[:2]
    if header == L2_COLUMNS:
        kind, levels = "incremental_book_L2", 0
    elif header == TRADES_COLUMNS:
        kind, levels = "trades", 0
    elif header == QUOTES_COLUMNS:
        kind, levels = "quotes", 1
    elif (
        len(header) > 4
        and (len(header) - 4) % 4 == 0
        and header == snapshot_columns((len(header) - 4) // 4)
    ):
        kind, levels = "book_snapshot", (len(header) - 4) // 4
    else:
        raise CaptureError(
            f"{path}: header {head[0][:120]!r} is not a Tardis incremental_book_L2, "
            "book_snapshot_N, quotes/book_ticker or trades file"
        )
    return TardisFile(path, kind, levels, exchange or None, symbol or None)


# ----------------------------------------------------------------------------- reading


def _schema(columns: list[str], overrides: dict[str, pl.DataType]) -> dict[str, pl.DataType]:
    return {c: overrides.get(c, pl.Float64) for c in columns}


_COMMON_TYPES: dict[str, pl.DataType] = {
    "exchange": pl.String,
    "symbol": pl.String,
    "timestamp": pl.Int64,
    "local_timestamp": pl.Int64,
}


def _scan(f: TardisFile, columns: list[str], types: dict[str, pl.DataType], ragged: bool):
    return pl.scan_csv(
        f.path,
        schema=_schema(columns, types),
        ignore_errors=True,  # a value that does not parse becomes null: the row is quarantined
        truncate_ragged_lines=ragged,
        quote_char=None,
    )


def _collect(f: TardisFile, build) -> tuple[pl.DataFrame, np.ndarray]:
    """Run ``build(lazy_frame)`` on the streaming engine; retry tolerant of ragged lines.

    Returns the frame and the (0-based data-row) indices of lines with the wrong field count,
    found by a raw-line pass only when the strict parse failed.
    """
    columns = _columns_of(f)
    types = _types_of(f)
    try:
        return build(_scan(f, columns, types, False)).collect(engine="streaming"), np.zeros(
            0, np.int64
        )
    except pl.exceptions.ComputeError as exc:
        if "more fields" not in str(exc):
            raise
    frame = build(_scan(f, columns, types, True)).collect(engine="streaming")
    return frame, _ragged_rows(f)


def _columns_of(f: TardisFile) -> list[str]:
    return {
        "incremental_book_L2": L2_COLUMNS,
        "trades": TRADES_COLUMNS,
        "quotes": QUOTES_COLUMNS,
    }.get(f.kind) or snapshot_columns(f.levels)


def _types_of(f: TardisFile) -> dict[str, pl.DataType]:
    types = dict(_COMMON_TYPES)
    if f.kind == "incremental_book_L2":
        types.update(is_snapshot=pl.String, side=pl.String)  # only "true"/"false" (see _project)
    elif f.kind == "trades":
        types.update(id=pl.String, side=pl.String)
    return types


def _raw_scan(path: Path) -> pl.LazyFrame:
    """Every line of a file as text, numbered from 0 (the header) — for quarantine records."""
    return pl.scan_csv(
        path,
        has_header=False,
        separator="\x1f",
        quote_char=None,
        schema={"text": pl.String},
        truncate_ragged_lines=True,
    ).with_row_index("idx")


def _raw_lines(path: Path, data_rows: np.ndarray) -> pl.DataFrame:
    """``line`` (1-based, header = 1) and ``record`` text of the given 0-based data rows."""
    wanted = pl.Series(np.unique(data_rows) + 1, dtype=pl.UInt32)
    return (
        _raw_scan(path)
        .filter(pl.col("idx").is_in(wanted))
        .select((pl.col("idx").cast(pl.Int64) + 1).alias("line"), pl.col("text").alias("record"))
        .collect(engine="streaming")
    )


def _stream_flags(exchange: str, symbol: str) -> pl.Expr:
    """Rows of another exchange/symbol than the stream's (an error unless filtered out)."""
    return ((pl.col("exchange") != exchange) | (pl.col("symbol") != symbol)).fill_null(False)


def _blank(columns: list[str]) -> pl.Expr:
    return pl.all_horizontal(pl.col(c).is_null() for c in columns)


# ----------------------------------------------------------------------------- numbers


def _finite(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return valid & np.isfinite(np.where(valid, values, 0.0))


def decimals_needed(values: np.ndarray, valid: np.ndarray | None = None, start: int = 0) -> int:
    """Smallest scale s >= start at which every finite value is exact: round(x·10^s)/10^s == x.

    For Tardis's shortest-round-trip float strings this is the maximum number of decimals written.
    Values exact at no scale <= MAX_SCALE do not count (they are quarantined as off-grid later).
    Each pass only looks at the values not yet exact, so a registered scale costs one pass.
    """
    x = values[np.isfinite(values)] if valid is None else values[_finite(values, valid)]
    best = start
    for s in range(start, MAX_SCALE + 1):
        if len(x) == 0:
            break
        _, exact = to_fixed(x, s)
        if exact.any():
            best = s
            x = x[~exact]
    return best


def to_fixed(values: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 → (int64 unscaled at ``scale``, exact?). NaN/inf/off-grid/too-large are not exact."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    units = np.empty(len(values), np.int64)
    ok = np.empty(len(values), np.bool_)
    _to_fixed_kernel(values, 10.0**scale, units, ok)
    return units, ok


@numba.njit(cache=True, nogil=True)
def _to_fixed_kernel(values, factor, units, ok):  # pragma: no cover - compiled
    """One pass: round(x·10^s), exact iff it divides back to x (a tie k+0.5 never does)."""
    for i in range(len(values)):
        x = values[i]
        if not math.isfinite(x):
            units[i] = 0
            ok[i] = False
            continue
        y = math.floor(x * factor + 0.5)
        if abs(y) >= 9007199254740992.0:  # 2**53: beyond it a float64 is not exact
            units[i] = 0
            ok[i] = False
            continue
        units[i] = np.int64(y)
        ok[i] = y / factor == x


def _decimal_series(name: str, unscaled: np.ndarray, scale: int, valid: np.ndarray) -> pl.Series:
    return schemas.from_unscaled(np.where(valid, unscaled, 0), scale, valid, name)


def _float_array(frame: pl.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    s = frame[col]
    return s.fill_null(np.nan).to_numpy().astype(np.float64, copy=False), s.is_not_null().to_numpy()


def _widest(scale: int) -> str:
    return format(Decimal(1).scaleb(-scale), "f")


# ----------------------------------------------------------------------------- main entry


def read_tardis(
    paths: Sequence[Path | str],
    symbol: str | None = None,
    depth: int = schemas.DEFAULT_DEPTH,
    start_update_id: int = 0,
    instrument: Instrument | None = None,
) -> Capture:
    """Parse Tardis CSV(.gz) files of one exchange and symbol (any mix of data types).

    ``incremental_book_L2`` files are concatenated in the given (time) order. ``symbol`` selects
    one symbol from grouped files (required when a file holds several). ``start_update_id``
    numbers the synthetic update ids on from a checkpoint (see the module docstring).
    ``instrument`` overrides the registry and scale inference (values off its grid are
    quarantined).
    """
    if not paths:
        raise CaptureError("no Tardis files given")
    files = [classify(p) for p in paths]
    exchanges = sorted({f.exchange for f in files if f.exchange})
    if len(exchanges) > 1:
        raise CaptureError(f"files of several exchanges {exchanges}: one stream at a time")
    exchange = exchanges[0] if exchanges else (instrument.market if instrument else None)
    if symbol is None:
        firsts = sorted({f.symbol for f in files if f.symbol})
        if len(firsts) > 1:
            raise CaptureError(f"files of several symbols {firsts}; pass symbol=")
        symbol = firsts[0] if firsts else (instrument.symbol if instrument else None)
    if exchange is None or symbol is None:
        raise CaptureError("no data rows to tell the exchange and symbol from")
    check_name("Tardis exchange", exchange)  # both become lake path components
    check_name("symbol", symbol)
    symbol_filter = symbol if any(f.symbol and f.symbol != symbol for f in files) else None

    stats: dict[str, int] = {}
    # Golden and trade files are parsed whole (they are small); book files are streamed.
    parsed: list[tuple[TardisFile, pl.DataFrame, np.ndarray]] = []
    for f in files:
        if f.kind == "incremental_book_L2":
            continue
        frame, ragged = _collect(
            f, lambda lf, f=f: _project(lf, f, exchange, symbol, symbol_filter)
        )
        stats["other_instrument_rows"] = stats.get("other_instrument_rows", 0) + int(
            frame["foreign"].sum()
        )
        parsed.append((f, frame, ragged))

    registered = get_instrument(VENUE, exchange, symbol)
    base = instrument or registered
    scales = [base.price_scale, base.size_scale] if base else [0, 0]
    if instrument is None:
        for f, frame, _ in parsed:
            frame = frame.filter(~pl.col("foreign"))  # quarantined: their grid does not count
            prices, sizes = _price_size_columns(f)
            for c in prices:
                scales[0] = decimals_needed(*_float_array(frame, c), start=scales[0])
            for c in sizes:
                scales[1] = decimals_needed(*_float_array(frame, c), start=scales[1])
    book = _BookStream(exchange, symbol, symbol_filter, scales, instrument, start_update_id, stats)
    for f in files:
        if f.kind == "incremental_book_L2":
            book.add_file(f)
    if instrument is None:
        if registered and (registered.price_scale, registered.size_scale) == tuple(scales):
            instrument = registered
        else:
            stats["scale_widened"] = int(registered is not None)
            instrument = infer_instrument(
                VENUE, exchange, symbol, [_widest(scales[0])], [_widest(scales[1])]
            )
    stats["price_scale"] = instrument.price_scale
    stats["size_scale"] = instrument.size_scale
    events = book.events(instrument)
    quarantined: list[pl.DataFrame] = book.quarantine()
    depth_frames, bbo_frames, trade_frames = [], [], []
    for f, frame, ragged in parsed:
        if f.kind == "book_snapshot":
            good, q = _golden_depth(f, frame, ragged, instrument, depth)
            depth_frames.append(good)
        elif f.kind == "quotes":
            good, q = _golden_bbo(f, frame, ragged, instrument)
            bbo_frames.append(good)
        elif f.kind == "trades":
            good, q = _trades(f, frame, ragged, instrument, stats)
            trade_frames.append(good)
        else:
            continue
        quarantined.append(q)
    if symbol_filter is not None and _no_rows(stats, parsed):
        present = sorted({s for f in files for s in _other_streams(f)})[:10]
        raise CaptureError(
            f"no rows of {exchange} {symbol} in the given files; they hold {present}"
        )
    golden_depth = _concat(depth_frames, schemas.golden_depth(instrument, depth))
    golden_bbo = _concat(bbo_frames, schemas.golden_bbo(instrument))
    trades = _concat(trade_frames, schemas.trades(instrument))
    quarantine = _concat([q for q in quarantined if q.height], schemas.quarantine()).sort(
        "file", "line", maintain_order=True
    )
    stats.update(
        files=len(files),
        golden_depth=golden_depth.height,
        golden_bbo=golden_bbo.height,
        trades=trades.height,
        quarantined=quarantine.height,
    )
    return Capture(instrument, events, golden_bbo, golden_depth, trades, quarantine, stats)


def _no_rows(
    stats: dict[str, int], parsed: list[tuple[TardisFile, pl.DataFrame, np.ndarray]]
) -> bool:
    """No row of the selected stream in any file (blank lines do not count)."""
    book_rows = stats.get("rows", 0) + stats.get("other_instrument_rows", 0)
    return book_rows == 0 and all(int((~frame["blank"]).sum()) == 0 for _, frame, _ in parsed)


def _concat(frames: list[pl.DataFrame], schema: pl.Schema) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    return pl.concat(frames, rechunk=False) if frames else schemas.empty(schema)


def _project(
    lf: pl.LazyFrame, f: TardisFile, exchange: str, symbol: str, symbol_filter: str | None
) -> pl.LazyFrame:
    """The columns kept in memory per kind: numbers and flags only, text projected away."""
    columns = _columns_of(f)
    lf = lf.with_row_index("row")
    if symbol_filter is not None:  # grouped files: keep one symbol (and blank lines, to count)
        lf = lf.filter((pl.col("symbol") == symbol_filter) | _blank(columns))
    keep: list[pl.Expr] = [
        pl.col("row"),
        pl.col("timestamp"),
        pl.col("local_timestamp"),
        _blank(columns).alias("blank"),
        _stream_flags(exchange, symbol).alias("foreign"),
        (pl.col("exchange").is_null() | pl.col("symbol").is_null()).alias("no_stream"),
    ]
    if f.kind == "incremental_book_L2":
        keep += [
            # Tardis writes exactly true/false; any other spelling (TRUE, 1, ...) is quarantined
            pl.when(pl.col("is_snapshot") == "true")
            .then(True)
            .when(pl.col("is_snapshot") == "false")
            .then(False)
            .alias("is_snapshot"),
            pl.when(pl.col("side") == "bid")
            .then(pl.lit(schemas.BID, pl.Int8))
            .when(pl.col("side") == "ask")
            .then(pl.lit(schemas.ASK, pl.Int8))
            .alias("side"),
            pl.col("price"),
            pl.col("amount"),
        ]
    elif f.kind == "trades":
        keep += [
            pl.col("id").cast(pl.Int64, strict=False).alias("trade_id"),
            (
                pl.col("id").is_not_null() & pl.col("id").cast(pl.Int64, strict=False).is_null()
            ).alias("id_not_integer"),
            pl.when(pl.col("side") == "sell")
            .then(True)
            .when(pl.col("side") == "buy")
            .then(False)
            .alias("is_buyer_maker"),
            pl.col("side").is_in(["buy", "sell", "unknown"]).fill_null(False).alias("side_ok"),
            pl.col("price"),
            pl.col("amount"),
        ]
    else:
        keep += [pl.col(c) for c in columns[4:]]
    return lf.select(keep)


def _other_streams(f: TardisFile) -> list[str]:
    return (
        pl.scan_csv(
            f.path,
            schema=_schema(_columns_of(f), _types_of(f)),
            ignore_errors=True,
            truncate_ragged_lines=True,
            quote_char=None,
        )
        .select(pl.format("{} {}", "exchange", "symbol").unique().sort().head(10))
        .collect(engine="streaming")
        .to_series()
        .to_list()
    )


def _price_size_columns(f: TardisFile) -> tuple[list[str], list[str]]:
    if f.kind in ("incremental_book_L2", "trades"):
        return ["price"], ["amount"]
    if f.kind == "quotes":
        return ["ask_price", "bid_price"], ["ask_amount", "bid_amount"]
    cols = _columns_of(f)[4:]
    return [c for c in cols if c.endswith(".price")], [c for c in cols if c.endswith(".amount")]


# ----------------------------------------------------------------------------- row checks


@dataclass
class _Checks:
    """Per-row failure masks in priority order: a row's reason is its first failing check."""

    n: int
    masks: list[np.ndarray]
    reasons: list[str]

    def add(self, bad: np.ndarray, reason: str) -> None:
        self.masks.append(np.asarray(bad, np.bool_))
        self.reasons.append(reason)

    def bad(self) -> np.ndarray:
        out = np.zeros(self.n, np.bool_)
        for m in self.masks:
            out |= m
        return out

    def reason_of(self, idx: np.ndarray) -> list[str | None]:
        if not self.masks or len(idx) == 0:
            return [None] * len(idx)
        stacked = np.stack([m[idx] for m in self.masks])
        any_bad = stacked.any(axis=0)
        first = stacked.argmax(axis=0)
        return [self.reasons[k] if b else None for k, b in zip(first, any_bad, strict=True)]


def _base_checks(frame: pl.DataFrame, ragged: np.ndarray, n_fields: int) -> _Checks:
    c = _Checks(frame.height, [], [])
    c.add(np.isin(frame["row"].to_numpy(), ragged), f"expected {n_fields} fields")
    c.add(frame["no_stream"].to_numpy(), "no exchange or symbol")
    c.add(frame["foreign"].to_numpy(), OTHER_INSTRUMENT)
    c.add(
        (frame["timestamp"].is_null() | frame["local_timestamp"].is_null()).to_numpy(),
        "timestamp or local_timestamp is not an integer (µs)",
    )
    outside = pl.any_horizontal((pl.col(c) <= 0) | (pl.col(c) >= MAX_TIME_US) for c in TIMES)
    c.add(
        frame.select(outside.fill_null(False)).to_series().to_numpy(),
        "timestamp or local_timestamp is not positive or not before 2100-01-01",
    )
    return c


TIMES = ("timestamp", "local_timestamp")
MAX_TIME_US = MAX_TIME_MS * 1000  # beyond it µs → ns overflows soon; no floor (docs/DECISIONS.md)
OTHER_INSTRUMENT = "other instrument: exchange or symbol differs from the stream's"


def _convert(
    frame: pl.DataFrame,
    src: str,
    scale: int,
    grid: str,
    checks: _Checks,
    what: str,
    positive: bool,
    required: bool,
    widen: bool = False,
) -> tuple[np.ndarray, np.ndarray, int]:
    """A float column → (unscaled int64, present, scale); failures are added to ``checks``.

    ``widen``: values exact at no smaller scale than needed raise the scale (one extra pass over
    just the values that were not exact) instead of failing.
    """
    values, valid = _float_array(frame, src)
    unscaled, exact = to_fixed(values, scale)
    finite = np.isfinite(values)
    if widen:
        misses = valid & finite & ~exact
        if misses.any():
            needed = decimals_needed(values[misses], start=scale)
            if needed > scale:
                scale = needed
                unscaled, exact = to_fixed(values, scale)
                grid = _widest(scale)
    if required:
        checks.add(~valid, f"{src} is missing or not a number")
    checks.add(valid & ~finite, f"{src} is not a finite number")
    checks.add(valid & finite & ~exact, f"{src} is not a decimal on the {grid} {what} grid")
    limit_bad = (unscaled <= 0) if positive else (unscaled < 0)
    checks.add(valid & exact & limit_bad, f"{src} is {'not positive' if positive else 'negative'}")
    return unscaled, valid, scale


def _quarantine(
    f: TardisFile, frame: pl.DataFrame, idx: np.ndarray, reasons: list[str | None]
) -> pl.DataFrame:
    """Quarantine rows ``idx`` of a parsed frame with their reasons and original line text."""
    return _quarantine_rows(f, frame["row"].to_numpy()[idx].astype(np.int64), reasons)


def _quarantine_rows(f: TardisFile, data_rows: np.ndarray, reasons: list) -> pl.DataFrame:
    """Quarantine frame for 0-based data rows of a file (line = row + 2: the header is line 1)."""
    if len(data_rows) == 0:
        return schemas.empty(schemas.quarantine())
    lines = _raw_lines(f.path, data_rows)
    return (
        pl.DataFrame({"line": data_rows + 2, "reason": pl.Series(reasons, dtype=pl.String)})
        .join(lines, on="line", how="left", maintain_order="left")
        .select(pl.lit(str(f.path)).alias("file"), "line", "reason", "record")
    )


# ----------------------------------------------------------------------------- book events


BATCH_ROWS = 1_000_000


class _BookStream:
    """incremental_book_L2 files → raw_book_events, one batch of rows at a time.

    Memory holds the canonical chunks built so far plus one batch: the trailing message of a
    batch (it may continue in the next one) is held back and prepended to the next batch, so a
    message is always judged whole. ``scales`` (price, size) only grow: a batch that needs more
    decimals widens them, and earlier chunks are cast up (exactly) when the frame is assembled.
    """

    def __init__(
        self,
        exchange: str,
        symbol: str,
        symbol_filter: str | None,
        scales: list[int],
        fixed: Instrument | None,
        start_update_id: int,
        stats: dict[str, int],
    ):
        self.exchange, self.symbol, self.symbol_filter = exchange, symbol, symbol_filter
        self.scales = scales  # shared with the caller, widened in place
        self.fixed = fixed
        self.stats = stats
        for key in (
            "rows",
            "blank_lines",
            "messages",
            "snapshot_messages",
            "skipped_before_snapshot_rows",
            "skipped_before_snapshot_messages",
            "quarantined_messages",
            "local_timestamp_regressions",
            "level_updates",
            "other_instrument_rows",
        ):
            stats.setdefault(key, 0)
        self.last_id = start_update_id
        self.ordinal = 0
        self.synced = False  # a good snapshot has been seen
        self.chunks: list[tuple[pl.DataFrame, int, int]] = []
        self.bad: list[tuple[int, np.ndarray, list[str]]] = []  # (file index, data rows, reasons)
        self.files: list[TardisFile] = []

    # -------------------------------------------------------------- files
    def add_file(self, f: TardisFile) -> None:
        """Stream one file; on a line with too many fields, redo it tolerant of ragged lines."""
        saved = self._state()
        try:
            self._stream(f, ragged=False, ragged_rows=np.zeros(0, np.int64))
        except pl.exceptions.ComputeError as exc:
            if "more fields" not in str(exc):
                raise
            self._restore(saved)
            ragged_rows = _ragged_rows(f)
            self._stream(f, ragged=True, ragged_rows=ragged_rows)
        self.files.append(f)

    def _state(self) -> tuple:
        return (
            self.last_id,
            self.ordinal,
            self.synced,
            len(self.chunks),
            len(self.bad),
            dict(self.stats),
            list(self.scales),
        )

    def _restore(self, saved: tuple) -> None:
        self.last_id, self.ordinal, self.synced, n_chunks, n_bad, stats, scales = saved
        del self.chunks[n_chunks:]
        del self.bad[n_bad:]
        self.stats.clear()
        self.stats.update(stats)
        self.scales[:] = scales

    def _stream(self, f: TardisFile, ragged: bool, ragged_rows: np.ndarray) -> None:
        lf = _project(
            _scan(f, L2_COLUMNS, _types_of(f), ragged),
            f,
            self.exchange,
            self.symbol,
            self.symbol_filter,
        )
        self.pending: pl.DataFrame | None = None
        self.prev_lt: int | None = None
        file_i = len(self.files)
        for batch in lf.collect_batches(chunk_size=BATCH_ROWS, engine="streaming"):
            self._feed(f, file_i, batch, ragged_rows, last=False)
        self._feed(f, file_i, None, ragged_rows, last=True)

    # -------------------------------------------------------------- one batch
    def _feed(
        self,
        f: TardisFile,
        file_i: int,
        batch: pl.DataFrame | None,
        ragged_rows: np.ndarray,
        last: bool,
    ) -> None:
        parts = [] if self.pending is None else [self.pending]
        if batch is not None:
            foreign = batch["foreign"]
            if foreign.any():  # quarantined row by row; they neither start nor end a message
                rows = batch["row"].filter(foreign).to_numpy().astype(np.int64)
                self.bad.append((file_i, rows, [OTHER_INSTRUMENT] * len(rows)))
                self.stats["other_instrument_rows"] += len(rows)
                batch = batch.filter(~foreign)
            self.stats["blank_lines"] += int(batch["blank"].sum())
            parts.append(batch.filter(~pl.col("blank")))
        self.pending = None
        frame = pl.concat(parts) if len(parts) > 1 else (parts[0] if parts else None)
        if frame is None or frame.height == 0:
            return
        frame = frame.rechunk()  # streaming batches arrive in many small chunks
        n = frame.height
        checks = _base_checks(frame, ragged_rows, len(L2_COLUMNS))
        checks.add(frame["is_snapshot"].is_null().to_numpy(), "is_snapshot is not true/false")
        checks.add(frame["side"].is_null().to_numpy(), "side is not bid/ask")
        ps, ss = self.scales
        tick = str(self.fixed.tick_size) if self.fixed else _widest(ps)
        lot = str(self.fixed.lot_size) if self.fixed else _widest(ss)
        widen = self.fixed is None
        price_u, _, ps = _convert(frame, "price", ps, tick, checks, "tick", True, True, widen)
        size_u, _, ss = _convert(frame, "amount", ss, lot, checks, "lot", False, True, widen)
        self.scales[:] = [ps, ss]
        row_bad = checks.bad()

        # Message boundaries on the forward-filled keys (a row with a broken time joins its message).
        lt_f = frame["local_timestamp"].forward_fill().fill_null(-1).to_numpy()
        snap_f = frame["is_snapshot"].forward_fill().fill_null(False).to_numpy()
        new = np.ones(n, np.bool_)
        new[1:] = (lt_f[1:] != lt_f[:-1]) | (snap_f[1:] != snap_f[:-1])
        starts = np.flatnonzero(new)
        cut = n if last else int(starts[-1])
        if cut == 0:  # one (possibly unfinished) message: wait for the rest of it
            self.pending = frame
            return
        if cut < n:
            self.pending = frame.slice(cut)
            starts = starts[starts < cut]
        if self.prev_lt is not None and lt_f[0] < self.prev_lt:
            self.stats["local_timestamp_regressions"] += 1
        self.stats["local_timestamp_regressions"] += int((np.diff(lt_f[:cut]) < 0).sum())
        self.prev_lt = int(lt_f[cut - 1])
        self.stats["rows"] += cut

        n_msgs = len(starts)
        lengths = np.diff(np.append(starts, cut))
        msg_snap = snap_f[starts]
        msg_bad = np.add.reduceat(row_bad[:cut].astype(np.int8), starts) > 0
        first = 0
        if not self.synced:
            good_snaps = np.flatnonzero(msg_snap & ~msg_bad)
            first = int(good_snaps[0]) if len(good_snaps) else n_msgs
            self.synced = len(good_snaps) > 0
        before = np.arange(n_msgs) < first
        skipped = before & ~msg_snap & ~msg_bad
        kept_msg = ~before & ~msg_bad
        # Synthetic ids: diffs and quarantined messages (once synced) advance the id.
        ids = self.last_id + np.cumsum((~msg_snap | msg_bad) & ~before)
        if n_msgs:
            self.last_id = int(ids[-1])
        n_kept_msgs = int(kept_msg.sum())
        st = self.stats
        st["messages"] += n_kept_msgs
        st["snapshot_messages"] += int((kept_msg & msg_snap).sum())
        st["skipped_before_snapshot_messages"] += int(skipped.sum())
        st["skipped_before_snapshot_rows"] += int(lengths[skipped].sum())
        st["quarantined_messages"] += int(msg_bad.sum())
        rows_idx = frame["row"].to_numpy()[:cut].astype(np.int64)
        if msg_bad.any():
            self._quarantine(file_i, checks, row_bad[:cut], msg_bad, lengths, rows_idx)

        row_kept = np.repeat(kept_msg, lengths)
        msg_of_kept = np.repeat(np.flatnonzero(kept_msg), lengths[kept_msg])
        ordinal = np.zeros(n_msgs, np.int64)
        ordinal[kept_msg] = self.ordinal + np.arange(n_kept_msgs)
        self.ordinal += n_kept_msgs
        last_u = ids[msg_of_kept]
        is_snap_row = msg_snap[msg_of_kept]
        del msg_of_kept
        mask = pl.Series(np.concatenate([row_kept, np.zeros(n - cut, np.bool_)]))
        present = np.ones(len(last_u), np.bool_)
        chunk = pl.DataFrame(
            [
                (frame["timestamp"].filter(mask) * 1000).cast(schemas.TS).alias("ts_event"),
                (frame["local_timestamp"].filter(mask) * 1000).cast(schemas.TS).alias("ts_local"),
                pl.Series("msg_id", ordinal[np.repeat(np.arange(n_msgs), lengths)][row_kept]),
                pl.Series("first_update_id", last_u),
                pl.Series("last_update_id", last_u),
                pl.Series("prev_update_id", last_u - 1).set(pl.Series(is_snap_row), None),
                pl.Series("is_snapshot", is_snap_row),
                frame["side"].filter(mask),
                schemas.from_unscaled(price_u[:cut][row_kept], ps, present, "price"),
                schemas.from_unscaled(size_u[:cut][row_kept], ss, present, "size"),
            ]
        )
        st["level_updates"] += int(len(last_u) - is_snap_row.sum())
        if chunk.height:
            # One contiguous chunk per batch: a frame of many tiny chunks gets rechunked (copied
            # whole) by polars later, doubling the peak.
            self.chunks.append((chunk.rechunk(), ps, ss))

    def _quarantine(
        self,
        file_i: int,
        checks: _Checks,
        row_bad: np.ndarray,
        msg_bad: np.ndarray,
        lengths: np.ndarray,
        rows_idx: np.ndarray,
    ) -> None:
        """Every row of a rejected message, with its own reason or the bad line it went down with."""
        msg_of_row = np.repeat(np.arange(len(lengths)), lengths)
        in_bad = np.flatnonzero(msg_bad[msg_of_row])
        reasons = checks.reason_of(in_bad)
        first_bad_line = np.full(len(lengths), -1, np.int64)
        bad_rows = np.flatnonzero(row_bad)[::-1]  # reversed: the first bad row wins
        first_bad_line[msg_of_row[bad_rows]] = rows_idx[bad_rows] + 2
        reasons = [
            r if r is not None else f"dropped with its message (bad line {first_bad_line[m]})"
            for r, m in zip(reasons, msg_of_row[in_bad], strict=True)
        ]
        self.bad.append((file_i, rows_idx[in_bad], reasons))

    # -------------------------------------------------------------- results
    def events(self, instrument: Instrument) -> pl.DataFrame:
        """The canonical frame at the final scales (earlier, narrower chunks cast up exactly)."""
        schema = schemas.raw_book_events(instrument)
        p, s = schemas.price_dtype(instrument), schemas.size_dtype(instrument)
        chunks = [
            c
            if (ps, ss) == (instrument.price_scale, instrument.size_scale)
            else c.with_columns(pl.col("price").cast(p), pl.col("size").cast(s))
            for c, ps, ss in self.chunks
        ]
        self.chunks = []
        if not chunks:
            return schemas.empty(schema)
        frame = pl.concat(chunks, rechunk=False) if len(chunks) > 1 else chunks[0]
        return schemas.conform(frame, schema, "raw_book_events")

    def quarantine(self) -> list[pl.DataFrame]:
        out = []
        for i, f in enumerate(self.files):
            parts = [(rows, reasons) for fi, rows, reasons in self.bad if fi == i]
            if not parts:
                continue
            rows = np.concatenate([r for r, _ in parts])
            reasons = [x for _, rs in parts for x in rs]
            out.append(_quarantine_rows(f, rows, reasons))
        return out


def _ragged_rows(f: TardisFile) -> np.ndarray:
    """0-based data rows whose field count differs from the header's (a raw-line pass)."""
    expected = len(_columns_of(f)) - 1
    return (
        _raw_scan(f.path)
        .filter(
            (pl.col("idx") > 0) & (pl.col("text").str.count_matches(",", literal=True) != expected)
        )
        .select((pl.col("idx") - 1).cast(pl.Int64))
        .collect(engine="streaming")
        .to_series()
        .to_numpy()
    )


# ----------------------------------------------------------------------------- golden / trades


def _golden_levels(
    f: TardisFile,
    frame: pl.DataFrame,
    ragged: np.ndarray,
    instrument: Instrument,
    pairs: list[tuple[str, str, str, str]],
) -> tuple[pl.DataFrame, np.ndarray, pl.DataFrame]:
    """(price, amount) source pairs → exact decimal columns; a level is both or neither."""
    frame = frame.filter(~pl.col("blank"))
    checks = _base_checks(frame, ragged, len(_columns_of(f)))
    ps, ss = instrument.price_scale, instrument.size_scale
    out: list[pl.Series] = [
        (frame["timestamp"] * 1000).cast(schemas.TS).alias("ts_event"),
        (frame["local_timestamp"] * 1000).cast(schemas.TS).alias("ts_local"),
        pl.Series("update_id", [None] * frame.height, dtype=pl.Int64),
    ]
    for sp, sz, dp, dz in pairs:
        pu, pv, _ = _convert(frame, sp, ps, str(instrument.tick_size), checks, "tick", True, False)
        zu, zv, _ = _convert(frame, sz, ss, str(instrument.lot_size), checks, "lot", False, False)
        checks.add(pv != zv, f"{sp} and {sz} must both be present or both empty")
        out += [schemas.from_unscaled(pu, ps, pv, dp), schemas.from_unscaled(zu, ss, zv, dz)]
    bad = checks.bad()
    bad_idx = np.flatnonzero(bad)
    q = _quarantine(f, frame, bad_idx, checks.reason_of(bad_idx))
    return pl.DataFrame(out).filter(pl.Series(~bad)), bad, q


def _golden_depth(
    f: TardisFile, frame: pl.DataFrame, ragged: np.ndarray, instrument: Instrument, depth: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    n = min(depth, f.levels)
    pairs = []
    for i in range(n):
        pairs.append(
            (f"bids[{i}].price", f"bids[{i}].amount", f"bid_price_{i + 1}", f"bid_size_{i + 1}")
        )
        pairs.append(
            (f"asks[{i}].price", f"asks[{i}].amount", f"ask_price_{i + 1}", f"ask_size_{i + 1}")
        )
    good, _, q = _golden_levels(f, frame, ragged, instrument, pairs)
    schema = schemas.golden_depth(instrument, depth)
    missing = [
        pl.lit(None, t).alias(c)
        for c, t in schema.items()
        if c not in good.columns and c != "levels"
    ]
    good = good.with_columns(*missing, pl.lit(f.levels, pl.Int16).alias("levels"))
    return schemas.conform(good, schema, "golden_depth"), q


def _golden_bbo(
    f: TardisFile, frame: pl.DataFrame, ragged: np.ndarray, instrument: Instrument
) -> tuple[pl.DataFrame, pl.DataFrame]:
    pairs = [
        ("bid_price", "bid_amount", "bid_price", "bid_size"),
        ("ask_price", "ask_amount", "ask_price", "ask_size"),
    ]
    good, _, q = _golden_levels(f, frame, ragged, instrument, pairs)
    return schemas.conform(good, schemas.golden_bbo(instrument), "golden_bbo"), q


def _trades(
    f: TardisFile,
    frame: pl.DataFrame,
    ragged: np.ndarray,
    instrument: Instrument,
    stats: dict[str, int],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    frame = frame.filter(~pl.col("blank"))
    checks = _base_checks(frame, ragged, len(TRADES_COLUMNS))
    checks.add(~frame["side_ok"].to_numpy(), "side is not buy/sell/unknown")
    ps, ss = instrument.price_scale, instrument.size_scale
    pu, _, _ = _convert(frame, "price", ps, str(instrument.tick_size), checks, "tick", True, True)
    zu, _, _ = _convert(frame, "amount", ss, str(instrument.lot_size), checks, "lot", False, True)
    bad = checks.bad()
    bad_idx = np.flatnonzero(bad)
    q = _quarantine(f, frame, bad_idx, checks.reason_of(bad_idx))
    good = pl.DataFrame(
        [
            (frame["timestamp"] * 1000).cast(schemas.TS).alias("ts_event"),
            (frame["local_timestamp"] * 1000).cast(schemas.TS).alias("ts_local"),
            frame["trade_id"],
            schemas.from_unscaled(pu, ps, np.ones(len(pu), np.bool_), "price"),
            schemas.from_unscaled(zu, ss, np.ones(len(zu), np.bool_), "size"),
            frame["is_buyer_maker"],
        ]
    ).filter(pl.Series(~bad))
    stats["trade_ids_not_integer"] = stats.get("trade_ids_not_integer", 0) + int(
        frame["id_not_integer"].filter(pl.Series(~bad)).sum()
    )
    return schemas.conform(good, schemas.trades(instrument), "trades"), q

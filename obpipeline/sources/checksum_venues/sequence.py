"""Checksum venues' book messages → raw_book_events that every replayer already understands.

The reader's last step, as ``tardis.py`` numbers Tardis rows: one instrument of a ``Recording``
becomes one raw_book_events frame plus, per message, the venue's checksum (a ``VenueDay``, the
type ``book/checksum.py`` validates). The venues' rules are mapped here, once, onto the
sequencing rules the replayers already apply (``book/sequencing.py``), so the compiled engine,
the reference replayer and the lake's day (``landing.py``) see the same canonical stream:

* **Snapshot replace** (all three venues): every message is numbered 1, 2, 3, ... and a snapshot
  takes the number of the book it describes, under the contiguous-id rule (``binance_spot``), as
  for Tardis. A snapshot received while in sync is compared with the book and replaces it when
  they differ (``sequencing.py``), which is the venues' resubscribe semantics.
* **OKX seqId/prevSeqId**: when every message of the day carries them they are the update ids
  (``prevSeqId`` must equal the previous ``seqId``, the ``binance_futures`` chained rule), so a
  lost message is a gap and the book is invalid until the next snapshot.
* **Bitget actions**: ``snapshot`` / ``update`` map to snapshot / diff.
* **Kraken truncate-to-depth**: after each message the client keeps only the subscribed depth
  (``book-<depth>``) per side; the levels cut are written as explicit deletes (size 0) in that
  message, so the replayers need no venue rule for it. Only the price set of each side is
  kept for this (sizes and sequencing stay with the replayers: nothing here rebuilds a book).

Strings are converted exactly at the instrument's scales (registered, or inferred from the widest
strings of the day); a string finer than a registered scale is quarantined with its file/line.
The widest printed decimals are kept too: Bitget and Kraken checksum fixed-decimal strings.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
from sortedcontainers import SortedList

from obpipeline import schemas
from obpipeline.book.stream import Book
from obpipeline.book.venue_day import NO_CHECKSUM, VenueDay
from obpipeline.instruments import Instrument, resolve_instrument, safe_symbol
from obpipeline.sources.checksum_venues.lines import record
from obpipeline.sources.checksum_venues.recording import Located, Recording


def _decimals(s: str) -> int:
    dot = s.find(".")
    return 0 if dot < 0 else len(s) - dot - 1


def to_unscaled(s: str, scale: int) -> int | None:
    """A plain decimal string at ``scale`` decimals, exactly; None when it is finer than that."""
    whole, _, frac = s.partition(".")
    if len(frac) > scale:
        if frac[scale:].strip("0"):
            return None
        frac = frac[:scale]
    return int(whole + frac.ljust(scale, "0"))


def instrument_for(venue: str, symbol: str, located: list[Located]) -> Instrument:
    prices = {p for loc in located for _, p, _ in loc.message.levels}
    sizes = {s for loc in located for _, _, s in loc.message.levels}
    market = located[0].message.market if located else "spot"
    inst = resolve_instrument(venue, market, safe_symbol(symbol), list(prices), list(sizes))
    return inst


def sequence(rec: Recording, symbol: str, start: Book | None = None, first_id: int = 0) -> VenueDay:
    """The raw_book_events of ``symbol`` (venue spelling) in ``rec``, numbered on from ``start``
    (a continuation) or from ``first_id`` (a landing day's own base, as for Tardis)."""
    located = rec.messages[symbol]
    inst = instrument_for(rec.venue, symbol, located)
    ps, ss = inst.price_scale, inst.size_scale
    chained = rec.venue == "okx" and all(
        loc.message.seq is not None
        and (loc.message.is_snapshot or loc.message.prev_seq is not None)
        for loc in located
    )
    if chained:
        inst = dataclasses.replace(inst, sequencing="binance_futures")
    books: dict[int, SortedList] = {schemas.BID: SortedList(), schemas.ASK: SortedList()}
    cols: dict[str, list] = {k: [] for k in ("msg", "side", "price", "size")}
    per: dict[str, list] = {k: [] for k in ("ts_event", "ts_local", "first", "last", "prev")}
    per.update({k: [] for k in ("snap", "checksum", "file", "line")})
    n = start.last_update_id if start is not None and not chained else first_id
    truncated = 0
    pdec = sdec = 0
    for loc in located:
        m = loc.message
        rows = []
        for side, p, s in m.levels:
            price, size = to_unscaled(p, ps), to_unscaled(s, ss)
            if price is None or size is None:
                break
            rows.append((side, price, size))
        if len(rows) != len(m.levels):
            reason = f"{symbol}: a price or size is finer than the instrument's scale ({ps}, {ss})"
            rec.quarantine.append(
                record(rec.files[loc.file], loc.line, reason, f"{m.levels[len(rows)]}".encode())
            )
            continue
        for _, p, s in m.levels:
            pdec = max(pdec, _decimals(p))
            sdec = max(sdec, _decimals(s))
        k = len(per["snap"])
        if m.is_snapshot:
            books[schemas.BID].clear()
            books[schemas.ASK].clear()
        if m.depth is not None:  # Kraken: keep the subscribed depth, cut levels become deletes
            for side, price, size in rows:
                book = books[side]
                if size == 0:
                    book.discard(price)
                elif price not in book:
                    book.add(price)
            for side, book in books.items():
                while len(book) > m.depth:
                    price = book.pop(0 if side == schemas.BID else -1)
                    rows.append((side, price, 0))
                    truncated += 1
        if not rows:
            rows.append((0, 0, 0))  # a message without levels keeps its row (schemas docstring)
        for side, price, size in rows:
            cols["msg"].append(k)
            cols["side"].append(side)
            cols["price"].append(price)
            cols["size"].append(size)
        if chained:
            first = last = int(m.seq)  # type: ignore[arg-type]
            prev = None if m.is_snapshot else m.prev_seq
        elif m.is_snapshot:
            first = last = n
            prev = None
        else:
            n += 1
            first = last = n
            prev = n - 1
        checksum = m.checksum
        if checksum is None or (rec.venue == "okx" and checksum == 0):
            checksum = NO_CHECKSUM  # OKX sends 0 once checksums are retired (2026-06-23)
        else:
            checksum &= 0xFFFFFFFF
        per["ts_event"].append(m.ts_event)
        per["ts_local"].append(loc.ts_local)
        per["first"].append(first)
        per["last"].append(last)
        per["prev"].append(prev)
        per["snap"].append(m.is_snapshot)
        per["checksum"].append(checksum)
        per["file"].append(loc.file)
        per["line"].append(loc.line)
    events = _events_frame(inst, cols, per)
    return VenueDay(
        venue=rec.venue,
        symbol=symbol,
        instrument=inst,
        events=events,
        checksum=np.array(per["checksum"], np.int64),
        is_snapshot=np.array(per["snap"], np.bool_),
        file=np.array(per["file"], np.int32),
        line=np.array(per["line"], np.int64),
        files=[str(f) for f in rec.files],
        price_decimals=max(pdec, 0),
        size_decimals=max(sdec, 0),
        truncated=truncated,
    )


def _events_frame(inst: Instrument, cols: dict[str, list], per: dict[str, list]) -> pl.DataFrame:
    msg = np.array(cols["msg"], np.int64)
    side = np.array(cols["side"], np.int8)
    has_level = side != 0
    prev = np.array([-1 if p is None else p for p in per["prev"]], np.int64)

    def each(values: list | np.ndarray, dtype) -> np.ndarray:
        return np.asarray(values, dtype)[msg]

    frame = pl.DataFrame(
        {
            "ts_event": each(per["ts_event"], np.int64),
            "ts_local": each(per["ts_local"], np.int64),
            "msg_id": msg,
            "first_update_id": each(per["first"], np.int64),
            "last_update_id": each(per["last"], np.int64),
            "prev_update_id": each(prev, np.int64),
            "is_snapshot": each(per["snap"], np.bool_),
            "side": side,
            "price": schemas.from_unscaled(
                np.array(cols["price"], np.int64), inst.price_scale, has_level
            ),
            "size": schemas.from_unscaled(
                np.array(cols["size"], np.int64), inst.size_scale, has_level
            ),
        }
    )
    return frame.with_columns(
        pl.col("ts_event", "ts_local").cast(schemas.TS),
        pl.when(pl.col("is_snapshot") | (pl.col("prev_update_id") == -1))
        .then(None)
        .otherwise(pl.col("prev_update_id"))
        .alias("prev_update_id"),
        pl.when(pl.col("side") == 0).then(None).otherwise(pl.col("side")).alias("side"),
    ).cast(dict(schemas.raw_book_events(inst)))

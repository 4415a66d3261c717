"""Venues, markets and symbols: tick size, lot size, decimal scales and sequencing rule.

Prices and sizes are carried as fixed-point integers ("unscaled" values): a price ``p`` with
``price_scale`` s is the int ``p * 10**s``. The scale of a known instrument is the number of
decimals of its tick (lot) size, so every on-grid exchange string converts exactly.

An unknown symbol on a known venue still works: its scales are inferred from the decimal strings
the venue publishes (Binance writes a fixed number of decimals per symbol, e.g. ``"0.01000000"``
on spot), tick and lot sizes are then one unit of that scale. See ``infer_instrument``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # loaded where a schema is read: ``obpipeline --help`` starts without it
    import polars as pl

from obpipeline.errors import CaptureError

Market = Literal["spot", "usdm", "cm"]
SequencingRule = Literal["binance_spot", "binance_futures", "snapshot_replace"]

MARKETS: tuple[str, ...] = ("spot", "usdm", "cm")

# Venue, market and symbol names become lake path components (``venue=<v>/symbol=<s>``) and may
# come from file contents: only letters, digits, ``_`` and ``-``, so no name can leave the lake.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_name(what: str, value: object) -> str:
    """``value`` if it is a usable venue/market/symbol name (see NAME_PATTERN), else CaptureError."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        shown = repr(value) if not isinstance(value, str) else repr(value[:80])
        raise CaptureError(
            f"unusable {what} name {shown}: expected 1-64 letters, digits, '_' or '-'"
        )
    return value


@dataclass(frozen=True)
class Instrument:
    venue: str
    market: str
    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    sequencing: SequencingRule

    def __post_init__(self) -> None:
        for what in ("venue", "market", "symbol"):
            check_name(what, getattr(self, what))

    @property
    def price_scale(self) -> int:
        return _decimals(self.tick_size)

    @property
    def size_scale(self) -> int:
        return _decimals(self.lot_size)

    @property
    def tick_units(self) -> int:
        """The tick size as an unscaled integer (1 when the scale equals the tick's decimals)."""
        return int(self.tick_size.scaleb(self.price_scale))

    @property
    def lot_units(self) -> int:
        return int(self.lot_size.scaleb(self.size_scale))

    @property
    def venue_id(self) -> str:
        """The lake's ``venue=`` value, e.g. ``binance-usdm``."""
        return f"{self.venue}-{self.market}"


def safe_symbol(symbol: str) -> str:
    """A venue's symbol as a lake path component: ``XBT/CHF`` → ``XBT-CHF`` (checked)."""
    return check_name("symbol", symbol.replace("/", "-"))


def _decimals(x: Decimal) -> int:
    exponent = x.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _sequencing_for(venue: str, market: str) -> SequencingRule:
    if venue == "binance":
        return "binance_spot" if market == "spot" else "binance_futures"
    if venue == TARDIS:
        # Tardis has no update ids: sources/tardis.py numbers diff messages 1, 2, 3, ... and gives
        # a snapshot the id of the book it describes, under which the contiguous-id rule
        # (U == previous u + 1; a snapshot at L is bridged by U <= L + 1 <= u) *is* Tardis's
        # snapshot-replace semantics. "snapshot_replace" is not an update-id rule code
        # (book/sequencing.rule_code rejects it), so Tardis instruments name that rule.
        return "binance_spot"
    if venue in CHECKSUM_VENUES:
        # Like Tardis: messages numbered 1, 2, 3, ... by sources/checksum_venues/sequence.py (a snapshot takes
        # the id of the book it describes); OKX days that carry seqId/prevSeqId switch to the
        # chained rule there.
        return "binance_spot"
    return "snapshot_replace"


# Tardis.dev files: venue "tardis", market = the Tardis exchange id (e.g. "binance-futures",
# "deribit"); any exchange id is accepted, unknown symbols get inferred scales.
TARDIS = "tardis"
# Our Binance markets under their Tardis exchange ids (exports of Binance captures land here).
TARDIS_EXCHANGES: dict[str, str] = {
    "usdm": "binance-futures",
    "cm": "binance-delivery",
    "spot": "binance",
}


KNOWN: dict[tuple[str, str, str], Instrument] = {}


def _register(*instruments: Instrument) -> None:
    """Add instruments to ``KNOWN`` under (venue, market, symbol)."""
    KNOWN.update({(i.venue, i.market, i.symbol): i for i in instruments})


_register(
    # Spot book sizes aggregate many orders and carry the base asset's 8 decimals, finer than the
    # order step (0.00001): the size grid of the *book* is what matters here.
    Instrument(
        "binance", "spot", "BTCUSDT", Decimal("0.01"), Decimal("0.00000001"), "binance_spot"
    ),
    Instrument("binance", "usdm", "BTCUSDT", Decimal("0.1"), Decimal("0.001"), "binance_futures"),
    Instrument("binance", "cm", "BTCUSD_PERP", Decimal("0.1"), Decimal("1"), "binance_futures"),
)

# The same contracts as Tardis publishes them: same tick and lot, synthetic-id sequencing.
_register(
    *(
        Instrument(
            TARDIS,
            TARDIS_EXCHANGES[i.market],
            i.symbol,
            i.tick_size,
            i.lot_size,
            _sequencing_for(TARDIS, TARDIS_EXCHANGES[i.market]),
        )
        for i in list(KNOWN.values())
    )
)

# Venues whose book messages carry a CRC32 of the top of the book (sources/checksum_venues);
# any market name and symbol is accepted, unknown symbols get inferred scales.
CHECKSUM_VENUES: tuple[str, ...] = ("okx", "bitget", "kraken")
_register(
    Instrument("okx", "spot", "BTC-USDT", Decimal("0.1"), Decimal("0.00000001"), "binance_spot"),
    Instrument("okx", "swap", "UNI-USD-SWAP", Decimal("0.001"), Decimal("1"), "binance_spot"),
)

VENUES: tuple[str, ...] = ("binance", TARDIS, *CHECKSUM_VENUES)


def get_instrument(venue: str, market: str, symbol: str) -> Instrument | None:
    """The registered instrument, or None when the symbol is not known (see infer_instrument)."""
    if venue not in VENUES or (venue == "binance" and market not in MARKETS):
        raise ValueError(f"unknown venue/market {venue!r}/{market!r}; known: {VENUES} x {MARKETS}")
    return KNOWN.get((venue, market, symbol.upper()))


def infer_instrument(
    venue: str, market: str, symbol: str, price_strings: list[str], size_strings: list[str]
) -> Instrument:
    """Instrument for an unregistered symbol: scales from the widest decimal strings seen."""
    price_decimals = max((_string_decimals(s) for s in price_strings), default=0)
    size_decimals = max((_string_decimals(s) for s in size_strings), default=0)
    return Instrument(
        venue,
        market,
        symbol.upper(),
        Decimal(1).scaleb(-price_decimals),
        Decimal(1).scaleb(-size_decimals),
        _sequencing_for(venue, market),
    )


def _string_decimals(s: str) -> int:
    return len(s) - s.index(".") - 1 if "." in s else 0


def resolve_instrument(
    venue: str, market: str, symbol: str, price_strings: list[str], size_strings: list[str]
) -> Instrument:
    return get_instrument(venue, market, symbol) or infer_instrument(
        venue, market, symbol, price_strings, size_strings
    )


# The Decimal columns a lake frame's scales are read from: raw_book_events, then book_snapshots.
_SCALE_COLUMNS = (("price", "size"), ("bid_price_1", "bid_size_1"))


def instrument_from_schema(
    venue: str, market: str, symbol: str, schema: Mapping[str, pl.DataType] | None
) -> Instrument:
    """The instrument of a lake frame: the registered one, else tick and lot of one unit of the
    scales of its Decimal price/size columns, sequenced by the venue's own rule.

    Days already in the lake carry their scales in their schema, so an unregistered symbol reads
    back as the instrument it was written with; CaptureError when there is nothing to read.
    """
    import polars as pl

    known = KNOWN.get((venue, market, symbol.upper()))
    if known is not None:
        return known
    for price_col, size_col in _SCALE_COLUMNS:
        price, size = (schema or {}).get(price_col), (schema or {}).get(size_col)
        if isinstance(price, pl.Decimal) and isinstance(size, pl.Decimal):
            return Instrument(
                venue,
                market,
                symbol,
                Decimal(1).scaleb(-(price.scale or 0)),
                Decimal(1).scaleb(-(size.scale or 0)),
                _sequencing_for(venue, market),
            )
    raise CaptureError(
        f"{venue}-{market} {symbol}: unknown instrument and no Decimal price/size columns "
        "to read its scales from"
    )


def split_venue_id(venue_id: str) -> tuple[str, str]:
    """A lake ``venue=`` value back to (venue, market): ``binance-usdm`` → (binance, usdm)."""
    venue, _, market = venue_id.partition("-")
    return venue, market

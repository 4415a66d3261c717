"""The one int64 view of Decimal columns and the one instrument-of-a-schema."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obpipeline import schemas
from obpipeline.errors import CaptureError, PipelineError
from obpipeline.instruments import KNOWN, instrument_from_schema, split_venue_id

_VALUES = st.lists(st.one_of(st.none(), st.integers(-(10**17), 10**17)), min_size=0, max_size=40)


def _series(values: list[int | None], precision: int, scale: int) -> pl.Series:
    return pl.Series(
        "price",
        [None if v is None else Decimal(v).scaleb(-scale) for v in values],
        dtype=pl.Decimal(precision, scale),
    )


@settings(max_examples=60, deadline=None)
@given(values=_VALUES, precision=st.sampled_from([18, 38]), cut=st.integers(0, 5))
def test_unscaled_views_agree_with_python_decimals(values, precision, cut):
    """decimal64 and decimal128, with nulls and a sliced start (an Arrow offset)."""
    series = _series(values, precision, 4)[cut:]
    expect = [0 if v is None else v for v in values[cut:]]
    valid_expect = [v is not None for v in values[cut:]]
    values_out, valid = schemas.to_unscaled(series)
    assert values_out.tolist() == expect
    assert valid.tolist() == valid_expect
    plain = schemas.unscaled(series)
    assert plain.tolist() == expect
    plain[:] = 1  # writable, and not the column's own memory
    assert schemas.unscaled(series).tolist() == expect
    words, bits, offset, nulls = schemas.decimal_view(series)
    assert nulls == sum(not v for v in valid_expect)
    assert [int(w) for w, ok in zip(words[:, 0], valid_expect, strict=True) if ok] == [
        v for v in values[cut:] if v is not None
    ]
    got_valid = np.unpackbits(bits, bitorder="little")[offset : offset + len(words)]
    assert got_valid.astype(bool).tolist() == valid_expect


def test_decimal_view_refuses_other_types():
    with pytest.raises(TypeError, match="expected a Decimal"):
        schemas.decimal_view(pl.Series("price", [1.5]))


def test_instrument_from_schema_registered_wins():
    known = KNOWN[("binance", "usdm", "BTCUSDT")]
    assert instrument_from_schema("binance", "usdm", "BTCUSDT", None) is known
    other = {"price": pl.Decimal(18, 5), "size": pl.Decimal(18, 1)}
    assert instrument_from_schema("binance", "usdm", "btcusdt", other) is known


@pytest.mark.parametrize(
    ("venue_id", "rule"),
    [
        ("binance-spot", "binance_spot"),
        ("binance-usdm", "binance_futures"),
        ("binance-cm", "binance_futures"),
        # Tardis ids are synthetic and contiguous: the spot rule, not the futures one
        ("tardis-binance-futures", "binance_spot"),
        ("tardis-deribit", "binance_spot"),
    ],
)
def test_instrument_from_schema_scales_and_rule(venue_id, rule):
    venue, market = split_venue_id(venue_id)
    raw = {"price": pl.Decimal(18, 3), "size": pl.Decimal(18, 6)}
    snaps = {
        "ts_event": pl.Int64,
        "bid_price_1": pl.Decimal(18, 3),
        "bid_size_1": pl.Decimal(18, 6),
    }
    for schema in (raw, snaps):
        inst = instrument_from_schema(venue, market, "NEWCOIN", schema)
        assert (inst.venue, inst.market, inst.symbol) == (venue, market, "NEWCOIN")
        assert (inst.price_scale, inst.size_scale, inst.sequencing) == (3, 6, rule)
        assert inst.venue_id == venue_id


def test_instrument_from_schema_without_scales_is_a_pipeline_error():
    with pytest.raises(CaptureError, match="binance-usdm NEWCOIN: unknown instrument"):
        instrument_from_schema("binance", "usdm", "NEWCOIN", {"price": pl.Float64})
    with pytest.raises(PipelineError):
        instrument_from_schema("binance", "usdm", "NEWCOIN", None)

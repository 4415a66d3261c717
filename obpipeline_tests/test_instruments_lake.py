"""Instruments (known and inferred), schema conversions and the lake's atomic, deterministic writes."""

from __future__ import annotations

import os
from decimal import Decimal

import numpy as np
import polars as pl
import pytest

from obpipeline import lake, schemas
from obpipeline.instruments import get_instrument, infer_instrument, resolve_instrument
from obpipeline.sources.binance import lines_frame, parse_lines


def test_known_instruments() -> None:
    usdm = get_instrument("binance", "usdm", "btcusdt")
    assert (usdm.tick_size, usdm.lot_size, usdm.price_scale, usdm.size_scale) == (
        Decimal("0.1"),
        Decimal("0.001"),
        1,
        3,
    )
    assert usdm.sequencing == "binance_futures"
    assert get_instrument("binance", "spot", "BTCUSDT").sequencing == "binance_spot"
    assert get_instrument("binance", "cm", "BTCUSD_PERP").size_scale == 0
    assert get_instrument("binance", "usdm", "ETHUSDT") is None
    with pytest.raises(ValueError, match="unknown venue"):
        get_instrument("coinbase", "spot", "BTC-USD")
    # the checksum venues are known, any market; unknown symbols there infer their scales
    assert get_instrument("okx", "spot", "BTC-USDT").price_scale == 1
    assert get_instrument("kraken", "spot", "XBT-CHF") is None


def test_unknown_symbol_infers_scales_from_decimal_strings() -> None:
    inst = infer_instrument(
        "binance", "spot", "ethbtc", ["0.05123000", "0.05124000"], ["1.2000", "0.0010"]
    )
    assert (inst.symbol, inst.price_scale, inst.size_scale) == ("ETHBTC", 8, 4)
    assert inst.sequencing == "binance_spot"
    assert resolve_instrument("binance", "usdm", "BTCUSDT", [], []).tick_size == Decimal("0.1")


def test_unknown_symbol_capture_parses_exactly() -> None:
    line = (
        '1720000000000000000 {"stream":"ethusdt@depth@0ms","data":{"e":"depthUpdate","E":1720000000000,'
        '"T":1720000000000,"s":"ETHUSDT","U":5,"u":6,"pu":4,"b":[["3500.12","1.234"]],"a":[["3500.13","0.5"]]}}'
    )
    capture = parse_lines(lines_frame(line.encode(), "eth.gz"))
    assert (capture.instrument.market, capture.instrument.symbol) == ("usdm", "ETHUSDT")
    assert capture.instrument.price_scale == 2 and capture.instrument.size_scale == 3
    assert capture.events["price"].to_list() == [Decimal("3500.12"), Decimal("3500.13")]


def test_unscaled_round_trip_is_exact() -> None:
    values = np.array([617_998, -1, 0, 2**40], np.int64)
    valid = np.array([True, True, False, True])
    series = schemas.from_unscaled(values, 1, valid, "p")
    assert series.to_list() == [Decimal("61799.8"), Decimal("-0.1"), None, Decimal(2**40) / 10]
    back, ok = schemas.to_unscaled(series)
    assert back.tolist() == [617_998, -1, 0, 2**40] and ok.tolist() == valid.tolist()


def test_conform_names_the_bad_column() -> None:
    inst = get_instrument("binance", "usdm", "BTCUSDT")
    frame = schemas.empty(schemas.trades(inst)).with_columns(pl.col("price").cast(pl.Float64))
    with pytest.raises(ValueError, match="price"):
        schemas.conform(frame, schemas.trades(inst), "trades")


def test_atomic_write_is_deterministic_and_leaves_no_temp_files(tmp_path) -> None:
    frame = pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]})
    path = lake.write_partition(frame, "demo", "binance-usdm", "BTCUSDT", "2024-01-02", tmp_path)
    assert (
        path == tmp_path / "demo/venue=binance-usdm/symbol=BTCUSDT/date=2024-01-02/part-0.parquet"
    )
    first = path.read_bytes()
    lake.write_partition(frame, "demo", "binance-usdm", "BTCUSDT", "2024-01-02", tmp_path)
    assert path.read_bytes() == first
    assert os.listdir(path.parent) == ["part-0.parquet"]
    assert path.stat().st_mode & 0o044 == 0o044, "lake files must be readable by others"
    scanned = lake.scan_dataset("demo", tmp_path).collect()
    assert scanned["date"].cast(pl.String).to_list() == ["2024-01-02"] * 3


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "x.parquet"
    lake.write_parquet_atomic(pl.DataFrame({"a": [1]}), path)
    before = path.read_bytes()

    def boom(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        lake.write_parquet_atomic(pl.DataFrame({"a": [2]}), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["x.parquet"]


def test_missing_partition_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="book_checkpoint partition missing"):
        lake.scan_partition("book_checkpoint", "binance-usdm", "BTCUSDT", "2024-01-01", tmp_path)

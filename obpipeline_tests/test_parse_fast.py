"""The Binance fast pass's own mechanics against the Polars path (which defines the results).

test_engine.py covers random spellings of whole captures; these tests aim at what the fast pass
does internally: per-kind templates (a line that matches the previous one's bytes outside its
values, and lines that almost do), the text column read in place from Arrow string views
(inline short lines, slices, several chunks, nulls), the level storage growing past its first
size, and two parses at once on two threads (the scan releases the GIL).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obpipeline.sources import binance, binance_scan
from obpipeline_tests.test_engine import _both_paths, _same_capture

T0 = 1_720_000_000_000  # ms


def _trade(i: int, **over) -> str:
    data = {"e": "trade", "E": T0 + i, "T": T0 + i, "s": "BTCUSDT", "t": 100 + i}
    data.update({"p": f"{60000 + i % 7}.{i % 10}0", "q": f"0.{i % 900 + 1:03d}"})
    data.update({"X": "MARKET", "m": i % 2 == 0})
    data.update(over)
    return json.dumps({"stream": "btcusdt@trade", "data": data}, separators=(",", ":"))


def _diff(i: int, n_bids: int = 2, n_asks: int = 2, **over) -> str:
    data = {"e": "depthUpdate", "E": T0 + i, "T": T0 + i, "s": "BTCUSDT"}
    data.update({"U": 10 * i + 1, "u": 10 * i + 10, "pu": 10 * i})
    data["b"] = [[f"{60000 - k}.{k % 10}0", f"{k % 5}.00{k % 9}"] for k in range(n_bids)]
    data["a"] = [[f"{60001 + k}.{k % 10}0", f"{k % 3}.10{k % 7}"] for k in range(n_asks)]
    data.update(over)
    return json.dumps({"stream": "btcusdt@depth@0ms", "data": data}, separators=(",", ":"))


def _bbo(i: int) -> str:
    data = {"e": "bookTicker", "u": 10 * i + 3, "s": "BTCUSDT", "b": "60000.10", "B": "1.005"}
    data.update({"a": "60000.20", "A": f"{i % 50}.250", "T": T0 + i, "E": T0 + i + 1})
    return json.dumps({"stream": "btcusdt@bookTicker", "data": data}, separators=(",", ":"))


def _partial(i: int, levels: int = 20) -> str:
    data = {"e": "depthUpdate", "E": T0 + i, "T": T0 + i, "s": "BTCUSDT", "u": 10 * i + 5}
    data["b"] = [[f"{60000 - k}.00", f"{k + 1}.000"] for k in range(levels)]
    data["a"] = [[f"{60001 + k}.00", f"{k + 2}.500"] for k in range(levels)]
    return json.dumps({"stream": "btcusdt@depth20@100ms", "data": data}, separators=(",", ":"))


def _frame(records: list[str], file: str = "capture.gz") -> pl.DataFrame:
    texts = [
        r if r is None or not r.startswith("{") else f"{(T0 * 10**6) + 7} {r}" for r in records
    ]
    return pl.DataFrame(
        {"file": file, "line": range(1, len(texts) + 1), "text": texts},
        schema={"file": pl.String, "line": pl.Int64, "text": pl.String},
    )


def _check(lines: pl.DataFrame, expect_fast: bool | None = True, **kw):
    fast, slow = _both_paths(lines, **kw)
    if expect_fast is not None:
        assert (fast is not None) == expect_fast
    if fast is not None:
        _same_capture(fast, slow)
    return fast


def _clean(n: int) -> list[str]:
    out = []
    for i in range(n):
        out.append([_diff, _trade, _bbo, _diff, _trade][i % 5](i))
        if i % 9 == 0:
            out.append(_partial(i, levels=5 + i % 20))
    return out


def test_templates_on_a_clean_mixed_stream() -> None:
    fast = _check(_frame(_clean(400)))
    assert fast.stats["level_updates"] > 0 and fast.golden_depth.height > 0


@pytest.mark.parametrize(
    "odd",
    [
        _trade(5, X="LIMIT") + "#ok",  # a literal (non-value) field differs: a new template
        _trade(5).replace(',"m"', ', "m"') + "#ok",  # whitespace between fields
        _trade(5).replace('"t":105', '"t":105.0'),  # id as a float: the Polars path decides
        _trade(5).replace('"t":105', '"t":null'),  # null id: quarantined
        _trade(5).replace('"m":false', '"m":true') + "#ok",  # the other boolean value
        _trade(5).replace('"m":false', '"m":falsey'),
        _trade(5).replace('"m":false', '"m":null'),
        _trade(5).replace('"p":"60005.50"', '"p":"60005.5"')
        + "#ok",  # shorter value, same template
        _trade(5).replace('"p":"60005.50"', '"p":60005.5'),  # a number where a string is expected
        _trade(5).replace('"p":"60005.50"', '"p":"6e4"'),
        _trade(5).replace('"MARKET"', '"MARKÉT"'),  # non-ASCII in a skipped string
        _trade(5).replace('"MARKET"', '"MAR\\u004bET"'),  # an escape in a skipped string
        _trade(5)[:-1],  # truncated
        _trade(5) + " ",  # trailing whitespace
        _trade(5) + "}",
        _diff(5).replace('"b":[[', '"b":[ [') + "#ok",
        _diff(5).replace('"b":[[', '"b":null,"x":[['),
        _diff(5).replace('"pu":50', '"pu":50,"pu":50'),  # a duplicate key
        _diff(5, n_bids=0, n_asks=0) + "#ok",  # an empty message
        _diff(5, n_bids=30, n_asks=1) + "#ok",  # a longer level list, same template
        _diff(5).replace('"U":51', '"U":61'),  # U > u: quarantined
    ],
)
def test_lines_that_almost_match_the_template(odd: str) -> None:
    """``#ok``: a clean variant the fast pass must take; the others may go either way."""
    clean = odd.endswith("#ok")
    records = _clean(20)
    records.insert(12, odd.removesuffix("#ok"))
    _check(_frame(records), expect_fast=True if clean else None)
    _check(_frame(records), expect_fast=True if clean else None, market="usdm")


def test_text_column_in_place_layouts() -> None:
    """Inline views (lines <= 12 bytes), a sliced frame, several chunks, null lines."""
    records = _clean(60)
    records[3:3] = ["", "   ", None, "\t"]
    lines = _frame(records)
    _check(lines)
    _check(lines.slice(7, 100))
    chunked = pl.concat([lines.slice(0, 30), lines.slice(30, 40), lines.slice(70)], rechunk=False)
    assert chunked["text"].n_chunks() == 3
    _check(chunked)
    two_files = pl.concat([_frame(records, "a.gz"), _frame(_clean(30), "b.gz")], rechunk=False)
    _check(two_files)
    _check(_frame(records + ["garbage"]), expect_fast=False)  # 7 bytes: inline, unrecognised


def test_level_storage_grows() -> None:
    """More levels than the first guess of 4 per line + 64: the storage is regrown mid-scan."""
    records = [_diff(i, n_bids=200, n_asks=150) for i in range(12)]
    records += [_trade(i) for i in range(3)] + [_partial(99, levels=20)]
    fast = _check(_frame(records))
    assert fast.stats["level_updates"] == 12 * 350


def test_long_line_beyond_the_template_buffer() -> None:
    records = [_trade(i, X="M" * (binance_scan._TPL_BYTES + 10)) for i in range(5)] + _clean(10)
    _check(_frame(records))


def test_two_threads_at_once() -> None:
    lines = _frame(_clean(3000))
    parts = [lines.slice(0, 1800), lines.slice(1800)]
    alone = [binance.parse_lines(p) for p in parts]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(binance.parse_lines, parts * 2))
    for a, b in zip(alone * 2, together, strict=True):
        _same_capture(a, b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from("dtbp"), st.integers(0, 40)), min_size=1, max_size=40))
def test_random_sequences_of_kinds_and_sizes(seq) -> None:
    """Templates are per kind and rebuilt whenever a line does not fit: any interleaving."""
    make = {
        "d": lambda i, n: _diff(i, n_bids=n % 7, n_asks=n // 7),
        "t": lambda i, n: _trade(i, X="MARKET" if n % 3 else "LIMIT"),
        "b": lambda i, n: _bbo(i + n),
        "p": lambda i, n: _partial(i, levels=n % 21),
    }
    _check(_frame([make[k](i, n) for i, (k, n) in enumerate(seq)]), expect_fast=None)

"""Seeded corruptions of the real captures and of Tardis files: whatever the damage, no traceback,
exact line accounting, the damaged record quarantined with its line and reason (or one clear
error), no level at a price that is not in the input, no file outside the output root.

Each class corrupts ``HITS`` lines of the first ``SLICE`` lines of a real file at seeded
positions. ``FUZZ_SEEDS`` (env) runs more seeds; the slow variant runs every class on every whole
real file.
"""

from __future__ import annotations

import gzip
import os
import random
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obpipeline.errors import CaptureError
from obpipeline.sources import binance
from obpipeline_tests.conftest import BINANCE, require_binance_data

HITS = 3
SEEDS = range(int(os.environ.get("FUZZ_SEEDS", "1")))
REAL = "usdm/btcusdt_20240718.gz"
SLICE = 3000  # lines of REAL used by the default suite (its REST snapshot is line 14)

Corrupt = Callable[[str, random.Random], str | None]  # a line → its damaged form (None: n/a)


def _sub(pattern: str, repl: str, count: int = 1) -> Corrupt:
    def f(line: str, _: random.Random) -> str | None:
        out, n = re.subn(pattern, repl, line, count=count)
        return out if n else None

    return f


def _truncate(line: str, rnd: random.Random) -> str:
    return line[: rnd.randrange(len(line) // 3, len(line) - 1)]


def _byte(line: str, rnd: random.Random) -> str:
    i = rnd.randrange(20, len(line) - 1)
    return line[:i] + rnd.choice(['"', "}", "]", ",", "\\", "{"]) + line[i + 1 :]


DIFF = r"@depth@0ms"
# class → (kind of line it applies to: a regex the line must match, corruption, outcome)
# outcome: "quarantined" (each damaged line in the quarantine), "accepted" (valid data),
# "error" (one clear CaptureError for the whole input)
CLASSES: dict[str, tuple[str, Corrupt, str]] = {
    "null price": (DIFF, _sub(r'"b":\[\["[0-9.]+"', '"b":[[null'), "quarantined"),
    "null size": (DIFF, _sub(r'("a":\[\["[0-9.]+",)"[0-9.]+"', r"\1null"), "quarantined"),
    "NaN price": (DIFF, _sub(r'"b":\[\["[0-9.]+"', '"b":[["NaN"'), "quarantined"),
    "Infinity size": (DIFF, _sub(r'("b":\[\["[0-9.]+",)"[0-9.]+"', r'\1"Infinity"'), "quarantined"),
    "price as JSON number": (DIFF, _sub(r'"b":\[\["([0-9.]+)"', r'"b":[[\1'), "accepted"),
    "null level": (DIFF, _sub(r'"b":\[\[', '"b":[null,['), "quarantined"),
    "3-field level": (
        DIFF,
        _sub(r'"b":\[\[("[0-9.]+","[0-9.]+")\]', r'"b":[[\1,"1"]'),
        "quarantined",
    ),
    "missing E": (DIFF, _sub(r'"E":\d+,', ""), "quarantined"),
    "null T": (DIFF, _sub(r'"T":\d+', '"T":null'), "quarantined"),
    "E float": (DIFF, _sub(r'"E":(\d+)', r'"E":\1.5'), "quarantined"),
    "E bool": (DIFF, _sub(r'"E":\d+', '"E":true'), "quarantined"),
    "E overflows ns": (DIFF, _sub(r'"E":\d+', '"E":99999999999999999'), "quarantined"),
    "E in 1970": (DIFF, _sub(r'"E":\d+', '"E":5'), "quarantined"),
    "U > u": (DIFF, _sub(r'"U":(\d+)', r'"U":9\1'), "quarantined"),
    "negative u": (DIFF, _sub(r'"u":(\d+)', r'"u":-\1'), "quarantined"),
    "pu string": (DIFF, _sub(r'"pu":(\d+)', r'"pu":"x\1"'), "quarantined"),
    "bid list null": (DIFF, _sub(r'"b":\[.*?\],"a"', '"b":null,"a"'), "quarantined"),
    "receive ts negative": (r"^\d", _sub(r"^", "-"), "quarantined"),
    "receive ts zero": (r"^\d", _sub(r"^\d+", "0000000000000000000"), "quarantined"),
    "receive ts garbage": (r"^\d", _sub(r"^(\d{5})\d", r"\1x"), "quarantined"),
    "truncated line": ("", _truncate, "quarantined"),
    "one byte changed": ("", _byte, "any"),
    "other symbol": (r"btcusdt@", _sub(r"btcusdt@", "ethusdt@"), "quarantined"),
    "path in stream name": (r"btcusdt@", _sub(r"btcusdt@", "../../../../x@"), "quarantined"),
    "trade price zero": (r"@trade", _sub(r'"p":"[0-9.]+"', '"p":"0.0"'), "quarantined"),
    "trade size negative": (r"@trade", _sub(r'"q":"([0-9.]+)"', r'"q":"-\1"'), "quarantined"),
    "trade id float": (r"@trade", _sub(r'"t":(\d+)', r'"t":\1.25'), "quarantined"),
    "bookTicker null bid": (r"@bookTicker", _sub(r'"b":"[0-9.]+"', '"b":null'), "quarantined"),
    "bookTicker u missing": (r"@bookTicker", _sub(r'"u":\d+,', ""), "quarantined"),
    "snapshot price twice": (
        r"lastUpdateId",
        _sub(r'"bids":\[(\["[0-9.]+","[0-9.]+"\])', r'"bids":[\1,\1'),
        "quarantined",
    ),
    "snapshot empty asks": (r"lastUpdateId", _sub(r'"asks":\[.*\]', '"asks":[]'), "quarantined"),
    "blank line": ("", lambda line, _: "   ", "accepted"),
}
ALL_LINES = {"every stream name a path": (r"btcusdt@", _sub(r"btcusdt@", "../x@"), "error")}


def corrupt(
    lines: list[str], pattern: str, f: Corrupt, seed: int, hits: int
) -> tuple[list[str], list[int]]:
    """``hits`` lines matching ``pattern`` damaged by ``f`` (1-based line numbers returned)."""
    rnd = random.Random(seed)
    candidates = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    rnd.shuffle(candidates)
    out, hit = list(lines), []
    for i in candidates:
        damaged = f(lines[i], rnd)
        if damaged is None or damaged == lines[i]:
            continue
        out[i] = damaged
        hit.append(i + 1)
        if len(hit) == hits:
            break
    return out, sorted(hit)


def input_prices(text: str) -> set[Decimal]:
    """Every decimal that occurs as the first element of a level anywhere in the input."""
    found = re.findall(r'\[\s*"?(-?[0-9]+(?:\.[0-9]+)?)"?\s*,', text)
    return {Decimal(p) for p in found}


def check(lines: list[str], hit: list[int], outcome: str) -> dict[str, int]:
    """Parse as the pipeline does and assert the properties; returns counts for the table."""
    text = "\n".join(lines) + "\n"
    frame = binance.lines_frame(text.encode(), "f.gz")
    try:
        c = binance.parse_lines(frame)
    except CaptureError as exc:
        assert outcome in ("error", "any"), f"unexpected error: {exc}"
        assert "\n" not in str(exc)
        return {"error": 1}
    assert outcome != "error", "the input should have been refused"
    s = c.stats
    parts = ("blank_lines", "ignored_other_streams", "messages", "golden_bbo", "golden_depth")
    assert s["lines"] == sum(s[k] for k in parts) + s["trades"] + s["quarantined"], s
    q = dict(zip(c.quarantine["line"].to_list(), c.quarantine["reason"].to_list(), strict=True))
    assert c.quarantine["line"].is_unique().all()
    assert all(r for r in q.values()), "every quarantined line has its reason"
    if outcome == "quarantined":
        missing = [ln for ln in hit if ln not in q]
        assert not missing, f"damaged lines not quarantined: {missing}"
    if outcome == "accepted":
        assert not q, q
    prices = {Decimal(x) for x in c.events["price"].drop_nulls().cast(pl.String).to_list()}
    assert prices <= input_prices(text), sorted(prices - input_prices(text))[:5]
    assert all(p > 0 for p in prices)
    return {"quarantined": sum(ln in q for ln in hit), "hits": len(hit)}


@pytest.fixture(scope="module")
def real_lines() -> list[str]:
    require_binance_data()
    with gzip.open(BINANCE / REAL, "rt") as f:
        return f.read().splitlines()[:SLICE]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(CLASSES))
def test_corrupted_real_capture(real_lines, name: str, seed: int) -> None:
    pattern, f, outcome = CLASSES[name]
    lines, hit = corrupt(real_lines, pattern, f, seed, HITS)
    assert hit, f"class {name!r} found nothing to corrupt"
    check(lines, hit, outcome)


@pytest.mark.parametrize("name", sorted(ALL_LINES))
def test_corrupted_everywhere_is_one_clear_error(real_lines, name: str) -> None:
    pattern, f, outcome = ALL_LINES[name]
    lines, hit = corrupt(real_lines, pattern, f, 0, len(real_lines))
    assert check(lines, hit, outcome) == {"error": 1}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(sorted(CLASSES)), st.integers(0, 10**6)), max_size=6),
    st.integers(0, 300),
)
def test_mixed_corruptions_on_a_real_slice(real_lines, damage, start) -> None:
    """Several classes at once on a slice (the fast pass gives up; the Polars path decides)."""
    lines = real_lines[start : start + 400]
    hit_all: list[int] = []
    for name, seed in damage:
        pattern, f, outcome = CLASSES[name]
        if outcome == "accepted" or name == "one byte changed":
            continue
        lines, hit = corrupt(lines, pattern, f, seed, 1)
        hit_all += hit
    # a later class may re-damage a line: it is still damaged, and must still be quarantined
    check(lines, sorted(set(hit_all)), "quarantined")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CLASSES))
def test_corrupted_every_real_file_many_seeds(name: str) -> None:
    base = require_binance_data()
    pattern, f, outcome = CLASSES[name]
    for path in sorted(base.glob("*/*.gz")):
        with gzip.open(path, "rt") as fh:
            lines = fh.read().splitlines()
        for seed in range(5):
            damaged, hit = corrupt(lines, pattern, f, seed, 10)
            if hit:
                check(damaged, hit, outcome)


@pytest.mark.parametrize(
    "name", ["path in stream name", "other symbol", "E overflows ns", "receive ts zero"]
)
def test_cli_writes_only_under_its_root(tmp_path, monkeypatch, capsys, real_lines, name) -> None:
    """The replay command on damaged input: files only under --out, no far-away partition."""
    from obpipeline.cli import main

    pattern, f, _ = CLASSES[name]
    lines, _ = corrupt(real_lines, pattern, f, 0, HITS)
    work = tmp_path / "work"
    work.mkdir()
    src = work / "c.gz"
    src.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    monkeypatch.chdir(work)
    out = tmp_path / "out"
    assert main(["replay", str(src), "--out", str(out), "--checkpoint-out", str(out / "ck")]) == 0
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != src]
    assert written and all(out in p.parents for p in written)
    assert {p.name for p in out.rglob("date=*")} <= {"date=2024-07-18", "date=2024-07-19"}
    assert "quarantined" in capsys.readouterr().out


# ----------------------------------------------------------------------------- damaged files


def _cut(raw: bytes, rnd: random.Random) -> bytes:
    return raw[: rnd.randrange(len(raw) // 4, len(raw) - 64)]


def _garble(raw: bytes, rnd: random.Random) -> bytes:
    at = rnd.randrange(len(raw) // 4, len(raw) - 512)
    return raw[:at] + bytes(b ^ 0xA5 for b in raw[at : at + 256]) + raw[at + 256 :]


def _trailing(raw: bytes, rnd: random.Random) -> bytes:
    return raw + rnd.randbytes(rnd.randrange(1, 4096))


GZIP_DAMAGE = {"truncated": _cut, "corrupt block": _garble, "trailing garbage": _trailing}


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("name", sorted(GZIP_DAMAGE))
def test_damaged_real_gzip_is_quarantined_and_verify_fails(tmp_path, capsys, name, seed) -> None:
    """Seeded gzip damage of a real capture: what can be read is replayed, the unreadable rest
    is one quarantine entry, the accounting holds, and verify exits 1 (no traceback)."""
    import json

    from obpipeline.cli import main

    raw = (require_binance_data() / REAL).read_bytes()
    src = tmp_path / "btcusdt_20240718.gz"
    src.write_bytes(GZIP_DAMAGE[name](raw, random.Random(seed)))
    code = main(["verify", str(src), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    parts = ("blank_lines", "ignored_other_streams", "messages", "golden_bbo", "golden_depth",
             "trades", "quarantined")  # fmt: skip
    assert summary["lines"] == sum(summary[k] for k in parts)
    # a corrupt deflate block can decode "successfully" into garbage lines until the CRC check:
    # those are quarantined line by line; the file-level damage is always reported
    assert summary["damaged_files"] == 1 and summary["quarantined"] >= 1
    assert code == 1 and summary["verdict"] == "fail"
    assert any("damaged file" in f for f in summary["failures"])
    (qpath,) = (tmp_path / "out").glob("quarantine/*/*/*/*.parquet")
    reasons = pl.read_parquet(qpath)["reason"]
    assert reasons.str.contains("compressed byte").sum() == 1


# ----------------------------------------------------------------------------- Tardis


@pytest.fixture(scope="module")
def tardis_l2(tmp_path_factory) -> list[str]:
    """A real capture exported as Tardis incremental_book_L2 (rows of a real book)."""
    require_binance_data()
    from obpipeline.export.tardis import export_capture

    out = tmp_path_factory.mktemp("tardis")
    export_capture([BINANCE / REAL], out)
    (l2,) = out.glob("*incremental_book_L2*")
    with gzip.open(l2, "rt") as f:
        return f.read().splitlines()


def _field(i: int, value: Callable[[str], str]) -> Corrupt:
    def f(line: str, _: random.Random) -> str:
        cells = line.split(",")
        cells[i] = value(cells[i])
        return ",".join(cells)

    return f


ROW = r"^binance-futures,"
TARDIS: dict[str, tuple[str, Corrupt, str]] = {
    "is_snapshot TRUE": (r",true,", _field(4, lambda v: v.upper()), "quarantined"),
    "is_snapshot 1": (ROW, _field(4, lambda v: "1"), "quarantined"),
    "price nan": (ROW, _field(6, lambda v: "nan"), "quarantined"),
    "price inf": (ROW, _field(6, lambda v: "inf"), "quarantined"),
    "price empty": (ROW, _field(6, lambda v: ""), "quarantined"),
    "price negative": (ROW, _field(6, lambda v: "-" + v), "quarantined"),
    "amount negative": (ROW, _field(7, lambda v: "-1"), "quarantined"),
    "side buy": (ROW, _field(5, lambda v: "buy"), "quarantined"),
    "timestamp overflows ns": (ROW, _field(2, lambda v: "99999999999999999"), "quarantined"),
    "local_timestamp negative": (ROW, _field(3, lambda v: "-" + v), "quarantined"),
    "timestamp not a number": (ROW, _field(2, lambda v: v + "x"), "quarantined"),
    "exchange with a path": (ROW, _field(0, lambda v: v + "/../../x"), "quarantined"),
    "other symbol": (ROW, _field(1, lambda v: "ETHUSDT"), "quarantined"),
    "field missing": (ROW, lambda line, _: line.rsplit(",", 1)[0], "quarantined"),
    "field extra": (ROW, lambda line, _: line + ",1", "quarantined"),
    "truncated row": (ROW, _truncate, "any"),
}


def check_tardis(tmp_path: Path, lines: list[str], hit: list[int], outcome: str, **kw) -> None:
    from obpipeline.sources.tardis import read_tardis

    path = tmp_path / "l2.csv"
    path.write_text("\n".join(lines) + "\n")
    try:
        c = read_tardis([path], **kw)
    except CaptureError as exc:
        assert outcome in ("error", "any"), f"unexpected error: {exc}"
        assert "\n" not in str(exc)
        return
    assert outcome != "error", "the input should have been refused"
    s = c.stats
    assert len(lines) - 1 == s["blank_lines"] + s["rows"] + s["other_instrument_rows"], s
    q = set(c.quarantine["line"].to_list())
    assert c.quarantine["reason"].null_count() == 0
    if outcome == "quarantined":
        assert not [ln for ln in hit if ln not in q], (hit, c.quarantine)
    prices = {Decimal(x) for x in c.events["price"].drop_nulls().cast(pl.String).to_list()}
    given_prices = {Decimal(x.split(",")[6]) for x in lines[1:] if _is_number(x, 6)}
    assert prices <= given_prices and all(p > 0 for p in prices)
    assert [p for p in tmp_path.rglob("*") if p != path] == []


def _is_number(line: str, i: int) -> bool:
    cells = line.split(",")
    return len(cells) > i and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", cells[i]) is not None


@pytest.mark.parametrize("name", sorted(TARDIS))
def test_corrupted_tardis_file(tmp_path, tardis_l2, name: str) -> None:
    pattern, f, outcome = TARDIS[name]
    lines, hit = corrupt(tardis_l2, pattern, f, 0, HITS)
    assert hit
    check_tardis(tmp_path, lines, hit, outcome)


def test_tardis_symbol_matching_nothing_is_an_error(tmp_path, tardis_l2) -> None:
    from obpipeline.sources.tardis import read_tardis

    path = tmp_path / "l2.csv"
    path.write_text("\n".join(tardis_l2) + "\n")
    with pytest.raises(CaptureError, match="no rows of binance-futures ETHUSDT"):
        read_tardis([path], symbol="ETHUSDT")


def test_tardis_first_row_with_a_path_is_a_clear_error(tmp_path, tardis_l2) -> None:
    lines = list(tardis_l2)
    lines[1] = lines[1].replace("BTCUSDT", "../../x", 1)
    check_tardis(tmp_path, lines, [2], "error")

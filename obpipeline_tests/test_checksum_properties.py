"""Property tests: random venue streams with checksums from an independent model (a dict of the
venue's own strings, as the venue computes it) always match; a corrupted checksum is caught at
its message and the book stays invalid until the next snapshot; the compiled engine and the
reference replayer (compiled CRC and Python + zlib) agree on rows, counters and reports."""

from __future__ import annotations

import zlib
from decimal import Decimal
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obpipeline.book import checksum as ck
from obpipeline.sources.checksum_venues.message import ASK, BID, BookMessage
from obpipeline.sources.checksum_venues.recording import Located, Recording
from obpipeline.sources.checksum_venues.sequence import sequence


def text(units: int, decimals: int, strip: bool) -> str:
    d = Decimal(units).scaleb(-decimals)
    s = f"{d:.{decimals}f}"
    if strip and "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def model_crc(venue: str, bids: dict[str, str], asks: dict[str, str]) -> int:
    """The venue's rule on the venue's strings (independent of book/checksum.py)."""
    b = sorted(bids.items(), key=lambda kv: -Decimal(kv[0]))
    a = sorted(asks.items(), key=lambda kv: Decimal(kv[0]))
    if venue == "kraken":
        digits = lambda s: s.replace(".", "").lstrip("0")  # noqa: E731
        body = "".join(digits(p) + digits(s) for p, s in a[:10] + b[:10])
    else:
        parts = []
        for i in range(max(len(b[:25]), len(a[:25]))):
            if i < len(b):
                parts += list(b[i])
            if i < len(a):
                parts += list(a[i])
        body = ":".join(parts)
    return zlib.crc32(body.encode())


@st.composite
def venue_streams(draw):
    venue = draw(st.sampled_from(["okx", "bitget", "kraken"]))
    pdec, sdec = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    strip = venue == "okx"
    depth = draw(st.integers(2, 12)) if venue == "kraken" else None
    n = draw(st.integers(1, 40))
    level = st.tuples(st.integers(1, 60), st.integers(0, 400))
    messages: list[BookMessage] = []
    bids: dict[str, str] = {}
    asks: dict[str, str] = {}
    for k in range(n):
        snapshot = k == 0 or draw(st.integers(0, 12)) == 0
        levels = []
        if snapshot:
            bids.clear()
            asks.clear()
        for side in (BID, ASK):
            for tick, size in draw(st.lists(level, max_size=30 if snapshot else 4)):
                units = tick if side == BID else 100 + tick  # never crossed
                if snapshot and size == 0:
                    continue
                p, s = text(units, pdec, strip), text(size, sdec, strip)
                book = bids if side == BID else asks
                if size == 0:
                    book.pop(p, None)
                else:
                    book[p] = s
                levels.append((side, p, s))
        if depth is not None:  # the client keeps the subscribed depth
            for book, best_first in ((bids, -1), (asks, 1)):
                keep = sorted(book, key=lambda p: best_first * Decimal(p))[:depth]
                for p in set(book) - set(keep):
                    del book[p]
        crc = model_crc(venue, bids, asks)
        if venue != "kraken" and crc >= 1 << 31:
            crc -= 1 << 32  # OKX and Bitget send signed int32
        m = BookMessage("AB-CD", 1_700_000_000_000_000_000 + k, snapshot, levels, crc)
        m.depth = depth
        messages.append(m)
    corrupt = draw(st.one_of(st.none(), st.integers(0, n - 1)))
    if corrupt is not None:
        messages[corrupt].checksum = (messages[corrupt].checksum or 0) ^ 1
    located = [Located(m, 0, i + 1, m.ts_event) for i, m in enumerate(messages)]
    return Recording(venue, [Path("mem")], {"AB-CD": located}), corrupt


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venue_streams())
def test_random_streams_match_the_model_and_engines_agree(case) -> None:
    rec, corrupt = case
    day = sequence(rec, "AB-CD")
    runs = {e: ck.replay_checked(day, 3, e) for e in ("engine", "reference")}
    (res, rep), (ref, ref_rep) = runs["engine"], runs["reference"]
    assert res.snapshots.equals(ref.snapshots)
    assert res.counters == ref.counters
    assert rep.to_dict() == ref_rep.to_dict()
    assert res.checkpoint.is_valid == ref.checkpoint.is_valid
    assert res.counters.gaps == 0 and res.counters.crossed == 0
    valid = res.snapshots["is_valid"].to_list()
    has = day.checksum != ck.NO_CHECKSUM  # OKX: 0 means "no checksum" (an empty book's CRC too)
    if corrupt is None or not has[corrupt]:
        assert rep.mismatched == 0 and rep.compared == has.sum() and all(valid)
        return
    assert rep.mismatched == 1 and rep.mismatches[0]["msg_id"] == corrupt
    nxt = next((k for k in range(corrupt + 1, day.messages) if day.is_snapshot[k]), day.messages)
    assert valid == [not (corrupt <= k < nxt) for k in range(day.messages)]
    assert rep.compared == has.sum() - has[corrupt + 1 : nxt].sum()
    assert res.checkpoint.is_valid == (nxt < day.messages)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(ck.RULES)),
    st.integers(0, 8),
    st.integers(0, 8),
    st.integers(0, 3),
    st.integers(0, 3),
    st.lists(st.tuples(st.integers(1, 10**12), st.integers(1, 10**12)), max_size=30),
    st.lists(st.tuples(st.integers(1, 10**12), st.integers(1, 10**12)), max_size=30),
)
def test_compiled_crc_equals_reference(venue, ps, ss, extra_p, extra_s, bids, asks) -> None:
    """The compiled string+CRC equals Python + zlib for any levels, scales and printed decimals."""
    rule = ck.RULES[venue]
    decimals = (ps + extra_p, ss + extra_s) if not rule.strip_zeros else (ps, ss)
    depth = rule.depth
    levels = ck.ChecksumLevels(*(np.zeros((1, 30), np.int64) for _ in range(4)), None, None)  # type: ignore[arg-type]
    for i, (p, s) in enumerate(bids):
        levels.bid_price[0, i], levels.bid_size[0, i] = p, s
    for i, (p, s) in enumerate(asks):
        levels.ask_price[0, i], levels.ask_size[0, i] = p, s
    levels.n_bid = np.array([len(bids)], np.int64)
    levels.n_ask = np.array([len(asks)], np.int64)

    class Day:  # the fields row_crcs reads
        pass

    day = Day()
    day.venue = venue
    day.instrument = type("I", (), {"price_scale": ps, "size_scale": ss})()
    day.price_decimals, day.size_decimals = decimals
    rows = np.zeros(1, np.int64)
    compiled = ck.row_crcs(day, levels, rows, "engine")  # type: ignore[arg-type]
    reference = ck.row_crcs(day, levels, rows, "reference")  # type: ignore[arg-type]
    assert compiled.tolist() == reference.tolist()
    expected = ck.checksum_string(rule, bids[:depth], asks[:depth], (ps, ss), decimals)
    assert reference[0] == zlib.crc32(expected)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["okx", "bitget", "kraken"]),
    st.lists(
        st.tuples(
            st.sampled_from(["bid", "ask"]), st.integers(1, 40), st.integers(0, 10**6)
        ),  # (side, price offset from the mid, size; 0 deletes)
        min_size=1,
        max_size=120,
    ),
    st.integers(1, 4),
)
def test_compiled_crc_is_incremental_yet_exact(venue, edits, per_row) -> None:
    """Rows that evolve by inserts, deletes and size changes (levels shifting under the
    incremental CRC's merge walk): every row's compiled CRC equals Python + zlib's."""
    mid, books = 1_000, {"bid": {}, "ask": {}}
    rows: list[tuple[list, list]] = []
    for n, (side, offset, size) in enumerate(edits):
        price = mid - offset if side == "bid" else mid + offset
        if size:
            books[side][price] = size
        else:
            books[side].pop(price, None)
        if n % per_row == per_row - 1 or n == len(edits) - 1:
            rows.append((sorted(books["bid"].items(), reverse=True), sorted(books["ask"].items())))
    width = 40
    levels = ck.ChecksumLevels(
        *(np.zeros((len(rows), width), np.int64) for _ in range(4)),
        np.array([len(b) for b, _ in rows], np.int64),
        np.array([len(a) for _, a in rows], np.int64),
    )
    for r, (bids, asks) in enumerate(rows):
        for i, (p, s) in enumerate(bids):
            levels.bid_price[r, i], levels.bid_size[r, i] = p, s
        for i, (p, s) in enumerate(asks):
            levels.ask_price[r, i], levels.ask_size[r, i] = p, s

    class Day:  # the fields row_crcs reads
        pass

    day = Day()
    day.venue = venue
    day.instrument = type("I", (), {"price_scale": 1, "size_scale": 3})()
    day.price_decimals, day.size_decimals = (1, 3) if venue == "okx" else (2, 4)
    every = np.arange(len(rows), dtype=np.int64)
    compiled = ck.row_crcs(day, levels, every, "engine")  # type: ignore[arg-type]
    reference = ck.row_crcs(day, levels, every, "reference")  # type: ignore[arg-type]
    assert compiled.tolist() == reference.tolist()

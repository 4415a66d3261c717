"""The compiled engine equals the reference replayer exactly: random streams and every real capture.

The random streams come from a small exchange model (a true book moved by diffs) and are then
damaged the ways real feeds are: lost messages (gaps), repeated and stale messages, snapshots
mid-stream (aligned with the book, misaligned, or wrong), empty messages, deletions of absent
levels, crossing updates, outliers thousands of ticks away, prices on a coarser grid than the
scale's unit; optionally starting from a checkpoint (valid or not, possibly crossed or holding
size-0 levels). ``max_dense`` is drawn small too, so the outlier slots and bitmap skips are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obpipeline import book, schemas
from obpipeline.book import engine, parquet_stream, replayer
from obpipeline.book.parquet_stream import EVENT_COLUMNS
from obpipeline.book.stream import Book, ReplayResult
from obpipeline.instruments import get_instrument
from obpipeline_tests.conftest import BINANCE, CONTINUATIONS, STANDALONE

FUTURES = get_instrument("binance", "usdm", "BTCUSDT")
SPOT = get_instrument("binance", "spot", "BTCUSDT")
T0 = 1_720_000_000_000_000_000


# ----------------------------------------------------------------------------- stream model


@dataclass
class Msg:
    snapshot: bool
    first_u: int
    last_u: int
    prev_u: int | None
    levels: list[tuple[int, int, int]]  # (side, price, size)
    ts: int


@dataclass
class Stream:
    futures: bool
    msgs: list[Msg] = field(default_factory=list)

    def frame(self) -> pl.DataFrame:
        inst = FUTURES if self.futures else SPOT
        cols: dict[str, list] = {k: [] for k in EVENT_COLUMNS}
        for k, m in enumerate(self.msgs):
            rows = m.levels or [(0, 0, 0)]  # an empty message keeps one null-side row
            for side, price, size in rows:
                cols["ts_event"].append(m.ts)
                cols["ts_local"].append(m.ts + 7)
                cols["msg_id"].append(k)
                cols["first_update_id"].append(m.first_u)
                cols["last_update_id"].append(m.last_u)
                cols["prev_update_id"].append(m.prev_u)
                cols["is_snapshot"].append(m.snapshot)
                cols["side"].append(side or None)
                cols["price"].append(price)
                cols["size"].append(size)
        present = np.array([s is not None for s in cols["side"]], np.bool_)
        frame = pl.DataFrame(
            [
                pl.Series("ts_event", cols["ts_event"], pl.Int64).cast(schemas.TS),
                pl.Series("ts_local", cols["ts_local"], pl.Int64).cast(schemas.TS),
                pl.Series("msg_id", cols["msg_id"], pl.Int64),
                pl.Series("first_update_id", cols["first_update_id"], pl.Int64),
                pl.Series("last_update_id", cols["last_update_id"], pl.Int64),
                pl.Series("prev_update_id", cols["prev_update_id"], pl.Int64),
                pl.Series("is_snapshot", cols["is_snapshot"], pl.Boolean),
                pl.Series("side", cols["side"], pl.Int8),
                schemas.from_unscaled(
                    np.array(cols["price"], np.int64), inst.price_scale, present, "price"
                ),
                schemas.from_unscaled(
                    np.array(cols["size"], np.int64), inst.size_scale, present, "size"
                ),
            ]
        )
        return schemas.conform(frame, schemas.raw_book_events(inst), "raw_book_events")


@st.composite
def streams(draw) -> tuple[Stream, Book | None, int]:
    """A damaged exchange stream, an optional starting checkpoint, and a dense window size."""
    futures = draw(st.booleans())
    grid = draw(st.sampled_from([1, 1, 5, 10]))  # prices on a coarser grid than the unit
    mid = 600_000
    width = draw(st.sampled_from([3, 8, 30]))  # ticks either side of the mid: small → crossing

    def price(side: int) -> int:
        if draw(st.integers(0, 19)) == 0:  # outlier thousands of ticks away
            off = draw(st.integers(2_000, 60_000))
            return (mid + (off if draw(st.booleans()) else -off)) * grid
        off = draw(st.integers(-2, width))  # mostly on its own side, sometimes through the mid
        return (mid - side * off) * grid

    def size() -> int:
        return draw(st.sampled_from([0, 0, 1, 2, 5, 1000, 123_456]))

    truth: dict[tuple[int, int], int] = {}
    u = draw(st.integers(1, 10**12))
    ts = T0
    stream = Stream(futures)
    history: list[Msg] = []

    def levels(n: int) -> list[tuple[int, int, int]]:
        out = []
        for _ in range(n):
            side = draw(st.sampled_from([1, -1]))
            out.append((side, price(side), size()))
        return out

    def book_levels() -> list[tuple[int, int, int]]:
        return [(s, p, q) for (s, p), q in truth.items()]

    checkpoint = None
    if draw(st.booleans()):
        bids = sorted({price(1) for _ in range(draw(st.integers(0, 6)))}, reverse=True)
        asks = sorted({price(-1) for _ in range(draw(st.integers(0, 6)))})
        truth.update({(1, p): draw(st.sampled_from([1, 3, 7])) for p in bids})
        truth.update({(-1, p): draw(st.sampled_from([1, 3, 7])) for p in asks})
        bid_size = [truth[(1, p)] for p in bids]
        ask_size = [truth[(-1, p)] for p in asks]
        if bids and draw(st.integers(0, 9)) == 0:
            bid_size[0] = 0  # a size-0 level (kept by the reference as a level)
        checkpoint = Book(
            bid_price=np.array(bids, np.int64),
            bid_size=np.array(bid_size, np.int64),
            ask_price=np.array(asks, np.int64),
            ask_size=np.array(ask_size, np.int64),
            last_update_id=u + draw(st.sampled_from([0, 0, 0, -1, 1, 5])),
            is_valid=draw(st.booleans()),
            ts_event=T0 - 5,
            ts_local=T0 - 3,
        )

    for _ in range(draw(st.integers(0, 40))):
        ts += draw(st.integers(0, 3)) * 1_000_000
        kind = draw(
            st.sampled_from(
                ["diff"] * 8 + ["empty", "gap", "dup", "stale", "snap", "snap_off", "snap_bad"]
            )
        )
        if kind in ("diff", "empty", "gap"):
            n_ids = draw(st.integers(1, 4))
            msg = Msg(False, u + 1, u + n_ids, u if futures else None, [], ts)
            if kind != "empty":
                msg.levels = levels(draw(st.integers(1, 6)))
            for s, p, q in msg.levels:
                if q:
                    truth[(s, p)] = q
                else:
                    truth.pop((s, p), None)
            u += n_ids
            history.append(msg)
            if kind != "gap":  # a gap: the exchange moved on, the message was lost
                stream.msgs.append(msg)
        elif kind in ("dup", "stale") and history:
            old = history[draw(st.integers(0, len(history) - 1))]
            stream.msgs.append(Msg(False, old.first_u, old.last_u, old.prev_u, old.levels, ts))
        elif kind.startswith("snap"):
            lid = u
            if kind == "snap_off":
                lid = u + draw(st.sampled_from([-3, -1, 1, 2]))
            lv = book_levels()
            if kind == "snap_bad" and lv:
                s, p, q = lv[draw(st.integers(0, len(lv) - 1))]
                lv = [x for x in lv if x != (s, p, q)] + [(s, p, q + 1)]
            if draw(st.integers(0, 4)) == 0:
                lv = lv + [(1, price(1), 0)]  # a zero row in a snapshot
            stream.msgs.append(Msg(True, lid, lid, None, lv, ts))
    max_dense = draw(st.sampled_from([engine.MAX_DENSE, 64, 8, 1]))
    return stream, checkpoint, max_dense


# ----------------------------------------------------------------------------- comparison


def assert_same(ref: ReplayResult, got: ReplayResult) -> None:
    assert got.counters.to_dict() == ref.counters.to_dict()
    assert got.snapshots.schema == ref.snapshots.schema
    assert got.snapshots.equals(ref.snapshots), _first_difference(ref.snapshots, got.snapshots)
    a, b = ref.checkpoint, got.checkpoint
    for name in ("bid_price", "bid_size", "ask_price", "ask_size"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert getattr(b, name).dtype == np.int64
    assert (a.last_update_id, a.is_valid, a.ts_event, a.ts_local) == (
        b.last_update_id,
        b.is_valid,
        b.ts_event,
        b.ts_local,
    )


def _first_difference(a: pl.DataFrame, b: pl.DataFrame) -> str:
    if a.height != b.height:
        return f"rows: reference {a.height}, engine {b.height}"
    for col in a.columns:
        diff = ~(a[col].eq_missing(b[col]))
        if diff.any():
            i = int(diff.arg_true()[0])
            return f"row {i} column {col}: reference {a[col][i]!r}, engine {b[col][i]!r}"
    return "equal"


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(streams())
def test_engine_equals_reference_on_random_streams(case) -> None:
    stream, checkpoint, max_dense = case
    inst = FUTURES if stream.futures else SPOT
    events = stream.frame()
    ref = replayer.replay(events, inst, depth=5, checkpoint=checkpoint)
    got = engine.replay(events, inst, depth=5, checkpoint=checkpoint, max_dense=max_dense)
    assert_same(ref, got)


def test_empty_stream_and_checkpoint_round_trip() -> None:
    events = Stream(True).frame()
    ck = Book(
        np.array([600_001, 600_000], np.int64),
        np.array([2, 1], np.int64),
        np.array([599_999], np.int64),  # crossed: kept as is until a message repairs it
        np.array([4], np.int64),
        last_update_id=77,
        is_valid=True,
        ts_event=5,
        ts_local=6,
    )
    assert_same(
        replayer.replay(events, FUTURES, checkpoint=ck),
        engine.replay(events, FUTURES, checkpoint=ck),
    )
    assert_same(replayer.replay(events, FUTURES), engine.replay(events, FUTURES))


def test_outliers_far_apart_use_sparse_slots() -> None:
    """Prices spread over ~10^8 ticks: the window stays small, the rest goes to outlier slots."""
    rng = np.random.default_rng(3)
    stream = Stream(True)
    u = 100
    stream.msgs.append(Msg(True, u, u, None, [(1, 600_000, 5), (-1, 600_001, 5)], T0))
    for k in range(300):
        lv = [
            (int(s), int(600_000 + s * -rng.integers(0, 40)), int(rng.integers(0, 3)))
            for s in rng.choice([1, -1], 5)
        ]
        lv.append((1, int(rng.integers(1, 500_000)), int(rng.integers(0, 2))))
        lv.append((-1, int(rng.integers(700_000, 10**9)), int(rng.integers(0, 2))))
        stream.msgs.append(Msg(False, u + 1, u + 1, u, lv, T0 + k))
        u += 1
    events = stream.frame()
    grid = engine.build_grid(*_side_price(events), np.zeros(0, np.int64), max_dense=1000)
    assert grid.width == 1000 and grid.slots - grid.width > 100  # hundreds of outlier slots
    assert_same(
        replayer.replay(events, FUTURES),
        engine.replay(events, FUTURES, max_dense=1000),
    )


def _side_price(events: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    price, _ = schemas.to_unscaled(events["price"])
    return events["side"].fill_null(0).to_numpy().astype(np.int8), price


def test_grid_uses_gcd_of_price_differences() -> None:
    side = np.array([1, 1, -1, 0], np.int8)
    price = np.array([1_000_030, 1_000_010, 1_000_070, 3], np.int64)  # the 0-side row is ignored
    grid = engine.build_grid(side, price, np.zeros(0, np.int64))
    assert (grid.base, grid.tick, grid.width) == (1_000_010, 20, 4)


# ----------------------------------------------------------------------------- real captures


def _real_files() -> list[str]:
    names = [a for a, _ in CONTINUATIONS] + [b for _, b in CONTINUATIONS] + STANDALONE
    return sorted(names)


@pytest.mark.parametrize("name", _real_files())
def test_engine_equals_reference_on_real_capture(name: str) -> None:
    if not BINANCE.is_dir():
        pytest.skip(
            f"real Binance captures not found at {BINANCE} (../shared/data beside the repo)"
        )
    from obpipeline.sources.binance import read_capture

    capture = read_capture([BINANCE / name])
    ref = replayer.replay(capture.events, capture.instrument)
    got = book.replay(capture.events, capture.instrument, engine="engine")
    assert_same(ref, got)


@pytest.mark.parametrize(("day1", "day2"), CONTINUATIONS)
def test_engine_equals_reference_across_midnight(day1: str, day2: str) -> None:
    if not BINANCE.is_dir():
        pytest.skip(
            f"real Binance captures not found at {BINANCE} (../shared/data beside the repo)"
        )
    from obpipeline.sources.binance import read_capture

    first = read_capture([BINANCE / day1])
    ck = engine.replay(first.events, first.instrument).checkpoint
    second = read_capture([BINANCE / day2])
    assert_same(
        replayer.replay(second.events, second.instrument, checkpoint=ck),
        engine.replay(second.events, second.instrument, checkpoint=ck),
    )


# ----------------------------------------------------------------------------- stream conversions


def _event_arrays_plain(events: pl.DataFrame) -> dict[str, np.ndarray]:
    """The straightforward conversion (the foundation's original code) as the oracle."""
    n = events.height
    msg = events["msg_id"].to_numpy()
    if n:
        boundaries = np.flatnonzero(np.diff(msg) != 0) + 1
        starts = np.concatenate(([0], boundaries, [n])).astype(np.int64)
    else:
        starts = np.zeros(1, np.int64)
    first = starts[:-1]

    def ids(col: str) -> np.ndarray:
        return events[col].fill_null(-1).to_numpy()[first].astype(np.int64)

    price, _ = schemas.to_unscaled(events["price"])
    size, _ = schemas.to_unscaled(events["size"])
    return {
        "msg_start": starts,
        "msg_id": msg[first].astype(np.int64),
        "first_u": ids("first_update_id"),
        "last_u": ids("last_update_id"),
        "prev_u": ids("prev_update_id"),
        "is_snapshot": events["is_snapshot"].to_numpy()[first].astype(np.bool_),
        "ts_event": events["ts_event"].dt.epoch("ns").to_numpy()[first].astype(np.int64),
        "ts_local": events["ts_local"].dt.epoch("ns").to_numpy()[first].astype(np.int64),
        "side": events["side"].fill_null(0).to_numpy().astype(np.int8),
        "price": price,
        "size": size,
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_event_arrays_and_snapshots_frame_match_plain_conversions(case) -> None:
    from obpipeline.book import stream as st_

    stream, checkpoint, _ = case
    inst = FUTURES if stream.futures else SPOT
    events = stream.frame()
    got = st_.event_arrays(events)
    for name, want in _event_arrays_plain(events).items():
        have = getattr(got, name)
        assert have.dtype == want.dtype and np.array_equal(have, want), name
    out, rows, _, _ = engine.replay_arrays(
        got, engine.seq.rule_code(inst.sequencing), 4, checkpoint
    )
    frame = st_.snapshots_frame(out, rows, inst)
    levels = np.arange(4)
    cols = [
        pl.Series("ts_event", out.ts_event[:rows]).cast(schemas.TS),
        pl.Series("ts_local", out.ts_local[:rows]).cast(schemas.TS),
        pl.Series("msg_id", out.msg_id[:rows]),
        pl.Series("last_update_id", out.last_update_id[:rows]),
    ]
    for names, values, n, scale in zip(
        schemas.level_names(4),
        (out.bid_price, out.bid_size, out.ask_price, out.ask_size),
        (out.n_bid, out.n_bid, out.n_ask, out.n_ask),
        (inst.price_scale, inst.size_scale, inst.price_scale, inst.size_scale),
        strict=True,
    ):
        present = levels[None, :] < n[:rows, None]
        cols += [
            schemas.from_unscaled(values[:rows, i], scale, present[:, i], name)
            for i, name in enumerate(names)
        ]
    cols += [
        pl.Series(c, getattr(out, c)[:rows]) for c in ("is_valid", "crossed_repaired", "resynced")
    ]
    assert frame.equals(pl.DataFrame(cols))


def test_event_arrays_rejects_split_messages() -> None:
    from obpipeline.book import stream as st_

    s = Stream(True)
    for k in range(3):
        s.msgs.append(Msg(False, k + 1, k + 1, k, [(1, 600_000, 1)], T0))
    events = s.frame().with_columns(
        pl.Series("msg_id", [0, 1, 0], pl.Int64)
    )  # message 0 split around message 1
    with pytest.raises(ValueError, match="not contiguous"):
        st_.event_arrays(events)


# ----------------------------------------------------------------------------- parquet → parquet


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.sampled_from([1, 2, 7, 1 << 16]))
def test_replay_parquet_equals_in_memory_replay(tmp_path_factory, case, chunk_rows) -> None:
    """Streaming in chunks (down to 1 row, so long buffered stretches need larger buffers)."""
    from obpipeline.lake import write_parquet_atomic

    stream, checkpoint, _ = case
    inst = FUTURES if stream.futures else SPOT
    events = stream.frame()
    tmp = tmp_path_factory.mktemp("pq")
    write_parquet_atomic(events, tmp / "events.parquet")
    want = replayer.replay(events, inst, depth=3, checkpoint=checkpoint)
    book_, counters = parquet_stream.replay_parquet(
        tmp / "events.parquet", tmp / "out" / "snap.parquet", inst, 3, checkpoint, chunk_rows
    )
    got = pl.read_parquet(tmp / "out" / "snap.parquet")
    assert_same(want, ReplayResult(got, book_, counters))
    assert sorted(p.name for p in (tmp / "out").iterdir()) == ["snap.parquet"]  # no temp left


def test_replay_parquet_on_real_capture(tmp_path) -> None:
    if not BINANCE.is_dir():
        pytest.skip(
            f"real Binance captures not found at {BINANCE} (../shared/data beside the repo)"
        )
    from obpipeline.lake import write_parquet_atomic
    from obpipeline.sources.binance import read_capture

    capture = read_capture([BINANCE / CONTINUATIONS[0][0]])
    write_parquet_atomic(capture.events, tmp_path / "events.parquet")
    want = engine.replay(capture.events, capture.instrument)
    book_, counters = parquet_stream.replay_parquet(
        tmp_path / "events.parquet", tmp_path / "snap.parquet", capture.instrument, chunk_rows=1000
    )
    assert_same(want, ReplayResult(pl.read_parquet(tmp_path / "snap.parquet"), book_, counters))


# ----------------------------------------------------------------------------- capture ingest
#
# ``binance.parse_lines`` takes a compiled fast pass when it can and otherwise the Polars path,
# which defines the results. Whenever the fast pass accepts an input, its output must equal the
# Polars path's exactly; these tests generate captures in many spellings (key order, whitespace,
# extra fields, decimal spellings, ids as floats/strings/null, missing fields, junk lines, ...).


def _same_capture(a, b) -> None:
    assert a.instrument == b.instrument
    assert a.stats == b.stats
    for name in ("events", "golden_bbo", "golden_depth", "trades", "quarantine"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.schema == y.schema, name
        assert x.equals(y), (name, _first_difference(y, x))


def _both_paths(lines: pl.DataFrame, **kw):
    """(fast result or None, Polars result or the exception it raised)."""
    from obpipeline.sources import binance

    fast = binance._parse_fast(lines, kw.get("market"), kw.get("symbol"), kw.get("depth", 20))
    try:
        slow = binance._parse_lines_polars(lines, **kw)
    except Exception as exc:  # the fast pass must not have accepted such an input
        assert fast is None, f"fast pass accepted an input the Polars path rejects: {exc!r}"
        return None, exc
    return fast, slow


@st.composite
def capture_texts(draw, clean: bool = False) -> tuple[bytes, str]:
    """A capture (bytes) of one symbol, in a random spelling; ``clean`` keeps it valid."""
    import json as json_

    market = draw(st.sampled_from(["usdm", "spot", "cm"]))
    sym = {"usdm": "btcusdt", "spot": "btcusdt", "cm": "btcusd_perp"}[market]
    tick = {"usdm": 1, "spot": 2, "cm": 1}[market]  # price decimals
    lot = {"usdm": 3, "spot": 8, "cm": 0}[market]
    futures = market != "spot"
    u = draw(st.integers(1, 10**12))
    t_ms = 1_720_000_000_000
    out: list[str] = []

    rate = 0 if clean else draw(st.sampled_from([0, 0, 300, 80, 20]))

    def junk() -> bool:
        return rate > 0 and draw(st.integers(0, rate)) == 0

    def dec(units: int, decimals: int) -> object:
        s = f"{units / 10**decimals:.{decimals}f}" if decimals else str(units)
        if junk():
            return draw(
                st.sampled_from(
                    [units, s + "5", "-" + s, "+" + s, s + "e0", " " + s, "0" + s, "", None]
                )
            )
        if decimals and draw(st.integers(0, 4)) == 0:
            s = s.rstrip("0").rstrip(".") if draw(st.booleans()) else s + "0"
        return s

    def num(v: int) -> object:
        if junk():
            return draw(st.sampled_from([float(v), str(v), None, v * 10**8]))
        return v

    def levels(n: int, side: int, distinct: bool = False) -> list:
        """``distinct``: no price twice (a REST snapshot that lists one twice is quarantined)."""
        offsets = draw(st.lists(st.integers(-3, 40), min_size=n, max_size=n, unique=distinct))
        lv = []
        for offset in offsets:
            p = 600_000 * 10 ** (tick - 1) + side * offset
            q = draw(st.integers(0, 5000))
            pair = [dec(p, tick), dec(q, lot)]
            if junk():
                pair = draw(st.sampled_from([pair[:1], pair + ["1"], [], None]))
            lv.append(pair)
        return lv

    def obj(d: dict, envelope: bool = False) -> str:
        items = list(d.items())
        if junk() if envelope else draw(st.booleans()):  # "stream" leads a valid envelope
            items = draw(st.permutations(items))
        if not clean and draw(st.integers(0, 6)) == 0:  # an extra field (after "stream")
            extra = ("x", draw(st.sampled_from([1, "a", [1, {"y": None}], True, 1.5, None])))
            items.insert(1 if envelope else 0, extra)
        if junk():
            items.append(items[0])  # duplicate key
        seps = draw(st.sampled_from([(",", ":"), (", ", ": "), (",", ": ")]))
        body = seps[0].join(json_.dumps(k) + seps[1] + json_.dumps(v) for k, v in items)
        return "{" + body + "}"

    def ts() -> str:
        ns = t_ms * 1_000_000 + 123
        if draw(st.integers(0, 5)) == 0:
            return str(ns // 1000)  # µs stamps (the 2023 files)
        if junk():
            return draw(st.sampled_from(["12", "x1", "-" + str(ns), str(ns) + "0", ""]))
        return str(ns)

    def envelope(stream: str, data: dict) -> str:
        text = obj({"stream": stream, "data": "@@"}, True).replace('"@@"', obj(data))
        return f"{ts()} {text}"

    suffix = "@depth@0ms" if futures else "@depth@100ms"
    for _ in range(draw(st.integers(1, 14))):
        t_ms += 7
        kind = draw(st.sampled_from(["diff"] * 4 + ["bbo", "trade", "snap", "partial", "other"]))
        if kind == "diff":
            n_ids = draw(st.integers(1, 3))
            data = {"e": "depthUpdate", "E": num(t_ms), "T": num(t_ms - 1), "s": sym.upper()}
            data.update({"U": num(u + 1), "u": num(u + n_ids)})
            if futures:
                data["pu"] = num(u)
            data["b"] = levels(draw(st.integers(0, 4)), 1)
            data["a"] = levels(draw(st.integers(0, 4)), -1)
            if not futures:
                data.pop("T")
            u += n_ids
            if junk():
                data.pop(draw(st.sampled_from(list(data))))
            out.append(envelope(sym + suffix, data))
        elif kind == "bbo":
            data = {"u": num(u), "s": sym.upper(), "b": dec(6000000, tick), "B": dec(5, lot)}
            data.update({"a": dec(6000100, tick), "A": dec(7, lot)})
            if futures:
                data.update({"T": num(t_ms), "E": num(t_ms + 1)})
            out.append(envelope(sym + "@bookTicker", data))
        elif kind == "trade":
            data = {"e": "trade", "E": num(t_ms), "T": num(t_ms), "s": sym.upper(), "t": num(9)}
            data.update({"p": dec(6000000, tick), "q": dec(3, lot), "m": draw(st.booleans())})
            if junk():
                data["m"] = None
            out.append(envelope(sym + "@trade", data))
        elif kind == "snap":
            body = {"lastUpdateId": num(u), "bids": levels(3, 1, True), "asks": levels(3, -1, True)}
            if futures:
                body.update({"E": num(t_ms), "T": num(t_ms)})
            out.append(f"{ts()} {obj(body)}")
        elif kind == "partial":
            n = draw(st.sampled_from([5, 10, 20]))
            if futures:
                data = {"E": num(t_ms), "T": num(t_ms), "u": num(u)}
                data.update({"b": levels(draw(st.integers(0, 6)), 1), "a": levels(3, -1)})
            else:
                data = {"lastUpdateId": num(u), "bids": levels(3, 1), "asks": levels(2, -1)}
            out.append(envelope(f"{sym}@depth{n}@100ms", data))
        else:
            out.append(envelope(sym + "@markPrice@1s", {"p": "1", "x": [1, 2]}))
        if junk():
            out.append(draw(st.sampled_from(["", "   ", "garbage", "123456789012345 {}"])))
    if rate and draw(st.integers(0, 5)) == 0:
        i = draw(st.integers(0, len(out) - 1))
        j = draw(st.integers(0, max(0, len(out[i]) - 1)))
        out[i] = (
            out[i][:j]
            + draw(st.sampled_from(["", " ", "\t", '"', "\\", "é", "}"]))
            + out[i][j + 1 :]
        )
    return ("\n".join(out) + "\n").encode(), market


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(capture_texts(), st.booleans())
def test_capture_fast_pass_equals_polars_path(case, give_market) -> None:
    from obpipeline.sources.binance import lines_frame

    raw, market = case
    lines = lines_frame(raw, "capture.gz")
    fast, slow = _both_paths(lines, market=market if give_market else None)
    if fast is not None:
        _same_capture(fast, slow)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(capture_texts(clean=True))
def test_capture_fast_pass_takes_clean_captures(case) -> None:
    from obpipeline.sources.binance import lines_frame

    raw, market = case
    lines = lines_frame(raw, "capture.gz")
    fast, slow = _both_paths(lines, market=market)
    if isinstance(slow, Exception):
        return
    assert fast is not None, "a clean capture should take the fast pass"
    _same_capture(fast, slow)


@pytest.mark.parametrize("names", [[n] for n in _real_files()] + [list(p) for p in CONTINUATIONS])
def test_capture_fast_pass_on_real_files(names: list[str]) -> None:
    if not BINANCE.is_dir():
        pytest.skip(
            f"real Binance captures not found at {BINANCE} (../shared/data beside the repo)"
        )
    from obpipeline.sources.binance import read_lines

    lines = pl.concat([read_lines(BINANCE / n) for n in names])
    fast, slow = _both_paths(lines)
    assert fast is not None, "real captures are clean: the fast pass should take them"
    _same_capture(fast, slow)


@pytest.mark.parametrize("stats", ["footer", "none", "lying"])
def test_replay_parquet_grid_sources(tmp_path, monkeypatch, stats: str) -> None:
    """Streaming grid from footer statistics, the read-first fallback, and the restart when
    the statistics do not bound the prices: same output every way."""
    from obpipeline.lake import write_parquet_atomic

    rng = np.random.default_rng(11)
    stream = Stream(True)
    u = 100
    stream.msgs.append(Msg(True, u, u, None, [(1, 600_000, 5), (-1, 600_003, 5)], T0))
    for k in range(2_000):
        lv = [(int(s), int(600_001 - s * rng.integers(0, 30)), int(rng.integers(0, 3))) for s in
              rng.choice([1, -1], 4)]  # fmt: skip
        stream.msgs.append(Msg(False, u + 1, u + 1, u, lv, T0 + k))
        u += 1
    events = stream.frame()
    write_parquet_atomic(events, tmp_path / "events.parquet")
    if stats == "none":
        monkeypatch.setattr(parquet_stream, "_stats_bounds", lambda *a: None)
    elif stats == "lying":
        monkeypatch.setattr(parquet_stream, "_stats_bounds", lambda *a: (600_000, 600_010))
    want = replayer.replay(events, FUTURES, depth=5)
    book_, counters = parquet_stream.replay_parquet(
        tmp_path / "events.parquet", tmp_path / "snap.parquet", FUTURES, 5, chunk_rows=500
    )
    assert_same(want, ReplayResult(pl.read_parquet(tmp_path / "snap.parquet"), book_, counters))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.parquet", "snap.parquet"]

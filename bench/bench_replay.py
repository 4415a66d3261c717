"""Replay throughput: the compiled engine vs the reference replayer vs hftbacktest, and end to end.

Cases (``run()`` returns one dict per case for ``make bench``; as a script it prints them):

(a) ``core/engine`` and ``full/reference`` on the shared peer stream
    (``../shared/bench/peer_stream.py``: 3 M absolute-size level updates around a drifting BTC mid,
    generated once into ``data/bench/``), cut into 10-update messages chained by update id, a
    top-20 snapshot row after every message. ``core/engine`` times the compiled loop from
    ``EventArrays`` to filled ``SnapshotArrays`` rows (into a reused 65 536-row output chunk, as
    ``replay_parquet`` drives it), JIT excluded: ``jit_s`` is the first call in a fresh process
    (numba's cache load plus its first-use imports), ``jit_cold_s`` a compile from an empty cache;
    ``cpu_upd_per_s`` uses CPU time (less sensitive to the shared box's load). ``full/engine``
    adds the DataFrame in/out conversions of ``book.replay``. The reference runs the same stream
    through ``ReferenceReplayer.run`` (its loop dominates its time).
(b) hftbacktest 2.4 (PyPI) on the same stream in the same run: ``HashMapMarketDepth`` and
    ``ROIVectorMarketDepth`` (fixed price window), local book only, an ``njit`` loop of
    ``elapse(1 ms)`` + best bid/ask (= once per 10-update message); and the ratios
    engine / hftbacktest.
(c) ``e2e``: canonical raw_book_events parquet → book_snapshots parquet (``parquet_stream.replay_parquet``)
    for a real-volume day: the simulator's real profile when it is available, else a synthetic
    day generated here (≈1.8 M messages, ≈30 M level updates, opening REST snapshot with a few
    buffered diffs before it, like the real captures): level updates/s, wall time, CPU seconds
    (all threads), peak RSS.

Each implementation runs in its own subprocess (so ``rss_mb`` is its own peak) and reports the
median of ``--repeat`` (≥3) timed repetitions. Level updates/s count the input's level rows.

    uv run python bench/bench_replay.py [--repeat 5] [--skip-e2e] [--skip-reference]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _rss import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "data" / "bench"
PEER_SCRIPT = ROOT.parent / "shared" / "bench" / "peer_stream.py"
PEER_NPZ = BENCH_DIR / "peer_stream.npz"
DAY_PARQUET = BENCH_DIR / "raw_book_events_real_day.parquet"
PEER_UPDATES = 3_000_000
MSG_UPDATES = 10
CHUNK_ROWS = 1 << 16  # output rows per engine call (as parquet_stream.replay_parquet)
T0 = 1_700_000_000_000_000_000
MS = 1_000_000


# ----------------------------------------------------------------------------- inputs


def ensure_peer_stream() -> Path:
    """The shared 3 M-update stream, generated once with the shared script."""
    if not PEER_NPZ.exists():
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        if not PEER_SCRIPT.exists():
            raise FileNotFoundError(f"peer stream generator not found: {PEER_SCRIPT}")
        tmp = PEER_NPZ.with_name(".peer_stream.tmp.npz")
        subprocess.run(
            [sys.executable, str(PEER_SCRIPT), str(PEER_UPDATES), str(tmp)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        os.replace(tmp, PEER_NPZ)
    return PEER_NPZ


def peer_event_arrays():
    """The peer stream as ``EventArrays`` (futures ids, 10 updates a message) + an empty,
    valid starting checkpoint at update id 0 (the stream opens with its 1 000-level book)."""
    from obpipeline.book.stream import Book, EventArrays

    d = np.load(ensure_peer_stream())
    n = len(d["tick"])
    m = (n + MSG_UPDATES - 1) // MSG_UPDATES
    starts = np.minimum(np.arange(m + 1, dtype=np.int64) * MSG_UPDATES, n)
    ids = np.arange(1, m + 1, dtype=np.int64)
    ts = T0 + ids * MS
    ev = EventArrays(
        msg_start=starts,
        msg_id=ids - 1,
        first_u=ids,
        last_u=ids,
        prev_u=ids - 1,
        is_snapshot=np.zeros(m, np.bool_),
        ts_event=ts,
        ts_local=ts,
        side=d["side"].astype(np.int8),
        price=d["tick"].astype(np.int64),  # price scale 1 (tick 0.1): the tick number
        size=np.round(d["qty"] * 1000).astype(np.int64),  # lot 0.001
    )
    empty = np.zeros(0, np.int64)
    return ev, Book(empty, empty, empty, empty, last_update_id=0, is_valid=True), d


def _instrument():
    from obpipeline.instruments import get_instrument

    return get_instrument("binance", "usdm", "BTCUSDT")


def peer_frame(ev):
    """The same stream as a raw_book_events DataFrame (for the DataFrame APIs)."""
    import polars as pl

    from obpipeline import schemas

    inst = _instrument()
    counts = np.diff(ev.msg_start)

    def per_row(a):
        return np.repeat(a, counts)

    frame = pl.DataFrame(
        [
            pl.Series("ts_event", per_row(ev.ts_event)).cast(schemas.TS),
            pl.Series("ts_local", per_row(ev.ts_local)).cast(schemas.TS),
            pl.Series("msg_id", per_row(ev.msg_id)),
            pl.Series("first_update_id", per_row(ev.first_u)),
            pl.Series("last_update_id", per_row(ev.last_u)),
            pl.Series("prev_update_id", per_row(ev.prev_u)),
            pl.Series("is_snapshot", per_row(ev.is_snapshot)),
            pl.Series("side", ev.side),
            schemas.from_unscaled(ev.price, inst.price_scale, None, "price"),
            schemas.from_unscaled(ev.size, inst.size_scale, None, "size"),
        ]
    )
    return schemas.conform(frame, schemas.raw_book_events(inst), "raw_book_events")


def _gen_day_numba():
    from numba import njit

    @njit(cache=True)
    def gen(n_msgs, seed, n_pre, msg_start, side, price, size, first_u, last_u, prev_u):
        """Synthetic BTCUSDT futures day (see module docstring); returns rows written."""
        np.random.seed(seed)
        span = 400_000
        off = 600_000 - span // 2
        bid = np.zeros(span, np.int64)
        ask = np.zeros(span, np.int64)
        ref = span // 2
        r = 0
        u = 5_000_000_000
        # opening book (known to the generator; published by the REST snapshot below)
        for d in range(1, 1001):
            bid[ref - d] = 1 + np.int64(np.random.lognormal(5.0, 1.2))
            ask[ref + d] = 1 + np.int64(np.random.lognormal(5.0, 1.2))
        k = 0
        snap_u = u
        while k < n_msgs:
            msg_start[k] = r
            if k == n_pre:  # the REST snapshot arrives after a few diffs (as in the captures)
                for d in range(span):
                    if bid[d] > 0:
                        side[r] = 1
                        price[r] = d + off
                        size[r] = bid[d]
                        r += 1
                for d in range(span):
                    if ask[d] > 0:
                        side[r] = -1
                        price[r] = d + off
                        size[r] = ask[d]
                        r += 1
                first_u[k] = snap_u
                last_u[k] = snap_u
                prev_u[k] = -1
                k += 1
                continue
            n_lv = 1 + np.random.randint(0, 32)
            first_u[k] = u + 1
            prev_u[k] = u
            u += 1 + np.random.randint(0, 8)
            last_u[k] = u
            if k == n_pre - 2:
                snap_u = u  # the snapshot's lastUpdateId: two buffered diffs are stale
            for _ in range(n_lv):
                x = np.random.random()
                if x < 0.01:  # the mid moves; the level it crosses is removed
                    if np.random.random() < 0.5:
                        ref += 1
                        if ask[ref] > 0:
                            ask[ref] = 0
                            side[r] = -1
                            price[r] = ref + off
                            size[r] = 0
                            r += 1
                    else:
                        ref -= 1
                        if bid[ref] > 0:
                            bid[ref] = 0
                            side[r] = 1
                            price[r] = ref + off
                            size[r] = 0
                            r += 1
                    continue
                is_bid = np.random.random() < 0.5
                if np.random.random() < 0.7:
                    d = 1 + np.random.randint(0, 20)
                else:
                    d = 21 + np.random.randint(0, 980)
                book = bid if is_bid else ask
                if np.random.random() < 0.09:
                    idx = ref - d if is_bid else ref + d
                    for e in range(d, d + 2000):
                        j = ref - e if is_bid else ref + e
                        if book[j] > 0:
                            idx = j
                            break
                    book[idx] = 0
                    q = 0
                else:
                    idx = ref - d if is_bid else ref + d
                    q = 1 + np.int64(np.random.lognormal(5.0, 1.2))
                    book[idx] = q
                side[r] = 1 if is_bid else -1
                price[r] = idx + off
                size[r] = q
                r += 1
            if r == msg_start[k]:  # an empty diff keeps one placeholder row
                side[r] = 0
                r += 1
            k += 1
        msg_start[n_msgs] = r
        return r

    return gen


def make_real_day(path: Path = DAY_PARQUET, messages: int = 1_800_000, seed: int = 5) -> Path:
    """Write the synthetic real-volume raw_book_events day as parquet (once; atomically)."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    inst = _instrument()
    n_pre = 5
    cap = messages * 33 + 2_000_000
    msg_start = np.zeros(messages + 1, np.int64)
    side = np.zeros(cap, np.int8)
    price = np.zeros(cap, np.int64)
    size = np.zeros(cap, np.int64)
    first_u, last_u, prev_u = (np.zeros(messages, np.int64) for _ in range(3))
    rows = _gen_day_numba()(
        messages, seed, n_pre, msg_start, side, price, size, first_u, last_u, prev_u
    )
    rng = np.random.default_rng(seed)
    ts_event = 1_717_200_000_000_000_000 + np.cumsum(
        rng.exponential(86_400_000 / messages, messages) * MS
    ).astype(np.int64)
    ts_local = ts_event + rng.integers(2, 20, messages) * MS
    is_snapshot = np.zeros(messages, np.bool_)
    is_snapshot[n_pre] = True
    counts = np.diff(msg_start)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    ts_type = pa.timestamp("ns", "UTC")
    opts = {"compression": "zstd", "compression_level": 1, "store_decimal_as_integer": True}
    step = 100_000  # messages per row group
    writer = None
    for k0 in range(0, messages, step):
        k1 = min(messages, k0 + step)
        r0, r1 = msg_start[k0], msg_start[k1]
        c = counts[k0:k1]

        def rep(a, c=c, k0=k0, k1=k1):
            return np.repeat(a[k0:k1], c)

        sd = side[r0:r1]
        present = sd != 0
        prev = rep(prev_u)
        cols = {
            "ts_event": pa.array(rep(ts_event)).view(ts_type),
            "ts_local": pa.array(rep(ts_local)).view(ts_type),
            "msg_id": pa.array(rep(np.arange(messages, dtype=np.int64))),
            "first_update_id": pa.array(rep(first_u)),
            "last_update_id": pa.array(rep(last_u)),
            "prev_update_id": pa.array(prev, mask=prev < 0),
            "is_snapshot": pa.array(rep(is_snapshot)),
            "side": pa.array(sd, mask=~present),
            "price": _decimal64(price[r0:r1], present, inst.price_scale),
            "size": _decimal64(size[r0:r1], present, inst.size_scale),
        }
        table = pa.table(cols)
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema, **opts)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    # re-encoded by Polars with the lake's settings (lake.write_parquet_atomic: zstd-3, statistics,
    # dictionaries for the repeated per-message columns), streaming
    tmp2 = path.with_name(f".{path.name}.polars.tmp")
    pl.scan_parquet(tmp).sink_parquet(
        tmp2, compression="zstd", compression_level=3, statistics=True
    )
    tmp.unlink()
    os.replace(tmp2, path)
    print(f"generated {path} ({rows:,} rows, {messages:,} messages)", file=sys.stderr)
    return path


def _decimal64(values: np.ndarray, present: np.ndarray, scale: int):
    import pyarrow as pa

    bits = None if present.all() else pa.py_buffer(np.packbits(present, bitorder="little"))
    v = np.ascontiguousarray(values, np.int64)
    return pa.Array.from_buffers(pa.decimal64(18, scale), len(v), [bits, pa.py_buffer(v)])


def real_day_input() -> tuple[Path, str]:
    """The largest canonical day available: the simulator's real profile, else ours."""
    try:  # the simulated exchange's real-volume profile, once it exposes canonical events
        from obpipeline.sources import synthetic  # noqa: F401

        maker = getattr(synthetic, "real_volume_events_parquet", None)
        if maker is not None:
            return Path(maker(BENCH_DIR)), "simulator real profile"
    except Exception:
        pass
    if not DAY_PARQUET.exists():
        make_real_day()
    return DAY_PARQUET, "bench synthetic day (1.8 M messages)"


# ----------------------------------------------------------------------------- children


def _cpu_s() -> float:
    """CPU seconds of this process, all threads (less sensitive than wall time to a busy box)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def child_engine(repeat: int) -> dict:
    from obpipeline import book
    from obpipeline.book import engine
    from obpipeline.book import sequencing as seq
    from obpipeline.book.stream import SnapshotArrays

    ev, ck, truth = peer_event_arrays()
    updates = int((ev.side != 0).sum())
    rule = seq.FUTURES
    t = time.perf_counter()
    engine.replay_arrays(ev, rule, 20, ck)  # JIT: numba cache load (or compile if cold)
    jit_s = time.perf_counter() - t

    # The output is a reused chunk of rows, as replay_parquet drives the engine (a fresh
    # 190 MB array per run would time the kernel zeroing pages, not the replay).
    out = SnapshotArrays(20, CHUNK_ROWS)
    out.bid_price.fill(0)  # fault the pages in once, outside the timings

    def core():
        eng = engine.Engine(ev, rule, 20, ck)
        rows = 0
        while not eng.done:
            rows += eng.run(out)
        assert rows == ev.n_messages
        return out

    times = _timed(core, repeat)
    cpu = []
    for _ in range(repeat):
        c = time.process_time()
        core()
        cpu.append(time.process_time() - c)
    out, rows, final, counters = engine.replay_arrays(ev, rule, 20, ck)
    # correctness: the generator's true final top-20
    tb, ta = truth["truth_bid"], truth["truth_ask"]
    exact = bool(
        np.array_equal(final.bid_price[:20], tb[:, 0].astype(np.int64))
        and np.array_equal(final.ask_price[:20], ta[:, 0].astype(np.int64))
        and np.array_equal(final.bid_size[:20], np.round(tb[:, 1] * 1000).astype(np.int64))
        and np.array_equal(final.ask_size[:20], np.round(ta[:, 1] * 1000).astype(np.int64))
        and counters.gaps == 0
    )
    frame = peer_frame(ev)
    full = _timed(lambda: book.replay(frame, _instrument(), 20, ck, engine="engine"), repeat)
    return {
        "updates": updates,
        "rows": rows,
        "core_s": times,
        "core_cpu_s": cpu,
        "full_s": full,
        "jit_s": jit_s,
        "exact_top20": exact,
        "rss_mb": peak_rss_mb(),
    }


def child_jit_cold() -> dict:
    """Compile the engine from an empty numba cache (NUMBA_CACHE_DIR set by the parent)."""
    from obpipeline.book import engine
    from obpipeline.book import sequencing as seq

    ev, ck, _ = peer_event_arrays()
    t = time.perf_counter()
    engine.replay_arrays(ev, seq.FUTURES, 20, ck)
    return {"jit_cold_s": time.perf_counter() - t}


def child_reference(repeat: int) -> dict:
    from obpipeline.book.replayer import ReferenceReplayer

    ev, ck, _ = peer_event_arrays()
    frame = peer_frame(ev)
    inst = _instrument()
    times = _timed(lambda: ReferenceReplayer(inst, 20, ck).run(frame), repeat)
    return {"updates": int((ev.side != 0).sum()), "full_s": times, "rss_mb": peak_rss_mb()}


def child_hftbacktest(kind: str, repeat: int) -> dict:
    import warnings

    from hftbacktest import (
        BUY_EVENT,
        DEPTH_EVENT,
        LOCAL_EVENT,
        SELL_EVENT,
        BacktestAsset,
        HashMapMarketDepthBacktest,
        ROIVectorMarketDepthBacktest,
        event_dtype,
    )
    from numba import njit

    warnings.simplefilter("ignore", DeprecationWarning)
    d = np.load(ensure_peer_stream())
    n = len(d["tick"])
    data = np.zeros(n, event_dtype)
    ts = T0 + (np.arange(n) // MSG_UPDATES + 1) * MS  # one 1 ms step per 10-update message
    side = np.where(d["side"] > 0, BUY_EVENT, SELL_EVENT).astype(np.uint64)
    data["ev"] = np.uint64(DEPTH_EVENT | LOCAL_EVENT) | side
    data["exch_ts"] = ts
    data["local_ts"] = ts
    data["px"] = d["price"]
    data["qty"] = d["qty"]
    lo, hi = float(d["price"].min()) - 500.0, float(d["price"].max()) + 500.0

    @njit
    def drive(hbt):
        acc = 0.0
        reads = 0
        while hbt.elapse(MS) == 0:
            depth = hbt.depth(0)
            acc += depth.best_bid - depth.best_ask
            reads += 1
        return acc, reads

    def make():
        asset = (
            BacktestAsset()
            .data(data)
            .linear_asset(1.0)
            .constant_order_latency(0, 0)
            .risk_adverse_queue_model()
            .no_partial_fill_exchange()
            .trading_value_fee_model(0.0, 0.0)
            .tick_size(0.1)
            .lot_size(0.001)
            .last_trades_capacity(0)
        )
        if kind == "roi":
            return ROIVectorMarketDepthBacktest([asset.roi_lb(lo).roi_ub(hi)])
        return HashMapMarketDepthBacktest([asset])

    t = time.perf_counter()
    hbt = make()
    drive(hbt)
    hbt.close()
    jit_s = time.perf_counter() - t
    times = []
    best = ()
    for _ in range(repeat):
        hbt = make()  # building the backtest (copying the events in) is not timed
        t = time.perf_counter()
        acc, reads = drive(hbt)
        times.append(time.perf_counter() - t)
        depth = hbt.depth(0)
        best = (round(depth.best_bid * 10), round(depth.best_ask * 10))
        hbt.close()
    exact = best == (int(d["truth_bid"][0, 0]), int(d["truth_ask"][0, 0]))
    return {
        "updates": n,
        "full_s": times,
        "reads": reads,
        "jit_s": jit_s,
        "exact_bbo": exact,
        "rss_mb": peak_rss_mb(),
    }


def _warm_engine() -> float:
    """Load (or compile) the engine's numba functions on a two-message stream; returns seconds."""
    from obpipeline.book import engine, parquet_stream
    from obpipeline.book import sequencing as seq
    from obpipeline.book.stream import Book, EventArrays

    t = time.perf_counter()
    one = np.ones(2, np.int64)
    ev = EventArrays(
        msg_start=np.array([0, 1, 2]),
        msg_id=np.array([0, 1]),
        first_u=np.array([1, 2]),
        last_u=np.array([1, 2]),
        prev_u=np.array([0, 1]),
        is_snapshot=np.zeros(2, np.bool_),
        ts_event=one,
        ts_local=one,
        side=np.array([1, -1], np.int8),
        price=np.array([10, 11]),
        size=one,
    )
    empty = np.zeros(0, np.int64)
    out, rows, _, _ = engine.replay_arrays(
        ev, seq.FUTURES, 20, Book(empty, empty, empty, empty, 0, True)
    )
    parquet_stream.snapshots_table(out, rows, _instrument())
    return time.perf_counter() - t


def child_e2e(repeat: int) -> dict:
    import pyarrow.parquet as pq

    from obpipeline.book import parquet_stream

    src, label = real_day_input()

    meta = pq.ParquetFile(src).metadata
    inst = _instrument()
    out_dir = Path(tempfile.mkdtemp(prefix="e2e-", dir=BENCH_DIR))
    dst = out_dir / "book_snapshots.parquet"
    jit_s = _warm_engine()
    times, cpu = [], []
    counters = None
    for _ in range(repeat):
        t, c = time.perf_counter(), _cpu_s()
        _, counters = parquet_stream.replay_parquet(src, dst, inst)
        times.append(time.perf_counter() - t)
        cpu.append(_cpu_s() - c)
    assert counters is not None
    out_mb = dst.stat().st_size / 1e6
    for p in out_dir.iterdir():
        p.unlink()
    out_dir.rmdir()
    return {
        "input": label,
        "input_rows": meta.num_rows,
        "updates": counters.level_updates,
        "messages": counters.messages,
        "rows": counters.rows,
        "gaps": counters.gaps,
        "invalid_rows": counters.invalid_rows,
        "out_mb": out_mb,
        "full_s": times,
        "cpu_s": cpu,
        "jit_s": jit_s,
        "rss_mb": peak_rss_mb(),
    }


def _child(args: list[str], env: dict | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench child {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the table


def run(
    repeat: int = 5, e2e: bool = True, reference: bool = True, cold_jit: bool = True
) -> list[dict]:
    ensure_peer_stream()
    rows: list[dict] = []
    eng = _child(["engine", str(repeat)])
    core = statistics.median(eng["core_s"])
    full = statistics.median(eng["full_s"])
    upd = eng["updates"]
    row = {
        "section": "replay",
        "case": "core/engine (arrays→top-20 rows)",
        "upd_per_s": upd / core,
        "seconds": core,
        "cpu_upd_per_s": upd / statistics.median(eng["core_cpu_s"]),
        "jit_s": eng["jit_s"],
        "rss_mb": eng["rss_mb"],
        "exact": int(eng["exact_top20"]),
    }
    if cold_jit:
        with tempfile.TemporaryDirectory(prefix="numba-cold-") as cache:
            row["jit_cold_s"] = _child(["jit_cold"], {"NUMBA_CACHE_DIR": cache})["jit_cold_s"]
    rows.append(row)
    rows.append(
        {
            "section": "replay",
            "case": "full/engine (DataFrame→DataFrame)",
            "upd_per_s": upd / full,
            "seconds": full,
            "rss_mb": eng["rss_mb"],
        }
    )
    if reference:
        ref = _child(["reference", str(min(repeat, 3))])
        t = statistics.median(ref["full_s"])
        rows.append(
            {
                "section": "replay",
                "case": "full/reference (SortedDict oracle)",
                "upd_per_s": ref["updates"] / t,
                "seconds": t,
                "rss_mb": ref["rss_mb"],
                "engine_x": t / core,
            }
        )
    for kind, label in (("hash", "HashMapMarketDepth"), ("roi", "ROIVectorMarketDepth")):
        h = _child(["hftbacktest", kind, str(repeat)])
        t = statistics.median(h["full_s"])
        rows.append(
            {
                "section": "replay",
                "case": f"hftbacktest {label} (+BBO/msg)",
                "upd_per_s": h["updates"] / t,
                "seconds": t,
                "jit_s": h["jit_s"],
                "rss_mb": h["rss_mb"],
                "exact": int(h["exact_bbo"]),
                "engine_x": t / core,  # engine core speed / this implementation's
            }
        )
    if e2e:
        _child(["make_day"])  # generate the input once, outside the measured process
        e = _child(["e2e", str(min(repeat, 3))])
        t = statistics.median(e["full_s"])
        rows.append(
            {
                "section": "e2e",
                "case": f"parquet→parquet ({e['input']})",
                "upd_per_s": e["updates"] / t,
                "seconds": t,
                "rss_mb": e["rss_mb"],
                "cpu_s": statistics.median(e["cpu_s"]),
                "messages": e["messages"],
                "updates": e["updates"],
                "out_mb": e["out_mb"],
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--skip-e2e", action="store_true")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        kind, *rest = a.child
        if kind == "engine":
            res = child_engine(int(rest[0]))
        elif kind == "jit_cold":
            res = child_jit_cold()
        elif kind == "reference":
            res = child_reference(int(rest[0]))
        elif kind == "hftbacktest":
            res = child_hftbacktest(rest[0], int(rest[1]))
        elif kind == "make_day":
            res = {"input": str(real_day_input()[0])}
        elif kind == "e2e":
            res = child_e2e(int(rest[0]))
        else:
            raise SystemExit(f"unknown child {kind}")
        print(json.dumps(res))
        return
    for row in run(a.repeat, e2e=not a.skip_e2e, reference=not a.skip_reference):
        print(json.dumps(row))


if __name__ == "__main__":
    main()

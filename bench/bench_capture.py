"""Capture file → book: ``obpipeline replay`` (the CLI) vs hftbacktest's converter + replay.

Both start from the same gzipped Binance USD-M capture and end with a book read after every
message, each in its own process, measured from outside (``_proc.measure``: wall, CPU seconds
of all threads, the process's own peak RSS), in one run:

* obpipeline: ``obpipeline replay FILE --out TMP`` — streamed ingest into per-day
  raw_book_events, replay, top-20 book_snapshots parquet after every message, golden
  comparisons; its JSON summary gives the level updates and the ingest (``parse_seconds``) and
  replay seconds.
* hftbacktest 2.4: ``hftbacktest.data.utils.binancefutures.convert(FILE)`` (in memory, as its
  docs show; it also converts the trades, which it keeps) then a ``HashMapMarketDepthBacktest``
  driven by an ``njit`` loop of ``wait_next_feed`` + best bid/ask (one read per feed
  timestamp: per diff message, and per trade). Its numba loop is compiled on a tiny input
  first (``jit_s``, inside its wall). It reads the capture without its partial-book lines
  (``hft_input``: its converter would apply them as diffs); the filtering is not timed.

``updates`` are the diff messages' level updates (equal on both sides), ``reads`` the book
states read out, ``ingest_s`` obpipeline's ``parse_seconds`` / hftbacktest's ``convert``, and
``parse_upd_per_s`` = updates / ingest_s.

Inputs (cached under ``data/bench/``):

(a) ``peer``: the shared 3 M-update stream (``../shared/bench/peer_stream.py``) rendered as a
    capture: a REST snapshot line with the opening 1 000-level book, then 10-update
    ``depthUpdate`` messages chained by ``pu``. Both final best bid/ask are checked against the
    generator's true book (``exact``).
(b) ``real``: a real-volume simulated day (``obpipeline simulate --profile real``, ≈1.8 M
    messages, ≈27 M level updates, ≈11 M lines). Environment:
    ``OBPIPELINE_BENCH_REAL=0`` skips it; ``OBPIPELINE_BENCH_REAL_FILE=PATH`` uses that capture
    instead of the generated one; ``OBPIPELINE_BENCH_REAL_HFT=0`` skips hftbacktest on it (its
    converter holds the whole day, several times over, in memory).

``ratio_hft_wall`` is hftbacktest's wall / obpipeline's wall on the same file, ``same_bbo``
whether both end on the same best bid/ask.

    uv run --frozen python bench/bench_capture.py [--skip-real]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _proc import last_json, measure
from _rss import peak_rss_mb
from bench_replay import BENCH_DIR, MSG_UPDATES, ROOT, ensure_peer_stream

PEER_CAPTURE = BENCH_DIR / "peer_capture_btcusdt.gz"
REAL_DIR = BENCH_DIR / "real"
REAL_DAY = "2026-01-01"
REAL_CAPTURE = REAL_DIR / "btcusdt_20260101.gz"
OBPIPELINE = [str(Path(sys.executable).with_name("obpipeline"))]  # the installed CLI
FIRST_ID = 1_000_000  # the snapshot's lastUpdateId; message k carries ids FIRST_ID+10(k-1)+1 ..
T0_MS = 1_700_000_000_000


# ----------------------------------------------------------------------------- inputs


def _prices(ticks: np.ndarray) -> list[str]:
    """Tick numbers (0.1) as Binance prints BTCUSDT prices: two decimals."""
    return [f"{t // 10}.{t % 10}0" for t in ticks.tolist()]


def _qtys(lots: np.ndarray) -> list[str]:
    return [f"{q // 1000}.{q % 1000:03d}" for q in lots.tolist()]


def _verify(path: Path) -> None:
    """The capture must replay with no gap (``obpipeline verify`` exits 0; else it raises)."""
    m = measure([*OBPIPELINE, "verify", str(path)], cwd=ROOT)
    s = last_json(m["stdout"])
    if s["gaps"]:
        raise RuntimeError(f"{path} does not replay cleanly: {json.dumps(s)}")


def ensure_peer_capture() -> Path:
    """The peer stream as a gzipped Binance USD-M capture (once; atomically).

    The first 2 000 updates (the opening book) are the REST snapshot; the rest are cut into
    10-update messages. A Binance diff lists a price once per side, so within a message only
    the last update of a (side, price) is kept (the book after the message is unchanged).
    """
    if PEER_CAPTURE.exists():
        return PEER_CAPTURE
    d = np.load(ensure_peer_stream())
    tick = d["tick"].astype(np.int64)
    lots = np.round(d["qty"] * 1000).astype(np.int64)
    side = d["side"].astype(np.int8)
    n_open = 2000
    px, qty = _prices(tick), _qtys(lots)

    def levels(idx) -> str:
        return ",".join(f'["{px[i]}","{qty[i]}"]' for i in idx)

    opening = np.arange(n_open)
    bids = sorted((i for i in opening if side[i] > 0), key=lambda i: -tick[i])
    asks = sorted((i for i in opening if side[i] < 0), key=lambda i: tick[i])
    tmp = PEER_CAPTURE.with_name(f".{PEER_CAPTURE.name}.tmp")
    with gzip.open(tmp, "wt", compresslevel=6) as f:
        f.write(
            f'{(T0_MS + 4) * 1_000_000} {{"lastUpdateId":{FIRST_ID},"E":{T0_MS + 1},'
            f'"T":{T0_MS},"bids":[{levels(bids)}],"asks":[{levels(asks)}]}}\n'
        )
        n = len(tick)
        for k, start in enumerate(range(n_open, n, MSG_UPDATES), start=1):
            last: dict[tuple[int, int], int] = {}
            for i in range(start, min(n, start + MSG_UPDATES)):
                last[(int(side[i]), int(tick[i]))] = i
            b = [i for (s, _), i in last.items() if s > 0]
            a = [i for (s, _), i in last.items() if s < 0]
            t_ms = T0_MS + k
            first_u = FIRST_ID + MSG_UPDATES * (k - 1)
            f.write(
                f'{(t_ms + 1) * 1_000_000 + 3_000_000} {{"stream":"btcusdt@depth@0ms","data":'
                f'{{"e":"depthUpdate","E":{t_ms + 1},"T":{t_ms},"s":"BTCUSDT",'
                f'"U":{first_u + 1},"u":{first_u + MSG_UPDATES},"pu":{first_u},'
                f'"b":[{levels(b)}],"a":[{levels(a)}]}}}}\n'
            )
    _verify(tmp)
    os.replace(tmp, PEER_CAPTURE)
    return PEER_CAPTURE


def hft_input(path: Path) -> Path:
    """The capture without its partial-book (``@depthN``) lines, for hftbacktest (cached).

    Its converter takes every ``depthUpdate`` event for a diff, and Binance's partial-book
    streams (the golden ``@depth20@100ms`` records obpipeline compares with) carry that event
    type too: applied as diffs, they leave stale levels in its book. Everything else is kept.
    """
    out = BENCH_DIR / "hft_input" / f"{path.parent.name}_{path.name}"
    if out.exists() and out.stat().st_mtime >= path.stat().st_mtime:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    subprocess.run(
        ["bash", "-c", "set -o pipefail; gzip -dc -- \"$1\" | { grep -v -E '@depth[0-9]+' "
         "|| test $? = 1; } | gzip -1 > \"$2\"", "_", str(path), str(tmp)],
        check=True,
    )  # fmt: skip
    os.replace(tmp, out)
    return out


def ensure_real_capture() -> Path:
    """The real-volume simulated day (``OBPIPELINE_BENCH_REAL_FILE`` if set), generated once."""
    given = os.environ.get("OBPIPELINE_BENCH_REAL_FILE")
    if given:
        return Path(given)
    if not REAL_CAPTURE.exists():
        scratch = Path(tempfile.mkdtemp(prefix=".real-", dir=BENCH_DIR))
        try:
            subprocess.run(
                [*OBPIPELINE, "simulate", "--profile", "real", "--days", "1"]
                + ["--date", REAL_DAY, "--out", str(scratch), "--no-truth"],
                check=True,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            REAL_DIR.mkdir(parents=True, exist_ok=True)
            os.replace(scratch / REAL_CAPTURE.name, REAL_CAPTURE)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return REAL_CAPTURE


# ----------------------------------------------------------------------------- children


def child_hftbacktest(path: str) -> dict:
    """Convert the capture with hftbacktest's converter, then replay it in a HashMap depth."""
    import contextlib
    import io
    import warnings

    from hftbacktest import (
        BUY_EVENT,
        DEPTH_EVENT,
        EXCH_EVENT,
        LOCAL_EVENT,
        BacktestAsset,
        HashMapMarketDepthBacktest,
        event_dtype,
    )
    from hftbacktest.data.utils import binancefutures
    from numba import njit

    warnings.simplefilter("ignore", DeprecationWarning)

    @njit
    def drive(hbt):
        reads = 0
        acc = 0.0
        while hbt.wait_next_feed(False, 1 << 62) == 2:
            depth = hbt.depth(0)
            acc += depth.best_bid - depth.best_ask
            reads += 1
        return reads, acc

    def backtest(data):
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
        return HashMapMarketDepthBacktest([asset])

    t = time.perf_counter()
    tiny = np.zeros(2, event_dtype)
    tiny["ev"] = DEPTH_EVENT | EXCH_EVENT | LOCAL_EVENT | BUY_EVENT
    tiny["exch_ts"] = tiny["local_ts"] = [1, 2]
    tiny["px"], tiny["qty"] = 100.0, 1.0
    hbt = backtest(tiny)
    drive(hbt)
    hbt.close()
    jit_s = time.perf_counter() - t

    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress
        data = binancefutures.convert(path)
    convert_s = time.perf_counter() - t
    # diff levels, as obpipeline counts them: its event-order correction may split an event
    # into an exchange-side and a local-side row; the local book sees each one once
    local = (data["ev"] & LOCAL_EVENT) == LOCAL_EVENT
    updates = int((((data["ev"] & 0xFF) == DEPTH_EVENT) & local).sum())
    t = time.perf_counter()
    hbt = backtest(data)  # it reads ``data`` in place: kept alive until ``close``
    reads, _ = drive(hbt)
    replay_s = time.perf_counter() - t
    depth = hbt.depth(0)
    bbo = [round(depth.best_bid * 10), round(depth.best_ask * 10)]
    hbt.close()
    return {
        "depth_rows": updates,
        "reads": reads,
        "jit_s": jit_s,
        "convert_s": convert_s,
        "replay_s": replay_s,
        "bbo": bbo,
        "rss_self_mb": peak_rss_mb(),
    }


# ----------------------------------------------------------------------------- cases


def _final_bbo(snapshots: list[str]) -> list[int]:
    """Best bid/ask (in ticks) of the last book_snapshots row of the last day written."""
    import polars as pl

    last = pl.scan_parquet(snapshots[-1]).select("bid_price_1", "ask_price_1").tail(1).collect()
    return [round(float(last.item(0, c)) * 10) for c in (0, 1)]


def run_obpipeline(path: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix="capture-", dir=BENCH_DIR))
    try:
        m = measure([*OBPIPELINE, "replay", str(path), "--out", str(out)], cwd=ROOT)
        s = last_json(m["stdout"])
        snapshots = [p for p in s["outputs"] if "book_snapshots" in p]
        bbo = _final_bbo(snapshots)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {**m, "summary": s, "bbo": bbo}


def run_hftbacktest(path: Path) -> dict:
    source = hft_input(path)  # untimed, like the capture itself
    m = measure([sys.executable, __file__, "--child", str(source)], cwd=ROOT)
    return {**m, "child": last_json(m["stdout"])}


def compare(label: str, path: Path, hft: bool = True, truth: list[int] | None = None) -> list:
    """One file through both; one row each (+ the ratio on hftbacktest's)."""
    ob = run_obpipeline(path)
    s = ob["summary"]
    if s["gaps"] or s.get("golden_mismatched", 0):
        raise RuntimeError(f"obpipeline replay of {path}: {json.dumps(s)}")
    mb = path.stat().st_size / 1e6
    ingest = s["parse_seconds"]
    row = {
        "section": "capture",
        "case": f"{label}/obpipeline replay (CLI)",
        "file_mb": mb,
        "lines": s["lines"],
        "messages": s["messages"],
        "reads": s["rows"],
        "updates": s["level_updates"],
        "seconds": ob["wall_s"],
        "cpu_s": ob["cpu_s"],
        "rss_mb": ob["rss_mb"],
        "upd_per_s": s["level_updates"] / ob["wall_s"],
        "ingest_s": ingest,
        "replay_s": s["replay_seconds"],
        "parse_upd_per_s": s["level_updates"] / max(ingest, 1e-9),
    }
    if truth is not None:
        row["exact"] = int(ob["bbo"] == truth)
    rows = [row]
    if hft:
        h = run_hftbacktest(path)
        c = h["child"]
        hrow = {
            "section": "capture",
            "case": f"{label}/hftbacktest convert+HashMap",
            "file_mb": mb,
            "reads": c["reads"],
            "updates": c["depth_rows"],
            "seconds": h["wall_s"],
            "cpu_s": h["cpu_s"],
            "rss_mb": h["rss_mb"],
            "upd_per_s": c["depth_rows"] / h["wall_s"],
            "ingest_s": c["convert_s"],
            "replay_s": c["replay_s"],
            "jit_s": c["jit_s"],
            "parse_upd_per_s": c["depth_rows"] / c["convert_s"],
            "ratio_hft_wall": h["wall_s"] / ob["wall_s"],
            "same_bbo": int(c["bbo"] == ob["bbo"]),
        }
        if truth is not None:
            hrow["exact"] = int(c["bbo"] == truth)
        rows.append(hrow)
    return rows


def _flag(name: str, default: bool = True) -> bool:
    return os.environ.get(name, "1" if default else "0").strip().lower() not in (
        "0",
        "no",
        "false",
        "off",
        "",
    )


def run(real: bool | None = None) -> list[dict]:
    rows: list[dict] = []
    peer = ensure_peer_capture()
    d = np.load(ensure_peer_stream())
    truth = [int(d["truth_bid"][0, 0]), int(d["truth_ask"][0, 0])]
    rows += compare("peer 3M", peer, truth=truth)
    if real if real is not None else _flag("OBPIPELINE_BENCH_REAL"):
        path = ensure_real_capture()
        rows += compare(f"real {path.name}", path, hft=_flag("OBPIPELINE_BENCH_REAL_HFT"))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-real", action="store_true", help="only the peer stream")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child_hftbacktest(a.child)))
        return
    for row in run(real=False if a.skip_real else None):
        print(json.dumps(row))


if __name__ == "__main__":
    main()

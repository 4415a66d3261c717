"""One simulated day: chaining, the engine run, timestamps, arrival order, truth and rendering.

Chaining without simulating earlier days: the opening book of day D is a deterministic function
of (venue, symbol, D, seed) — the engine run for a warm-up with the fundamental price fixed at
D's open — and day D's intraday fundamental price is bridged to D+1's open. Day D's last
message (stamped 23:59:59.999) moves the book exactly onto D+1's opening book and its ``u``
jumps to D+1's base update id; D+1's first message has ``pu`` = that id. A replay of D therefore
ends on the book D+1 starts from, and ``pu`` chains across midnight like the real captures.

Update ids: day D owns ``[base(D), base(D+1))`` with ``base(D) = 10**12 + D_index * 10**10``;
each event advances by 1 + a geometric draw (other symbols on the same matching engine), sized so
a day uses about half of its range. Trade ids: ``10**9 + D_index * 10**8`` onward.

Timestamps (all deterministic from the seed): a message's T is its last event's time (ms), E the
window end plus 0-2 ms; bookTicker T is its event's time, E = T (+1-2 ms for 40 %); trades
E = T. Receive time = send time + a per-day clock offset (-1.5..0 s: the collector's clock may
lag, as in the real files) + latency (3 ms + exponential, rare 20-80 ms spikes), made monotone
in send order (one websocket is FIFO). A REST snapshot reflects the book after message m (its
``lastUpdateId`` is m's ``u``) and is received just after message m + lag, lag in 1..3, so it
always arrives after diffs that are newer than it, as in the real captures.

msg_id: the ordinal, in arrival (line) order from 0, of every depth-diff and REST-snapshot line
of the day file; bookTicker, trade and depth20 lines are not counted. Truth has one row per
depth-diff message (the true top-N after it, ``last_update_id`` = its ``u``); a REST snapshot
gets no truth row of its own: its book is the truth row of the diff whose ``u`` it carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from obpipeline.instruments import Instrument
from obpipeline.sources.synthetic import engine as E
from obpipeline.sources.synthetic import paths as P
from obpipeline.sources.synthetic import render as RD
from obpipeline.sources.synthetic import rng as R
from obpipeline.sources.synthetic.profiles import Profile

DAY_NS = 86_400 * 1_000_000_000
UID_BASE = 1_000_000_000_000
UID_PER_DAY = 10_000_000_000
TRADE_BASE = 1_000_000_000
TRADE_PER_DAY = 100_000_000
LAST_EVENT_NS = DAY_NS - 20_000_000  # regular flow stops 20 ms before midnight
SETTLE_NS = DAY_NS - 1_000_000  # the settlement message at 23:59:59.999
NO_SNAPSHOTS = np.zeros(0, dtype=np.int64)
NO_BOOK = np.zeros((0, 0), dtype=np.int64)


def uid_base(day: date) -> int:
    return UID_BASE + P.day_index(day) * UID_PER_DAY


@dataclass
class Book:
    """A full book as absolute tick and lot counts (bids best first, asks best first), with the
    number of resting orders per level (the engine's queue state, invisible in the feed)."""

    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray
    bid_orders: np.ndarray
    ask_orders: np.ndarray


@dataclass
class DayRecords:
    """Everything a day publishes, columnar; rows laid out as ``render.render`` documents."""

    day: date
    msgs: np.ndarray
    lv: np.ndarray
    bbo: np.ndarray
    trades: np.ndarray
    d20: np.ndarray
    d20b: np.ndarray
    snaps: np.ndarray
    snap_lv: np.ndarray
    truth: np.ndarray  # (n_msgs, 4, depth) int32: bid px, bid qty, ask px, ask qty
    kinds: np.ndarray  # arrival order: record kind per line
    idxs: np.ndarray  # ... and its row in that kind's table
    local_ns: np.ndarray  # receive time per line
    msg_local_ns: np.ndarray  # receive time per depth message
    msg_id: np.ndarray  # msg_id per depth message
    snap_msg_id: np.ndarray  # msg_id per REST snapshot line
    open_book: Book
    close_book: Book
    mid_path: np.ndarray  # fundamental price per second (float ticks), for diagnostics


def _instrument_units(inst: Instrument) -> tuple[float, float]:
    return float(inst.tick_size), float(inst.lot_size)


def print_format(inst: Instrument) -> np.ndarray:
    """[price mult, price dec, 10**dec, qty mult, qty dec, 10**dec] for ``render``.

    Binance USD-M prints prices with ``max(2, tick decimals)`` decimals ("61800.20" for a 0.1
    tick) and quantities with the lot's decimals ("2.507").
    """
    pdec = max(2, inst.price_scale)
    qdec = inst.size_scale
    pmult = int(inst.tick_size.scaleb(pdec))
    qmult = int(inst.lot_size.scaleb(qdec))
    return np.array([pmult, pdec, 10**pdec, qmult, qdec, 10**qdec], dtype=np.int64)


def _seed(seed: int, venue: str, symbol: str, day: date, stage: str) -> int:
    return R.derive_seed(stage, seed, venue, symbol.upper(), P.day_index(day))


def _engine_caps(profile: Profile, expected_events: float, scale: int) -> np.ndarray:
    msgs = DAY_NS // (profile.msg_ms * 1_000_000) + 16
    lv = int(expected_events * 1.4) + 8 * profile.model.max_levels + 100_000
    bbo = int(expected_events * min(1.0, profile.bbo_share * 1.5)) + 10_000
    trades = int(expected_events * profile.model.p_market * 6) + 100_000
    d20 = DAY_NS // (profile.d20_ms * 1_000_000) + 16 if profile.d20_ms > 0 else 1
    return np.array([msgs, lv * scale, bbo * scale, trades * scale, d20], dtype=np.int64)


def opening_book(
    day: date, seed: int, venue: str, symbol: str, profile: Profile, inst: Instrument
) -> Book:
    """The exchange's book at 00:00:00 of ``day``: a warm-up at that day's open price."""
    tick, lot = _instrument_units(inst)
    st = P.daily_states(day, seed, venue, symbol, 1, profile.vol_scale)[0]
    center = np.exp(st.log_open) / tick
    w = profile.model.window_ticks
    pad = w + 200
    c = int(np.floor(center))
    lo = c - pad
    n = 2 * pad + 1
    g = np.random.Generator(np.random.PCG64(_seed(seed, venue, symbol, day, "open-init")))
    book = np.zeros((4, n), dtype=np.int64)
    k = np.arange(w // 3)
    mu = np.log(profile.model.limit_size_median / lot)

    def size(m: int) -> np.ndarray:
        return np.maximum(1, np.round(np.exp(mu + g.standard_normal(m))))

    occ_b = g.random(k.size) < 0.6
    occ_a = g.random(k.size) < 0.6
    occ_b[0] = occ_a[0] = True
    book[E.BID, (c - k - lo)[occ_b]] = size(occ_b.sum())
    book[E.ASK, (c + 1 + k - lo)[occ_a]] = size(occ_a.sum())
    book[2:] = book[:2] > 0
    rate = profile.event_rate
    n_sec = max(1, int(profile.warmup_events / rate))
    f_idx = np.full(n_sec + 1, center - lo)
    rates = np.full(n_sec, rate)
    par = profile.model.vector(lot, 2.0, 0.0)
    caps = np.ones(5, dtype=np.int64)
    out = E.run(
        np.uint64(_seed(seed, venue, symbol, day, "open-run")), f_idx, rates, n_sec, n_sec * 1_000_000_000,
        book, par, False, 0, 1_000_000_000, lo, 0, NO_SNAPSHOTS, NO_BOOK, 0, 0, caps, 0,
    )  # fmt: skip
    assert out[0]
    bi = np.flatnonzero(book[E.BID])[::-1]
    ai = np.flatnonzero(book[E.ASK])
    return Book(
        bi + lo, book[E.BID, bi], ai + lo, book[E.ASK, ai], book[2 + E.BID, bi], book[2 + E.ASK, ai]
    )


def _dense(book: Book, lo: int, n: int) -> np.ndarray:
    out = np.zeros((4, n), dtype=np.int64)
    for side, px, q, k in (
        (E.BID, book.bid_px, book.bid_qty, book.bid_orders),
        (E.ASK, book.ask_px, book.ask_qty, book.ask_orders),
    ):
        idx = px - lo
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise RuntimeError("opening book outside the day's price range (simulator bug)")
        out[side, idx] = q
        out[2 + side, idx] = k
    return out


def simulate_records(
    day: date,
    inst: Instrument,
    profile: Profile,
    seed: int = 0,
    venue: str = "binance-usdm",
    opening_snapshot: bool = True,
    _seconds: int = 86_400,
) -> DayRecords:
    """Run the exchange for one UTC day and lay out its publication (no text yet)."""
    symbol = inst.symbol
    tick, lot = _instrument_units(inst)
    today, tomorrow = P.daily_states(day, seed, venue, symbol, 2, profile.vol_scale)
    path = P.intraday_path(
        _seed(seed, venue, symbol, day, "path"), today.log_open, tomorrow.log_open, today.sigma
    )
    f_ticks = np.exp(path.log_price) / tick
    w = profile.model.window_ticks
    pad = 2 * w + 400
    lo = int(np.floor(f_ticks.min())) - pad
    hi = int(np.ceil(f_ticks.max())) + pad
    n = hi - lo
    open_book = opening_book(day, seed, venue, symbol, profile, inst)
    next_book = opening_book(day + timedelta(days=1), seed, venue, symbol, profile, inst)
    book = _dense(open_book, lo, n)
    final = _dense(next_book, lo, n)
    rate = profile.event_rate * path.activity
    expected = float(rate.sum()) * 1.2 + 86_400
    inc_mean = max(1.0, 0.5 * UID_PER_DAY / expected)
    par = profile.model.vector(lot, inc_mean, profile.bbo_share)
    snap_times = []
    if opening_snapshot:
        snap_times.append(0)
    if profile.snapshot_every_min:
        step = int(profile.snapshot_every_min * 60e9)
        snap_times.extend(range(step, LAST_EVENT_NS, step))
    snap_arr = np.array(sorted(set(snap_times)), dtype=np.int64)
    msg_ns = profile.msg_ms * 1_000_000
    d20_ns = profile.d20_ms * 1_000_000
    depth = profile.truth_depth
    base, next_base = uid_base(day), uid_base(day + timedelta(days=1))
    for scale in (1, 2, 4, 8):
        caps = _engine_caps(profile, expected, scale)
        out = E.run(
            np.uint64(_seed(seed, venue, symbol, day, "flow")), f_ticks - lo, rate, 86_400, min(LAST_EVENT_NS, _seconds * 10**9),
            book.copy(), par, True, base, msg_ns, lo, d20_ns, snap_arr, final, next_base, SETTLE_NS,
            caps, depth,
        )  # fmt: skip
        if out[0]:
            break
    else:
        raise RuntimeError("simulator output capacity exceeded")
    _, st, msgs, lv, truth, bbo, trades, snaps, snap_lv, d20, d20b = out
    nm = int(st[E.S_MSG])
    if msgs[nm - 1, 1] != next_base or msgs[nm - 2, 1] >= next_base:
        raise RuntimeError("update ids overflowed the day's range (simulator bug)")
    msgs, lv = msgs[:nm], lv[: st[E.S_NLV]]
    truth = truth[:nm]
    bbo, trades = bbo[: st[E.S_NBT]], trades[: st[E.S_NTR]]
    snaps, snap_lv = snaps[: st[E.S_NSN]], snap_lv[: st[E.S_NSL]]
    d20, d20b = d20[: st[E.S_ND20]], d20b[: st[E.S_ND20]]
    return _publish(
        day,
        seed,
        venue,
        symbol,
        msgs,
        lv,
        truth,
        bbo,
        trades,
        snaps,
        snap_lv,
        d20,
        d20b,
        open_book,
        next_book,
        f_ticks,
    )


def _publish(
    day,
    seed,
    venue,
    symbol,
    msgs,
    lv,
    truth,
    bbo,
    trades,
    snaps,
    snap_lv,
    d20,
    d20b,
    open_book,
    next_book,
    f_ticks,
) -> DayRecords:
    """Exchange and receive timestamps, the arrival order and msg_id."""
    g = np.random.Generator(np.random.PCG64(_seed(seed, venue, symbol, day, "time")))
    day_ms = (day - date(1970, 1, 1)).days * 86_400_000
    end_ms = day_ms + 86_400_000 - 1
    nm = msgs.shape[0]
    # depth messages: [E, T, U, u, pu, off, nb, na]
    m_t = day_ms + msgs[:, 3] // 1_000_000
    m_e = np.minimum(day_ms + msgs[:, 4] // 1_000_000 + g.integers(0, 3, nm), end_ms)
    m_e = np.maximum.accumulate(np.maximum(m_e, m_t))
    m_out = np.column_stack(
        [m_e, m_t, msgs[:, 0], msgs[:, 1], msgs[:, 2], msgs[:, 5], msgs[:, 6], msgs[:, 7]]
    )
    # bookTicker: [u, T, E, bpx, bq, apx, aq]
    nb = bbo.shape[0]
    b_t = day_ms + bbo[:, 1] // 1_000_000
    b_e = np.minimum(b_t + np.where(g.random(nb) < 0.6, 0, g.integers(1, 3, nb)), end_ms)
    b_out = np.column_stack([bbo[:, 0], b_t, b_e, bbo[:, 2], bbo[:, 3], bbo[:, 4], bbo[:, 5]])
    # trades: [E, T, id, px, qty, m]
    nt = trades.shape[0]
    t_t = day_ms + trades[:, 0] // 1_000_000
    t_out = np.column_stack(
        [
            t_t,
            t_t,
            TRADE_BASE + P.day_index(day) * TRADE_PER_DAY + np.arange(nt),
            trades[:, 1],
            trades[:, 2],
            trades[:, 3],
        ]
    )
    # depth20: [E, T, U, u, pu]; U = first id after the previous publication
    nd = d20.shape[0]
    dm = d20[:, 0]
    prev_m = np.concatenate([[-1], dm[:-1]])
    d_u = msgs[dm, 1]
    d_pu = np.where(prev_m >= 0, msgs[np.maximum(prev_m, 0), 1], msgs[0, 2])
    d_U = msgs[np.minimum(prev_m + 1, nm - 1), 0]
    d_e = np.minimum(np.maximum(day_ms + d20[:, 1] // 1_000_000, m_e[dm]), end_ms)
    d_out = (
        np.column_stack([d_e, m_t[dm], d_U, d_u, d_pu]) if nd else np.zeros((0, 5), dtype=np.int64)
    )
    # REST snapshots: [E, T, lastUpdateId, off, nb, na]
    ns = snaps.shape[0]
    sm = snaps[:, 0]
    s_e = np.minimum(m_e[sm] + g.integers(1, 20, ns), end_ms)
    s_out = (
        np.column_stack([s_e, m_t[sm], msgs[sm, 1], snaps[:, 1], snaps[:, 2], snaps[:, 3]])
        if ns
        else np.zeros((0, 6), dtype=np.int64)
    )

    # websocket records in send order, FIFO receive times
    clock = int(g.uniform(-1.5e9, 0.0))
    kinds = np.concatenate(
        [
            np.full(nm, RD.K_DEPTH),
            np.full(nb, RD.K_BBO),
            np.full(nt, RD.K_TRADE),
            np.full(nd, RD.K_D20),
        ]
    ).astype(np.int8)
    idxs = np.concatenate([np.arange(nm), np.arange(nb), np.arange(nt), np.arange(nd)]).astype(
        np.int64
    )
    send_ms = np.concatenate([m_e, b_e, t_t, d_e])
    send = send_ms * 1_000_000 + g.integers(0, 1_000_000, send_ms.size)
    # each stream is sent in its own record order
    for a, b in ((0, nm), (nm, nm + nb), (nm + nb, nm + nb + nt), (nm + nb + nt, send.size)):
        send[a:b] = np.maximum.accumulate(send[a:b]) if b > a else send[a:b]
    # streams are concatenated in kind order with ascending rows: a stable sort on the send time
    # orders ties by kind, then row (a merge of pre-sorted runs, much cheaper than a lexsort)
    order = np.argsort(send, kind="stable")
    kinds, idxs, send = kinds[order], idxs[order], send[order]
    lat = 3_000_000 + g.exponential(1_500_000, send.size).astype(np.int64)
    spikes = g.random(send.size) < 1e-3
    lat[spikes] += g.integers(20_000_000, 80_000_000, int(spikes.sum()))
    local = np.maximum.accumulate(send + clock + lat)
    # REST snapshots arrive just after message m + lag
    if ns:
        pos_of_msg = np.empty(nm, dtype=np.int64)
        dmask = kinds == RD.K_DEPTH
        pos_of_msg[idxs[dmask]] = np.flatnonzero(dmask)
        lag = g.integers(1, 4, ns)
        after = np.minimum(sm + lag, nm - 1)
        s_local = local[pos_of_msg[after]] + g.integers(1, 1_000, ns)
        s_local = np.maximum.accumulate(s_local)
        at = np.searchsorted(local, s_local, side="right")
        kinds = np.insert(kinds, at, RD.K_SNAP)
        idxs = np.insert(idxs, at, np.arange(ns))
        local = np.insert(local, at, s_local)
    book_lines = (kinds == RD.K_DEPTH) | (kinds == RD.K_SNAP)
    ordinal = np.cumsum(book_lines) - 1
    msg_id = np.empty(nm, dtype=np.int64)
    msg_local = np.empty(nm, dtype=np.int64)
    dmask = kinds == RD.K_DEPTH
    msg_id[idxs[dmask]] = ordinal[dmask]
    smask = kinds == RD.K_SNAP
    snap_msg_id = np.empty(ns, dtype=np.int64)
    snap_msg_id[idxs[smask]] = ordinal[smask]
    msg_local[idxs[dmask]] = local[dmask]
    return DayRecords(
        day=day, msgs=m_out.astype(np.int64), lv=lv, bbo=b_out.astype(np.int64), trades=t_out.astype(np.int64),
        d20=d_out.astype(np.int64), d20b=d20b, snaps=s_out.astype(np.int64), snap_lv=snap_lv, truth=truth,
        kinds=kinds, idxs=idxs, local_ns=local.astype(np.int64), msg_local_ns=msg_local, msg_id=msg_id,
        snap_msg_id=snap_msg_id,
        open_book=open_book, close_book=next_book, mid_path=f_ticks,
    )  # fmt: skip

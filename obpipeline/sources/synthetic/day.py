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

from collections.abc import Iterator
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
    state = E.init(np.uint64(_seed(seed, venue, symbol, day, "open-run")), book, 0, False)
    ok = E.segment(
        *state, book, f_idx, rates, 0, n_sec, n_sec * 1_000_000_000, par, False, 1_000_000_000,
        lo, 0, NO_SNAPSHOTS, False, NO_BOOK, 0, 0, *_buffers(np.zeros(9, dtype=np.int64), 0),
    )  # fmt: skip
    assert ok
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


# ----------------------------------------------------------------------------- the engine run

SEGMENT_EVENTS = 1_000_000  # expected order events per engine stretch: bounds the buffers


def _buffers(caps: np.ndarray, depth: int) -> tuple[np.ndarray, ...]:
    """Output buffers of one engine stretch: caps = [msgs, lv, bbo, trades, d20, snaps, snap_lv].

    ``np.empty``, not zeros: every row that is read is fully written.
    """
    c = [max(1, int(x)) for x in caps]
    return (
        np.empty((c[0], 8), dtype=np.int64),
        np.empty((c[1], 2), dtype=np.int64),
        np.empty((c[0] if depth > 0 else 0, 4, depth), dtype=np.int32),
        np.empty((c[2], 6), dtype=np.int64),
        np.empty((c[3], 4), dtype=np.int64),
        np.empty((c[5], 4), dtype=np.int64),
        np.empty((c[6], 2), dtype=np.int64),
        np.empty((c[4], 2), dtype=np.int64),
        np.empty((c[4], 4, E.D20_LEVELS), dtype=np.int32),
    )


@dataclass
class _Setup:
    """Everything fixed before the order flow runs: paths, price range, books, parameters."""

    day: date
    seed: int
    venue: str
    symbol: str
    profile: Profile
    f_ticks: np.ndarray
    rate: np.ndarray
    lo: int
    book: np.ndarray
    final: np.ndarray
    open_book: Book
    next_book: Book
    par: np.ndarray
    snap_times: np.ndarray
    base: int
    next_base: int
    t_end_ns: int


def _setup(
    day: date,
    inst: Instrument,
    profile: Profile,
    seed: int,
    venue: str,
    opening_snapshot: bool,
    seconds: int,
) -> _Setup:
    symbol = inst.symbol
    tick, lot = _instrument_units(inst)
    today, tomorrow = P.daily_states(day, seed, venue, symbol, 2, profile.vol_scale)
    path = P.intraday_path(
        _seed(seed, venue, symbol, day, "path"), today.log_open, tomorrow.log_open, today.sigma
    )
    f_ticks = np.exp(path.log_price) / tick
    pad = 2 * profile.model.window_ticks + 400
    lo = int(np.floor(f_ticks.min())) - pad
    n = int(np.ceil(f_ticks.max())) + pad - lo
    open_book = opening_book(day, seed, venue, symbol, profile, inst)
    next_book = opening_book(day + timedelta(days=1), seed, venue, symbol, profile, inst)
    rate = profile.event_rate * path.activity
    expected = float(rate.sum()) * 1.2 + 86_400
    inc_mean = max(1.0, 0.5 * UID_PER_DAY / expected)
    snap_times = [0] if opening_snapshot else []
    if profile.snapshot_every_min:
        step = int(profile.snapshot_every_min * 60e9)
        snap_times.extend(range(step, LAST_EVENT_NS, step))
    return _Setup(
        day=day, seed=seed, venue=venue, symbol=symbol, profile=profile, f_ticks=f_ticks,
        rate=rate, lo=lo, book=_dense(open_book, lo, n), final=_dense(next_book, lo, n),
        open_book=open_book, next_book=next_book,
        par=profile.model.vector(lot, inc_mean, profile.bbo_share),
        snap_times=np.array(sorted(set(snap_times)), dtype=np.int64),
        base=uid_base(day), next_base=uid_base(day + timedelta(days=1)),
        t_end_ns=min(LAST_EVENT_NS, seconds * 10**9),
    )  # fmt: skip


@dataclass
class _Raw:
    """The records one engine stretch closed, as the engine lays them out (global row ids).

    msgs [U, u, pu, T ns, window end ns, lv row, n_bid, n_ask]; bbo [u, t ns, bid px, bid qty,
    ask px, ask qty]; trades [t ns, px, qty, buyer_is_maker]; d20 [msg, publication ns];
    snaps [msg, snap_lv row, n_bid, n_ask]. ``first`` = first global row of msgs, lv, bbo,
    trades, d20, snaps, snap_lv; ``t_low`` = no later record is sent before this time (ns).
    """

    msgs: np.ndarray
    lv: np.ndarray
    truth: np.ndarray
    bbo: np.ndarray
    trades: np.ndarray
    snaps: np.ndarray
    snap_lv: np.ndarray
    d20: np.ndarray
    d20b: np.ndarray
    first: tuple[int, ...]
    t_low: int
    last: bool


_BASES = (E.S_B_MSG, E.S_B_LV, E.S_B_BBO, E.S_B_TR, E.S_B_D20, E.S_B_SN, E.S_B_SL)
_COUNTS = (E.S_MSG, E.S_NLV, E.S_NBT, E.S_NTR, E.S_ND20, E.S_NSN, E.S_NSL)


def _stretches(rate: np.ndarray, t_end_ns: int) -> list[tuple[int, int]]:
    """Second ranges of about ``SEGMENT_EVENTS`` expected events each (one for a quiet day)."""
    n_sec = min(rate.size, -(-t_end_ns // 1_000_000_000))
    cum = np.cumsum(rate[:n_sec])
    cuts = np.searchsorted(cum, np.arange(1, int(cum[-1] // SEGMENT_EVENTS) + 1) * SEGMENT_EVENTS)
    edges = np.unique(np.concatenate([[0], cuts + 1, [rate.size]]).clip(0, rate.size))
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def _engine_stretches(su: _Setup) -> Iterator[_Raw]:
    """Run the day's order flow stretch by stretch, carrying the whole engine state."""
    prof = su.profile
    seed = np.uint64(_seed(su.seed, su.venue, su.symbol, su.day, "flow"))
    book = su.book.copy()
    state = E.init(seed, book, su.base, True)
    st = state[1]
    msg_ns, d20_ns = prof.msg_ms * 1_000_000, prof.d20_ms * 1_000_000
    n_snap_lv = 2 * prof.model.max_levels
    spans = _stretches(su.rate, su.t_end_ns)
    for j, (s0, s1) in enumerate(spans):
        last = j == len(spans) - 1
        events = float(su.rate[s0:s1].sum()) * 1.1 + 1_000
        n_snaps = int(np.count_nonzero(su.snap_times < s1 * 10**9)) - int(st[E.S_NSN]) + 2
        want = np.array(
            [
                (s1 - s0) * 10**9 // msg_ns + 16,
                events * 1.4 + 4 * prof.model.max_levels + 10_000,
                events * min(1.0, prof.bbo_share * 1.5) + 1_000,
                events * prof.model.p_market * 6 + 10_000,
                (s1 - s0) * 10**9 // d20_ns + 16 if d20_ns > 0 else 1,
                n_snaps,
                n_snaps * n_snap_lv,
            ]
        )
        saved = [a.copy() for a in (*state, book)]
        for scale in (1, 2, 4, 8, 16):
            for b, c in zip(_BASES, _COUNTS, strict=True):
                st[b] = st[c]
            out = _buffers(want * scale, prof.truth_depth)
            ok = E.segment(
                *state, book, su.f_ticks - su.lo, su.rate, s0, s1, su.t_end_ns, su.par, True,
                msg_ns, su.lo, d20_ns, su.snap_times, last, su.final, su.next_base, SETTLE_NS,
                *out,
            )  # fmt: skip
            if ok:
                break
            for a, b in zip((*state, book), saved, strict=True):
                a[...] = b
        else:
            raise RuntimeError("simulator output capacity exceeded")
        counts = [int(st[c] - st[b]) for b, c in zip(_BASES, _COUNTS, strict=True)]
        msgs, lv, truth, bbo, trades, snaps, snap_lv, d20, d20b = out
        open_end = (st[E.S_CUR_WIN] + 1) * msg_ns if st[E.S_EV] > 0 else s1 * 10**9
        yield _Raw(
            msgs=msgs[: counts[0]], lv=lv[: counts[1]], truth=truth[: counts[0]],
            bbo=bbo[: counts[2]], trades=trades[: counts[3]], d20=d20[: counts[4]],
            d20b=d20b[: counts[4]], snaps=snaps[: counts[5]], snap_lv=snap_lv[: counts[6]],
            first=tuple(int(st[b]) for b in _BASES), t_low=int(min(s1 * 10**9, open_end)),
            last=last,
        )  # fmt: skip


@dataclass(frozen=True)
class _Totals:
    messages: int
    bbo: int
    trades: int
    d20: int
    snaps: int


def _totals(raws: Iterator[_Raw] | list[_Raw], next_base: int) -> _Totals:
    """Record counts of the whole day (the publication's random draws are laid out by them)."""
    n = [0] * 5
    tail: list[int] = []
    for r in raws:
        for k, a in enumerate((r.msgs, r.bbo, r.trades, r.d20, r.snaps)):
            n[k] += a.shape[0]
        tail = (tail + r.msgs[-2:, 1].tolist())[-2:]
    if len(tail) < 2 or tail[-1] != next_base or tail[0] >= next_base:
        raise RuntimeError("update ids overflowed the day's range (simulator bug)")
    return _Totals(*n)


# ----------------------------------------------------------------------------- publication


def _cursor(g: np.random.Generator) -> np.random.Generator:
    """A generator at ``g``'s current position (``g`` itself moves on)."""
    c = np.random.Generator(np.random.PCG64())
    c.bit_generator.state = g.bit_generator.state
    return c


def _skip(g: np.random.Generator, n: int, draw, block: int = 1 << 20) -> int:
    """Advance ``g`` past ``n`` draws of ``draw(g, k)`` in blocks; returns the sum of the draws."""
    total = 0
    while n > 0:
        k = min(n, block)
        total += int(np.sum(draw(g, k)))
        n -= k
    return total


class _Draws:
    """The publication's random draws, each at its place in the day's single "time" stream.

    The stream is drawn in phases, each as long as a count of the whole day (messages, book
    tickers, lines...): a message jitter, then bookTicker delays, snapshot delays, the clock
    offset, send jitters per stream, latencies, spikes... A stretch of records needs each
    phase from the position of its first record, so one pass over the stream (blocks of draws,
    no storage) leaves a generator at the start of each phase; numpy's draws of one
    distribution are the same in one call or in consecutive calls, so every cursor then walks
    its phase in order, stretch after stretch.
    """

    def __init__(self, seed: int, t: _Totals, n_lines: int) -> None:
        g = np.random.Generator(np.random.PCG64(seed))
        self.msg_e = _cursor(g)
        _skip(g, t.messages, lambda g, k: g.integers(0, 3, k))
        self.bbo_now = _cursor(g)
        _skip(g, t.bbo, lambda g, k: g.random(k))
        self.bbo_delay = _cursor(g)
        _skip(g, t.bbo, lambda g, k: g.integers(1, 3, k))
        self.snap_e = g.integers(1, 20, t.snaps)
        self.clock = int(g.uniform(-1.5e9, 0.0))
        self.send = []
        for n in (t.messages, t.bbo, t.trades, t.d20):
            self.send.append(_cursor(g))
            _skip(g, n, lambda g, k: g.integers(0, 1_000_000, k))
        self.latency = _cursor(g)
        _skip(g, n_lines, lambda g, k: g.exponential(1_500_000, k))
        self.spike = _cursor(g)
        n_spikes = _skip(g, n_lines, lambda g, k: g.random(k) < 1e-3)
        self.spike_size = _cursor(g)
        _skip(g, n_spikes, lambda g, k: g.integers(20_000_000, 80_000_000, k))
        self.snap_lag = g.integers(1, 4, t.snaps) if t.snaps else NO_SNAPSHOTS
        self.snap_local = g.integers(1, 1_000, t.snaps) if t.snaps else NO_SNAPSHOTS


@dataclass
class Batch:
    """Consecutive capture lines, in arrival order, with the tables ``render.render`` reads.

    ``kinds``/``idxs``/``local_ns`` per line; tables laid out as in ``DayRecords`` with rows
    (and level offsets) local to the batch. ``msg_id``/``msg_local_ns``/``truth`` per depth
    message of the batch (messages ``first_msg`` on, in order); ``snap_msg_id`` per snapshot.
    """

    kinds: np.ndarray
    idxs: np.ndarray
    local_ns: np.ndarray
    msgs: np.ndarray
    lv: np.ndarray
    bbo: np.ndarray
    trades: np.ndarray
    d20: np.ndarray
    d20b: np.ndarray
    snaps: np.ndarray
    snap_lv: np.ndarray
    truth: np.ndarray
    msg_id: np.ndarray
    msg_local_ns: np.ndarray
    snap_msg_id: np.ndarray
    first_msg: int


@dataclass
class _Snap:
    k: int
    after: int  # the depth message it is received after (its receive time + a delay)
    row: np.ndarray  # [E, T, lastUpdateId, off, n_bid, n_ask] (off into ``levels``)
    levels: np.ndarray
    after_local: int | None = None
    local: int | None = None


class _Publisher:
    """Exchange and receive timestamps, the arrival order and msg_id, stretch by stretch.

    Each stream's send times are monotone, and no record of a later stretch is sent before the
    stretch's ``t_low``: every pending record sent before it is final, and the records merge
    (stable by send time, then stream, then row: the order of one sort over the whole day).
    """

    def __init__(self, su: _Setup, totals: _Totals) -> None:
        self.day_ms = (su.day - date(1970, 1, 1)).days * 86_400_000
        self.end_ms = self.day_ms + 86_400_000 - 1
        self.trade0 = TRADE_BASE + P.day_index(su.day) * TRADE_PER_DAY
        self.nm = totals.messages
        n_lines = totals.messages + totals.bbo + totals.trades + totals.d20
        self.rng = _Draws(_seed(su.seed, su.venue, su.symbol, su.day, "time"), totals, n_lines)
        self.depth = su.profile.truth_depth
        self.run_me = np.iinfo(np.int64).min  # running max of message E
        self.run_send = [np.iinfo(np.int64).min] * 4
        self.run_local = np.iinfo(np.int64).min
        self.run_snap_local = np.iinfo(np.int64).min
        self.ordinal = 0
        self.first_pu: int | None = None
        self.d20_prev = -1  # message of the last depth20 publication, its u, the next U
        self.d20_prev_u = 0
        self.d20_next_U: int | None = None
        # pending (not yet merged) records per stream: rows, send times
        self.p_rows: list[np.ndarray] = [
            np.zeros((0, 8), np.int64),
            np.zeros((0, 7), np.int64),
            np.zeros((0, 6), np.int64),
            np.zeros((0, 5), np.int64),
        ]
        self.p_send = [np.zeros(0, np.int64) for _ in range(4)]
        self.p_lv = np.zeros((0, 2), np.int64)
        self.p_lv0 = 0  # global row of p_lv[0]
        self.p_truth = np.zeros((0, 4, self.depth), np.int32)
        self.p_d20b = np.zeros((0, 4, E.D20_LEVELS), np.int32)
        self.p_msg0 = 0  # global index of the first pending message
        self.snaps: list[_Snap] = []  # registered, not yet written

    def _send(self, kind: int, send_ms: np.ndarray) -> np.ndarray:
        jitter = self.rng.send[kind].integers(0, 1_000_000, send_ms.size)
        send = np.maximum.accumulate(send_ms * 1_000_000 + jitter) if send_ms.size else send_ms
        if send.size:
            send = np.maximum(send, self.run_send[kind])
            self.run_send[kind] = int(send[-1])
        return send

    def _add(self, r: _Raw) -> None:
        day_ms, end_ms = self.day_ms, self.end_ms
        m = r.msgs
        nm = m.shape[0]
        m_t = day_ms + m[:, 3] // 1_000_000
        m_e = np.minimum(day_ms + m[:, 4] // 1_000_000 + self.rng.msg_e.integers(0, 3, nm), end_ms)
        m_e = np.maximum(m_e, m_t)
        if nm:
            m_e = np.maximum(np.maximum.accumulate(m_e), self.run_me)
            self.run_me = int(m_e[-1])
            if self.first_pu is None:  # depth20 before any other: pu, U of message 0
                self.first_pu, self.d20_next_U = int(m[0, 2]), int(m[0, 0])
        rows = np.column_stack([m_e, m_t, m[:, 0], m[:, 1], m[:, 2], m[:, 5], m[:, 6], m[:, 7]])
        # bookTicker: [u, T, E, bpx, bq, apx, aq]
        b = r.bbo
        nb = b.shape[0]
        b_t = day_ms + b[:, 1] // 1_000_000
        now = self.rng.bbo_now.random(nb) < 0.6
        b_e = np.minimum(b_t + np.where(now, 0, self.rng.bbo_delay.integers(1, 3, nb)), end_ms)
        b_rows = np.column_stack([b[:, 0], b_t, b_e, b[:, 2], b[:, 3], b[:, 4], b[:, 5]])
        # trades: [E, T, id, px, qty, m]
        t = r.trades
        t_t = day_ms + t[:, 0] // 1_000_000
        ids = self.trade0 + r.first[3] + np.arange(t.shape[0])
        t_rows = np.column_stack([t_t, t_t, ids, t[:, 1], t[:, 2], t[:, 3]])
        # depth20: [E, T, U, u, pu]; U = first id after the previous publication
        m0 = r.first[0]
        dm = r.d20[:, 0]
        nd = dm.size
        d_rows = np.zeros((nd, 5), np.int64)
        if nd:
            local = dm - m0
            prev = np.concatenate([[self.d20_prev], dm[:-1]])
            prev_u = np.concatenate([[self.d20_prev_u], m[local[:-1], 1]])
            d_pu = np.where(prev >= 0, prev_u, self.first_pu)
            nxt = prev + 1 - m0
            d_U = m[np.maximum(nxt, 0), 0]
            if nxt[0] < 0:
                d_U[0] = self.d20_next_U
            d_e = np.minimum(np.maximum(day_ms + r.d20[:, 1] // 1_000_000, m_e[local]), end_ms)
            d_rows = np.column_stack([d_e, m_t[local], d_U, m[local, 1], d_pu])
            self.d20_prev, self.d20_prev_u = int(dm[-1]), int(m[local[-1], 1])
            self.d20_next_U = int(m[local[-1] + 1, 0]) if local[-1] + 1 < nm else None
        # REST snapshots: [E, T, lastUpdateId, off, nb, na]
        for j in range(r.snaps.shape[0]):
            k = r.first[5] + j
            sm, off, n_b, n_a = (int(x) for x in r.snaps[j])
            i = sm - m0
            row = np.array(
                [min(m_e[i] + self.rng.snap_e[k], end_ms), m_t[i], m[i, 1], 0, n_b, n_a], np.int64
            )
            levels = r.snap_lv[off - r.first[6] : off - r.first[6] + n_b + n_a].copy()
            after = min(sm + int(self.rng.snap_lag[k]), self.nm - 1)
            self.snaps.append(_Snap(k, after, row, levels))
        # pending
        for kind, (new, send_ms) in enumerate(
            ((rows, m_e), (b_rows, b_e), (t_rows, t_t), (d_rows, d_rows[:, 0]))
        ):
            self.p_rows[kind] = np.concatenate([self.p_rows[kind], new])
            self.p_send[kind] = np.concatenate([self.p_send[kind], self._send(kind, send_ms)])
        if r.first[1] != self.p_lv0 + self.p_lv.shape[0]:
            raise RuntimeError("level rows out of sequence (simulator bug)")
        self.p_lv = np.concatenate([self.p_lv, r.lv])
        self.p_truth = np.concatenate([self.p_truth, r.truth])
        self.p_d20b = np.concatenate([self.p_d20b, r.d20b])

    def feed(self, r: _Raw) -> Batch:
        """Take one engine stretch; return the lines that are now final."""
        self._add(r)
        lb = (
            np.iinfo(np.int64).max
            if r.last
            else min(self.day_ms + r.t_low // 1_000_000, self.end_ms) * 1_000_000
        )
        cnt = [int(np.searchsorted(s, lb, side="left")) for s in self.p_send]
        send = np.concatenate([s[:c] for s, c in zip(self.p_send, cnt, strict=True)])
        kinds = np.repeat(np.arange(4, dtype=np.int8), cnt)
        idxs = np.concatenate([np.arange(c, dtype=np.int64) for c in cnt])
        order = np.argsort(send, kind="stable")
        kinds, idxs, send = kinds[order], idxs[order], send[order]
        n = send.size
        lat = 3_000_000 + self.rng.latency.exponential(1_500_000, n).astype(np.int64)
        spikes = self.rng.spike.random(n) < 1e-3
        lat[spikes] += self.rng.spike_size.integers(20_000_000, 80_000_000, int(spikes.sum()))
        local = send + self.rng.clock + lat
        if n:
            local = np.maximum(np.maximum.accumulate(local), self.run_local)
            self.run_local = int(local[-1])
        # depth messages of the batch and their receive times
        nmb = cnt[0]
        msg_local = np.empty(nmb, np.int64)
        dmask = kinds == RD.K_DEPTH
        msg_local[idxs[dmask]] = local[dmask]
        m_first = self.p_msg0
        # REST snapshots: receive time after message `after`, placed by receive time
        for s in self.snaps:
            if s.after_local is None and m_first <= s.after < m_first + nmb:
                s.after_local = int(msg_local[s.after - m_first])
        placed: list[tuple[int, _Snap]] = []
        for s in self.snaps:
            if s.local is None:
                if s.after_local is None:
                    break
                s.local = max(self.run_snap_local, s.after_local + int(self.rng.snap_local[s.k]))
                self.run_snap_local = s.local
            at = int(np.searchsorted(local, s.local, side="right"))
            if at >= n and not r.last:
                break
            placed.append((at, s))
        self.snaps = self.snaps[len(placed) :]
        ns = len(placed)
        snap_rows = np.zeros((ns, 6), np.int64)
        snap_lv = (
            np.concatenate([s.levels for _, s in placed]) if ns else np.zeros((0, 2), np.int64)
        )
        off = 0
        for j, (_, s) in enumerate(placed):
            snap_rows[j] = s.row
            snap_rows[j, 3] = off
            off += s.levels.shape[0]
        if ns:
            at = np.array([a for a, _ in placed])
            kinds = np.insert(kinds, at, RD.K_SNAP)
            idxs = np.insert(idxs, at, np.arange(ns))
            local = np.insert(local, at, [s.local for _, s in placed])
        book_lines = (kinds == RD.K_DEPTH) | (kinds == RD.K_SNAP)
        ordinal = self.ordinal + np.cumsum(book_lines) - 1
        self.ordinal += int(book_lines.sum())
        dmask = kinds == RD.K_DEPTH
        msg_id = np.empty(nmb, np.int64)
        msg_id[idxs[dmask]] = ordinal[dmask]
        smask = kinds == RD.K_SNAP
        snap_msg_id = np.empty(ns, np.int64)
        snap_msg_id[idxs[smask]] = ordinal[smask]
        # cut the batch's tables off the pending ones
        out = []
        for kind in range(4):
            out.append(self.p_rows[kind][: cnt[kind]])
            self.p_rows[kind] = self.p_rows[kind][cnt[kind] :]
            self.p_send[kind] = self.p_send[kind][cnt[kind] :]
        msgs = out[0].copy()
        lv_end = (
            self.p_rows[0][0, 5] if self.p_rows[0].shape[0] else self.p_lv0 + self.p_lv.shape[0]
        )
        lv = self.p_lv[: lv_end - self.p_lv0]
        self.p_lv = self.p_lv[lv_end - self.p_lv0 :]
        msgs[:, 5] -= self.p_lv0
        self.p_lv0 = int(lv_end)
        truth = self.p_truth[:nmb]
        self.p_truth = self.p_truth[nmb:]
        d20b = self.p_d20b[: cnt[3]]
        self.p_d20b = self.p_d20b[cnt[3] :]
        self.p_msg0 += nmb
        return Batch(
            kinds=kinds, idxs=idxs, local_ns=local, msgs=msgs, lv=lv, bbo=out[1],
            trades=out[2], d20=out[3], d20b=d20b, snaps=snap_rows, snap_lv=snap_lv, truth=truth,
            msg_id=msg_id, msg_local_ns=msg_local, snap_msg_id=snap_msg_id, first_msg=m_first,
        )  # fmt: skip


# ----------------------------------------------------------------------------- a whole day


def iter_batches(
    day: date,
    inst: Instrument,
    profile: Profile,
    seed: int = 0,
    venue: str = "binance-usdm",
    opening_snapshot: bool = True,
    _seconds: int = 86_400,
) -> Iterator[Batch]:
    """The day's capture lines in arrival order, batch by batch, in bounded memory."""
    su = _setup(day, inst, profile, seed, venue, opening_snapshot, _seconds)
    return _batches(su)


def _batches(su: _Setup, raws: list[_Raw] | None = None) -> Iterator[Batch]:
    """Publish the engine stretches. The publication's random draws are laid out by the day's
    record counts, so without ``raws`` (a run kept in memory; consumed) the order flow runs
    twice: once to count, once to publish."""
    totals = _totals(raws if raws is not None else _engine_stretches(su), su.next_base)
    pub = _Publisher(su, totals)
    if raws is None:
        for r in _engine_stretches(su):
            yield pub.feed(r)
        return
    raws.reverse()
    while raws:  # each stretch is let go once published
        yield pub.feed(raws.pop())


def simulate_records(
    day: date,
    inst: Instrument,
    profile: Profile,
    seed: int = 0,
    venue: str = "binance-usdm",
    opening_snapshot: bool = True,
    _seconds: int = 86_400,
) -> DayRecords:
    """Run the exchange for one UTC day and lay out its whole publication (no text yet)."""
    su = _setup(day, inst, profile, seed, venue, opening_snapshot, _seconds)
    raws = list(_engine_stretches(su))
    batches = list(_batches(su, raws))
    del raws
    cat = np.concatenate
    firsts = {
        name: np.cumsum([0] + [getattr(b, name).shape[0] for b in batches])
        for name in ("msgs", "lv", "bbo", "trades", "d20", "snaps", "snap_lv")
    }
    kind_first = {
        RD.K_DEPTH: "msgs",
        RD.K_BBO: "bbo",
        RD.K_TRADE: "trades",
        RD.K_D20: "d20",
        RD.K_SNAP: "snaps",
    }
    idxs = []
    for j, b in enumerate(batches):
        shift = np.zeros(5, np.int64)
        for k, name in kind_first.items():
            shift[k] = firsts[name][j]
        idxs.append(b.idxs + shift[b.kinds])
    msgs = cat([b.msgs for b in batches])
    msgs[:, 5] += np.repeat(firsts["lv"][:-1], [b.msgs.shape[0] for b in batches])
    snaps = cat([b.snaps for b in batches])
    snaps[:, 3] += np.repeat(firsts["snap_lv"][:-1], [b.snaps.shape[0] for b in batches])
    return DayRecords(
        day=day, msgs=msgs, lv=cat([b.lv for b in batches]), bbo=cat([b.bbo for b in batches]),
        trades=cat([b.trades for b in batches]), d20=cat([b.d20 for b in batches]),
        d20b=cat([b.d20b for b in batches]), snaps=snaps,
        snap_lv=cat([b.snap_lv for b in batches]), truth=cat([b.truth for b in batches]),
        kinds=cat([b.kinds for b in batches]), idxs=cat(idxs),
        local_ns=cat([b.local_ns for b in batches]),
        msg_local_ns=cat([b.msg_local_ns for b in batches]),
        msg_id=cat([b.msg_id for b in batches]),
        snap_msg_id=cat([b.snap_msg_id for b in batches]),
        open_book=su.open_book, close_book=su.next_book, mid_path=su.f_ticks,
    )  # fmt: skip

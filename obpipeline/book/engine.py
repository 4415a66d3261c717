"""Compiled replay engine: the reference replayer's contract in one numba loop over columnar arrays.

Why this shape (DESIGN.md §7): a Python loop per level tops out at ~2-3 M updates/s; one compiled
loop over ``EventArrays`` with a dense book needs no Python object per event and no tree.

**Price grid.** Before the replay one pass over the day's prices (and the checkpoint's) gives the
minimum, maximum and the gcd of their differences: the finest grid every price lies on (an
inferred instrument's unscaled unit may be finer than its real tick). Each price maps to a slot of
one dense index space ordered like the prices::

    [ low outliers (sorted) | dense window: base + j * tick, j < W | high outliers (sorted) ]

When the whole range fits ``max_dense`` slots there are no outliers; otherwise the window is put
where most prices are, and the rare prices outside it (thousands of ticks from the mid) get the
sparse slots at either end, found by binary search. Since the mapping is strictly increasing,
comparisons of slots are comparisons of prices, and the book is a pair of dense arrays of sizes.

**Book.** Both sides in one (2, slots) array of sizes (0 = no level), the ask side mirrored so
that for either side the best level is the highest occupied position, plus a two-level occupancy
bitmap: the next level after any position is found with a count-leading-zeros instruction however
thin the book is (a dense scan would degrade on sparse, fine-tick books). Best bid/ask are kept
incrementally; the top-N of each row walks the bitmap from the best.

**State machine.** Exactly the one documented in ``sequencing.py`` and implemented by
``replayer.ReferenceReplayer`` (the oracle): synced/awaiting/unsynced, duplicates, stale diffs,
gaps, buffer-and-drain after a resync, snapshot checks while synced, the crossed-book repair rule
and every counter. The loop is resumable (its scalars live in ``state``), so output can be produced
in bounded chunks, and it can run on a prefix of the messages while the rest is still read.

**Entry points.** ``replay`` (DataFrame in, ``ReplayResult`` out: the reference's signature),
``replay_arrays`` (``EventArrays`` in); ``book/parquet_stream.replay_parquet`` drives this engine
from raw_book_events parquet to book_snapshots parquet, streamed.

A checkpoint level with size 0 (which the reference keeps as a level) is held as a size no input
row carries (``Engine.zero_size``) and reported as 0.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
from numba import njit
from numba.cpython.unsafe.numbers import leading_zeros

from obpipeline import schemas
from obpipeline.book import sequencing as seq
from obpipeline.book.stream import (
    Book,
    EventArrays,
    ReplayCounters,
    ReplayResult,
    SnapshotArrays,
    event_arrays,
    snapshots_frame,
)
from obpipeline.instruments import Instrument

CHUNK_ROWS = 1 << 17  # output rows per engine call in the DataFrame API
MAX_DENSE = 1 << 21  # slots in the dense window (16 MB of sizes per side at most)
INT64_MIN = np.iinfo(np.int64).min

# sync states (as in the reference replayer)
SYNCED, AWAITING, UNSYNCED = 0, 1, 2

# state vector layout (int64): resumable scalars of the loop
S_NEXT = 0  # next message to read
S_BEST_BID = 1  # position of the best bid (= its slot), -1 when no bids
S_BEST_ASK = 2  # position of the best ask (mirrored: nslots - 1 - slot), -1 when no asks
S_CUR_U = 3
S_SYNC = 4
S_EVER_SYNCED = 5
S_TS_EVENT = 6
S_TS_LOCAL = 7
S_NBUF = 8  # diffs buffered while out of sync
S_NEED = 9  # rows of output space the next message needs (set when a chunk stops early)
N_STATE = 10

# counters (int64), in ReplayCounters order for the ones the loop updates
C_GAPS, C_RESYNCS, C_CROSSED, C_DUPLICATES, C_STALE = 0, 1, 2, 3, 4
C_INVALID, C_CHECKS, C_MISMATCHES = 5, 6, 7
N_COUNTERS = 8

_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


# ----------------------------------------------------------------------------- price grid


@dataclass
class Grid:
    """Monotone price → slot map over one day's prices (see module docstring)."""

    base: int  # price of the first dense slot
    tick: int  # grid unit (gcd of price differences), unscaled
    nlo: int  # low outlier slots before the window
    width: int  # dense window slots
    lo: np.ndarray  # sorted low outlier prices
    hi: np.ndarray  # sorted high outlier prices
    price_of: np.ndarray  # slot → price (int64)

    @property
    def slots(self) -> int:
        return len(self.price_of)


@njit(cache=True)
def _price_stats(side, price, extra):
    """(count, min, max, gcd of differences) of the prices of level rows and of ``extra``."""
    n = 0
    lo = 0
    hi = 0
    p0 = 0
    g = 0
    for r in range(len(price) + len(extra)):
        if r < len(price):
            if side[r] == 0:
                continue
            p = price[r]
        else:
            p = extra[r - len(price)]
        if n == 0:
            lo = p
            hi = p
            p0 = p
        else:
            if p < lo:
                lo = p
            elif p > hi:
                hi = p
            if g != 1:
                d = p - p0
                if d < 0:
                    d = -d
                if g == 0:
                    g = d
                elif d % g != 0:
                    a, b = g, d
                    while b:
                        a, b = b, a % b
                    g = a
        n += 1
    return n, lo, hi, max(g, 1)


def build_grid(
    side: np.ndarray, price: np.ndarray, extra: np.ndarray, max_dense: int = MAX_DENSE
) -> Grid:
    """The slot map for these prices; ``extra`` are prices that may appear too (checkpoint)."""
    extra = np.ascontiguousarray(extra, np.int64)
    n, lo, hi, tick = _price_stats(side, price, extra)
    if n == 0:
        return Grid(0, 1, 0, 1, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(1, np.int64))
    span = (hi - lo) // tick + 1
    if span <= max_dense:
        base, width = lo, span
        lo_out = hi_out = np.zeros(0, np.int64)
    else:
        # Put the window where most prices are (a strided sample, sorted, two pointers).
        levels = price[side != 0]
        allp = np.concatenate([levels, extra])
        step = max(1, len(allp) // 200_000)
        sample = np.sort(allp[::step])
        reach = (max_dense - 1) * tick
        ends = np.searchsorted(sample, sample + reach, side="right")
        best = int(np.argmax(ends - np.arange(len(sample))))
        base, width = int(sample[best]), max_dense
        top = base + (width - 1) * tick
        lo_out = np.unique(allp[allp < base])
        hi_out = np.unique(allp[allp > top])
    price_of = np.concatenate(
        [lo_out, base + np.arange(width, dtype=np.int64) * tick, hi_out]
    ).astype(np.int64)
    return Grid(int(base), int(tick), len(lo_out), int(width), lo_out, hi_out, price_of)


@njit(cache=True)
def _search(a, p):
    """Position of ``p`` in the sorted array ``a`` (outlier slots; rare, so not inlined)."""
    lo, hi = 0, len(a)
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < p:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _slot(p, base, tick, nlo, width, lo, hi):
    d = p - base
    if tick != 1:
        d = d // tick
    if d >= 0 and d < width:
        return nlo + d
    if d < 0:
        return _search(lo, p)
    return nlo + width + _search(hi, p)


@njit(cache=True)
def _slots(prices, base, tick, nlo, width, lo, hi):
    out = np.empty(len(prices), np.int64)
    for i in range(len(prices)):
        out[i] = _slot(prices[i], base, tick, nlo, width, lo, hi)
    return out


# ----------------------------------------------------------------------------- bitmaps
#
# Both sides live in one (2, nslots) array pair, the ask side mirrored (j = nslots - 1 - slot), so
# that for either side the best level is the highest occupied j and "the next level" is always the
# next occupied j below: one code path, no unpredictable branch on the side of each update.


@njit(cache=True, inline="always")
def _set_bit(bits, summ, s, j):
    w = j >> 6
    bits[s, w] |= _ONE << np.uint64(j & 63)
    summ[s, w >> 6] |= _ONE << np.uint64(w & 63)


@njit(cache=True, inline="always")
def _clear_bit(bits, summ, s, j):
    w = j >> 6
    x = bits[s, w] & ~(_ONE << np.uint64(j & 63))
    bits[s, w] = x
    if x == 0:
        summ[s, w >> 6] &= ~(_ONE << np.uint64(w & 63))


@njit(cache=True, inline="always")
def _prev_word(summ, s, w):
    """Highest non-empty bitmap word of side ``s`` below word ``w``, or -1."""
    w -= 1
    if w < 0:
        return -1
    t = w >> 6
    m = summ[s, t] & (_ALL >> np.uint64(63 - (w & 63)))
    while m == 0:
        t -= 1
        if t < 0:
            return -1
        m = summ[s, t]
    return (t << 6) + 63 - np.int64(leading_zeros(m))


@njit(cache=True, inline="always")
def _prev_set(bits, summ, s, j):
    """Highest occupied position of side ``s`` below ``j``, or -1 (the next level after j)."""
    j -= 1
    if j < 0:
        return -1
    w = j >> 6
    m = bits[s, w] & (_ALL >> np.uint64(63 - (j & 63)))
    if m != 0:
        return (w << 6) + 63 - np.int64(leading_zeros(m))
    w = _prev_word(summ, s, w)
    if w < 0:
        return -1
    return (w << 6) + 63 - np.int64(leading_zeros(bits[s, w]))


@njit(cache=True)
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True)
def _count_levels(bits, s):
    n = 0
    for w in range(bits.shape[1]):
        if bits[s, w] != 0:
            n += _popcount(bits[s, w])
    return n


# ----------------------------------------------------------------------------- book primitives


@njit(cache=True)
def _repair_crossed(max_bid, price_of, q, bits, summ, best):
    """The reference's crossed-book rule, on a book known to be crossed."""
    last = len(price_of) - 1
    bid_slot = best[0]
    ask_slot = last - best[1]
    # the reference compares prices: max(-1, highest bid price set) >= best ask price
    mbs = -1
    if max_bid >= 0 and price_of[max_bid] > -1:
        mbs = price_of[max_bid]
    if mbs >= price_of[ask_slot]:  # the bid is news: asks at or below it are stale
        while best[1] >= 0 and last - best[1] <= bid_slot:
            j = best[1]
            q[1, j] = 0
            _clear_bit(bits, summ, 1, j)
            best[1] = _prev_set(bits, summ, 1, j)
    else:  # otherwise the bids at or above the best ask are
        while best[0] >= 0 and best[0] >= ask_slot:
            j = best[0]
            q[0, j] = 0
            _clear_bit(bits, summ, 0, j)
            best[0] = _prev_set(bits, summ, 0, j)


@njit(cache=True)
def _clear_book(q, bits, summ, best):
    for s in range(2):
        j = best[s]
        while j >= 0:
            q[s, j] = 0
            _clear_bit(bits, summ, s, j)
            j = _prev_set(bits, summ, s, j)
        best[s] = -1


@njit(cache=True)
def _snapshot_equals(r0, r1, side, price, size, g_base, g_tick, g_nlo, g_width, g_lo, g_hi,
                     q, bits, seen):  # fmt: skip
    """The reference's check: {price: size} of the snapshot's non-zero rows (last wins) == book."""
    last = q.shape[1] - 1
    equal = True
    n = np.zeros(2, np.int64)
    for r in range(r1 - 1, r0 - 1, -1):  # backwards: the first row seen per price is the last one
        sd = side[r]
        sz = size[r]
        if sd == 0 or sz == 0:
            continue
        i = _slot(price[r], g_base, g_tick, g_nlo, g_width, g_lo, g_hi)
        s = 0 if sd > 0 else 1
        j = i if s == 0 else last - i
        if seen[s, j]:
            continue
        seen[s, j] = 1
        n[s] += 1
        if q[s, j] != sz:
            equal = False
    for r in range(r0, r1):  # reset the scratch marks
        if side[r] != 0:
            i = _slot(price[r], g_base, g_tick, g_nlo, g_width, g_lo, g_hi)
            s = 0 if side[r] > 0 else 1
            seen[s, i if s == 0 else last - i] = 0
    return equal and n[0] == _count_levels(bits, 0) and n[1] == _count_levels(bits, 1)


# ----------------------------------------------------------------------------- the loop


@njit(cache=True, nogil=True)
def _run(rule, depth, state, counters, buf, pend, seen,
         msg_start, msg_id, first_u, last_u, prev_u, is_snapshot, ts_event, ts_local,
         side, price, size,
         g_base, g_tick, g_nlo, g_width, g_lo, g_hi, price_of, pos,
         q, bits, summ,
         o_ts_event, o_ts_local, o_msg_id, o_last_u, o_bp, o_bs, o_ap, o_as, o_nb, o_na,
         o_valid, o_crossed, o_resynced, row_cap):  # fmt: skip
    """Process messages from ``state[S_NEXT]`` until the end or until the output is full.

    Returns the number of rows written. A message is only started when ``row_cap`` leaves room
    for every row it can emit (1 + buffered diffs); otherwise ``state[S_NEED]`` says how many.

    The level loop and the row emission are written once, inline: numba calls between compiled
    functions cost ~100-300 ns each with this many array arguments, more than a message's work.
    """
    nslots = len(price_of)
    last = nslots - 1
    n_msg = len(msg_id)
    best = np.empty(2, np.int64)  # best position per side (-1: side empty)
    best[0] = state[S_BEST_BID]
    best[1] = state[S_BEST_ASK]
    k_next = state[S_NEXT]
    cur_u = state[S_CUR_U]
    sync = state[S_SYNC]
    ever = state[S_EVER_SYNCED]
    tse = state[S_TS_EVENT]
    tsl = state[S_TS_LOCAL]
    nbuf = state[S_NBUF]
    state[S_NEED] = 0
    row = 0
    npend = 0
    dpos = 0
    while True:
        draining = dpos < npend
        if draining:
            k = pend[dpos]
            dpos += 1
        else:
            if k_next >= n_msg:
                break
            if row + 1 + nbuf > row_cap:
                state[S_NEED] = 1 + nbuf
                break
            k = k_next
            k_next += 1
        # ---- decide: apply the message's levels? emit a row? (the reference's rules)
        load = False  # a REST snapshot replacing the book
        apply = False
        emit = False
        valid = True
        if is_snapshot[k]:
            su = last_u[k]
            if sync == SYNCED:
                if su != cur_u:
                    emit = True
                else:
                    counters[C_CHECKS] += 1
                    if _snapshot_equals(msg_start[k], msg_start[k + 1], side, price, size,
                                        g_base, g_tick, g_nlo, g_width, g_lo, g_hi,
                                        q, bits, seen):  # fmt: skip
                        emit = True
                    else:
                        counters[C_MISMATCHES] += 1
                        sync = UNSYNCED
            if not emit:  # (re)sync from this snapshot
                if sync == UNSYNCED and ever:
                    counters[C_RESYNCS] += 1
                ever = 1
                _clear_book(q, bits, summ, best)
                load = True
                apply = True
                emit = True
        else:
            lu = last_u[k]
            if sync == SYNCED:
                chains = prev_u[k] == cur_u if rule == seq.FUTURES else first_u[k] == cur_u + 1
                if chains:
                    apply = True
                elif lu <= cur_u:
                    counters[C_DUPLICATES] += 1
                else:
                    counters[C_GAPS] += 1
                    apply = True
                    valid = False
            elif sync == AWAITING:
                fu = first_u[k]
                if rule == seq.FUTURES:
                    stale = lu < cur_u
                    bridges = (fu <= cur_u and cur_u <= lu) or prev_u[k] == cur_u
                else:
                    stale = lu <= cur_u
                    bridges = fu <= cur_u + 1 and cur_u + 1 <= lu
                if stale:
                    counters[C_STALE] += 1
                elif bridges:
                    sync = SYNCED
                    apply = True
                else:
                    counters[C_GAPS] += 1
                    apply = True
                    valid = False
            else:
                apply = True
                valid = False
            if apply:
                emit = True
                if not valid:  # lose sync: keep the diff for the next snapshot
                    sync = UNSYNCED
                    buf[nbuf] = k
                    nbuf += 1
                    emit = not draining
        # ---- apply the levels (inline: the hot loop)
        crossed = False
        if apply:
            max_bid = -1
            for r in range(msg_start[k], msg_start[k + 1]):
                sd = side[r]
                if sd == 0:
                    continue
                p = price[r]
                d = p - g_base
                if g_tick != 1:
                    d = d // g_tick
                if d >= 0 and d < g_width:
                    i = g_nlo + d
                elif d < 0:
                    i = _search(g_lo, p)
                else:
                    i = g_nlo + g_width + _search(g_hi, p)
                s = np.int64(sd < 0)
                j = last - i if sd < 0 else i
                sz = size[r]
                q[s, j] = sz
                w = j >> 6
                bit = _ONE << np.uint64(j & 63)
                if sz != 0:
                    bits[s, w] |= bit
                    summ[s, w >> 6] |= _ONE << np.uint64(w & 63)
                    if j > best[s]:
                        best[s] = j
                    mb = -1 if sd < 0 else j
                    if mb > max_bid:
                        max_bid = mb
                else:
                    x = bits[s, w] & ~bit
                    bits[s, w] = x
                    if x == 0:
                        summ[s, w >> 6] &= ~(_ONE << np.uint64(w & 63))
                    if j == best[s]:
                        best[s] = _prev_set(bits, summ, s, j)
            cur_u = last_u[k]
            if best[0] >= 0 and best[1] >= 0 and best[0] >= last - best[1]:
                crossed = True
                _repair_crossed(max_bid, price_of, q, bits, summ, best)
            if load:
                if crossed:
                    counters[C_CROSSED] += 1
                sync = AWAITING
                for b in range(nbuf):  # replay the buffered diffs right after this row
                    pend[b] = buf[b]
                npend = nbuf
                dpos = 0
                nbuf = 0
            elif emit:
                if crossed and valid:
                    counters[C_CROSSED] += 1
                if not valid:
                    counters[C_INVALID] += 1
        # ---- emit the row: top-N of each side, walking the occupancy bits from the best
        if emit:
            o_ts_event[row] = ts_event[k]
            o_ts_local[row] = ts_local[k]
            o_msg_id[row] = msg_id[k]
            o_last_u[row] = cur_u
            # (written out per side: selecting between output arrays costs reference counting)
            n = 0
            j = best[0]
            if j >= 0 and depth > 0:
                w = j >> 6
                m = bits[0, w] & (_ALL >> np.uint64(63 - (j & 63)))
                while True:
                    if m == 0:
                        w = _prev_word(summ, 0, w)
                        if w < 0:
                            break
                        m = bits[0, w]
                    b = 63 - np.int64(leading_zeros(m))
                    m ^= _ONE << np.uint64(b)
                    j = (w << 6) + b
                    o_bp[row, n] = pos[0, j]
                    o_bs[row, n] = q[0, j]
                    n += 1
                    if n == depth:
                        break
            o_nb[row] = n
            n = 0
            j = best[1]
            if j >= 0 and depth > 0:
                w = j >> 6
                m = bits[1, w] & (_ALL >> np.uint64(63 - (j & 63)))
                while True:
                    if m == 0:
                        w = _prev_word(summ, 1, w)
                        if w < 0:
                            break
                        m = bits[1, w]
                    b = 63 - np.int64(leading_zeros(m))
                    m ^= _ONE << np.uint64(b)
                    j = (w << 6) + b
                    o_ap[row, n] = pos[1, j]
                    o_as[row, n] = q[1, j]
                    n += 1
                    if n == depth:
                        break
            o_na[row] = n
            o_valid[row] = valid
            o_crossed[row] = crossed
            o_resynced[row] = load
            row += 1
            tse = ts_event[k]
            tsl = ts_local[k]
    state[S_NEXT] = k_next
    state[S_BEST_BID] = best[0]
    state[S_BEST_ASK] = best[1]
    state[S_CUR_U] = cur_u
    state[S_SYNC] = sync
    state[S_EVER_SYNCED] = ever
    state[S_TS_EVENT] = tse
    state[S_TS_LOCAL] = tsl
    state[S_NBUF] = nbuf
    return row


@njit(cache=True)
def _load_side(q, bits, summ, s, slots, sizes, zero_size):
    """Checkpoint levels in order (a repeated price: the last one wins); returns the best."""
    last = q.shape[1] - 1
    best = -1
    for k in range(len(slots)):
        j = slots[k] if s == 0 else last - slots[k]
        sz = sizes[k]
        q[s, j] = zero_size if sz == 0 else sz
        _set_bit(bits, summ, s, j)
        if j > best:
            best = j
    return best


@njit(cache=True)
def _dump_side(q, bits, summ, s, best, pos, zero_size):
    """Levels of side ``s`` best first, as (prices, sizes)."""
    n = _count_levels(bits, s)
    prices = np.empty(n, np.int64)
    sizes = np.empty(n, np.int64)
    j = best
    for k in range(n):
        prices[k] = pos[s, j]
        sz = q[s, j]
        sizes[k] = 0 if sz == zero_size else sz
        j = _prev_set(bits, summ, s, j)
    return prices, sizes


# ----------------------------------------------------------------------------- driver


def _zero_size_marker(size: np.ndarray) -> int:
    """A size value no input row carries, to stand for a checkpoint level of size 0."""
    candidate = INT64_MIN
    present = np.unique(size[size <= INT64_MIN + 64])
    while candidate in present:
        candidate += 1
    return candidate


class Engine:
    """One replay: the book, the loop state and the counters; feed output chunks with ``run``."""

    def __init__(
        self,
        ev: EventArrays,
        rule: int,
        depth: int = schemas.DEFAULT_DEPTH,
        checkpoint: Book | None = None,
        max_dense: int = MAX_DENSE,
        grid: Grid | None = None,
        zero_size: int | None = None,
    ):
        """``grid``/``zero_size``: precomputed when ``ev`` is still being filled (streaming);
        the grid must then cover every price of the input and of the checkpoint."""
        self.ev = ev
        self.rule = rule
        self.depth = depth
        ck_prices = (
            np.concatenate([checkpoint.bid_price, checkpoint.ask_price]).astype(np.int64)
            if checkpoint is not None
            else np.zeros(0, np.int64)
        )
        self.grid = g = grid or build_grid(ev.side, ev.price, ck_prices, max_dense)
        n = g.slots
        nw = (n + 63) // 64
        ns = (nw + 63) // 64
        self.q = np.zeros((2, n), np.int64)  # sizes: [0] bids by slot, [1] asks mirrored
        self.bits = np.zeros((2, nw), np.uint64)
        self.summ = np.zeros((2, ns), np.uint64)
        self.pos = np.stack([g.price_of, g.price_of[::-1]])  # position → price, per side
        self.seen = np.zeros((2, n), np.uint8)
        self.buf = np.empty(max(ev.n_messages, 1), np.int64)
        self.pend = np.empty(max(ev.n_messages, 1), np.int64)
        self.counters = np.zeros(N_COUNTERS, np.int64)
        self.zero_size = _zero_size_marker(ev.size) if zero_size is None else zero_size
        self.zero_size_used = checkpoint is not None and bool(
            (checkpoint.bid_size == 0).any() or (checkpoint.ask_size == 0).any()
        )
        st = self.state = np.zeros(N_STATE, np.int64)
        st[S_BEST_BID] = st[S_BEST_ASK] = -1
        st[S_SYNC] = UNSYNCED
        if checkpoint is not None:
            for s, (prices, sizes) in enumerate(
                ((checkpoint.bid_price, checkpoint.bid_size),
                 (checkpoint.ask_price, checkpoint.ask_size))
            ):  # fmt: skip
                st[S_BEST_BID + s] = _load_side(
                    self.q, self.bits, self.summ, s, self._slots(prices),
                    np.ascontiguousarray(sizes, np.int64), self.zero_size,
                )  # fmt: skip
            st[S_CUR_U] = checkpoint.last_update_id
            st[S_SYNC] = SYNCED if checkpoint.is_valid else UNSYNCED
            st[S_EVER_SYNCED] = int(bool(checkpoint.is_valid))
            st[S_TS_EVENT], st[S_TS_LOCAL] = checkpoint.ts_event, checkpoint.ts_local

    def _slots(self, prices: np.ndarray) -> np.ndarray:
        g = self.grid
        return _slots(np.ascontiguousarray(prices, np.int64), g.base, g.tick, g.nlo, g.width,
                      g.lo, g.hi)  # fmt: skip

    @property
    def done(self) -> bool:
        return int(self.state[S_NEXT]) >= self.ev.n_messages

    @property
    def rows_needed(self) -> int:
        """Output rows the next message may need (> 0 after ``run`` stopped for space)."""
        return int(self.state[S_NEED])

    @property
    def next_message(self) -> int:
        return int(self.state[S_NEXT])

    def run(self, out: SnapshotArrays, start_row: int = 0, limit: int | None = None) -> int:
        """Write rows into ``out`` from ``start_row`` until the input (its first ``limit``
        messages when given: the rest is not read yet) is done or ``out`` is full; returns the
        number of rows written."""
        ev, g = self.ev, self.grid
        m = ev.n_messages if limit is None else limit

        def tail(a: np.ndarray) -> np.ndarray:
            return a[start_row:]

        written = _run(
            self.rule, self.depth, self.state, self.counters, self.buf, self.pend, self.seen,
            ev.msg_start[: m + 1], ev.msg_id[:m], ev.first_u[:m], ev.last_u[:m], ev.prev_u[:m],
            ev.is_snapshot[:m], ev.ts_event[:m], ev.ts_local[:m], ev.side, ev.price, ev.size,
            g.base, g.tick, g.nlo, g.width, g.lo, g.hi, g.price_of, self.pos,
            self.q, self.bits, self.summ,
            tail(out.ts_event), tail(out.ts_local), tail(out.msg_id), tail(out.last_update_id),
            tail(out.bid_price), tail(out.bid_size), tail(out.ask_price), tail(out.ask_size),
            tail(out.n_bid), tail(out.n_ask), tail(out.is_valid), tail(out.crossed_repaired),
            tail(out.resynced), out.capacity - start_row,
        )  # fmt: skip
        return int(written)

    def fix_zero_sizes(self, out: SnapshotArrays, start: int, stop: int) -> None:
        """Report checkpoint levels of size 0 as 0 in rows ``start:stop`` (rarely needed)."""
        z = self.zero_size
        for a in (out.bid_size, out.ask_size):
            block = a[start:stop]
            block[block == z] = 0

    def counters_result(self) -> ReplayCounters:
        ev = self.ev
        c = ReplayCounters()
        c.messages = ev.n_messages
        c.snapshots = int(ev.is_snapshot.sum())
        c.level_updates = _level_updates(ev)
        k = self.counters
        c.gaps, c.resyncs, c.crossed = int(k[C_GAPS]), int(k[C_RESYNCS]), int(k[C_CROSSED])
        c.duplicates, c.stale = int(k[C_DUPLICATES]), int(k[C_STALE])
        c.invalid_rows, c.snapshot_checks = int(k[C_INVALID]), int(k[C_CHECKS])
        c.snapshot_mismatches = int(k[C_MISMATCHES])
        c.unsynced_at_end = int(self.state[S_SYNC] == UNSYNCED)
        return c

    def book(self) -> Book:
        st = self.state
        bp, bs = _dump_side(self.q, self.bits, self.summ, 0, st[S_BEST_BID], self.pos,
                            self.zero_size)  # fmt: skip
        ap, asz = _dump_side(self.q, self.bits, self.summ, 1, st[S_BEST_ASK], self.pos,
                             self.zero_size)  # fmt: skip
        return Book(
            bid_price=bp,
            bid_size=bs,
            ask_price=ap,
            ask_size=asz,
            last_update_id=int(st[S_CUR_U]),
            is_valid=int(st[S_SYNC]) != UNSYNCED,
            ts_event=int(st[S_TS_EVENT]),
            ts_local=int(st[S_TS_LOCAL]),
        )


@njit(cache=True)
def _count_level_updates(msg_start, is_snapshot, side):
    n = 0
    for k in range(len(is_snapshot)):
        if not is_snapshot[k]:
            for r in range(msg_start[k], msg_start[k + 1]):
                if side[r] != 0:
                    n += 1
    return n


def _level_updates(ev: EventArrays) -> int:
    return int(_count_level_updates(ev.msg_start, ev.is_snapshot, ev.side))


def replay_arrays(
    ev: EventArrays,
    rule: int,
    depth: int = schemas.DEFAULT_DEPTH,
    checkpoint: Book | None = None,
    max_dense: int = MAX_DENSE,
) -> tuple[SnapshotArrays, int, Book, ReplayCounters]:
    """Replay arrays into one ``SnapshotArrays``; returns (out, rows, checkpoint, counters)."""
    eng = Engine(ev, rule, depth, checkpoint, max_dense)
    # Rows: one per message, plus the valid re-emission of diffs buffered before a resync.
    # np.zeros maps pages lazily, so a generous capacity costs only the rows written.
    out = SnapshotArrays(depth, 2 * ev.n_messages + 1)
    rows = eng.run(out)
    if not eng.done:  # cannot happen with 2n+1 rows; kept as a guard
        raise RuntimeError("engine output capacity exceeded")
    if eng.zero_size_used:
        eng.fix_zero_sizes(out, 0, rows)
    return out, rows, eng.book(), eng.counters_result()


def replay(
    events: pl.DataFrame,
    instrument: Instrument,
    depth: int = schemas.DEFAULT_DEPTH,
    checkpoint: Book | None = None,
    max_dense: int = MAX_DENSE,
    *,
    each_chunk: Callable[[SnapshotArrays, int], None] | None = None,
    frame_depth: int | None = None,
) -> ReplayResult:
    """Replay raw_book_events with the compiled engine (same contract as the reference).

    Rows are produced in chunks, each converted to Polars at once: the day's frame is built
    without ever holding all of its rows twice (engine arrays and Polars' 128-bit decimals).
    ``each_chunk(out, rows)`` sees each chunk's int rows of ``depth`` levels before they become
    the frame's ``frame_depth`` levels: the ChecksumValidator's pass (``book/checksum.py``)
    reads the venue's 25 levels there, where no decimal is built for the 5 the frame drops.
    """
    ev = event_arrays(events)
    eng = Engine(ev, seq.rule_code(instrument.sequencing), depth, checkpoint, max_dense)
    out = SnapshotArrays(depth, min(CHUNK_ROWS, ev.n_messages + 1))
    frames: list[pl.DataFrame] = []
    rows_total = 0
    while True:
        rows = eng.run(out)
        if rows == 0 and eng.rows_needed > out.capacity:  # a long buffered stretch to drain
            out = SnapshotArrays(depth, eng.rows_needed)
            continue
        if rows or not frames:
            if eng.zero_size_used:
                eng.fix_zero_sizes(out, 0, rows)
            if each_chunk is not None:
                each_chunk(out, rows)
            frames.append(snapshots_frame(_narrowed(out, frame_depth), rows, instrument))
            rows_total += rows
            # the frame shares some of out's arrays (ids, stamps): the next chunk gets new ones
            out = SnapshotArrays(depth, out.capacity)
        if eng.done:
            break
    counters = eng.counters_result()
    counters.rows = rows_total
    snapshots = frames[0] if len(frames) == 1 else pl.concat(frames, rechunk=False)
    return ReplayResult(snapshots, eng.book(), counters)


def _narrowed(out: SnapshotArrays, depth: int | None) -> SnapshotArrays:
    """``out`` seen with its first ``depth`` levels (views, no copy)."""
    if depth is None or depth == out.depth:
        return out
    view = copy.copy(out)
    view.depth = depth
    for name in ("bid_price", "bid_size", "ask_price", "ask_size"):
        setattr(view, name, getattr(out, name)[:, :depth])
    view.n_bid, view.n_ask = np.minimum(out.n_bid, depth), np.minimum(out.n_ask, depth)
    return view

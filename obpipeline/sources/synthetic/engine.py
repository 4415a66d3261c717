"""The compiled exchange: an order-flow book on a dense tick array, batched into Binance messages.

One ``@njit`` loop (``segment``) runs a stretch of seconds of a day on a state that ``init``
builds and the next stretch carries on (book, order counts, RNG, open message), so a day run in
one stretch or in many is the same day. Each *event* is one order action and takes one exchange
update id (ids advance by 1 + a geometric number of "other symbols'" ids, like Binance's global
counter):

* **limit order**: rests at a distance behind the touch implied by the fundamental price (the
  ticks just below/above it), drawn from a distribution concentrated near the top; lognormal
  sizes, larger at the touch. Quoting around the fundamental rather than around the current
  best is what lets a dense book follow a price that moves tens of ticks a second;
* **spread improvement**: while the spread is wider than a tick, a share of limit orders
  goes inside it, at the fundamental's touch (queue-reactive behaviour, Huang-Lehalle-Rosenbaum);
* **cancellation**: one resting order, drawn uniformly among the side's orders (a Fenwick tree
  over per-level order counts), leaves its level with an average order's size; the cancel share
  of events grows with the number of resting orders, so every order has the same hazard and the
  book is stationary (Cont-Stoikov-Talreja). Levels carry (size, order count): an order-level
  book without order ids, since the feed only ever shows the aggregate;
* **market order**: lognormal size, walks the book level by level (one trade per level) within
  a slippage band, its side leaning toward the fundamental price;
* **informed flow**: when the fundamental price has moved more than ``theta`` ticks past the
  touch, the stale quote is hit (a larger market order, limited at the fundamental) or pulled;
* **housekeeping**: at every second, resting orders further than ``W`` ticks from their best are
  cancelled, and a side never holds more than ``max_levels`` levels (the deepest is cancelled),
  so the whole book always fits in one REST snapshot (1000 levels): a snapshot is the full book.
  Nothing removes a level from a side holding ``min_levels`` (20) or fewer: a BTC ladder always
  shows 20 levels, and an empty side would print as "0.0" in bookTicker.

Messages are fixed time windows of ``msg_ns``: every level touched in the window appears once
with its final absolute size (bids then asks, ascending price, as Binance writes them). After each
message the loop records the true top-N book, the depth20 publication (the first message of each
``d20_ns`` bucket) and the REST snapshots (the first message at or after each requested time).
bookTicker records are taken after every event that changes the best bid/ask price or size
(thinned with probability ``p_bbo``), stamped with that event's id.

Output arrays are preallocated per stretch; on overflow ``segment`` returns False and the caller
restores the state it copied and reruns the stretch with larger buffers (same seed, same result).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from obpipeline.sources.synthetic import rng as R

BID = 0
ASK = 1

# indices in the parameter vector
P_W = 0
P_MAX_LEVELS = 1
P_MO = 2
P_TOUCH = 4
P_GAMMA = 5
P_LO_MU = 6
P_LO_SIGMA = 7
P_TOUCH_MULT = 8
P_MO_MU = 9
P_MO_SIGMA = 10
P_MO_CAP = 11
P_WALK = 12
P_THETA = 13
P_SWEEP = 14
P_KAPPA = 15
P_UID_INC = 17
P_BBO = 18
P_SPAN = 19
P_ARB_REACT = 20
P_INFORMED = 16
P_MIN_LEVELS = 23
P_IMPROVE = 22
P_CANCEL_SHARE = 21
P_TARGET_ORDERS = 3
N_PARAMS = 24

# indices in the scalar state vector
S_BB = 0  # best bid index (-1 if none)
S_BA = 1  # best ask index (R if none)
S_BMIN = 2  # lowest occupied bid index (R if none)
S_AMAX = 3  # highest occupied ask index (-1 if none)
S_NB = 4  # occupied bid levels
S_NA = 5
S_UID = 6
S_NT0 = 7  # touched bids in the open message
S_NT1 = 8  # touched asks in the open message
S_MSG = 9  # number of closed messages
S_NTR = 10  # trades
S_NBT = 11  # bookTickers
S_EV = 12  # events in the open message
S_U = 13  # first id of the open message
S_T = 14  # time of the last event in the open message
S_NLV = 15  # level rows written
S_OVF = 16  # overflow flag
S_NSN = 17  # snapshots
S_NSL = 18  # snapshot level rows
S_ND20 = 19  # depth20 records
S_PU = 20  # last closed message's u
S_LAST_BUCKET = 21  # depth20 bucket of the last publication
S_NEXT_SNAP = 22  # index of the next requested snapshot time
S_NORD = 23  # resting orders, both sides
S_CUR_WIN = 24  # message window of the last event
# first global row held by each output buffer of the current segment (see ``segment``)
S_B_MSG = 25
S_B_LV = 26
S_B_BBO = 27
S_B_TR = 28
S_B_D20 = 29
S_B_SN = 30
S_B_SL = 31
N_STATE = 32
D20_LEVELS = 20


@njit(cache=True)
def _fw_add(fw, side, i, delta):
    """Fenwick tree over resting-order counts of one side (element i, 0-based)."""
    n = fw.shape[1] - 1
    j = i + 1
    while j <= n:
        fw[side, j] += delta
        j += j & (-j)


@njit(cache=True)
def _fw_find(fw, side, k):
    """Index of the level holding the k-th resting order (0-based) of ``side``."""
    n = fw.shape[1] - 1
    pos = 0
    step = 1
    while step * 2 <= n:
        step *= 2
    while step > 0:
        nxt = pos + step
        if nxt <= n and fw[side, nxt] <= k:
            pos = nxt
            k -= fw[side, nxt]
        step //= 2
    return pos


@njit(cache=True)
def _set(book, fw, st, stamp, touched, side, i, q, n, record):
    """Set level i of ``side`` to size q held by n orders; keeps best/extremes/counts/touches."""
    old = book[side, i]
    dn = n - book[2 + side, i]
    if dn != 0:
        book[2 + side, i] = n
        _fw_add(fw, side, i, dn)
        st[S_NORD] += dn
    if record:
        _touch(st, stamp, touched, side, i)
    if old == q:
        return
    book[side, i] = q
    R_ = book.shape[1]
    if side == BID:
        if old == 0:
            st[S_NB] += 1
            if i > st[S_BB]:
                st[S_BB] = i
            if i < st[S_BMIN]:
                st[S_BMIN] = i
        elif q == 0:
            st[S_NB] -= 1
            if st[S_NB] == 0:
                st[S_BB] = -1
                st[S_BMIN] = R_
            else:
                if i == st[S_BB]:
                    j = i - 1
                    while book[BID, j] == 0:
                        j -= 1
                    st[S_BB] = j
                if i == st[S_BMIN]:
                    j = i + 1
                    while book[BID, j] == 0:
                        j += 1
                    st[S_BMIN] = j
    else:
        if old == 0:
            st[S_NA] += 1
            if i < st[S_BA]:
                st[S_BA] = i
            if i > st[S_AMAX]:
                st[S_AMAX] = i
        elif q == 0:
            st[S_NA] -= 1
            if st[S_NA] == 0:
                st[S_BA] = R_
                st[S_AMAX] = -1
            else:
                if i == st[S_BA]:
                    j = i + 1
                    while book[ASK, j] == 0:
                        j += 1
                    st[S_BA] = j
                if i == st[S_AMAX]:
                    j = i - 1
                    while book[ASK, j] == 0:
                        j -= 1
                    st[S_AMAX] = j


@njit(cache=True, inline="always")
def _touch(st, stamp, touched, side, i):
    mark = st[S_MSG] + 1
    if stamp[side, i] != mark:
        stamp[side, i] = mark
        k = st[S_NT0 + side]
        touched[side, k] = i
        st[S_NT0 + side] = k + 1


@njit(cache=True)
def _new_event(st, rs, t_ns, inc_mean):
    """Allocate the next update id to an event happening at t_ns."""
    inc = 1 + R.geometric0(rs, inc_mean - 1.0)
    st[S_UID] += inc
    if st[S_EV] == 0:
        st[S_U] = st[S_UID]
    st[S_EV] += 1
    st[S_T] = t_ns


@njit(cache=True)
def _lognormal_lots(rs, mu, sigma, cap):
    v = int(np.exp(mu + sigma * R.normal(rs)) + 0.5)
    if v < 1:
        v = 1
    if v > cap:
        v = cap
    return v


@njit(cache=True)
def _distance(rs, par):
    """Ticks behind the best for a placement/cancel: 0 (touch) or concentrated near the top."""
    if R.uniform(rs) < par[P_TOUCH]:
        return 0
    return 1 + int(par[P_W] * R.uniform(rs) ** par[P_GAMMA])


@njit(cache=True)
def _walk(
    book, fw, st, stamp, touched, side_taken, size, limit_idx, t_ns, lo, trades, record, min_lv
):
    """Consume ``side_taken`` from its best up to ``size`` lots, not past ``limit_idx``.

    A side never drops below ``min_lv`` levels: at that depth the last lot of a level is left
    and the order's remainder expires (a BTC book always shows its 20 levels; an empty side
    would print as "0.0" in bookTicker).
    """
    ntr = st[S_NTR]
    cap = trades.shape[0] + st[S_B_TR]
    R_ = book.shape[1]
    remaining = size
    while remaining > 0:
        if side_taken == ASK:
            i = st[S_BA]
            if i >= R_ or i > limit_idx:
                break
        else:
            i = st[S_BB]
            if i < 0 or i < limit_idx:
                break
        q = book[side_taken, i]
        fill = q if q <= remaining else remaining
        if fill == q and st[S_NB + side_taken] <= min_lv:
            fill = q - 1
            remaining = fill
            if fill == 0:
                break
        remaining -= fill
        left = q - fill
        n = book[2 + side_taken, i]
        n_left = 0 if left == 0 else max(1, (n * left + q - 1) // q)
        _set(book, fw, st, stamp, touched, side_taken, i, left, n_left, record)
        if record:
            if ntr >= cap:
                st[S_OVF] = 1
            else:
                r = ntr - st[S_B_TR]
                trades[r, 0] = t_ns
                trades[r, 1] = lo + i
                trades[r, 2] = fill
                trades[r, 3] = 1 if side_taken == BID else 0  # buyer is maker: aggressor sold
                ntr += 1
    st[S_NTR] = ntr


@njit(cache=True)
def _enforce_window(book, fw, st, stamp, touched, rs, t_ns, par, record):
    """Cancel resting orders further than W ticks behind their best (each is one event)."""
    w = int(par[P_W])
    n = 0
    min_lv = par[P_MIN_LEVELS]
    while st[S_NB] > min_lv and st[S_BMIN] < st[S_BB] - w:
        _new_event(st, rs, t_ns, par[P_UID_INC])
        _set(book, fw, st, stamp, touched, BID, st[S_BMIN], 0, 0, record)
        n += 1
    while st[S_NA] > min_lv and st[S_AMAX] > st[S_BA] + w:
        _new_event(st, rs, t_ns, par[P_UID_INC])
        _set(book, fw, st, stamp, touched, ASK, st[S_AMAX], 0, 0, record)
        n += 1
    return n


@njit(cache=True)
def _enforce_cap(book, fw, st, stamp, touched, rs, t_ns, par, record):
    cap = int(par[P_MAX_LEVELS])
    while st[S_NB] > cap:
        _new_event(st, rs, t_ns, par[P_UID_INC])
        _set(book, fw, st, stamp, touched, BID, st[S_BMIN], 0, 0, record)
    while st[S_NA] > cap:
        _new_event(st, rs, t_ns, par[P_UID_INC])
        _set(book, fw, st, stamp, touched, ASK, st[S_AMAX], 0, 0, record)


@njit(cache=True)
def _one_event(book, fw, st, stamp, touched, rs, t_ns, f, par, lo, trades, record):
    """Draw and apply one order action at time t_ns with fundamental price f (in array index)."""
    R_ = book.shape[1]
    bb = st[S_BB]
    ba = st[S_BA]
    has_b = bb >= 0
    has_a = ba < R_
    theta = par[P_THETA]
    # informed flow: the touch is stale against the fundamental price
    if has_a and f - ba > theta and R.uniform(rs) < par[P_ARB_REACT]:
        sweep = R.uniform(rs) < par[P_SWEEP]
        if not sweep and st[S_NA] <= par[P_MIN_LEVELS]:
            return  # the ladder keeps its minimum depth
        _new_event(st, rs, t_ns, par[P_UID_INC])
        if sweep:
            size = _lognormal_lots(
                rs, par[P_MO_MU] + par[P_INFORMED], par[P_MO_SIGMA], int(par[P_MO_CAP])
            )
            _walk(
                book,
                fw,
                st,
                stamp,
                touched,
                ASK,
                size,
                max(int(np.floor(f)), ba),
                t_ns,
                lo,
                trades,
                record,
                int(par[P_MIN_LEVELS]),
            )
        else:
            _set(book, fw, st, stamp, touched, ASK, ba, 0, 0, record)
        return
    if has_b and bb - f > theta and R.uniform(rs) < par[P_ARB_REACT]:
        sweep = R.uniform(rs) < par[P_SWEEP]
        if not sweep and st[S_NB] <= par[P_MIN_LEVELS]:
            return
        _new_event(st, rs, t_ns, par[P_UID_INC])
        if sweep:
            size = _lognormal_lots(
                rs, par[P_MO_MU] + par[P_INFORMED], par[P_MO_SIGMA], int(par[P_MO_CAP])
            )
            _walk(
                book,
                fw,
                st,
                stamp,
                touched,
                BID,
                size,
                min(int(np.ceil(f)), bb),
                t_ns,
                lo,
                trades,
                record,
                int(par[P_MIN_LEVELS]),
            )
        else:
            _set(book, fw, st, stamp, touched, BID, bb, 0, 0, record)
        return
    u = R.uniform(rs)
    if u < par[P_MO]:
        if not (has_a and has_b):
            return
        mid = 0.5 * (bb + ba)
        p_buy = 1.0 / (1.0 + np.exp(-par[P_KAPPA] * (f - mid)))
        size = _lognormal_lots(rs, par[P_MO_MU], par[P_MO_SIGMA], int(par[P_MO_CAP]))
        _new_event(st, rs, t_ns, par[P_UID_INC])
        if R.uniform(rs) < p_buy:
            lim = ba + int(par[P_WALK])  # slippage protection band
            _walk(
                book,
                fw,
                st,
                stamp,
                touched,
                ASK,
                size,
                lim,
                t_ns,
                lo,
                trades,
                record,
                int(par[P_MIN_LEVELS]),
            )
        else:
            lim = bb - int(par[P_WALK])
            _walk(
                book,
                fw,
                st,
                stamp,
                touched,
                BID,
                size,
                lim,
                t_ns,
                lo,
                trades,
                record,
                int(par[P_MIN_LEVELS]),
            )
        return
    side = BID if R.uniform(rs) < 0.5 else ASK
    # quotes are placed around the fundamental price: the touch it implies on each side
    anchor_b = int(np.ceil(f)) - 1
    anchor_a = int(np.floor(f)) + 1
    # the cancel share grows with the number of resting orders (target: P_TARGET_ORDERS)
    p_cancel = (1.0 - par[P_MO]) * par[P_CANCEL_SHARE] * st[S_NORD] / par[P_TARGET_ORDERS]
    if p_cancel > 0.95 * (1.0 - par[P_MO]):
        p_cancel = 0.95 * (1.0 - par[P_MO])
    if u >= par[P_MO] + p_cancel:
        size = _lognormal_lots(rs, par[P_LO_MU], par[P_LO_SIGMA], 1 << 40)
        if has_a and has_b and ba - bb > 1 and R.uniform(rs) < par[P_IMPROVE]:
            # queue-reactive: a wide spread draws orders inside it, at the fundamental's touch
            i = (
                min(ba - 1, max(bb + 1, anchor_b))
                if side == BID
                else max(bb + 1, min(ba - 1, anchor_a))
            )
        else:
            dist = _distance(rs, par)
            if dist == 0:
                size = int(size * par[P_TOUCH_MULT]) + 1
            i = anchor_b - dist if side == BID else anchor_a + dist
        # never cross: a limit order at or through the far touch rests one tick inside it
        if side == BID and has_a and i >= ba:
            i = ba - 1
        if side == ASK and has_b and i <= bb:
            i = bb + 1
        if i < 1 or i >= R_ - 1:
            return
        _new_event(st, rs, t_ns, par[P_UID_INC])
        _set(
            book,
            fw,
            st,
            stamp,
            touched,
            side,
            i,
            book[side, i] + size,
            book[2 + side, i] + 1,
            record,
        )
        _enforce_cap(book, fw, st, stamp, touched, rs, t_ns, par, record)
        return
    # cancellation of one resting order, chosen uniformly among the side's orders (each order
    # has the same cancel hazard, so queues are stationary): it removes an average order's size
    total = fw_total(fw, side)
    if total <= 0:
        return
    i = _fw_find(fw, side, int(R.uniform(rs) * total))
    q = book[side, i]
    n = book[2 + side, i]
    if n <= 1:
        if st[S_NB + side] <= par[P_MIN_LEVELS]:
            return  # the ladder keeps its minimum depth
        newq = 0
    else:
        rem = int(q / n * (0.5 + R.uniform(rs)) + 0.5)
        rem = min(max(rem, 1), q - 1)
        newq = q - rem
    _new_event(st, rs, t_ns, par[P_UID_INC])
    _set(book, fw, st, stamp, touched, side, i, newq, n - 1 if newq > 0 else 0, record)


@njit(cache=True)
def fw_total(fw, side):
    n = fw.shape[1] - 1
    tot = 0
    j = n
    while j > 0:
        tot += fw[side, j]
        j -= j & (-j)
    return tot


@njit(cache=True)
def _top(book, st, side, depth, px_out, q_out, lo):
    """Write the top ``depth`` levels of a side (abs ticks, lots); absent levels stay 0."""
    R_ = book.shape[1]
    n = 0
    if side == BID:
        j = st[S_BB]
        lim = st[S_BMIN]
        while n < depth and j >= lim and j >= 0:
            if book[BID, j] > 0:
                px_out[n] = lo + j
                q_out[n] = book[BID, j]
                n += 1
            j -= 1
    else:
        j = st[S_BA]
        lim = st[S_AMAX]
        while n < depth and j <= lim and j < R_:
            if book[ASK, j] > 0:
                px_out[n] = lo + j
                q_out[n] = book[ASK, j]
                n += 1
            j += 1
    for k in range(n, depth):
        px_out[k] = 0
        q_out[k] = 0
    return n


@njit(cache=True)
def _close_message(
    book,
    st,
    touched,
    lo,
    win_end,
    msgs,
    lv,
    truth,
    snaps,
    snap_lv,
    d20,
    d20b,
    snap_times,
    d20_ns,
    u_override,
):
    """Publish the open message: its level rows, truth row, depth20 and REST snapshot records."""
    m = st[S_MSG]
    mi = m - st[S_B_MSG]  # row in this segment's buffers (global ids stay in the rows)
    if mi >= msgs.shape[0]:
        st[S_OVF] = 1
        return
    u = st[S_UID] if u_override < 0 else u_override
    off = st[S_NLV]
    n_b = st[S_NT0]
    n_a = st[S_NT1]
    if off - st[S_B_LV] + n_b + n_a > lv.shape[0]:
        st[S_OVF] = 1
        return
    k = off - st[S_B_LV]
    for side in range(2):
        cnt = st[S_NT0 + side]
        idx = touched[side, :cnt]
        idx.sort()  # in place: no allocation per message
        for c in range(cnt):
            lv[k, 0] = lo + idx[c]
            lv[k, 1] = book[side, idx[c]]
            k += 1
    msgs[mi, 0] = st[S_U]
    msgs[mi, 1] = u
    msgs[mi, 2] = st[S_PU]
    msgs[mi, 3] = st[S_T]
    msgs[mi, 4] = win_end
    msgs[mi, 5] = off
    msgs[mi, 6] = n_b
    msgs[mi, 7] = n_a
    st[S_NLV] = k + st[S_B_LV]
    depth = truth.shape[2]
    if depth > 0 and truth.shape[0] > mi:
        _top(book, st, BID, depth, truth[mi, 0], truth[mi, 1], lo)
        _top(book, st, ASK, depth, truth[mi, 2], truth[mi, 3], lo)
    # depth20: the first message closing in each d20 bucket is published
    if d20_ns > 0:
        bucket = win_end // d20_ns
        if bucket > st[S_LAST_BUCKET]:
            st[S_LAST_BUCKET] = bucket
            nd = st[S_ND20] - st[S_B_D20]
            if nd >= d20.shape[0]:
                st[S_OVF] = 1
            else:
                d20[nd, 0] = m
                d20[nd, 1] = (bucket + 1) * d20_ns  # publication time (end of the bucket)
                _top(book, st, BID, d20b.shape[2], d20b[nd, 0], d20b[nd, 1], lo)
                _top(book, st, ASK, d20b.shape[2], d20b[nd, 2], d20b[nd, 3], lo)
                st[S_ND20] += 1
    # REST snapshot: the first message closing at or after a requested time
    ns = st[S_NEXT_SNAP]
    if ns < snap_times.shape[0] and win_end >= snap_times[ns]:
        while ns < snap_times.shape[0] and win_end >= snap_times[ns]:
            ns += 1
        st[S_NEXT_SNAP] = ns
        k_s = st[S_NSN] - st[S_B_SN]
        off_s = st[S_NSL] - st[S_B_SL]
        if k_s >= snaps.shape[0] or off_s + st[S_NB] + st[S_NA] > snap_lv.shape[0]:
            st[S_OVF] = 1
        else:
            snaps[k_s, 0] = m
            snaps[k_s, 1] = st[S_NSL]
            kk = off_s
            j = st[S_BB]
            while j >= 0 and j >= st[S_BMIN]:
                if book[BID, j] > 0:
                    snap_lv[kk, 0] = lo + j
                    snap_lv[kk, 1] = book[BID, j]
                    kk += 1
                j -= 1
            snaps[k_s, 2] = kk - off_s
            j = st[S_BA]
            while j <= st[S_AMAX]:
                if book[ASK, j] > 0:
                    snap_lv[kk, 0] = lo + j
                    snap_lv[kk, 1] = book[ASK, j]
                    kk += 1
                j += 1
            snaps[k_s, 3] = kk - off_s - snaps[k_s, 2]
            st[S_NSL] = kk + st[S_B_SL]
            st[S_NSN] += 1
    st[S_PU] = u
    st[S_MSG] = m + 1
    st[S_NT0] = 0
    st[S_NT1] = 0
    st[S_EV] = 0


@njit(cache=True)
def _bbo_changed(book, st, last):
    bb = st[S_BB]
    ba = st[S_BA]
    qb = book[BID, bb] if bb >= 0 else 0
    qa = book[ASK, ba] if ba < book.shape[1] else 0
    if bb == last[0] and qb == last[1] and ba == last[2] and qa == last[3]:
        return False
    last[0] = bb
    last[1] = qb
    last[2] = ba
    last[3] = qa
    return True


@njit(cache=True)
def _record_bbo(st, last, bbo, uid, t_ns, lo, R_):
    """One bookTicker record (the best bid/ask in ``last``) stamped with ``uid``."""
    r = st[S_NBT] - st[S_B_BBO]
    if r >= bbo.shape[0]:
        st[S_OVF] = 1
        return
    bbo[r, 0] = uid
    bbo[r, 1] = t_ns
    bbo[r, 2] = lo + last[0] if last[0] >= 0 else 0
    bbo[r, 3] = last[1]
    bbo[r, 4] = lo + last[2] if last[2] < R_ else 0
    bbo[r, 5] = last[3]
    st[S_NBT] += 1


@njit(cache=True)
def init(seed, book, uid0, record):
    """Engine state for ``book`` (rows bid qty, ask qty, bid orders, ask orders; 4 x R).

    Returns (rs, st, fw, stamp, touched, last): the RNG word, the scalar state, the Fenwick
    trees of order counts, the per-level message stamps and touched lists of the open message,
    and the last best bid/ask. ``segment`` carries them from one stretch of seconds to the next.
    """
    rs = np.empty(1, dtype=np.uint64)
    rs[0] = seed
    R_ = book.shape[1]
    st = np.zeros(N_STATE, dtype=np.int64)
    st[S_BB] = -1
    st[S_BA] = R_
    st[S_BMIN] = R_
    st[S_AMAX] = -1
    st[S_UID] = uid0
    st[S_PU] = uid0
    st[S_LAST_BUCKET] = -1
    st[S_CUR_WIN] = -1
    fw = np.zeros((2, R_ + 1), dtype=np.int64)
    for i in range(R_):
        for side in range(2):
            if book[2 + side, i] > 0:
                _fw_add(fw, side, i, book[2 + side, i])
                st[S_NORD] += book[2 + side, i]
        if book[BID, i] > 0:
            st[S_NB] += 1
            if i > st[S_BB]:
                st[S_BB] = i
            if i < st[S_BMIN]:
                st[S_BMIN] = i
        if book[ASK, i] > 0:
            st[S_NA] += 1
            if i < st[S_BA]:
                st[S_BA] = i
            if i > st[S_AMAX]:
                st[S_AMAX] = i
    n_stamp = R_ if record else 1
    stamp = np.zeros((2, n_stamp), dtype=np.int64)
    touched = np.empty((2, n_stamp), dtype=np.int64)
    last = np.full(4, -2, dtype=np.int64)
    _bbo_changed(book, st, last)
    return rs, st, fw, stamp, touched, last


@njit(cache=True, nogil=True)
def segment(
    rs,
    st,
    fw,
    stamp,
    touched,
    last,
    book,
    f_idx,
    rate,
    s0,
    s1,
    t_end_ns,
    par,
    record,
    msg_ns,
    lo,
    d20_ns,
    snap_times,
    settle,
    final_book,
    final_uid,
    final_t_ns,
    msgs,
    lv,
    truth,
    bbo,
    trades,
    snaps,
    snap_lv,
    d20,
    d20b,
):
    """Run seconds ``s0:s1`` of a day (or a warm-up when ``record`` is False) on the state.

    ``f_idx``: fundamental price per second boundary, in array index units (float, n_sec + 1).
    ``rate``: expected events per second. The output buffers hold the records this call
    closes; their first global rows are ``st[S_B_*]`` (set by the caller), and rows keep
    global message / level-row numbers. ``settle`` (last stretch only): close the open
    message, then move the book onto ``final_book`` (4 x R; 0 x 0 for none) in one message
    stamped ``final_uid`` at ``final_t_ns``. Returns False on a full buffer: the caller restores
    the state it copied and reruns with larger buffers (same seed, same result).
    """
    R_ = book.shape[1]
    p_bbo = par[P_BBO]
    for s in range(s0, s1):
        t0 = s * 1_000_000_000
        if t0 >= t_end_ns:
            break
        r = rate[s]
        f0 = f_idx[s]
        df = f_idx[s + 1] - f0
        t = 0.0
        first = True
        while True:
            if first:
                t_ns = t0
            else:
                t += R.exponential(rs) / r if r > 0 else 2.0
                if t >= 1.0:
                    break
                t_ns = t0 + int(t * 1e9)
                if t_ns >= t_end_ns:
                    break
            if record:
                w = t_ns // msg_ns
                if w != st[S_CUR_WIN]:
                    if st[S_EV] > 0:
                        _close_message(
                            book,
                            st,
                            touched,
                            lo,
                            (st[S_CUR_WIN] + 1) * msg_ns,
                            msgs,
                            lv,
                            truth,
                            snaps,
                            snap_lv,
                            d20,
                            d20b,
                            snap_times,
                            d20_ns,
                            -1,
                        )
                        if st[S_OVF]:
                            return False
                    st[S_CUR_WIN] = w
            uid_before = st[S_UID]
            if first:
                _enforce_window(book, fw, st, stamp, touched, rs, t_ns, par, record)
                first = False
            else:
                _one_event(
                    book, fw, st, stamp, touched, rs, t_ns, f0 + df * t, par, lo, trades, record
                )
            if (
                record
                and st[S_UID] != uid_before
                and _bbo_changed(book, st, last)
                and R.uniform(rs) < p_bbo
            ):
                _record_bbo(st, last, bbo, st[S_UID], t_ns, lo, R_)
            if st[S_OVF]:
                return False
    if record and settle:
        if st[S_EV] > 0:
            _close_message(
                book,
                st,
                touched,
                lo,
                (st[S_CUR_WIN] + 1) * msg_ns,
                msgs,
                lv,
                truth,
                snaps,
                snap_lv,
                d20,
                d20b,
                snap_times,
                d20_ns,
                -1,
            )
        if final_book.shape[0] == 4 and not st[S_OVF]:
            # settlement: move the book exactly onto the next day's opening book in one message
            _new_event(st, rs, final_t_ns, par[P_UID_INC])
            for side in range(2):
                for i in range(R_):
                    if (
                        book[side, i] != final_book[side, i]
                        or book[2 + side, i] != final_book[2 + side, i]
                    ):
                        _set(
                            book,
                            fw,
                            st,
                            stamp,
                            touched,
                            side,
                            i,
                            final_book[side, i],
                            final_book[2 + side, i],
                            True,
                        )
            _close_message(
                book,
                st,
                touched,
                lo,
                final_t_ns,
                msgs,
                lv,
                truth,
                snaps,
                snap_lv,
                d20,
                d20b,
                snap_times,
                d20_ns,
                final_uid,
            )
            st[S_UID] = final_uid
            if _bbo_changed(book, st, last):
                _record_bbo(st, last, bbo, final_uid, final_t_ns, lo, R_)
    return st[S_OVF] == 0

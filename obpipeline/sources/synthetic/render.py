"""Compiled writer of Binance USD-M capture lines from the columnar day records.

One ``@njit`` loop writes ``<local_ns> <json>\\n`` lines straight into a byte buffer, in arrival
order, for a slice of the merged record order; there is no Python object per line or level.
The fixed JSON fragments come from Python (one byte array + offsets) so the symbol and stream
names are not compiled in. Decimal strings are written from fixed-point integers: prices with
the venue's print precision (``"61800.20"``), sizes with the lot's decimals (``"2.507"``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

K_DEPTH = 0
K_BBO = 1
K_TRADE = 2
K_D20 = 3
K_SNAP = 4

(
    F_DEPTH,
    F_T,
    F_S_U,
    F_U,
    F_PU,
    F_B,
    F_A,
    F_END_DEPTH,
    F_BBO,
    F_BBO_S,
    F_BBO_BQ,
    F_BBO_A,
    F_BBO_AQ,
    F_BBO_T,
    F_BBO_E,
    F_END_OBJ,
    F_TRADE,
    F_TRADE_S,
    F_TRADE_P,
    F_TRADE_Q,
    F_TRADE_X,
    F_FALSE,
    F_TRUE,
    F_D20,
    F_SNAP,
    F_BIDS,
    F_ASKS,
    F_END_SNAP,
    F_LV_OPEN,
    F_LV_MID,
    F_LV_CLOSE,
    F_COMMA,
    F_SPACE,
    F_SNAP_E,
) = range(34)


def fragments(symbol: str) -> tuple[np.ndarray, np.ndarray]:
    """The fixed text pieces of every line type, for ``symbol`` (e.g. BTCUSDT)."""
    s, lo = symbol.upper(), symbol.lower()
    parts = [
        '{"stream":"' + lo + '@depth@0ms","data":{"e":"depthUpdate","E":',
        ',"T":',
        ',"s":"' + s + '","U":',
        ',"u":',
        ',"pu":',
        ',"b":[',
        '],"a":[',
        "]}}\n",
        '{"stream":"' + lo + '@bookTicker","data":{"e":"bookTicker","u":',
        ',"s":"' + s + '","b":"',
        '","B":"',
        '","a":"',
        '","A":"',
        '","T":',
        ',"E":',
        "}}\n",
        '{"stream":"' + lo + '@trade","data":{"e":"trade","E":',
        ',"s":"' + s + '","t":',
        ',"p":"',
        '","q":"',
        '","X":"MARKET","m":',
        "false}}\n",
        "true}}\n",
        '{"stream":"' + lo + '@depth20@100ms","data":{"e":"depthUpdate","E":',
        '{"lastUpdateId":',
        ',"bids":[',
        '],"asks":[',
        "]}\n",
        '["',
        '","',
        '"]',
        ",",
        " ",
        ',"E":',
    ]
    enc = [p.encode() for p in parts]
    offsets = np.zeros(len(enc) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(e) for e in enc])
    return np.frombuffer(b"".join(enc), dtype=np.uint8).copy(), offsets


@njit(cache=True, inline="always")
def _frag(buf, pos, frag, foff, k):
    a = foff[k]
    b = foff[k + 1]
    for j in range(a, b):
        buf[pos] = frag[j]
        pos += 1
    return pos


@njit(cache=True)
def _int(buf, pos, v):
    if v < 0:
        buf[pos] = 45  # '-'
        pos += 1
        v = -v
    if v == 0:
        buf[pos] = 48
        return pos + 1
    n = 0
    t = v
    while t > 0:
        t //= 10
        n += 1
    end = pos + n
    p = end - 1
    while v > 0:
        buf[p] = 48 + v % 10
        v //= 10
        p -= 1
    return end


@njit(cache=True)
def _fixed(buf, pos, units, dec, pow10):
    """Fixed-point integer ``units`` with ``dec`` decimals, e.g. 6180020, 2 -> "61800.20"."""
    ip = units // pow10
    pos = _int(buf, pos, ip)
    if dec > 0:
        buf[pos] = 46  # '.'
        pos += 1
        fr = units - ip * pow10
        p = pos + dec - 1
        for _ in range(dec):
            buf[p] = 48 + fr % 10
            fr //= 10
            p -= 1
        pos += dec
    return pos


@njit(cache=True)
def _level(buf, pos, frag, foff, px, q, fmt):
    pos = _frag(buf, pos, frag, foff, F_LV_OPEN)
    pos = _fixed(buf, pos, px * fmt[0], fmt[1], fmt[2])
    pos = _frag(buf, pos, frag, foff, F_LV_MID)
    pos = _fixed(buf, pos, q * fmt[3], fmt[4], fmt[5])
    return _frag(buf, pos, frag, foff, F_LV_CLOSE)


@njit(cache=True, nogil=True)
def render(
    kinds,
    idxs,
    local_ns,
    start,
    stop,
    buf,
    frag,
    foff,
    fmt,
    msgs,
    lv,
    bbo,
    trades,
    d20,
    d20b,
    snaps,
    snap_lv,
):
    """Write lines ``start:stop`` of the arrival order into ``buf``; returns bytes written.

    Record layouts (int64 rows): msgs [E, T, U, u, pu, off, n_bid, n_ask]; bbo [u, T, E, bid px,
    bid qty, ask px, ask qty]; trades [E, T, id, px, qty, buyer_is_maker]; d20 [E, T, U, u, pu]
    with books d20b[k] = (bid px, bid qty, ask px, ask qty) x 20; snaps [E, T, lastUpdateId, off,
    n_bid, n_ask]. fmt = [price mult, price decimals, 10**price decimals, qty mult, qty decimals,
    10**qty decimals]: a tick (lot) count times the mult is the printed fixed-point integer.
    """
    pos = 0
    for r in range(start, stop):
        k = kinds[r]
        i = idxs[r]
        pos = _int(buf, pos, local_ns[r])
        pos = _frag(buf, pos, frag, foff, F_SPACE)
        if k == K_DEPTH or k == K_D20:  # noqa: SIM109 (numba)
            row = msgs[i] if k == K_DEPTH else d20[i]
            pos = _frag(buf, pos, frag, foff, F_DEPTH if k == K_DEPTH else F_D20)
            pos = _int(buf, pos, row[0])
            pos = _frag(buf, pos, frag, foff, F_T)
            pos = _int(buf, pos, row[1])
            pos = _frag(buf, pos, frag, foff, F_S_U)
            pos = _int(buf, pos, row[2])
            pos = _frag(buf, pos, frag, foff, F_U)
            pos = _int(buf, pos, row[3])
            pos = _frag(buf, pos, frag, foff, F_PU)
            pos = _int(buf, pos, row[4])
            pos = _frag(buf, pos, frag, foff, F_B)
            if k == K_DEPTH:
                off = row[5]
                nb = row[6]
                na = row[7]
                for j in range(nb):
                    if j > 0:
                        pos = _frag(buf, pos, frag, foff, F_COMMA)
                    pos = _level(buf, pos, frag, foff, lv[off + j, 0], lv[off + j, 1], fmt)
                pos = _frag(buf, pos, frag, foff, F_A)
                for j in range(na):
                    if j > 0:
                        pos = _frag(buf, pos, frag, foff, F_COMMA)
                    pos = _level(
                        buf, pos, frag, foff, lv[off + nb + j, 0], lv[off + nb + j, 1], fmt
                    )
            else:
                book = d20b[i]
                n = 0
                for j in range(book.shape[1]):
                    if book[1, j] > 0:
                        if n > 0:
                            pos = _frag(buf, pos, frag, foff, F_COMMA)
                        pos = _level(buf, pos, frag, foff, book[0, j], book[1, j], fmt)
                        n += 1
                pos = _frag(buf, pos, frag, foff, F_A)
                n = 0
                for j in range(book.shape[1]):
                    if book[3, j] > 0:
                        if n > 0:
                            pos = _frag(buf, pos, frag, foff, F_COMMA)
                        pos = _level(buf, pos, frag, foff, book[2, j], book[3, j], fmt)
                        n += 1
            pos = _frag(buf, pos, frag, foff, F_END_DEPTH)
        elif k == K_BBO:
            row = bbo[i]
            pos = _frag(buf, pos, frag, foff, F_BBO)
            pos = _int(buf, pos, row[0])
            pos = _frag(buf, pos, frag, foff, F_BBO_S)
            pos = _fixed(buf, pos, row[3] * fmt[0], fmt[1], fmt[2])
            pos = _frag(buf, pos, frag, foff, F_BBO_BQ)
            pos = _fixed(buf, pos, row[4] * fmt[3], fmt[4], fmt[5])
            pos = _frag(buf, pos, frag, foff, F_BBO_A)
            pos = _fixed(buf, pos, row[5] * fmt[0], fmt[1], fmt[2])
            pos = _frag(buf, pos, frag, foff, F_BBO_AQ)
            pos = _fixed(buf, pos, row[6] * fmt[3], fmt[4], fmt[5])
            pos = _frag(buf, pos, frag, foff, F_BBO_T)
            pos = _int(buf, pos, row[1])
            pos = _frag(buf, pos, frag, foff, F_BBO_E)
            pos = _int(buf, pos, row[2])
            pos = _frag(buf, pos, frag, foff, F_END_OBJ)
        elif k == K_TRADE:
            row = trades[i]
            pos = _frag(buf, pos, frag, foff, F_TRADE)
            pos = _int(buf, pos, row[0])
            pos = _frag(buf, pos, frag, foff, F_T)
            pos = _int(buf, pos, row[1])
            pos = _frag(buf, pos, frag, foff, F_TRADE_S)
            pos = _int(buf, pos, row[2])
            pos = _frag(buf, pos, frag, foff, F_TRADE_P)
            pos = _fixed(buf, pos, row[3] * fmt[0], fmt[1], fmt[2])
            pos = _frag(buf, pos, frag, foff, F_TRADE_Q)
            pos = _fixed(buf, pos, row[4] * fmt[3], fmt[4], fmt[5])
            pos = _frag(buf, pos, frag, foff, F_TRADE_X)
            pos = _frag(buf, pos, frag, foff, F_TRUE if row[5] else F_FALSE)
        else:
            row = snaps[i]
            pos = _frag(buf, pos, frag, foff, F_SNAP)
            pos = _int(buf, pos, row[2])
            pos = _frag(buf, pos, frag, foff, F_SNAP_E)
            pos = _int(buf, pos, row[0])
            pos = _frag(buf, pos, frag, foff, F_T)
            pos = _int(buf, pos, row[1])
            pos = _frag(buf, pos, frag, foff, F_BIDS)
            off = row[3]
            nb = row[4]
            na = row[5]
            for j in range(nb):
                if j > 0:
                    pos = _frag(buf, pos, frag, foff, F_COMMA)
                pos = _level(buf, pos, frag, foff, snap_lv[off + j, 0], snap_lv[off + j, 1], fmt)
            pos = _frag(buf, pos, frag, foff, F_ASKS)
            for j in range(na):
                if j > 0:
                    pos = _frag(buf, pos, frag, foff, F_COMMA)
                pos = _level(
                    buf, pos, frag, foff, snap_lv[off + nb + j, 0], snap_lv[off + nb + j, 1], fmt
                )
            pos = _frag(buf, pos, frag, foff, F_END_SNAP)
    return pos


def line_bounds(
    kinds: np.ndarray, idxs: np.ndarray, msgs: np.ndarray, snaps: np.ndarray, d20_levels: int
) -> np.ndarray:
    """Upper bound of each line's byte length (to size chunk buffers)."""
    per_level = 48
    size = np.full(kinds.shape[0], 400, dtype=np.int64)
    dm = kinds == 0
    size[dm] += per_level * (msgs[idxs[dm], 6] + msgs[idxs[dm], 7])
    sm = kinds == 4
    size[sm] += per_level * (snaps[idxs[sm], 4] + snaps[idxs[sm], 5])
    size[kinds == 3] += per_level * 2 * d20_levels
    return size

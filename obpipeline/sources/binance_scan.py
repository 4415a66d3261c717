"""The compiled fast pass of the Binance parser (numba): capture lines' bytes → canonical columns.

``binance.parse_lines`` first tries a compiled single pass over the lines' bytes, which is ~5x
faster than the columnar Polars path of ``binance``, for the common case: a capture of a
registered instrument in which *every* line is clean (strict JSON of the expected shapes, exact
decimals, ids present). The fast pass is deliberately stricter than the Polars path: anything it
does not recognise with certainty (a line to quarantine, a lenient-JSON construct such as a number
where a string is expected or a duplicate key, an unusual decimal spelling, an unknown symbol,
lines out of (file, line) order, ...) makes it give up, and the whole input then goes through the
Polars path, whose output is the reference. So outputs are identical by construction on every
input the fast pass accepts, and unchanged otherwise (see obpipeline_tests/test_engine.py).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
from llvmlite import ir
from numba import carray, njit, types
from numba.extending import intrinsic

from obpipeline import schemas
from obpipeline.instruments import MARKETS, Instrument, get_instrument
from obpipeline.sources.capture import MAX_TIME_MS, MIN_TIME_MS

MS = 1_000_000  # outside sources.capture's sane time window the fast pass gives up
MIN_TIME_NS, MAX_TIME_NS = MIN_TIME_MS * MS, MAX_TIME_MS * MS

# instrument, raw_book_events, golden_bbo, golden_depth, trades, quarantine, stats
FastCapture = tuple[
    Instrument, pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, dict
]


_K_DIFF, _K_SNAP, _K_PARTIAL, _K_BBO, _K_TRADE, _K_OTHER, _K_BLANK = 1, 2, 3, 4, 5, 6, 7
# JSON keys the fast pass extracts
_KEY_E, _KEY_T, _KEY_s, _KEY_U, _KEY_u, _KEY_pu, _KEY_b, _KEY_a = 1, 2, 3, 4, 5, 6, 7, 8
_KEY_B, _KEY_A, _KEY_t, _KEY_p, _KEY_q, _KEY_m = 9, 10, 11, 12, 13, 14
_KEY_data, _KEY_bids, _KEY_asks, _KEY_stream, _KEY_lastUpdateId = 15, 16, 17, 18, 19
_NKEYS = 20
# the columns of the fast pass's per-line outputs (ints, decimals) and their keys
_INT_KEYS = (_KEY_E, _KEY_T, _KEY_U, _KEY_u, _KEY_pu, _KEY_t, _KEY_lastUpdateId)
_I_E, _I_T, _I_U, _I_u, _I_pu, _I_t, _I_LID = range(7)
_DEC_KEYS = (_KEY_b, _KEY_B, _KEY_a, _KEY_A, _KEY_p, _KEY_q)
_D_b, _D_B, _D_a, _D_A, _D_p, _D_q = range(6)
_NULL = -(2**63)  # "field absent or JSON null" in the int columns of the fast pass
_MAX_NESTING = 64


@njit(cache=True, inline="always")
def _ws(c):
    return c == 32 or c == 9 or c == 10 or c == 13


@njit(cache=True, inline="always")
def _skip_ws(b, i, end):
    while i < end and _ws(b[i]):
        i += 1
    return i


@njit(cache=True, inline="always")
def _skip_string(b, i, end):
    """Strict JSON string at b[i] == '"'; returns the index after it, or -1."""
    i += 1
    while i < end:
        c = b[i]
        if c == 34:
            return i + 1
        if c < 32 or c >= 128:
            return -1
        if c == 92:
            i += 1
            if i >= end:
                return -1
            e = b[i]
            if e == 117:  # \uXXXX
                if i + 4 >= end:
                    return -1
                for k in range(1, 5):
                    h = b[i + k]
                    if not ((48 <= h <= 57) or (65 <= h <= 70) or (97 <= h <= 102)):
                        return -1
                i += 4
            elif not (e == 34 or e == 92 or e == 47 or e == 98 or e == 102 or e == 110
                      or e == 114 or e == 116):  # fmt: skip
                return -1
        i += 1
    return -1


@njit(cache=True)
def _skip_number(b, i, end):
    """A JSON number in the plain form ``-?(0|[1-9]d*)(.d+)?`` with at most 18 digits in each
    part (exponents and longer numbers are valid JSON but left to the Polars path)."""
    if i < end and b[i] == 45:
        i += 1
    if i >= end:
        return -1
    start = i
    if b[i] == 48:
        i += 1
    elif 49 <= b[i] <= 57:
        while i < end and 48 <= b[i] <= 57:
            i += 1
    else:
        return -1
    if i - start > 18:
        return -1
    if i < end and b[i] == 46:
        i += 1
        start = i
        while i < end and 48 <= b[i] <= 57:
            i += 1
        if i == start or i - start > 18:
            return -1
    if i < end and (b[i] == 101 or b[i] == 69):
        return -1
    return i


@njit(cache=True, inline="always")
def _literal(b, i, end, word):
    n = len(word)
    if i + n > end:
        return -1
    for k in range(n):
        if b[i + k] != word[k]:
            return -1
    return i + n


_TRUE = np.frombuffer(b"true", np.uint8)
_FALSE = np.frombuffer(b"false", np.uint8)
_NULLW = np.frombuffer(b"null", np.uint8)
_LUID = np.frombuffer(b'"lastUpdateId"', np.uint8)


@njit(cache=True, inline="always")
def _skip_key(b, i, end):
    """Past a ``"key":`` at b[i] (a key _skip_value does not need to name); -1 to give up."""
    if i >= end or b[i] != 34:
        return -1
    i = _skip_string(b, i, end)
    if i < 0:
        return -1
    i = _skip_ws(b, i, end)
    if i >= end or b[i] != 58:
        return -1
    return i + 1


@njit(cache=True)
def _skip_value(b, i, end):
    """Any strict JSON value (iteratively, bounded nesting); returns the index after it or -1."""
    i = _skip_ws(b, i, end)
    if i >= end:
        return -1
    c = b[i]
    if c == 34:  # scalars first: no container stack needed
        return _skip_string(b, i, end)
    if c == 116:
        return _literal(b, i, end, _TRUE)
    if c == 102:
        return _literal(b, i, end, _FALSE)
    if c == 110:
        return _literal(b, i, end, _NULLW)
    if c != 123 and c != 91:
        return _skip_number(b, i, end)
    stack = np.empty(_MAX_NESTING, np.uint8)  # 1 object, 2 array
    top = 0
    while True:
        i = _skip_ws(b, i, end)
        if i >= end:
            return -1
        c = b[i]
        if c == 123 or c == 91:  # open a container
            if top == _MAX_NESTING:
                return -1
            stack[top] = 1 if c == 123 else 2
            top += 1
            i = _skip_ws(b, i + 1, end)
            if i < end and b[i] == (125 if c == 123 else 93):  # empty
                top -= 1
                i += 1
            elif c == 123:  # first key
                i = _skip_key(b, i, end)
                if i < 0:
                    return -1
                continue
            else:
                continue
        elif c == 34:
            i = _skip_string(b, i, end)
        elif c == 116:
            i = _literal(b, i, end, _TRUE)
        elif c == 102:
            i = _literal(b, i, end, _FALSE)
        elif c == 110:
            i = _literal(b, i, end, _NULLW)
        else:
            i = _skip_number(b, i, end)
        if i < 0:
            return -1
        # after a value: close containers or go to the next element
        while True:
            if top == 0:
                return i
            i = _skip_ws(b, i, end)
            if i >= end:
                return -1
            c = b[i]
            if c == 44:  # ','
                i = _skip_ws(b, i + 1, end)
                if stack[top - 1] == 1:
                    i = _skip_key(b, i, end)
                    if i < 0:
                        return -1
                break
            if (c == 125 and stack[top - 1] == 1) or (c == 93 and stack[top - 1] == 2):
                top -= 1
                i += 1
                continue
            return -1


@njit(cache=True, inline="always")
def _key_id(b, s, e):
    n = e - s
    if n == 1:
        c = b[s]
        if c == 69:
            return _KEY_E
        if c == 84:
            return _KEY_T
        if c == 115:
            return _KEY_s
        if c == 85:
            return _KEY_U
        if c == 117:
            return _KEY_u
        if c == 98:
            return _KEY_b
        if c == 97:
            return _KEY_a
        if c == 66:
            return _KEY_B
        if c == 65:
            return _KEY_A
        if c == 116:
            return _KEY_t
        if c == 112:
            return _KEY_p
        if c == 113:
            return _KEY_q
        if c == 109:
            return _KEY_m
        return 0
    if n == 2 and b[s] == 112 and b[s + 1] == 117:
        return _KEY_pu
    if n == 4:
        w = (b[s], b[s + 1], b[s + 2], b[s + 3])
        if w == (100, 97, 116, 97):
            return _KEY_data
        if w == (98, 105, 100, 115):
            return _KEY_bids
        if w == (97, 115, 107, 115):
            return _KEY_asks
        return 0
    if n == 6:
        for k, c in enumerate((115, 116, 114, 101, 97, 109)):
            if b[s + k] != c:
                return 0
        return _KEY_stream
    if n == 12:
        for k, c in enumerate((108, 97, 115, 116, 85, 112, 100, 97, 116, 101, 73, 100)):
            if b[s + k] != c:
                return 0
        return _KEY_lastUpdateId
    return 0


@njit(cache=True, inline="always")
def _parse_int(b, i, end):
    """A plain JSON integer (<= 18 digits) or null: (next index or -1, value or ``_NULL``)."""
    if i < end and b[i] == 110:
        return _literal(b, i, end, _NULLW), _NULL
    neg = False
    if i < end and b[i] == 45:
        neg = True
        i += 1
    start = i
    v = 0
    while i < end and 48 <= b[i] <= 57:
        v = v * 10 + (b[i] - 48)
        i += 1
    n = i - start
    if n == 0 or n > 18 or (n > 1 and b[start] == 48):
        return -1, 0
    if i < end and (b[i] == 46 or b[i] == 101 or b[i] == 69):
        return -1, 0  # a float: Polars would coerce it; leave it to the Polars path
    return i, (-v if neg else v)


@njit(cache=True, inline="always")
def _parse_dec(b, i, end):
    """A JSON string holding a plain decimal ``-?(0|[1-9]d*)(.d+)?`` (<= 18 digits):
    (next index or -1, all digits as an integer, number of digits after the point)."""
    if i >= end or b[i] != 34:
        return -1, 0, 0
    i += 1
    neg = False
    if i < end and b[i] == 45:
        neg = True
        i += 1
    start = i
    v = 0
    while i < end and 48 <= b[i] <= 57:
        v = v * 10 + (b[i] - 48)
        i += 1
    n_int = i - start
    if n_int == 0 or (n_int > 1 and b[start] == 48):
        return -1, 0, 0
    n_frac = 0
    if i < end and b[i] == 46:
        i += 1
        while i < end and 48 <= b[i] <= 57:
            v = v * 10 + (b[i] - 48)
            i += 1
            n_frac += 1
        if n_frac == 0:
            return -1, 0, 0
    if n_int + n_frac > 18 or i >= end or b[i] != 34:
        return -1, 0, 0
    return i + 1, (-v if neg else v), n_frac


@njit(cache=True)
def _scan_levels(b, i, end, lv, k0, cap):
    """``[["p","q"], ...]`` into lv[:, 2k], lv[:, 2k+1] (digits, point) from k0: (next, count),
    next index -1 when the list is not exactly that shape (null included)."""
    if i >= end or b[i] != 91:
        return -1, 0
    i = _skip_ws(b, i + 1, end)
    k = k0
    if i < end and b[i] == 93:
        return i + 1, 0
    while True:
        if i >= end or b[i] != 91 or k >= cap:
            return -1, 0
        i = _skip_ws(b, i + 1, end)
        i, m, f = _parse_dec(b, i, end)
        if i < 0:
            return -1, 0
        lv[0, 2 * k] = m
        lv[1, 2 * k] = f
        i = _skip_ws(b, i, end)
        if i >= end or b[i] != 44:
            return -1, 0
        i = _skip_ws(b, i + 1, end)
        i, m, f = _parse_dec(b, i, end)
        if i < 0:
            return -1, 0
        lv[0, 2 * k + 1] = m
        lv[1, 2 * k + 1] = f
        i = _skip_ws(b, i, end)
        if i >= end or b[i] != 93:
            return -1, 0
        k += 1
        i = _skip_ws(b, i + 1, end)
        if i < end and b[i] == 44:
            i = _skip_ws(b, i + 1, end)
            continue
        if i < end and b[i] == 93:
            return i + 1, k - k0
        return -1, 0


# rows of the per-object field table filled by _parse_object (VS/VE: the value's byte span)
_F_INT, _F_MANT, _F_FRAC, _F_FLAG, _F_START, _F_COUNT, _F_VS, _F_VE = range(8)


@njit(cache=True, inline="always")
def _is_field(key):
    """Keys whose value _parse_field extracts (the others are validated and skipped)."""
    return key != 0 and (
        key in (_KEY_E, _KEY_T, _KEY_U, _KEY_u, _KEY_pu, _KEY_t, _KEY_lastUpdateId)
        or key in (_KEY_B, _KEY_A, _KEY_p, _KEY_q, _KEY_b, _KEY_a, _KEY_bids, _KEY_asks, _KEY_m)
    )


@njit(cache=True, inline="always")
def _parse_field(b, i, end, key, f, lv, k, cap, bbo):
    """The value of an _is_field key at b[i] into ``f`` (see _parse_object): (next index or -1,
    level slots used so far)."""
    if key in (_KEY_E, _KEY_T, _KEY_U, _KEY_u, _KEY_pu, _KEY_t, _KEY_lastUpdateId):
        i, v = _parse_int(b, i, end)
        f[_F_INT, key] = v
    elif key in (_KEY_B, _KEY_A, _KEY_p, _KEY_q) or (bbo and key in (_KEY_b, _KEY_a)):
        i, m, fr = _parse_dec(b, i, end)
        f[_F_MANT, key] = m
        f[_F_FRAC, key] = fr
    elif key in (_KEY_b, _KEY_a, _KEY_bids, _KEY_asks):
        if i < end and b[i] == 110:  # null list
            i = _literal(b, i, end, _NULLW)
            f[_F_FLAG, key] = 3
        else:
            i, n = _scan_levels(b, i, end, lv, k, cap)
            f[_F_START, key] = k
            f[_F_COUNT, key] = n
            k += n
    else:  # _KEY_m
        if i < end and b[i] == 116:
            i = _literal(b, i, end, _TRUE)
            f[_F_FLAG, key] = 2
        else:
            i = _literal(b, i, end, _FALSE)
            f[_F_FLAG, key] = 1
    return i, k


@njit(cache=True, inline="always")
def _object_key(b, i, end):
    """A ``"key":`` at b[i] (the envelope's and the data object's): its _KEY_* id (0 when not
    one of ours) and the index of its value, or index -1 to give up."""
    if i >= end or b[i] != 34:
        return 0, -1
    ks = i + 1
    j = _skip_string(b, i, end)
    if j < 0:
        return 0, -1
    key = _key_id(b, ks, j - 1)
    i = _skip_ws(b, j, end)
    if i >= end or b[i] != 58:
        return 0, -1
    return key, _skip_ws(b, i + 1, end)


@njit(cache=True)
def _parse_object(b, i, end, f, lv, k0, cap, bbo):
    """One JSON object at b[i]: the known keys (_KEY_*) into the field table ``f`` (ints,
    decimal strings as digits/point, level lists as start/count into ``lv``, seen flags: 1, 2 for
    ``m`` true, 3 for a null list; the byte span of each _is_field value), the other keys skipped
    but validated. ``bbo``: b/a are decimal strings (bookTicker), not level lists. Returns the
    next index, or -1 to give up."""
    if i >= end or b[i] != 123:
        return -1
    i = _skip_ws(b, i + 1, end)
    if i < end and b[i] == 125:
        return i + 1
    k = k0
    while True:
        key, i = _object_key(b, i, end)
        if i < 0:
            return -1
        if key:
            if f[_F_FLAG, key]:
                return -1  # duplicate key: Polars keeps the first; leave it to that path
            f[_F_FLAG, key] = 1
        if _is_field(key):
            f[_F_VS, key] = i
            i, k = _parse_field(b, i, end, key, f, lv, k, cap, bbo)
            f[_F_VE, key] = i
        elif key == _KEY_s:
            i = _skip_string(b, i, end) if i < end and b[i] == 34 else -1
        else:
            i = _skip_value(b, i, end)
        if i < 0:
            return -1
        i = _skip_ws(b, i, end)
        if i < end and b[i] == 44:
            i = _skip_ws(b, i + 1, end)
            continue
        if i < end and b[i] == 125:
            return i + 1
        return -1


@njit(cache=True)
def _parse_envelope(b, i, end, f, lv, k0, cap, bbo):
    """``{"stream": "...", "data": {...}, ...}``: the data object parsed into ``f`` (see
    _parse_object), the other keys validated. Returns the next index, or -1 to give up."""
    if i >= end or b[i] != 123:
        return -1
    i = _skip_ws(b, i + 1, end)
    seen_data = False
    seen_stream = False
    if i < end and b[i] == 125:
        return -1  # no data
    while True:
        key, i = _object_key(b, i, end)
        if i < 0:
            return -1
        if key == _KEY_data:
            if seen_data:
                return -1
            seen_data = True
            i = _parse_object(b, i, end, f, lv, k0, cap, bbo)
        elif key == _KEY_stream:
            if seen_stream:
                return -1
            seen_stream = True
            i = _skip_string(b, i, end) if i < end and b[i] == 34 else -1
        else:
            i = _skip_value(b, i, end)
        if i < 0:
            return -1
        i = _skip_ws(b, i, end)
        if i < end and b[i] == 44:
            i = _skip_ws(b, i + 1, end)
            continue
        if i < end and b[i] == 125:
            return i + 1 if seen_data else -1
        return -1


@njit(cache=True)
def _kind_of_stream(b, s, e):
    """Kind from a stream name as ``@(depth\\d*|bookTicker|trade)(@\\d+ms)?$`` (first match)."""
    for at in range(s, e):
        if b[at] != 64:
            continue
        j = at + 1
        kind = 0
        if j + 5 <= e and b[j] == 100 and b[j + 1] == 101 and b[j + 2] == 112 \
                and b[j + 3] == 116 and b[j + 4] == 104:  # fmt: skip
            j += 5
            d0 = j
            while j < e and 48 <= b[j] <= 57:
                j += 1
            kind = _K_DIFF if j == d0 else _K_PARTIAL
            # "depth\d*" is greedy; the regex may backtrack digits into "(@\d+ms)?" only if
            # an '@' follows, which digits never are: no other split is possible.
        elif j + 10 <= e and b[j] == 98 and b[j + 1] == 111 and b[j + 2] == 111 \
                and b[j + 3] == 107 and b[j + 4] == 84 and b[j + 5] == 105 and b[j + 6] == 99 \
                and b[j + 7] == 107 and b[j + 8] == 101 and b[j + 9] == 114:  # fmt: skip
            j += 10
            kind = _K_BBO
        elif j + 5 <= e and b[j] == 116 and b[j + 1] == 114 and b[j + 2] == 97 \
                and b[j + 3] == 100 and b[j + 4] == 101:  # fmt: skip
            j += 5
            kind = _K_TRADE
        else:
            continue
        if j == e:
            return kind
        if b[j] == 64:  # "@\d+ms" then end
            k = j + 1
            while k < e and 48 <= b[k] <= 57:
                k += 1
            if k > j + 1 and k + 2 == e and b[k] == 109 and b[k + 1] == 115:
                return kind
    return _K_OTHER


@njit(cache=True, inline="always")
def _is_space(c):
    return c == 32 or 9 <= c <= 13


@njit(cache=True)
def _stream_name(data, js, e):
    """``^\\s*\\{\\s*"stream"\\s*:\\s*"([^"]*)"`` on the JSON text: (start, end) or (-1, -1)."""
    j = js
    while j < e and _is_space(data[j]):
        j += 1
    if j >= e or data[j] != 123:
        return -1, -1
    j += 1
    while j < e and _is_space(data[j]):
        j += 1
    if not (j + 8 <= e and data[j] == 34 and _key_id(data, j + 1, j + 7) == _KEY_stream
            and data[j + 7] == 34):  # fmt: skip
        return -1, -1
    j += 8
    while j < e and _is_space(data[j]):
        j += 1
    if j >= e or data[j] != 58:
        return -1, -1
    j += 1
    while j < e and _is_space(data[j]):
        j += 1
    if j >= e or data[j] != 34:
        return -1, -1
    q = j + 1
    while q < e and data[q] != 34:
        q += 1
    return (j + 1, q) if q < e else (-1, -1)


@njit(cache=True)
def _contains(data, s, e, word):
    for p in range(s, e - len(word) + 1):
        if data[p] == word[0]:
            ok = True
            for q in range(1, len(word)):
                if data[p + q] != word[q]:
                    ok = False
                    break
            if ok:
                return True
    return False


@njit(cache=True)
def _depth_levels(data, s, e):
    """N of the first ``@depth(\\d+)`` in a stream name (as an Int16 cast), -1 to give up."""
    for q in range(s, e - 6):
        if data[q] == 64 and data[q + 1] == 100 and data[q + 2] == 101 and data[q + 3] == 112 \
                and data[q + 4] == 116 and data[q + 5] == 104 and 48 <= data[q + 6] <= 57:  # fmt: skip
            r = q + 6
            v = 0
            while r < e and 48 <= data[r] <= 57:
                v = v * 10 + (data[r] - 48)
                r += 1
                if v > 9999:
                    return -1
            return v
    return -1


# The text column is read in place from its Arrow string-view buffers (no copy into one
# large_string buffer): a view is (length, 12 inline bytes) for short lines, else (length,
# prefix, buffer index, offset); each line becomes a ``carray`` over its own bytes.


@intrinsic
def _byte_ptr(typingctx, address):
    """An int64 address as a ``uint8*`` (for ``carray`` over an Arrow buffer)."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return types.CPointer(types.uint8)(types.int64), codegen


@njit(cache=True, inline="always")
def _line_bytes(views, ln, buf_addr, views_addr):
    length = np.int64(views[ln, 0])
    if length <= 12:
        address = views_addr + 16 * ln + 4
    else:
        address = buf_addr[views[ln, 2]] + np.int64(views[ln, 3])
    return carray(_byte_ptr(address), length)


@intrinsic
def _load8(typingctx, address):
    """The 8 bytes at an int64 address as a uint64 (unaligned load)."""

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.PointerType(ir.IntType(64)))
        return builder.load(ptr, align=1)

    return types.uint64(types.int64), codegen


@njit(cache=True, inline="always")
def _same_bytes(a, pa_, b, pb, n):
    """a[pa_:pa_+n] == b[pb:pb+n] (both in bounds), 8 bytes at a time."""
    if n < 8:
        for q in range(n):  # noqa: SIM110 - compiled loop
            if a[pa_ + q] != b[pb + q]:
                return False
        return True
    xa = np.int64(a.ctypes.data) + pa_
    xb = np.int64(b.ctypes.data) + pb
    q = 0
    while q + 8 <= n:
        if _load8(xa + q) != _load8(xb + q):
            return False
        q += 8
    return q == n or _load8(xa + n - 8) == _load8(xb + n - 8)


# Templates: Binance writes every record of a stream with the same keys in the same order, so the
# JSON of a line is the JSON of the previous accepted line of its kind with other field values.
# A template is that line's bytes with "holes" at the values _parse_field extracts; a line whose
# bytes outside the holes are identical, and whose holes parse with _parse_field, is valid JSON
# with the same keys and extracts exactly what _parse_object would (its dispatch depends only on
# the keys, in the identical bytes). Anything else takes _parse_object (and becomes the template).
_TPL_BYTES = 4096
_TPL_HOLES = 24


@njit(cache=True)
def _match_template(data, js, e, tpl, tlen, holes, nh, f, lv, k, cap, bbo):
    """Parse data[js:e] against a template (see above) into ``f``; False if it does not fit."""
    p = js
    tp = 0
    for h in range(nh):
        hs, he, key = holes[h, 0], holes[h, 1], holes[h, 2]
        n = hs - tp
        if p + n > e or not _same_bytes(data, p, tpl, tp, n):
            return False
        p, k = _parse_field(data, p + n, e, key, f, lv, k, cap, bbo)
        if p < 0:
            return False
        tp = he
    n = tlen - tp
    return p + n == e and _same_bytes(data, p, tpl, tp, n)


@njit(cache=True)
def _make_template(data, js, e, f, tpl, holes):
    """Record data[js:e] (just parsed by _parse_object into ``f``) as a template: its length and
    number of holes (0, 0 if it does not fit the buffers)."""
    if e - js > tpl.shape[0]:
        return 0, 0
    nh = 0
    for key in range(1, _NKEYS):
        if f[_F_FLAG, key] and _is_field(key):
            if nh == holes.shape[0]:
                return 0, 0
            # insertion by start: the holes in byte order
            q = nh
            while q > 0 and holes[q - 1, 0] > f[_F_VS, key] - js:
                holes[q] = holes[q - 1]
                q -= 1
            holes[q, 0] = f[_F_VS, key] - js
            holes[q, 1] = f[_F_VE, key] - js
            holes[q, 2] = key
            nh += 1
    tpl[: e - js] = data[js:e]
    return e - js, nh


_MAX_SYMBOL = 64


@njit(cache=True, nogil=True)
def _scan(views, buf_addr, views_addr, valid):
    """The fast pass over every line (see the section comment). Returns per-line arrays, the
    level strings, the symbol of the streams (the bytes before the first '@'; every stream must
    have it, case-insensitively) and a status: 0, or the 1-based row where it gave up (the input
    then takes the Polars path)."""
    n = views.shape[0]
    kind = np.zeros(n, np.int8)
    ts_local = np.zeros(n, np.int64)
    # (rows are written for the kinds that read them: np.empty leaves the others untouched)
    ints = np.empty((n, len(_INT_KEYS)), np.int64)  # _INT_KEYS per decoded line
    mant = np.empty((n, len(_DEC_KEYS)), np.int64)  # _DEC_KEYS (bookTicker, trade): digits
    frac = np.empty((n, len(_DEC_KEYS)), np.int8)  # ... and digits after the point
    span = np.empty((n, 4), np.int64)  # depth lines: bids (start, count), asks (start, count)
    flag_m = np.zeros(n, np.int8)
    dig = np.zeros(n, np.int16)  # partial depth: N of "@depthN"
    cap = 4 * n + 64  # level slots, grown as needed
    lv = np.empty((2, 2 * cap + 2), np.int64)  # level strings: digits, point position
    sym = np.zeros(_MAX_SYMBOL, np.uint8)
    sym_len = -1
    f = np.empty((8, _NKEYS), np.int64)  # the field table of the object being parsed
    # per kind: the template (see _match_template), its length, holes, number of holes, flags
    tpl = np.zeros((8, _TPL_BYTES), np.uint8)
    tpl_len = np.zeros(8, np.int64)
    holes = np.zeros((8, _TPL_HOLES, 3), np.int64)
    n_holes = np.zeros(8, np.int64)
    tpl_flags = np.zeros((8, _NKEYS), np.int64)
    k = 0  # level slots used
    status = 0
    for ln in range(n):
        status = ln + 1  # until the line is accepted
        if not valid[ln]:
            kind[ln] = _K_BLANK
            status = 0
            continue
        data = _line_bytes(views, ln, buf_addr, views_addr)
        e = len(data)
        if e == 0 or _is_space(data[0]):  # blank (only whitespace), or not "<ts> <json>"
            blank = True
            for i in range(e):
                if not _is_space(data[i]):
                    blank = False
                    break
            if not blank:
                break
            kind[ln] = _K_BLANK
            status = 0
            continue
        # (no other byte check: JSON strings reject non-ASCII bytes, structure needs ASCII)
        # receive timestamp: the digits before the first space (ns, µs or ms by their number)
        nd = 0
        while nd < e and nd < 20 and 48 <= data[nd] <= 57:
            nd += 1
        if nd >= e or data[nd] != 32 or nd < 12 or nd > 19:
            break
        v = 0
        for i in range(min(nd, 18)):
            v = v * 10 + np.int64(data[i] - 48)
        if nd == 19:  # int64 overflow: Polars' cast gives null (quarantined)
            d = np.int64(data[18] - 48)
            if v > 922337203685477580 or (v == 922337203685477580 and d > 7):
                break
            v = v * 10 + d
        if nd >= 18:
            ts_local[ln] = v
        elif nd >= 15:
            ts_local[ln] = v * 1000
        else:
            ts_local[ln] = v * 1_000_000
        js = nd + 1
        stream_s, stream_e = _stream_name(data, js, e)
        if stream_s < 0:  # a REST snapshot if '"lastUpdateId"' occurs, else unknown
            if not _contains(data, js, e, _LUID):
                break
            kd = _K_SNAP
        else:
            first_at = stream_e
            escaped = False
            for q in range(stream_s, stream_e):
                if data[q] == 92 or data[q] >= 128:  # escapes, non-ASCII: Polars path
                    escaped = True
                if data[q] == 64 and first_at == stream_e:
                    first_at = q
            if escaped:
                break
            length = first_at - stream_s
            if sym_len < 0:
                if length > _MAX_SYMBOL:
                    break
                sym_len = length
                sym[:length] = data[stream_s:first_at]
            else:
                if length != sym_len:
                    break  # several symbols: the Polars path raises the error
                same = True
                for q in range(length):
                    a, c = data[stream_s + q], sym[q]
                    if 97 <= a <= 122:
                        a -= 32
                    if 97 <= c <= 122:
                        c -= 32
                    if a != c:
                        same = False
                if not same:
                    break
            kd = _kind_of_stream(data, stream_s, stream_e)
            if kd == _K_PARTIAL:
                levels = _depth_levels(data, stream_s, stream_e)
                if levels < 0:
                    break
                dig[ln] = levels
        kind[ln] = kd
        if kd == _K_OTHER:  # counted, never decoded
            status = 0
            continue
        # room for every level the line could hold (a level takes >= 9 bytes: ["1","1"])
        if k + e // 9 + 2 > cap:
            cap = max(2 * cap, k + e // 9 + 2)
            grown = np.empty((2, 2 * cap + 2), np.int64)
            grown[:, : 2 * k] = lv[:, : 2 * k]
            lv = grown
        # strict JSON: the top-level object (envelope or bare snapshot), nothing around it
        f[_F_INT, :] = _NULL
        f[_F_START, :] = -1
        matched = False
        if tpl_len[kd]:
            f[_F_FLAG, :] = tpl_flags[kd]
            matched = _match_template(
                data, js, e, tpl[kd], tpl_len[kd], holes[kd], n_holes[kd], f, lv, k, cap,
                kd == _K_BBO,
            )  # fmt: skip
            if not matched:
                f[_F_INT, :] = _NULL
                f[_F_START, :] = -1
        if not matched:
            f[_F_FLAG, :] = 0
            if kd == _K_SNAP:
                end_at = _parse_object(data, js, e, f, lv, k, cap, False)
            else:
                end_at = _parse_envelope(data, js, e, f, lv, k, cap, kd == _K_BBO)
            if end_at != e:
                break
            if kd != _K_SNAP:
                tpl_len[kd], n_holes[kd] = _make_template(data, js, e, f, tpl[kd], holes[kd])
                tpl_flags[kd] = f[_F_FLAG]
        null_list = False
        for key in (_KEY_b, _KEY_a, _KEY_bids, _KEY_asks):  # a null list is quarantined
            if f[_F_FLAG, key] == 3:
                null_list = True
        if null_list:
            break
        for c in range(len(_INT_KEYS)):
            ints[ln, c] = f[_F_INT, _INT_KEYS[c]]
        if kd in (_K_BBO, _K_TRADE):
            for c in range(len(_DEC_KEYS)):
                mant[ln, c] = f[_F_MANT, _DEC_KEYS[c]]
                frac[ln, c] = f[_F_FRAC, _DEC_KEYS[c]]
        flag_m[ln] = f[_F_FLAG, _KEY_m]
        if kd == _K_BBO:
            if not (f[_F_FLAG, _KEY_b] and f[_F_FLAG, _KEY_B] and f[_F_FLAG, _KEY_a]
                    and f[_F_FLAG, _KEY_A]):  # fmt: skip
                break
        elif kd == _K_TRADE:
            if not (f[_F_FLAG, _KEY_p] and f[_F_FLAG, _KEY_q] and f[_F_FLAG, _KEY_t]
                    and f[_F_FLAG, _KEY_m]):  # fmt: skip
                break
        else:
            kb, ka = (_KEY_bids, _KEY_asks) if kd == _K_SNAP else (_KEY_b, _KEY_a)
            if kd == _K_PARTIAL and f[_F_START, kb] < 0:  # partial depth: coalesce(b, bids)
                kb = _KEY_bids
            if kd == _K_PARTIAL and f[_F_START, ka] < 0:
                ka = _KEY_asks
            if f[_F_START, kb] < 0 or f[_F_START, ka] < 0:
                break
            span[ln, 0] = f[_F_START, kb]
            span[ln, 1] = f[_F_COUNT, kb]
            span[ln, 2] = f[_F_START, ka]
            span[ln, 3] = f[_F_COUNT, ka]
            for key in (_KEY_b, _KEY_a, _KEY_bids, _KEY_asks):  # keep every parsed list
                if f[_F_START, key] >= 0:
                    k = max(k, f[_F_START, key] + f[_F_COUNT, key])
        status = 0
    return kind, ts_local, ints, mant, frac, span, flag_m, dig, lv, sym[: max(sym_len, 0)], status


@njit(cache=True, inline="always")
def _scaled(m, f, scale):
    """(unscaled value at ``scale``, ok) of a decimal given as (all digits, digits after the
    point); ok=False unless it converts exactly and fits Decimal(18, scale)."""
    if f > 12:
        return 0, False
    if f <= scale:
        p = np.int64(10) ** (scale - f)
        a = m if m >= 0 else -m
        if a > (10**18 - 1) // p:
            return 0, False
        return m * p, True
    p = np.int64(10) ** (f - scale)
    if m % p != 0:
        return 0, False
    return m // p, True


@njit(cache=True, inline="always")
def _exchange_ts_one(ints, ln, local):
    """coalesce(T * 1e6, E * 1e6, receive time) of a line; ok=False if T or E would overflow."""
    limit = np.iinfo(np.int64).max // MS
    t, e = ints[ln, _I_T], ints[ln, _I_E]
    if (t != _NULL and abs(t) > limit) or (e != _NULL and abs(e) > limit):
        return 0, False
    if t != _NULL:
        return t * MS, True
    if e != _NULL:
        return e * MS, True
    return local, True


@njit(cache=True, nogil=True)
def _events_columns(kind, ts_local, ints, span, lv, ps, ss, futures):
    """raw_book_events of the diffs and REST snapshots, in line order: one row per level (bids
    then asks), one null-level row for an empty message. Decimals as decimal128 (lo, hi) words.
    ok=False where the Polars path would quarantine or differ."""
    rows = 0
    for ln in range(len(kind)):
        if kind[ln] == _K_DIFF or kind[ln] == _K_SNAP:
            rows += max(1, span[ln, 1] + span[ln, 3])
    ts_event = np.empty(rows, np.int64)
    ts_loc = np.empty(rows, np.int64)
    msg_id = np.empty(rows, np.int64)
    first = np.empty(rows, np.int64)
    last = np.empty(rows, np.int64)
    prev = np.empty(rows, np.int64)
    snap = np.empty(rows, np.bool_)
    side = np.zeros(rows, np.int8)
    level = np.zeros(rows, np.bool_)
    price = np.zeros((rows, 2), np.int64)
    size = np.zeros((rows, 2), np.int64)
    out = (ts_event, ts_loc, msg_id, first, last, prev, snap, side, level, price, size)
    r = 0
    m = 0
    for ln in range(len(kind)):
        kd = kind[ln]
        if kd != _K_DIFF and kd != _K_SNAP:
            continue
        is_snap = kd == _K_SNAP
        if is_snap:
            fu, lu, pu = ints[ln, _I_LID], ints[ln, _I_LID], _NULL
        else:
            fu, lu, pu = ints[ln, _I_U], ints[ln, _I_u], ints[ln, _I_pu]
        if fu == _NULL or lu == _NULL or fu > lu or (futures and not is_snap and pu == _NULL):
            return out, m, False
        te, ok = _exchange_ts_one(ints, ln, ts_local[ln])
        if not ok:
            return out, m, False
        r0 = r
        for g in range(2):
            start, count = span[ln, 2 * g], span[ln, 2 * g + 1]
            for q in range(start, start + count):
                p, ok_p = _scaled(lv[0, 2 * q], lv[1, 2 * q], ps)
                z, ok_z = _scaled(lv[0, 2 * q + 1], lv[1, 2 * q + 1], ss)
                if not (ok_p and ok_z) or p <= 0 or z < 0:
                    return out, m, False
                side[r] = 1 if g == 0 else -1
                level[r] = True
                price[r, 0] = p
                size[r, 0] = z  # (hi words: 0, the values are >= 0)
                r += 1
        if r == r0:
            r += 1  # empty message: its placeholder row (side 0 → null)
        for j in range(r0, r):
            ts_event[j] = te
            ts_loc[j] = ts_local[ln]
            msg_id[j] = m
            first[j] = fu
            last[j] = lu
            prev[j] = pu
            snap[j] = is_snap
        m += 1
    return out, m, True


@njit(cache=True, nogil=True)
def _depth_columns(lines, span, lv, ps, ss, depth):
    """golden_depth's level columns (bid prices, bid sizes, ask prices, ask sizes; levels
    1..depth each) of the partial-book lines, as decimal128 words and validity; ok=False
    unless every level within ``depth`` is exact."""
    vals = np.zeros((4 * depth, len(lines), 2), np.int64)
    valid = np.zeros((4 * depth, len(lines)), np.bool_)
    for j in range(len(lines)):
        ln = lines[j]
        for g in range(2):
            start, count = span[ln, 2 * g], span[ln, 2 * g + 1]
            for i in range(min(count, depth)):
                q = start + i
                p, ok_p = _scaled(lv[0, 2 * q], lv[1, 2 * q], ps)
                z, ok_z = _scaled(lv[0, 2 * q + 1], lv[1, 2 * q + 1], ss)
                if not (ok_p and ok_z):
                    return vals, valid, False
                cp, cs = 2 * g * depth + i, (2 * g + 1) * depth + i
                vals[cp, j, 0] = p
                vals[cp, j, 1] = p >> 63
                vals[cs, j, 0] = z
                vals[cs, j, 1] = z >> 63
                valid[cp, j] = True
                valid[cs, j] = True
    return vals, valid, True


@njit(cache=True, nogil=True)
def _decimal_words(lines, mant, frac, col, scale):
    """A bookTicker/trade decimal column of ``lines`` as decimal128 words; ok=False unless exact."""
    out = np.empty((len(lines), 2), np.int64)
    for j in range(len(lines)):
        v, ok = _scaled(mant[lines[j], col], np.int64(frac[lines[j], col]), scale)
        if not ok:
            return out, False
        out[j, 0] = v
        out[j, 1] = v >> 63
    return out, True


@njit(cache=True, nogil=True)
def _line_times(lines, ints, ts_local):
    """ts_event (see _exchange_ts_one) and ts_local of ``lines``; ok=False on an overflow."""
    ts_event = np.empty(len(lines), np.int64)
    local = np.empty(len(lines), np.int64)
    for j in range(len(lines)):
        ln = lines[j]
        te, ok = _exchange_ts_one(ints, ln, ts_local[ln])
        if not ok:
            return ts_event, local, False
        ts_event[j] = te
        local[j] = ts_local[ln]
    return ts_event, local, True


def _arrow_col(name: str, values: np.ndarray, dtype: pa.DataType, valid=None) -> pl.Series:
    """A Series over ``values``' memory (fixed-width Arrow type; zero-copy into Polars)."""
    bits = None
    if valid is not None and not valid.all():
        bits = pa.py_buffer(np.packbits(valid, bitorder="little"))
    values = np.ascontiguousarray(values)
    arr = pa.Array.from_buffers(dtype, len(values), [bits, pa.py_buffer(values)])
    return pl.Series(name, arr)


_TS_ARROW = pa.timestamp("ns", "UTC")


def _text_views(text: pl.Series) -> tuple[pa.Array, np.ndarray, np.ndarray, int, np.ndarray]:
    """(the Arrow array, keep it alive while scanning; its views as int32 (n, 4); the data
    buffers' addresses; the address of the first view; validity)."""
    arr = text.to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.string_view())
    bufs = arr.buffers()
    n = len(arr)
    views = np.frombuffer(bufs[1], np.int32).reshape(-1, 4)[arr.offset : arr.offset + n]
    addrs = np.array([b.address for b in bufs[2:]] + [0], np.int64)
    if arr.null_count:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
    else:
        valid = np.ones(n, np.bool_)
    return arr, views, addrs, bufs[1].address + 16 * arr.offset, valid


@njit(cache=True, nogil=True)
def _fast_fields_sane(kind, ints, futures):
    """The Polars path's field rules (_time_checks, negative ids) hold on every decoded line."""
    for ln in range(len(kind)):
        kd = kind[ln]
        if kd < _K_DIFF or kd > _K_TRADE:  # not decoded: its ints were never written
            continue
        for col in (_I_E, _I_T):
            x = ints[ln, col]
            if x != _NULL and (x < MIN_TIME_MS or x >= MAX_TIME_MS):
                return False
        for col in (_I_U, _I_u, _I_pu, _I_t, _I_LID):
            x = ints[ln, col]
            if x < 0 and x != _NULL:
                return False
        if (kd in (_K_DIFF, _K_TRADE) or futures) and ints[ln, _I_E] == _NULL:
            return False
        if (kd == _K_TRADE or futures) and ints[ln, _I_T] == _NULL:
            return False
    return True


def _fast_snapshots_sane(
    msg_id: np.ndarray, side: np.ndarray, price: np.ndarray, level: np.ndarray, snap: np.ndarray
) -> bool:
    """REST snapshots have both sides and no price twice on a side (as _snapshot_duplicates)."""
    rows = np.flatnonzero(snap)
    for m in np.unique(msg_id[rows]):
        of_msg = rows[msg_id[rows] == m]
        for s in (1, -1):
            p = price[of_msg][(side[of_msg] == s) & level[of_msg]]
            if len(p) == 0 or len(np.unique(p)) != len(p):
                return False
    return True


def _lines_in_order(lines: pl.DataFrame) -> bool:
    """Rows already sorted by (file, line), as every output of the Polars path is."""
    if lines["file"].null_count() or lines["line"].null_count():
        return False
    f, ln = lines["file"], lines["line"]
    same = f.head(-1) == f.tail(-1)
    if not ((ln.head(-1) < ln.tail(-1)) | ~same).all():
        return False
    # strings are ordered only where the file changes (string comparison is the costly part)
    return bool((f.head(-1).filter(~same) < f.tail(-1).filter(~same)).all())


def parse_fast(
    lines: pl.DataFrame, market: str | None, symbol: str | None, depth: int
) -> FastCapture | None:
    """The compiled pass (see the module docstring): the fields of a ``Capture``, or
    None when it does not apply to this input."""
    n = lines.height
    if n == 0 or not _lines_in_order(lines):
        return None
    arr, views, addrs, views_addr, valid = _text_views(lines["text"])
    kind, ts_local, ints, mant, frac, span, flag_m, dig, lv, sym, status = _scan(
        views, addrs, views_addr, valid
    )
    del arr  # the scan's outputs hold no reference into the text
    if status:
        return None
    nonblank = kind != _K_BLANK
    if ((ts_local[nonblank] < MIN_TIME_NS) | (ts_local[nonblank] >= MAX_TIME_NS)).any():
        return None
    count = np.bincount(kind, minlength=8)
    # market and symbol, as _detect_market_symbol (the scan checked every stream's symbol)
    names = [bytes(sym).decode().upper()] if len(sym) else []
    if symbol is None:
        if len(names) != 1:
            return None
        symbol = names[0]
    elif names and names != [symbol.upper()]:
        return None
    if market is None:
        if not count[_K_DIFF]:
            return None
        futures_seen = bool((ints[kind == _K_DIFF, _I_pu] != _NULL).any())
        market = ("cm" if "_" in symbol else "usdm") if futures_seen else "spot"
    if market not in MARKETS:
        return None
    if not _fast_fields_sane(kind, ints, market != "spot"):
        return None
    instrument = get_instrument("binance", market, symbol)
    if instrument is None:
        return None  # inferred scales depend on the strings: the Polars path infers them
    ps, ss = instrument.price_scale, instrument.size_scale
    p_arrow, s_arrow = pa.decimal128(18, ps), pa.decimal128(18, ss)

    # --- messages: diffs and REST snapshots, in line order
    ev, messages, ok = _events_columns(kind, ts_local, ints, span, lv, ps, ss, market != "spot")
    if not ok:
        return None
    ts_event, ts_loc, msg_id, first, last, prev, snap, side, level, price, size = ev
    if snap.any() and not _fast_snapshots_sane(msg_id, side, price[:, 0], level, snap):
        return None
    events = pl.DataFrame(
        [
            _arrow_col("ts_event", ts_event, _TS_ARROW),
            _arrow_col("ts_local", ts_loc, _TS_ARROW),
            _arrow_col("msg_id", msg_id, pa.int64()),
            _arrow_col("first_update_id", first, pa.int64()),
            _arrow_col("last_update_id", last, pa.int64()),
            _arrow_col("prev_update_id", prev, pa.int64(), prev != _NULL),
            pl.Series("is_snapshot", snap),
            _arrow_col("side", side, pa.int8(), level),
            _arrow_col("price", price, p_arrow, level),
            _arrow_col("size", size, s_arrow, level),
        ]
    )
    events = schemas.conform(events, schemas.raw_book_events(instrument), "raw_book_events")

    # --- golden_bbo
    bl = np.flatnonzero(kind == _K_BBO)
    update_id = ints[bl, _I_u]
    bts, blocal, ok = _line_times(bl, ints, ts_local)
    if not ok or (update_id == _NULL).any():
        return None
    cols = [
        _arrow_col("ts_event", bts, _TS_ARROW),
        _arrow_col("ts_local", blocal, _TS_ARROW),
        pl.Series("update_id", update_id),
    ]
    for name, key, scale, dtype in (
        ("bid_price", _D_b, ps, p_arrow),
        ("bid_size", _D_B, ss, s_arrow),
        ("ask_price", _D_a, ps, p_arrow),
        ("ask_size", _D_A, ss, s_arrow),
    ):
        words, ok = _decimal_words(bl, mant, frac, key, scale)
        if not ok or (words[:, 0] < 0).any():
            return None
        cols.append(_arrow_col(name, words, dtype))
    golden_bbo = schemas.conform(pl.DataFrame(cols), schemas.golden_bbo(instrument), "golden_bbo")

    # --- trades
    tl = np.flatnonzero(kind == _K_TRADE)
    trade_id = ints[tl, _I_t]
    tts, tlocal, ok = _line_times(tl, ints, ts_local)
    tp, ok_p = _decimal_words(tl, mant, frac, _D_p, ps)
    tq, ok_q = _decimal_words(tl, mant, frac, _D_q, ss)
    if not (ok and ok_p and ok_q) or (trade_id == _NULL).any():
        return None
    if (tp[:, 0] <= 0).any() or (tq[:, 0] <= 0).any():
        return None
    trades = pl.DataFrame(
        [
            _arrow_col("ts_event", tts, _TS_ARROW),
            _arrow_col("ts_local", tlocal, _TS_ARROW),
            pl.Series("trade_id", trade_id),
            _arrow_col("price", tp, p_arrow),
            _arrow_col("size", tq, s_arrow),
            pl.Series("is_buyer_maker", flag_m[tl] == 2),
        ]
    )
    trades = schemas.conform(trades, schemas.trades(instrument), "trades")

    # --- golden_depth (partial book streams)
    dl = np.flatnonzero(kind == _K_PARTIAL)
    di = ints[dl]
    update_id = np.where(di[:, _I_u] != _NULL, di[:, _I_u], di[:, _I_LID])
    dts, dlocal, ok = _line_times(dl, ints, ts_local)
    vals, present, ok_levels = _depth_columns(dl, span, lv, ps, ss, depth)
    if not (ok and ok_levels) or (update_id == _NULL).any() or (vals[:, :, 0] < 0).any():
        return None
    schema = schemas.golden_depth(instrument, depth)
    cols = [
        _arrow_col("ts_event", dts, _TS_ARROW),
        _arrow_col("ts_local", dlocal, _TS_ARROW),
        pl.Series("update_id", update_id),
        pl.Series("levels", dig[dl]),
    ]
    for c, name in enumerate(schema.names()[len(cols) :]):
        cols.append(
            _arrow_col(name, vals[c], p_arrow if (c // depth) % 2 == 0 else s_arrow, present[c])
        )
    golden_depth = schemas.conform(pl.DataFrame(cols), schema, "golden_depth")

    quarantine = schemas.empty(schemas.quarantine()).sort("file", "line", maintain_order=True)
    stats = {
        "lines": n,
        "blank_lines": int(count[_K_BLANK]),
        "ignored_other_streams": int(count[_K_OTHER]),
        "diff_lines": int(count[_K_DIFF]),
        "snapshot_lines": int(count[_K_SNAP]),
        "partial_lines": int(count[_K_PARTIAL]),
        "bbo_lines": int(count[_K_BBO]),
        "trade_lines": int(count[_K_TRADE]),
        "messages": messages,
        "level_updates": int(np.count_nonzero(level)),
        "golden_bbo": golden_bbo.height,
        "golden_depth": golden_depth.height,
        "trades": trades.height,
        "quarantined": 0,
    }
    return instrument, events, golden_bbo, golden_depth, trades, quarantine, stats

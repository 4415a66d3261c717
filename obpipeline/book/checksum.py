"""ChecksumValidator: the venue's CRC32 of the top of the book, recomputed after every message.

OKX, Bitget and Kraken send with each book message a CRC32 of their own top levels, built from
their own price/size strings. Recomputing it from the replayed book proves the top 25 (OKX,
Bitget) or top 10 (Kraken) levels exact after **every** message. The strings (``RULES``):

* OKX: ``bid1px:bid1sz:ask1px:ask1sz:...`` over the top 25 of each side, interleaved (a side
  that runs out is skipped), decimals printed without trailing zeros (``5.16``, ``30244``);
* Bitget: the same string, decimals printed at the instrument's fixed decimals (``2.4400``);
* Kraken: the top 10 asks (low → high) then the top 10 bids (high → low), each price then
  volume at its fixed decimals with ``.`` removed and leading zeros stripped, concatenated.

The venue's value is compared modulo 2**32 (OKX and Bitget send a signed int32, Kraken an
unsigned decimal string).

Two implementations of the string and the CRC, kept equal by tests: ``checksum_string`` (plain
Python + ``zlib.crc32``, the reference) and ``_crc_rows`` (one compiled loop over the rows'
level arrays, the engine's path). ``judge`` is the one rule of what a result means: from a
mismatch the book is invalid until the venue's next snapshot (a client resubscribes); rows of a
book already invalid are not compared.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl
from numba import njit

from obpipeline import schemas
from obpipeline.book.stream import Book, ReplayResult, SnapshotArrays
from obpipeline.book.venue_day import NO_CHECKSUM, VenueDay
from obpipeline.schemas import unscaled

MAX_LOCATED = 100  # mismatches reported with their location (all are counted)


@dataclass(frozen=True)
class ChecksumRule:
    depth: int  # levels per side in the checksum
    interleaved: bool  # bid:ask pairs with ':' (OKX, Bitget); else asks then bids, bare (Kraken)
    strip_zeros: bool  # trailing zeros dropped (OKX); else the instrument's fixed decimals


RULES: dict[str, ChecksumRule] = {
    "okx": ChecksumRule(25, True, True),
    "bitget": ChecksumRule(25, True, False),
    "kraken": ChecksumRule(10, False, False),
}


def rule_for(venue: str) -> ChecksumRule:
    return RULES[venue]


# ----------------------------------------------------------------------------- reference


def format_value(value: int, scale: int, decimals: int, rule: ChecksumRule) -> str:
    """One price/size as the venue prints it in the checksum string."""
    if not rule.strip_zeros and decimals != scale:
        value = (
            value * 10 ** (decimals - scale)
            if decimals > scale
            else value // 10 ** (scale - decimals)
        )
        scale = decimals
    if not rule.interleaved:  # Kraken: the digits of the fixed-decimal value, no leading zeros
        return str(value)
    text = str(value).rjust(scale + 1, "0")
    whole, frac = (text[:-scale], text[-scale:]) if scale else (text, "")
    if rule.strip_zeros:
        frac = frac.rstrip("0")
    return f"{whole}.{frac}" if frac else whole


def checksum_string(
    rule: ChecksumRule,
    bids: list[tuple[int, int]],
    asks: list[tuple[int, int]],
    scales: tuple[int, int],
    decimals: tuple[int, int],
) -> bytes:
    """The venue's checksum input for a book (bids best first, asks best first)."""

    def level(p: int, s: int) -> tuple[str, str]:
        return (
            format_value(p, scales[0], decimals[0], rule),
            format_value(s, scales[1], decimals[1], rule),
        )

    bids, asks = bids[: rule.depth], asks[: rule.depth]
    if rule.interleaved:
        parts: list[str] = []
        for i in range(max(len(bids), len(asks))):
            if i < len(bids):
                parts.extend(level(*bids[i]))
            if i < len(asks):
                parts.extend(level(*asks[i]))
        return ":".join(parts).encode()
    return "".join("".join(level(p, s)) for p, s in asks + bids).encode()


def crc32(text: bytes) -> int:
    return zlib.crc32(text) & 0xFFFFFFFF


# ----------------------------------------------------------------------------- compiled


def _crc_tables() -> np.ndarray:
    """Slice-by-8 tables: row 0 is the byte-wise CRC32 table, row k advances k more bytes."""
    t = np.zeros((8, 256), np.int64)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        t[0, i] = c
    for k in range(1, 8):
        for i in range(256):
            t[k, i] = (t[k - 1, i] >> 8) ^ t[0, t[k - 1, i] & 0xFF]
    return t


CRC_TABLES = _crc_tables()
SLOT_BYTES = 48  # room for one formatted value (19 digits, a point, zero padding)
POW10 = np.array([10**i for i in range(19)], np.int64)  # int powers (``10**n`` types as float)
# "00" "01" ... "99": two digits per division
DIGIT_PAIRS = np.frombuffer("".join(f"{i:02d}" for i in range(100)).encode(), np.uint8).copy()


@njit(cache=True, inline="always")
def _crc_update(c, buf, n, t):
    """The CRC32 register ``c`` (pre-inverted) advanced over ``buf[:n]``: resumable."""
    i = 0
    while i + 8 <= n:
        one = c ^ (
            np.int64(buf[i])
            | (np.int64(buf[i + 1]) << 8)
            | (np.int64(buf[i + 2]) << 16)
            | (np.int64(buf[i + 3]) << 24)
        )
        c = (
            t[7, one & 0xFF]
            ^ t[6, (one >> 8) & 0xFF]
            ^ t[5, (one >> 16) & 0xFF]
            ^ t[4, (one >> 24) & 0xFF]
            ^ t[3, buf[i + 4]]
            ^ t[2, buf[i + 5]]
            ^ t[1, buf[i + 6]]
            ^ t[0, buf[i + 7]]
        )
        i += 8
    while i < n:
        c = t[0, (c ^ buf[i]) & 0xFF] ^ (c >> 8)
        i += 1
    return c


@njit(cache=True, inline="always")
def _put_value(buf, pos, scratch, value, shift, places, strip, bare):
    """Write ``value`` (an unscaled int, times 10**shift when shift > 0, divided when < 0) with
    ``places`` decimals; ``strip`` drops trailing zeros; ``bare`` writes the digits only."""
    if shift > 0:
        value = value * POW10[shift]
    elif shift < 0:
        value = value // POW10[-shift]
    n = 0  # digits written into scratch, least significant first
    u = np.uint64(value)  # unsigned: division without Python's floor fix-ups
    hundred = np.uint64(100)
    while u >= hundred:
        q = u // hundred
        d = np.int64(u - q * hundred)
        scratch[n] = DIGIT_PAIRS[2 * d + 1]
        scratch[n + 1] = DIGIT_PAIRS[2 * d]
        n += 2
        u = q
    if u >= np.uint64(10):
        scratch[n] = DIGIT_PAIRS[2 * np.int64(u) + 1]
        scratch[n + 1] = DIGIT_PAIRS[2 * np.int64(u)]
        n += 2
    else:
        scratch[n] = np.uint8(48 + u)
        n += 1
    if bare:
        for i in range(n - 1, -1, -1):
            buf[pos] = scratch[i]
            pos += 1
        return pos
    while n < places + 1:
        scratch[n] = 48
        n += 1
    for i in range(n - 1, places - 1, -1):
        buf[pos] = scratch[i]
        pos += 1
    low = 0
    if strip:
        while low < places and scratch[low] == 48:
            low += 1
    if low < places:
        buf[pos] = 46  # '.'
        pos += 1
        for i in range(places - 1, low - 1, -1):
            buf[pos] = scratch[i]
            pos += 1
    return pos


@njit(cache=True, inline="always")
def _same_top(q, r, bp, bs, ap, az, nb, na, depth):
    nbr, nar = min(nb[r], depth), min(na[r], depth)
    if min(nb[q], depth) != nbr or min(na[q], depth) != nar:
        return False
    for i in range(nbr):
        if bp[q, i] != bp[r, i] or bs[q, i] != bs[r, i]:
            return False
    for i in range(nar):  # noqa: SIM110 (compiled: no generators)
        if ap[q, i] != ap[r, i] or az[q, i] != az[r, i]:
            return False
    return True


@njit(cache=True, inline="always")
def _entry(e, nbr, nar, interleaved):
    """(side, level) of the ``e``-th price/size pair of the checksum string (0 bids, 1 asks)."""
    if interleaved:  # bid0 ask0 bid1 ask1 ...; a side that ran out is skipped
        both = 2 * min(nbr, nar)
        if e < both:
            return e % 2, e // 2
        return (0, e - both // 2) if nbr > nar else (1, e - both // 2)
    return (1, e) if e < nar else (0, e - nar)  # asks then bids


@njit(cache=True)
def _fill_advance(advance, n, t):
    """``advance[n, k, b]``: the register ``b << 8k`` carried through ``n`` zero bytes."""
    for k in range(4):
        for b in range(256):
            c = np.int64(b) << (8 * k)
            for _ in range(n):
                c = t[0, c & 0xFF] ^ (c >> 8)
            advance[n, k, b] = c


@njit(cache=True, inline="always")
def _side_levels(prices, sizes, n, bids, old, n_old, new, text, scratch, fmt, tables):
    """One side's ``n`` levels into ``new`` (see ``_crc_rows``), reusing ``old``'s unchanged
    ones; returns ``n``."""
    ps, ss, pp, sp, strip, interleaved = fmt
    bare = not interleaved
    lead = 1 if interleaved else 0
    k = 0  # merge walk over the previous row's levels
    for i in range(n):
        p, q = prices[i], sizes[i]
        while k < n_old and (old[k, 0] > p if bids else old[k, 0] < p):
            k += 1
        if k < n_old and old[k, 0] == p and old[k, 1] == q:
            for x in range(5):
                new[i, x] = old[k, x]
            continue
        text[0] = 58
        m = _put_value(text, lead, scratch, p, ps, pp, strip, bare)
        if interleaved:
            text[m] = 58
            m += 1
        m = _put_value(text, m, scratch, q, ss, sp, strip, bare)
        new[i, 0], new[i, 1], new[i, 2] = p, q, m
        new[i, 3] = _crc_update(np.int64(0), text, m, tables)
        new[i, 4] = _crc_update(np.int64(0), text[lead:], m - lead, tables)
    return n


@njit(cache=True, nogil=True)
def _crc_rows(rows, bp, bs, ap, az, nb, na, depth, interleaved, strip, shifts, places, tables):
    """CRC32 of the checksum string of each row in ``rows`` (uint32 as int64).

    Incremental, since a message changes a few levels. The CRC is linear: the register after a
    pair's text ``x`` of ``n`` bytes is ``A_n(register before) ^ crc_from_zero(x)``, ``A_n``
    (four table lookups) carrying the register through ``n`` zero bytes. So each level keeps
    ``crc_from_zero`` of its text (with and without its leading ``:``) and its length: a level
    that is still there unchanged (found by a merge walk: the levels are sorted, so inserts and
    deletes only shift them) is never formatted again; and the CRC resumes after the longest
    prefix of pairs the previous row's string shares (its register after each pair is kept).
    """
    out = np.empty(len(rows), np.int64)
    width = 2 * SLOT_BYTES + 2
    advance = np.zeros((width + 1, 4, 256), np.uint32)  # 4 kB a length: stays in cache
    have = np.zeros(width + 1, np.bool_)
    # [generation, side (0 bids), level]: price, size, text bytes after the string's first
    # pair, crc_from_zero of that text, and of the text as the first pair (no ':' before it)
    level = np.zeros((2, 2, depth, 5), np.int64)
    levels = np.zeros((2, 2), np.int64)
    after = np.empty(2 * depth, np.int64)  # register after each pair of the last string
    text = np.empty(width, np.uint8)
    scratch = np.empty(SLOT_BYTES, np.uint8)
    fmt = (shifts[0], shifts[1], places[0], places[1], strip, interleaved)
    lead = 1 if interleaved else 0  # the ':' before every pair but the first
    cur, old = 0, 1
    for j in range(len(rows)):
        r = rows[j]
        if j > 0 and _same_top(rows[j - 1], r, bp, bs, ap, az, nb, na, depth):
            out[j] = out[j - 1]  # a message that left the checksummed levels as they were
            continue
        cur, old = old, cur
        levels[cur, 0] = _side_levels(
            bp[r], bs[r], min(nb[r], depth), True, level[old, 0], levels[old, 0],
            level[cur, 0], text, scratch, fmt, tables,
        )  # fmt: skip
        levels[cur, 1] = _side_levels(
            ap[r], az[r], min(na[r], depth), False, level[old, 1], levels[old, 1],
            level[cur, 1], text, scratch, fmt, tables,
        )  # fmt: skip
        nbr, nar = levels[cur, 0], levels[cur, 1]
        pairs = nbr + nar
        first = 0  # the first pair that differs from the previous row's string
        if j > 0:
            obr, oar = levels[old, 0], levels[old, 1]
            while first < min(pairs, obr + oar):
                side, i = _entry(first, nbr, nar, interleaved)
                o_side, o_i = _entry(first, obr, oar, interleaved)
                if (
                    side != o_side
                    or i != o_i
                    or level[old, side, i, 0] != level[cur, side, i, 0]
                    or level[old, side, i, 1] != level[cur, side, i, 1]
                ):
                    break
                first += 1
        c = after[first - 1] if first > 0 else np.int64(0xFFFFFFFF)
        for e in range(first, pairs):
            side, i = _entry(e, nbr, nar, interleaved)
            n = level[cur, side, i, 2] - (lead if e == 0 else 0)
            if not have[n]:
                _fill_advance(advance, n, tables)
                have[n] = True
            c = (
                advance[n, 0, c & 0xFF]
                ^ advance[n, 1, (c >> 8) & 0xFF]
                ^ advance[n, 2, (c >> 16) & 0xFF]
                ^ advance[n, 3, (c >> 24) & 0xFF]
                ^ level[cur, side, i, 4 if e == 0 else 3]
            )
            after[e] = c
        out[j] = c ^ 0xFFFFFFFF
    return out


@njit(cache=True)
def judge(valid, has, snapshot, match):
    """The validator's rule over rows in order: (valid after checksums, compared, mismatched).

    A valid row with a checksum is compared; a mismatch makes it and every following row invalid
    until a snapshot message's row (the venue's recovery: resubscribe, new snapshot).
    """
    n = len(valid)
    out = valid.copy()
    compared = np.zeros(n, np.bool_)
    mismatched = np.zeros(n, np.bool_)
    bad = False
    for r in range(n):
        if snapshot[r]:
            bad = False
        if not bad and valid[r] and has[r]:
            compared[r] = True
            if not match[r]:
                mismatched[r] = True
                bad = True
        if bad:
            out[r] = False
    return out, compared, mismatched


# ----------------------------------------------------------------------------- validator


@dataclass
class ChecksumLevels:
    """The rows' top levels as unscaled int arrays (``n_bid``/``n_ask`` levels present)."""

    bid_price: np.ndarray
    bid_size: np.ndarray
    ask_price: np.ndarray
    ask_size: np.ndarray
    n_bid: np.ndarray
    n_ask: np.ndarray


def levels_of(snapshots: pl.DataFrame, depth: int) -> ChecksumLevels:
    bp, bs, ap, az = schemas.level_names(depth)

    def block(names: list[str]) -> np.ndarray:
        # one transposing copy (column-by-column writes into a row-major array are 3x slower)
        return np.ascontiguousarray(np.stack([unscaled(snapshots[n]) for n in names], axis=1))

    counts = snapshots.select(
        pl.sum_horizontal(pl.col(bp).is_not_null()).cast(pl.Int64).alias("n_bid"),
        pl.sum_horizontal(pl.col(ap).is_not_null()).cast(pl.Int64).alias("n_ask"),
    )
    return ChecksumLevels(
        block(bp),
        block(bs),
        block(ap),
        block(az),
        counts["n_bid"].to_numpy(),
        counts["n_ask"].to_numpy(),
    )


@dataclass
class ChecksumReport:
    venue: str
    symbol: str
    messages_with_checksum: int = 0
    compared: int = 0
    mismatched: int = 0
    not_compared_invalid: int = 0  # rows with a checksum on a book already known invalid
    invalidated_rows: int = 0  # rows made invalid by a mismatch
    mismatches: list[dict] = field(default_factory=list)  # the first MAX_LOCATED, located

    def to_dict(self) -> dict:
        return {
            "checksum_messages": self.messages_with_checksum,
            "checksum_compared": self.compared,
            "checksum_mismatched": self.mismatched,
            "checksum_not_compared_invalid": self.not_compared_invalid,
            "checksum_invalidated_rows": self.invalidated_rows,
            "checksum_mismatches": self.mismatches,
        }


def row_crcs(
    day: VenueDay, levels: ChecksumLevels, rows: np.ndarray, engine: str = "engine"
) -> np.ndarray:
    """The recomputed CRC32 of ``rows``: compiled (``engine``) or Python + zlib (``reference``)."""
    rule = rule_for(day.venue)
    inst = day.instrument
    scales = (inst.price_scale, inst.size_scale)
    decimals = (day.price_decimals, day.size_decimals)
    if engine == "reference":
        out = np.empty(len(rows), np.int64)
        for j, r in enumerate(rows.tolist()):
            nb, na = int(levels.n_bid[r]), int(levels.n_ask[r])
            bids = list(
                zip(
                    levels.bid_price[r, :nb].tolist(), levels.bid_size[r, :nb].tolist(), strict=True
                )
            )
            asks = list(
                zip(
                    levels.ask_price[r, :na].tolist(), levels.ask_size[r, :na].tolist(), strict=True
                )
            )
            out[j] = crc32(checksum_string(rule, bids, asks, scales, decimals))
        return out
    if rule.strip_zeros:
        shifts, places = np.zeros(2, np.int64), np.array(scales, np.int64)
    else:
        shifts = np.array([decimals[0] - scales[0], decimals[1] - scales[1]], np.int64)
        places = np.array(decimals, np.int64)
    return _crc_rows(
        np.ascontiguousarray(rows, np.int64),
        levels.bid_price,
        levels.bid_size,
        levels.ask_price,
        levels.ask_size,
        levels.n_bid,
        levels.n_ask,
        rule.depth,
        rule.interleaved,
        rule.strip_zeros,
        shifts,
        places,
        CRC_TABLES,
    )


def validate(
    result: ReplayResult, day: VenueDay, engine: str = "engine"
) -> tuple[ReplayResult, ChecksumReport]:
    """Check every row against its message's checksum; rows invalid from a mismatch on.

    ``result`` must hold at least the venue's checksum depth (replay at ``checksum_depth``).
    """
    return _judged(result, day, *check_rows(result.snapshots, day, engine))


def _judged(
    result: ReplayResult, day: VenueDay, out_valid: np.ndarray, report: ChecksumReport
) -> tuple[ReplayResult, ChecksumReport]:
    """``result`` with the rows a mismatch made invalid (and its end book, if the last is) and
    the mismatches counted."""
    snaps = result.snapshots
    if report.invalidated_rows:
        snaps = snaps.with_columns(pl.Series("is_valid", out_valid))
    checkpoint = result.checkpoint
    if len(out_valid) and not out_valid[-1] and checkpoint.is_valid:
        checkpoint = Book(**{**checkpoint.__dict__, "is_valid": False})
    counters = replace(result.counters, checksum_mismatched=report.mismatched)
    return ReplayResult(snaps, checkpoint, counters), report


def check_rows(
    snaps: pl.DataFrame, day: VenueDay, engine: str = "engine"
) -> tuple[np.ndarray, ChecksumReport]:
    """Compare book_snapshots rows (``msg_id``, ``is_valid``, times, at least the venue's
    checksum depth) with their messages' checksums: (each row's validity after them, report)."""
    rule = rule_for(day.venue)
    if schemas.depth_of(snaps) < rule.depth:
        raise ValueError(f"{day.venue} checksums need {rule.depth} levels per side in the rows")
    msg = snaps["msg_id"].to_numpy().astype(np.int64)
    rows = np.flatnonzero(_compared_rows(day, msg, snaps["is_valid"].to_numpy()))
    computed = np.full(len(msg), -1, np.int64)
    computed[rows] = row_crcs(day, levels_of(snaps, rule.depth), rows, engine)
    return compare(snaps, day, computed)


def _compared_rows(day: VenueDay, msg: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Rows whose CRC is recomputed: valid, of a message that carries a checksum."""
    return (day.checksum[msg] != NO_CHECKSUM) & valid.astype(np.bool_)


def compare(
    snaps: pl.DataFrame, day: VenueDay, computed: np.ndarray
) -> tuple[np.ndarray, ChecksumReport]:
    """The validator's verdict on rows whose CRCs were recomputed (``computed``, -1 where not):
    each row's validity after the checksums (``judge``) and the located report."""
    msg = snaps["msg_id"].to_numpy().astype(np.int64)
    expected = day.checksum[msg]
    has = expected != NO_CHECKSUM
    valid = snaps["is_valid"].to_numpy().astype(np.bool_)
    match = ~_compared_rows(day, msg, valid) | (computed == expected)
    out_valid, compared, mismatched = judge(valid, has, day.is_snapshot[msg], match)
    report = ChecksumReport(day.venue, day.symbol)
    report.messages_with_checksum = int((day.checksum != NO_CHECKSUM).sum())
    report.compared = int(compared.sum())
    report.mismatched = int(mismatched.sum())
    report.not_compared_invalid = int((has & ~compared).sum())
    report.invalidated_rows = int((valid & ~out_valid).sum())
    located = np.flatnonzero(mismatched)[:MAX_LOCATED]
    if len(located):
        ts_event = snaps["ts_event"].dt.epoch("ns").to_numpy()
        ts_local = snaps["ts_local"].dt.epoch("ns").to_numpy()
    for r in located.tolist():
        k = int(msg[r])
        report.mismatches.append(
            {
                "symbol": day.symbol,
                "row": r,
                "msg_id": k,
                "ts_event": int(ts_event[r]),
                "ts_local": int(ts_local[r]),
                "file": day.files[int(day.file[k])],
                "line": int(day.line[k]),
                "expected": int(expected[r]),
                "computed": int(computed[r]),
            }
        )
    return out_valid, report


def checksum_depth(venue: str, depth: int) -> int:
    """Levels per side to replay so that both the output and the venue's checksum are served."""
    return max(depth, rule_for(venue).depth)


def replay_checked(
    day: VenueDay,
    depth: int = schemas.DEFAULT_DEPTH,
    engine: str = "engine",
    checkpoint: Book | None = None,
) -> tuple[ReplayResult, ChecksumReport]:
    """Replay one venue day with ``engine`` and validate every checksum; rows of ``depth`` levels.

    The compiled engine's rows are checked chunk by chunk as it writes them (its int levels, at
    the checksum depth), before they become decimals at ``depth``; the reference replayer's rows
    at the checksum depth are checked once written, then cut to ``depth``.
    """
    from obpipeline import book

    deep = checksum_depth(day.venue, depth)
    if engine != "engine":
        result = book.replay(day.events, day.instrument, deep, checkpoint, engine)
        result, report = validate(result, day, engine)
        if deep != depth:
            names = schemas.book_snapshots(day.instrument, depth).names()
            snaps = result.snapshots.select(names)
            result = ReplayResult(snaps, result.checkpoint, result.counters)
        return result, report
    from obpipeline.book.engine import replay

    computed: list[np.ndarray] = []

    def each_chunk(out: SnapshotArrays, rows: int) -> None:
        crc = np.full(rows, -1, np.int64)
        at = np.flatnonzero(_compared_rows(day, out.msg_id[:rows], out.is_valid[:rows]))
        levels = ChecksumLevels(
            out.bid_price, out.bid_size, out.ask_price, out.ask_size, out.n_bid, out.n_ask
        )
        crc[at] = row_crcs(day, levels, at)
        computed.append(crc)

    result = replay(
        day.events, day.instrument, deep, checkpoint, each_chunk=each_chunk, frame_depth=depth
    )
    return _judged(result, day, *compare(result.snapshots, day, np.concatenate(computed)))

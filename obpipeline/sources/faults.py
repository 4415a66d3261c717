"""Seeded fault injection over a Binance capture stream (simulated or real), with an exact report.

It works on lines (``<local_ts> <json>``), so the same mutants run on the simulator's output and
on the real captures in ``../shared/data``. Every mutation is recorded: its kind, the input line
(0-based), where the line ended up in the output (``None`` when dropped) and what changed, so a
mutation test can check that each fault was caught *where* it was injected.

Kinds (FIDELITY.md Gate B):

* message faults, on depth-diff lines (each line gets at most one of them):
  ``drop``, ``duplicate`` (the copy follows the original), ``reorder`` (swapped with the next
  depth message), ``shift_ts`` (E and T moved by ``ts_shift_ms``);
* level faults, on level updates (``["price","qty"]`` pairs) of the remaining depth messages:
  ``drop_level``, ``scale_size`` (size x ``scale_factor``, rounded to the printed decimals, at
  least one unit away from the original; zero sizes are never picked), ``shift_price``
  (+/- ``shift_ticks`` ticks);
* ``stale_snapshot``: the first N REST snapshots keep their book but claim the ``lastUpdateId``
  of the depth message ``stale_by`` messages later, i.e. their content is that many messages
  old. The first ones because that is the snapshot a replay without a checkpoint syncs from; a
  stale snapshot that arrives while the book is in sync is rightly ignored by a replayer;
* ``malformed``: any line, truncated, or with a non-numeric receive timestamp, or with its JSON
  braces unbalanced.

Fractions are of the eligible population (depth lines, level updates, all lines); the number
injected is ``round(fraction * population)``, at least 1 when the fraction is positive.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np

from obpipeline.instruments import get_instrument

MESSAGE_KINDS = ("drop", "duplicate", "reorder", "shift_ts")
LEVEL_KINDS = ("drop_level", "scale_size", "shift_price")
KINDS = (*MESSAGE_KINDS, *LEVEL_KINDS, "stale_snapshot", "malformed")

_DEPTH_STREAM = re.compile(rb'^\S+ \{"stream":"([a-z0-9_]+)@depth(?:@\d+ms)?"')
_U = re.compile(rb'"u":(\d+)')


@dataclass(frozen=True)
class FaultSpec:
    """What to inject. Parse the CLI form with ``FaultSpec.parse``."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    shift_ts: float = 0.0
    ts_shift_ms: int = 1
    drop_level: float = 0.0
    scale_size: float = 0.0
    scale_factor: float = 1.01
    shift_price: float = 0.0
    shift_ticks: int = 1
    stale_snapshot: int = 0
    stale_by: int = 5
    malformed: float = 0.0

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """``"drop=0.01,scale_size=0.01:1.001,shift_price=0.01:2,stale_snapshot=1:5"``.

        ``kind=fraction[:parameter]``; the parameter is the scale factor, the tick shift, the
        timestamp shift (ms) or the staleness in messages. ``all=0.01`` sets every kind.
        """
        kw: dict[str, Any] = {}
        second = {
            "scale_size": "scale_factor",
            "shift_price": "shift_ticks",
            "shift_ts": "ts_shift_ms",
            "stale_snapshot": "stale_by",
        }
        for item in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = item.partition("=")
            name = name.strip().replace("-", "_")
            frac, _, param = value.partition(":")
            names = [k for k in KINDS if k != "stale_snapshot"] if name == "all" else [name]
            for n in names:
                if n not in KINDS:
                    raise ValueError(f"unknown fault kind {n!r}; known: {', '.join(KINDS)}")
                kw[n] = int(frac) if n == "stale_snapshot" else float(frac)
                if param:
                    typ = float if n == "scale_size" else int
                    kw[second[n]] = typ(param)
            if name == "all":
                kw["stale_snapshot"] = 1
        return cls(**kw)

    def active(self) -> list[str]:
        return [k for k in KINDS if getattr(self, k)]


@dataclass
class Injection:
    kind: str
    line: int  # 0-based input line
    out_line: int | None  # 0-based output line (None: dropped)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class FaultReport:
    seed: int
    spec: FaultSpec
    input_lines: int
    output_lines: int
    injections: list[Injection]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(KINDS, 0)
        for inj in self.injections:
            out[inj.kind] += 1
        return out

    def lines_of(self, kind: str) -> list[int]:
        return [i.line for i in self.injections if i.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "spec": asdict(self.spec),
            "input_lines": self.input_lines,
            "output_lines": self.output_lines,
            "counts": self.counts(),
            "injections": [asdict(i) for i in self.injections],
        }


def _count(frac: float, population: int) -> int:
    if frac <= 0 or population <= 0:
        return 0
    return min(population, max(1, round(frac * population)))


def _tick_for(symbol: str | None, is_futures: bool) -> Decimal | None:
    if not symbol:
        return None
    markets = ("usdm", "cm") if is_futures else ("spot",)
    for m in markets:
        inst = get_instrument("binance", m, symbol)
        if inst is not None:
            return inst.tick_size
    return None


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _split(line: bytes) -> tuple[bytes, Any]:
    ts, _, js = line.partition(b" ")
    return ts, json.loads(js)


def _decimals(s: str) -> int:
    return len(s) - s.index(".") - 1 if "." in s else 0


def _scaled(size: str, factor: float) -> str:
    d = _decimals(size)
    unit = Decimal(1).scaleb(-d)
    old = Decimal(size)
    new = (old * Decimal(str(factor))).quantize(unit, rounding=ROUND_HALF_EVEN)
    if new == old:
        new = old + unit if factor >= 1 else max(old - unit, unit)
    return f"{new:.{d}f}"


def _shifted(price: str, ticks: int, tick: Decimal | None) -> str:
    d = _decimals(price)
    step = tick if tick is not None else Decimal(1).scaleb(-d)
    new = Decimal(price) + ticks * step
    return f"{new:.{d}f}"


def inject(
    lines: Sequence[bytes | str],
    spec: FaultSpec | str,
    seed: int = 0,
    tick: Decimal | str | None = None,
) -> tuple[list[bytes], FaultReport]:
    """Return the mutated lines (no trailing newlines) and the exact report of what was done.

    ``tick``: price step for ``shift_price`` (default: the registered instrument's tick, found
    from the stream name; else one unit of the printed last decimal).
    """
    spec = FaultSpec.parse(spec) if isinstance(spec, str) else spec
    src = [ln.encode() if isinstance(ln, str) else bytes(ln) for ln in lines]
    src = [ln[:-1] if ln.endswith(b"\n") else ln for ln in src]
    g = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0xFA017])))
    n = len(src)

    depth_idx: list[int] = []
    snap_idx: list[int] = []
    symbol: str | None = None
    for i, ln in enumerate(src):
        m = _DEPTH_STREAM.match(ln)
        if m:
            depth_idx.append(i)
            if symbol is None:
                symbol = m.group(1).decode().upper()
        elif b'"lastUpdateId"' in ln and b'"stream"' not in ln:
            snap_idx.append(i)
    futures = bool(depth_idx) and b'"pu":' in src[depth_idx[0]]
    step = Decimal(str(tick)) if tick is not None else _tick_for(symbol, futures)

    out: list[bytes | None] = list(src)
    injections: list[Injection] = []
    detail_of: dict[int, tuple[str, dict[str, Any]]] = {}

    # ---- message faults: disjoint sets of depth lines
    depth_arr = np.array(depth_idx, dtype=np.int64)
    free = np.ones(depth_arr.size, dtype=bool)
    chosen: dict[str, np.ndarray] = {}
    for kind in MESSAGE_KINDS:
        k = _count(getattr(spec, kind), depth_arr.size)
        # a swap needs an untouched successor
        cand = np.flatnonzero(free[:-1] & free[1:] if kind == "reorder" else free)
        pick = np.sort(g.choice(cand, min(k, cand.size), replace=False))
        if kind == "reorder":  # no two swaps may share a line
            keep: list[int] = []
            for p in pick.tolist():
                if not keep or p > keep[-1] + 1:
                    keep.append(p)
            pick = np.array(keep, dtype=np.int64)
            free[pick + 1] = False
        free[pick] = False
        chosen[kind] = pick
    # ---- level faults on the untouched depth messages
    level_kinds = [k for k in LEVEL_KINDS if getattr(spec, k)]
    if level_kinds:
        eligible = depth_arr[free]
        counts = np.array([src[i].count(b'["') for i in eligible], dtype=np.int64)
        total = int(counts.sum())
        ends = np.cumsum(counts)
        taken = np.zeros(0, dtype=np.int64)
        plan: dict[int, list[tuple[int, str]]] = {}
        for kind in level_kinds:
            k = _count(getattr(spec, kind), total)
            pool = np.setdiff1d(np.arange(total), taken, assume_unique=True)
            pick = np.sort(g.choice(pool, min(k, pool.size), replace=False))
            taken = np.union1d(taken, pick)
            msg = np.searchsorted(ends, pick, side="right")
            pos = pick - np.where(msg > 0, ends[np.maximum(msg - 1, 0)], 0)
            for mi, p in zip(msg.tolist(), pos.tolist(), strict=True):
                plan.setdefault(int(eligible[mi]), []).append((p, kind))
        for line_no in sorted(plan):
            _mutate_levels(out, line_no, plan[line_no], spec, step, injections, g)
    # apply message faults
    for kind in MESSAGE_KINDS:
        for p in chosen[kind].tolist():
            i = depth_idx[p]
            if kind == "drop":
                detail_of[i] = ("drop", {"u": _u_of(src[i])})
                out[i] = None
            elif kind == "duplicate":
                detail_of[i] = ("duplicate", {"u": _u_of(src[i])})
            elif kind == "reorder":
                j = depth_idx[p + 1]
                out[i], out[j] = src[j], src[i]
                detail_of[i] = ("reorder", {"with_line": j, "u": _u_of(src[i])})
            else:
                ts, obj = _split(src[i])
                data = obj["data"]
                old = (data.get("E"), data.get("T"))
                for key in ("E", "T"):
                    if key in data:
                        data[key] += spec.ts_shift_ms
                out[i] = ts + b" " + _dumps(obj)
                detail_of[i] = ("shift_ts", {"E": old[0], "T": old[1], "ms": spec.ts_shift_ms})
    # stale snapshot(s)
    if spec.stale_snapshot and snap_idx:
        us = np.array([_u_of(src[i]) for i in depth_idx], dtype=np.int64)
        order = np.sort(us)
        for i in snap_idx[: spec.stale_snapshot]:
            ts, obj = _split(src[i])
            old = int(obj["lastUpdateId"])
            pos = int(np.searchsorted(order, old))
            new = int(order[min(pos + spec.stale_by, order.size - 1)])
            if new == old:
                continue
            obj["lastUpdateId"] = new
            out[i] = ts + b" " + _dumps(obj)
            detail_of[i] = ("stale_snapshot", {"lastUpdateId": old, "claimed": new})
    # malformed lines (any line not already mutated)
    k = _count(spec.malformed, n)
    if k:
        touched = set(detail_of) | {inj.line for inj in injections}
        touched |= {d["with_line"] for kind, d in detail_of.values() if kind == "reorder"}
        pool = np.array([i for i in range(n) if i not in touched and out[i] is not None])
        for j, i in enumerate(sorted(g.choice(pool, min(k, pool.size), replace=False).tolist())):
            line = out[i]
            assert line is not None
            how = ("truncated", "bad_timestamp", "unbalanced")[j % 3]
            if how == "truncated":
                cut = int(g.integers(len(line) // 3, max(len(line) // 3 + 1, len(line) - 2)))
                out[i] = line[:cut]
            elif how == "bad_timestamp":
                ts, _, rest = line.partition(b" ")
                out[i] = ts[:-3] + b"x" + ts[-2:] + b" " + rest
            else:
                out[i] = line.rstrip(b"}")
            detail_of[i] = ("malformed", {"how": how})

    # assemble, tracking output positions
    result: list[bytes] = []
    where: dict[int, int] = {}
    for i, line in enumerate(out):
        if line is None:
            continue
        where[i] = len(result)
        result.append(line)
        if i in detail_of and detail_of[i][0] == "duplicate":
            result.append(line)
    for i, (kind, detail) in sorted(detail_of.items()):
        if kind == "reorder":  # the two lines traded places
            detail["with_out_line"] = where[i]
            injections.append(Injection(kind, i, where[detail["with_line"]], detail))
        elif kind == "duplicate":
            injections.append(Injection(kind, i, where[i] + 1, detail))
        else:
            injections.append(Injection(kind, i, where.get(i), detail))
    for inj in injections:
        if inj.kind in LEVEL_KINDS:
            inj.out_line = where.get(inj.line)
    injections.sort(key=lambda x: (x.line, KINDS.index(x.kind)))
    report = FaultReport(seed, spec, n, len(result), injections)
    return result, report


def _u_of(line: bytes) -> int:
    if b'"lastUpdateId"' in line and b'"stream"' not in line:
        m = re.search(rb'"lastUpdateId":(\d+)', line)
    else:
        m = _U.search(line)
    return int(m.group(1)) if m else -1


def _mutate_levels(
    out: list[bytes | None],
    line_no: int,
    items: list[tuple[int, str]],
    spec: FaultSpec,
    step: Decimal | None,
    injections: list[Injection],
    g: np.random.Generator,
) -> None:
    """Apply the planned level faults of one line in one pass (positions: bids then asks).

    A size fault on a zero size moves to the nearest untouched non-zero level of the message; a
    price shift that would land on a price already in the message tries the other direction, and
    is skipped if both collide, so every reported change is exactly what the line now says.
    """
    line = out[line_no]
    assert line is not None
    ts, obj = _split(line)
    data = obj["data"]
    sides = {"b": data["b"], "a": data["a"]}
    flat = [("b", j) for j in range(len(sides["b"]))] + [("a", j) for j in range(len(sides["a"]))]
    used = {flat[p] for p, _ in items if p < len(flat)}
    removed: list[tuple[str, int]] = []
    for p, kind in sorted(items):
        if p >= len(flat):
            continue
        side, j = flat[p]
        levels = sides[side]
        price, size = levels[j]
        if kind == "drop_level":
            removed.append((side, j))
            detail = {"side": side, "price": price, "size": size}
        elif kind == "scale_size":
            if Decimal(size) == 0:
                alt = [
                    k
                    for k, (_, s) in enumerate(levels)
                    if Decimal(s) != 0 and (side, k) not in used
                ]
                if not alt:
                    continue
                j = min(alt, key=lambda k: abs(k - j))
                used.add((side, j))
                price, size = levels[j]
            new = _scaled(size, spec.scale_factor)
            levels[j] = [price, new]
            detail = {"side": side, "price": price, "size": size, "new_size": new}
        else:
            sign = 1 if g.random() < 0.5 else -1
            present = {lv[0] for lv in levels}
            for ticks in (sign * spec.shift_ticks, -sign * spec.shift_ticks):
                new = _shifted(price, ticks, step)
                if new not in present:
                    break
            else:
                continue
            levels[j] = [new, size]
            detail = {"side": side, "price": price, "new_price": new, "size": size, "ticks": ticks}
        injections.append(Injection(kind, line_no, None, detail))
    for side, j in sorted(removed, key=lambda x: -x[1]):
        del sides[side][j]
    out[line_no] = ts + b" " + _dumps(obj)

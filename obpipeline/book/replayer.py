"""Reference replayer: the readable oracle, on ``sortedcontainers.SortedDict`` with integer prices.

Every rule is in ``sequencing.py``; this file only walks the messages. It is slow (a Python loop
per level) on purpose: the compiled engine must produce the same rows, checkpoint and counters.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sortedcontainers import SortedDict

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

SYNCED, AWAITING, UNSYNCED = 0, 1, 2


class ReferenceReplayer:
    """Replays one stream; state persists across ``run`` calls only through ``Book`` checkpoints."""

    def __init__(
        self,
        instrument: Instrument,
        depth: int = schemas.DEFAULT_DEPTH,
        checkpoint: Book | None = None,
    ):
        self.instrument = instrument
        self.depth = depth
        self.rule = seq.rule_code(instrument.sequencing)
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.cur_u = 0
        self.state = UNSYNCED
        self.ever_synced = False
        self.ts = (0, 0)
        if checkpoint is not None:
            self.bids.update(
                zip(checkpoint.bid_price.tolist(), checkpoint.bid_size.tolist(), strict=True)
            )
            self.asks.update(
                zip(checkpoint.ask_price.tolist(), checkpoint.ask_size.tolist(), strict=True)
            )
            self.cur_u = checkpoint.last_update_id
            self.state = SYNCED if checkpoint.is_valid else UNSYNCED
            self.ever_synced = checkpoint.is_valid
            self.ts = (checkpoint.ts_event, checkpoint.ts_local)

    # ------------------------------------------------------------------ book primitives
    def _apply_levels(self, ev: EventArrays, k: int) -> int:
        """Apply message k's levels; returns the highest bid price it set (or -1)."""
        max_bid_set = -1
        for r in range(ev.msg_start[k], ev.msg_start[k + 1]):
            side = ev.side[r]
            if side == 0:
                continue
            book = self.bids if side == schemas.BID else self.asks
            price, size = int(ev.price[r]), int(ev.size[r])
            if size == 0:
                book.pop(price, None)
            else:
                book[price] = size
                if side == schemas.BID and price > max_bid_set:
                    max_bid_set = price
        return max_bid_set

    def _repair_crossed(self, max_bid_set: int) -> bool:
        if not self.bids or not self.asks:
            return False
        best_bid, best_ask = self.bids.peekitem(-1)[0], self.asks.peekitem(0)[0]
        if best_bid < best_ask:
            return False
        if max_bid_set >= best_ask:
            while self.asks and self.asks.peekitem(0)[0] <= best_bid:
                self.asks.popitem(0)
        else:
            while self.bids and self.bids.peekitem(-1)[0] >= best_ask:
                self.bids.popitem(-1)
        return True

    def _load_snapshot(self, ev: EventArrays, k: int) -> int:
        self.bids.clear()
        self.asks.clear()
        return self._apply_levels(ev, k)

    def _snapshot_equals_book(self, ev: EventArrays, k: int) -> bool:
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for r in range(ev.msg_start[k], ev.msg_start[k + 1]):
            if ev.side[r] != 0 and ev.size[r] != 0:
                (bids if ev.side[r] == schemas.BID else asks)[int(ev.price[r])] = int(ev.size[r])
        return bids == dict(self.bids) and asks == dict(self.asks)

    # ------------------------------------------------------------------ output
    def _emit(
        self,
        out: SnapshotArrays,
        row: int,
        ev: EventArrays,
        k: int,
        valid: bool,
        crossed: bool,
        resynced: bool,
    ) -> int:
        out.ts_event[row] = ev.ts_event[k]
        out.ts_local[row] = ev.ts_local[k]
        out.msg_id[row] = ev.msg_id[k]
        out.last_update_id[row] = self.cur_u
        d = self.depth
        nb = min(d, len(self.bids))
        na = min(d, len(self.asks))
        for i in range(nb):
            price, size = self.bids.peekitem(-1 - i)
            out.bid_price[row, i] = price
            out.bid_size[row, i] = size
        for i in range(na):
            price, size = self.asks.peekitem(i)
            out.ask_price[row, i] = price
            out.ask_size[row, i] = size
        out.n_bid[row] = nb
        out.n_ask[row] = na
        out.is_valid[row] = valid
        out.crossed_repaired[row] = crossed
        out.resynced[row] = resynced
        self.ts = (int(ev.ts_event[k]), int(ev.ts_local[k]))
        return row + 1

    # ------------------------------------------------------------------ replay
    def run(self, events: pl.DataFrame) -> ReplayResult:
        ev = event_arrays(events)
        c = ReplayCounters()
        c.messages = ev.n_messages
        c.snapshots = int(ev.is_snapshot.sum())
        diff_rows = np.repeat(~ev.is_snapshot, np.diff(ev.msg_start))
        c.level_updates = int(((ev.side != 0) & diff_rows).sum())
        out = SnapshotArrays(self.depth, 2 * ev.n_messages + 1)
        row = 0
        buffer: list[int] = []

        def apply_diff(k: int, valid: bool, emit: bool = True) -> None:
            nonlocal row
            max_bid_set = self._apply_levels(ev, k)
            self.cur_u = int(ev.last_u[k])
            crossed = self._repair_crossed(max_bid_set)
            if not emit:  # a buffered diff replayed after a resync that broke again: it has its row
                return
            if crossed and valid:
                c.crossed += 1
            if not valid:
                c.invalid_rows += 1
            row = self._emit(out, row, ev, k, valid, crossed, False)

        def lose_sync(k: int, emit: bool) -> None:
            self.state = UNSYNCED
            buffer.append(k)
            apply_diff(k, False, emit)

        def process_diff(k: int, draining: bool) -> None:
            first_u, last_u = int(ev.first_u[k]), int(ev.last_u[k])
            if self.state == SYNCED:
                if seq.continues(self.rule, self.cur_u, first_u, int(ev.prev_u[k])):
                    apply_diff(k, True)
                elif last_u <= self.cur_u:
                    c.duplicates += 1
                else:
                    c.gaps += 1
                    lose_sync(k, not draining)
            elif self.state == AWAITING:
                if seq.is_stale(self.rule, self.cur_u, last_u):
                    c.stale += 1
                elif seq.bridges(self.rule, self.cur_u, first_u, last_u, int(ev.prev_u[k])):
                    self.state = SYNCED
                    apply_diff(k, True)
                else:
                    c.gaps += 1
                    lose_sync(k, not draining)
            else:
                lose_sync(k, not draining)

        for k in range(ev.n_messages):
            if not ev.is_snapshot[k]:
                process_diff(k, draining=False)
                continue
            snapshot_u = int(ev.last_u[k])
            if self.state == SYNCED:
                if snapshot_u != self.cur_u:
                    row = self._emit(out, row, ev, k, True, False, False)
                    continue
                c.snapshot_checks += 1
                if self._snapshot_equals_book(ev, k):
                    row = self._emit(out, row, ev, k, True, False, False)
                    continue
                c.snapshot_mismatches += 1
                self.state = UNSYNCED
            # (Re)sync from this snapshot, then replay what was buffered while out of sync.
            if self.state == UNSYNCED and self.ever_synced:
                c.resyncs += 1
            self.ever_synced = True
            max_bid_set = self._load_snapshot(ev, k)
            self.cur_u = snapshot_u
            crossed = self._repair_crossed(max_bid_set)
            c.crossed += int(crossed)
            self.state = AWAITING
            row = self._emit(out, row, ev, k, True, crossed, True)
            pending, buffer[:] = list(buffer), []
            for b in pending:
                process_diff(b, draining=True)

        c.rows = row
        c.unsynced_at_end = int(self.state == UNSYNCED)
        snapshots = snapshots_frame(out, row, self.instrument)
        return ReplayResult(snapshots, self.book(), c)

    def book(self) -> Book:
        bid_items = list(reversed(self.bids.items()))
        ask_items = list(self.asks.items())
        return Book(
            bid_price=np.array([p for p, _ in bid_items], np.int64),
            bid_size=np.array([s for _, s in bid_items], np.int64),
            ask_price=np.array([p for p, _ in ask_items], np.int64),
            ask_size=np.array([s for _, s in ask_items], np.int64),
            last_update_id=self.cur_u,
            is_valid=self.state != UNSYNCED,
            ts_event=self.ts[0],
            ts_local=self.ts[1],
        )


def replay(
    events: pl.DataFrame,
    instrument: Instrument,
    depth: int = schemas.DEFAULT_DEPTH,
    checkpoint: Book | None = None,
) -> ReplayResult:
    """Replay raw_book_events with the reference replayer (see module docstring of sequencing)."""
    return ReferenceReplayer(instrument, depth, checkpoint).run(events)

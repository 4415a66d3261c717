"""Per-venue sequencing rules (DESIGN.md §4), as small pure functions shared by every replayer.

The replay state machine (the same in the reference replayer and the compiled engine):

* **Synced**: the book equals the exchange's book at ``cur_u``. A diff that chains
  (``continues``) is applied. A diff already covered (``u <= cur_u``) is a duplicate: dropped,
  counted, no row. Anything else is a **gap**: the book becomes invalid.
* **Awaiting first diff** (just loaded a REST snapshot with ``lastUpdateId`` L): diffs wholly before
  L are stale (dropped, counted); the first diff that ``bridges`` L (or chains onto it by ``pu``) is applied and the book is
  synced; a diff past L without bridging it is a gap (the snapshot was too old).
* **Unsynced** (at start without a checkpoint, or after a gap): every diff is applied best-effort
  to the invalid book and emitted with ``is_valid`` false, and kept in a buffer. The next REST
  snapshot resyncs: the book is replaced, a valid row is emitted for the snapshot, and the
  buffered diffs are replayed through the "awaiting" rules (the newer ones get valid rows now).
  This is the documented Binance procedure (buffer, snapshot, drop stale, bridge, chain) applied
  to a recorded stream whose snapshot arrives after the first diffs.
* A snapshot arriving while synced is a check, not a reset: when its L equals ``cur_u`` the full
  book is compared with it (a REST golden sample); a mismatch resyncs to the snapshot.

Crossed books: after each message, if best bid >= best ask the book is crossed (counted when the
book is valid) and repaired: if the message set a bid at or above the best ask, the asks at or
below the best bid are stale and deleted; otherwise the bids at or above the best ask are deleted.
"""

from __future__ import annotations

from obpipeline.instruments import SequencingRule

FUTURES = 0
SPOT = 1


def rule_code(rule: SequencingRule) -> int:
    if rule == "binance_futures":
        return FUTURES
    if rule == "binance_spot":
        return SPOT
    raise ValueError(f"sequencing rule {rule!r} is not an update-id rule")


def continues(rule: int, cur_u: int, first_u: int, prev_u: int) -> bool:
    """Does a diff chain directly onto the book at ``cur_u``?"""
    if rule == FUTURES:
        return prev_u == cur_u
    return first_u == cur_u + 1


def is_stale(rule: int, snapshot_u: int, last_u: int) -> bool:
    """Is a diff wholly contained in the snapshot at ``snapshot_u`` (to be dropped)?"""
    if rule == FUTURES:
        return last_u < snapshot_u
    return last_u <= snapshot_u


def bridges(rule: int, snapshot_u: int, first_u: int, last_u: int, prev_u: int) -> bool:
    """Is a diff the first one to apply on top of the snapshot at ``snapshot_u``?

    Futures: the documented ``U <= L <= u``, or ``pu == L`` when the snapshot was taken exactly at
    a message boundary (then no message spans L, and the next one simply chains onto it).
    """
    if rule == FUTURES:
        return first_u <= snapshot_u <= last_u or prev_u == snapshot_u
    return first_u <= snapshot_u + 1 <= last_u

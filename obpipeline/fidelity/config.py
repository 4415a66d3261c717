"""Every fidelity threshold in one place (FIDELITY.md), with per-venue overrides.

``Thresholds`` is frozen: a gate never changes its rules halfway through a run. Get the rules of a
venue with ``thresholds_for("binance-usdm")``; override for an experiment with
``dataclasses.replace(thresholds_for(v), max_gaps=3)`` or with keyword overrides
``thresholds_for(v, max_gaps=3)``. ``docs/FIDELITY_GATES.md`` explains each number.

Units: rates are fractions (1e-3 = 0.1 %), spreads and prices in ticks of the instrument, slippage
in basis points of mid, sizes in the instrument's size unit (BTC on Binance USD-M and spot,
contracts of 100 USD on COIN-M).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    """The rules of Gates A0, A1, A2 (blocking) and C (report only) for one venue."""

    # ---------------------------------------------------------------- A0 integrity
    #: sequence gaps per day. A gap is lost exchange data: the book is invalid until the next
    #: snapshot. FIDELITY.md asks that every gap be resynced and logged; we also fail the day by
    #: default, because the invalid interval cannot be backtested. Raise where transport gaps are
    #: expected; ``max_gap_invalid_fraction`` then bounds their cost.
    max_gaps: int = 0
    #: gaps not followed by a resync (the book is out of sync at the end of the day).
    max_unhandled_gaps: int = 0
    #: share of the day's exchange time spent invalid *after* the first sync (the buffering
    #: before the opening snapshot of a day without checkpoint is reported, not gated).
    max_gap_invalid_fraction: float = 1e-3
    #: valid-book messages after which the book was crossed or locked (before repair).
    max_crossed: int = 0
    #: uncross repairs (each firing of the heuristic means the book was wrong).
    max_uncross_repairs: int = 0
    #: off-grid prices / sizes, negative or NaN values in raw_book_events and book_snapshots.
    max_off_grid: int = 0
    max_negative_or_nan: int = 0
    #: duplicate diffs dropped by the replayer (a duplicated message is a feed fault).
    max_duplicates: int = 0
    #: capture records the parser could not use (kept aside in the quarantine dataset).
    max_quarantined: int = 0
    #: carried D-1 book against the exchange's opening snapshot of D: differing levels allowed.
    max_carried_book_mismatches: int = 0
    #: REST snapshots aligned with the book that differ (the replayer then resyncs).
    max_snapshot_mismatches: int = 0
    #: REST snapshot levels that disagree with the absolute sizes the diffs gave them up to the
    #: snapshot's ``lastUpdateId`` (a snapshot older than the id it claims).
    max_snapshot_inconsistencies: int = 0

    # ---------------------------------------------------------------- A1 exact
    #: one-sided Clopper–Pearson confidence of the certified mismatch-rate bound.
    confidence: float = 0.95
    #: certified mismatch rate for partial-book references (top-N: depth5/10/20, REST, vendor).
    max_mismatch_rate_top: float = 1e-3
    #: certified mismatch rate at the touch (bookTicker, vendor quotes).
    max_mismatch_rate_touch: float = 1e-4
    #: the exchange's time on a golden record equals the time of the depth message with the same
    #: update id (USD-M/COIN-M bookTicker ``T``): differing records allowed.
    max_timestamp_mismatches: int = 0
    #: below this aligned fraction the report recommends window matching (reported, not gated).
    min_aligned_fraction: float = 0.95
    #: count mismatching records that follow each other (in update-id order) as one incident.
    incidents_not_records: bool = True

    # ---------------------------------------------------------------- A2 materiality (paired)
    spread_levels: tuple[int, ...] = tuple(range(1, 21))
    spread_quantile: float = 0.999
    max_spread_delta_ticks: float = 1.0
    depth_bands_bp: tuple[float, ...] = (1.0, 5.0, 10.0, 25.0, 100.0)
    min_depth_exact_share: float = 0.999
    imbalance_levels: tuple[int, ...] = (1, 5, 10)
    min_imbalance_exact_share: float = 0.999
    microprice_quantile: float = 0.999
    max_microprice_delta_ticks: float = 0.1
    ofi_every: str = "1s"
    min_ofi_correlation: float = 0.999
    max_ofi_rel_rmse: float = 0.01
    #: market-order sizes for the book walk (instrument size units).
    walk_sizes: tuple[float, ...] = (0.1, 1.0, 5.0, 10.0, 50.0)
    max_slippage_mean_delta_bp: float = 0.05
    slippage_quantile: float = 0.99
    max_slippage_quantile_delta_bp: float = 0.5

    # ---------------------------------------------------------------- C realism (non-blocking)
    return_every: str = "1m"
    hill_fractions: tuple[float, ...] = (0.01, 0.02, 0.05)
    hill_range: tuple[float, float] = (2.0, 5.0)
    acf_lags: int = 100
    ljung_box_lags: int = 10
    ljung_box_alpha: float = 0.01
    #: |ACF(r)| at lags >= 2 must stay below max(this, 3/sqrt(n)).
    max_linear_acf: float = 0.05
    impact_exponent_range: tuple[float, float] = (0.4, 0.7)
    baseline_days: int = 7
    baseline_z: float = 3.0
    bootstrap_block: str = "5m"
    bootstrap_samples: int = 200

    #: free-form notes on why a venue differs (shown in the report).
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("confidence", "spread_quantile", "microprice_quantile", "slippage_quantile"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {v}")
        for name in ("max_mismatch_rate_top", "max_mismatch_rate_touch"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {v}")
        if any(q <= 0 for q in self.walk_sizes):
            raise ValueError(f"walk sizes must be positive: {self.walk_sizes}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


DEFAULT = Thresholds()

#: Per-venue differences from ``DEFAULT`` (venue ids as in the lake: ``binance-usdm``, ...).
VENUE_OVERRIDES: dict[str, dict[str, Any]] = {
    # COIN-M sizes are contracts of 100 USD: the 0.1–50 BTC grid is ~60–30 000 contracts at 60k.
    "binance-cm": {
        "walk_sizes": (60.0, 600.0, 3000.0, 6000.0, 30000.0),
        "notes": ("COIN-M sizes are contracts (100 USD); walk sizes ≈ 0.1–50 BTC at 60 kUSD.",),
    },
    # Spot bookTickers carry no exchange time: the timestamp check has nothing to compare.
    "binance-spot": {
        "notes": ("spot bookTicker has no exchange time: timestamp agreement is not checkable.",),
    },
}


def thresholds_for(venue_id: str | None = None, **overrides: Any) -> Thresholds:
    """The thresholds of a venue (``DEFAULT`` plus ``VENUE_OVERRIDES``), then ``overrides``."""
    base = VENUE_OVERRIDES.get(venue_id or "", {})
    unknown = set(overrides) - {f.name for f in fields(Thresholds)}
    if unknown:
        raise TypeError(f"unknown threshold(s): {sorted(unknown)}")
    return replace(DEFAULT, **{**base, **overrides})

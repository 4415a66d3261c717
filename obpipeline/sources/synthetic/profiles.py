"""Volume profiles of the simulated exchange, and their overridable knobs."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from obpipeline.sources.synthetic import engine as E


@dataclass(frozen=True)
class Model:
    """Order-flow parameters (see engine.py for what each one drives)."""

    window_ticks: int = 1500  # resting orders further than this behind their best are cancelled
    max_levels: int = 1000  # levels per side (the REST snapshot limit: a snapshot is the full book)
    min_levels: int = 20  # nothing removes a level from a side this thin (a ladder always shows)
    p_market: float = 0.05
    cancel_share: float = 0.47  # share of non-market events that cancel, at target_orders resting
    target_orders: int = 4000  # resting orders (both sides) at which that share applies
    p_touch: float = 0.40  # share of placements/cancels at the touch
    p_improve: float = 0.8  # share of limit orders placed inside a spread wider than one tick
    distance_gamma: float = 2.2  # > 1 concentrates placements near the top
    limit_size_median: float = 0.008  # in base units (BTC)
    limit_size_sigma: float = 1.6
    touch_size_mult: float = 15.0
    market_size_median: float = 0.016
    market_size_sigma: float = 2.0
    market_size_cap: float = 60.0
    walk_ticks: int = 300  # market orders do not trade further than this from the touch
    theta_ticks: float = 2.0  # informed flow reacts when the touch is this stale
    p_sweep: float = 0.5  # ... by sweeping (else the stale quote is pulled)
    kappa: float = 0.3  # market-order side lean toward the fundamental price, per tick
    informed_size_mult: float = 4.0  # informed orders are this much larger (median)
    cancel_span: int = 64
    arb_react: float = 0.8

    def vector(self, lot: float, uid_inc: float, p_bbo: float) -> np.ndarray:
        p = np.zeros(E.N_PARAMS)
        p[E.P_W] = self.window_ticks
        p[E.P_MAX_LEVELS] = self.max_levels
        p[E.P_MIN_LEVELS] = self.min_levels
        p[E.P_MO] = self.p_market
        p[E.P_TARGET_ORDERS] = self.target_orders
        p[E.P_TOUCH] = self.p_touch
        p[E.P_IMPROVE] = self.p_improve
        p[E.P_GAMMA] = self.distance_gamma
        p[E.P_LO_MU] = np.log(self.limit_size_median / lot)
        p[E.P_LO_SIGMA] = self.limit_size_sigma
        p[E.P_TOUCH_MULT] = self.touch_size_mult
        p[E.P_MO_MU] = np.log(self.market_size_median / lot)
        p[E.P_MO_SIGMA] = self.market_size_sigma
        p[E.P_MO_CAP] = self.market_size_cap / lot
        p[E.P_WALK] = self.walk_ticks
        p[E.P_THETA] = self.theta_ticks
        p[E.P_SWEEP] = self.p_sweep
        p[E.P_KAPPA] = self.kappa
        p[E.P_INFORMED] = np.log(self.informed_size_mult)
        p[E.P_CANCEL_SHARE] = self.cancel_share
        p[E.P_UID_INC] = uid_inc
        p[E.P_BBO] = p_bbo
        p[E.P_SPAN] = self.cancel_span
        p[E.P_ARB_REACT] = self.arb_react
        return p


@dataclass(frozen=True)
class Profile:
    """How much the exchange publishes per day.

    ``snapshot_every_min``: minutes between intraday REST snapshots (None: only the opening one,
    and only where the caller asks for it). ``d20_ms``: depth20 cadence (0 disables the stream).
    ``bbo_share``: share of best-bid/offer changes published as bookTicker.
    """

    name: str
    event_rate: float  # mean order events per second
    msg_ms: int  # depth message window
    d20_ms: int
    bbo_share: float
    snapshot_every_min: float | None = 60.0
    truth_depth: int = 20
    gzip_level: int = 6
    warmup_events: int = 300_000
    vol_scale: float = 1.0  # scales daily and intraday volatility (see the demo profile)
    model: Model = field(default_factory=Model)

    def with_overrides(self, **overrides: Any) -> Profile:
        """Override profile fields and, by name, model fields (e.g. ``window_ticks=800``)."""
        model_names = {f.name for f in fields(Model)}
        model_kw = {k: v for k, v in overrides.items() if k in model_names}
        prof_kw = {k: v for k, v in overrides.items() if k not in model_names}
        unknown = set(prof_kw) - {f.name for f in fields(Profile)}
        if unknown:
            raise ValueError(f"unknown simulator overrides: {sorted(unknown)}")
        out = replace(self, **prof_kw)
        if model_kw:
            out = replace(out, model=replace(out.model, **model_kw))
        return out


PROFILES: dict[str, Profile] = {
    # ~29k messages/day of 3 s windows; replays in about a second. A calm BTC (volatility x0.08):
    # a dense 0.1-tick book moving at full BTC volatility needs ~400 events/s and millions of
    # level updates a day (the real profile); the stylized facts are scale-free in volatility.
    "demo": Profile(
        name="demo",
        event_rate=12.0,
        msg_ms=3_000,
        d20_ms=15_000,
        bbo_share=0.1,
        snapshot_every_min=60.0,
        vol_scale=0.08,
        model=Model(
            window_ticks=200,
            target_orders=600,
            p_sweep=0.3,
            informed_size_mult=2.0,
            walk_ticks=40,
        ),
        warmup_events=100_000,
    ),
    # Binance USD-M BTCUSDT volume: ~1.8 M messages (48 ms windows), ~30 M level updates.
    "real": Profile(
        name="real",
        event_rate=400.0,
        msg_ms=48,
        d20_ms=100,
        bbo_share=0.25,
        snapshot_every_min=60.0,
        gzip_level=1,
    ),
}


def get_profile(profile: str | Profile, **overrides: Any) -> Profile:
    base = profile if isinstance(profile, Profile) else PROFILES.get(profile)
    if base is None:
        raise ValueError(f"unknown profile {profile!r}; known: {sorted(PROFILES)}")
    return base.with_overrides(**overrides) if overrides else base

"""The one resource: where a day's capture comes from (a seam for fault drills and tests)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import polars as pl

from obpipeline.defs import sources
from obpipeline.defs.config import InstrumentConfig
from obpipeline.sources.binance import Capture

LinesHook = Callable[[pl.DataFrame, date], pl.DataFrame]


class DaySource:
    """Loads one UTC day of canonical frames for a configured instrument.

    ``lines_hook(lines, day) -> lines`` may rewrite a simulator day's capture lines before they
    are parsed: fault injection for tests and alerting drills, without touching the library.
    """

    def __init__(self, lines_hook: LinesHook | None = None) -> None:
        self.lines_hook = lines_hook

    def load(self, inst: InstrumentConfig, day: date, depth: int) -> Capture:
        return sources.load_day(inst, day, depth, self.lines_hook)

"""The one resource: where a day's capture comes from (a seam for fault drills and tests)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import polars as pl

from obpipeline.sources.day import DayRequest, ingest_day
from obpipeline.sources.ingest import Ingest

LinesHook = Callable[[pl.DataFrame, date], pl.DataFrame]


class DaySource:
    """Stages one UTC day of ingest datasets for a configured instrument (``sources.day``).

    ``lines_hook(lines, day) -> lines`` may rewrite a day's capture lines (batch by batch) before
    they are parsed: fault injection for tests and alerting drills, without touching the library.
    """

    def __init__(self, lines_hook: LinesHook | None = None) -> None:
        self.lines_hook = lines_hook

    def ingest(self, req: DayRequest) -> Ingest:
        hook = self.lines_hook
        day_hook = None if hook is None else (lambda lines: hook(lines, req.day))
        return ingest_day(req, day_hook)

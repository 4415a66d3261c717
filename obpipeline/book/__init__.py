"""Order-book replay: sequencing rules, the reference replayer and the compiled engine.

Kept free of heavy imports (Polars, numba load on first replay) so that the command line starts
fast: ``obpipeline --help`` needs only the names below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

    from obpipeline.book.stream import Book, ReplayResult
    from obpipeline.instruments import Instrument

# "engine": the compiled numba loop (book/engine.py), the production path.
# "reference": the SortedDict oracle (book/replayer.py), slow and obviously correct.
ENGINES = ("engine", "reference")
DEFAULT_ENGINE = "engine"
DEFAULT_DEPTH = 20  # levels per side kept in book_snapshots (``schemas.DEFAULT_DEPTH``)


def replay(
    events: pl.DataFrame,
    instrument: Instrument,
    depth: int = DEFAULT_DEPTH,
    checkpoint: Book | None = None,
    engine: str = DEFAULT_ENGINE,
) -> ReplayResult:
    """Replay raw_book_events into book_snapshots with the chosen engine (same contract for all)."""
    if engine == "engine":
        from obpipeline.book.engine import replay as run
    elif engine == "reference":
        from obpipeline.book.replayer import replay as run
    else:
        raise ValueError(f"unknown engine {engine!r}; choose from {ENGINES}")
    return run(events, instrument, depth, checkpoint)

"""Golden comparison by arrival time, for references that carry no update id (Tardis).

Tardis's ``book_snapshot_N`` and ``quotes`` rows are stamped with the ``local_timestamp`` of the
message after which Tardis took them, not with an update id, so ``golden.py``'s id join cannot
be used. The rule here:

* A reference with local time ``t`` is **aligned** with message ``j``: the last book_snapshots
  row, in message order, whose ``ts_local <= t`` (``ts_local`` made non-decreasing by a running
  maximum first, so one late clock reading cannot reorder the search).
* It **matches** if it equals, exactly, the valid book after message ``j``, ``j - 1`` or
  ``j + 1`` (±1 message: a clock tie, or a reference stamped just before/after its message).
  Offset 0 is tried first; ``offset`` tells which one matched.
* It is **compared** (counted as aligned) when ``j`` exists and at least one of the three rows is
  valid; references before the first message or next to invalid rows only are not compared.
  Mismatches keep the reference and the book at offset 0 side by side.

Equality is on prices and sizes as exact decimals; a level absent on both sides is equal. A
``book_snapshot_N`` record is compared on its first ``min(N, depth)`` levels. Tardis writes a
snapshot row only when the top N changed, and a quote only when the top of book changed, so
on a faithful replay offset 0 matches every one of them.
"""

from __future__ import annotations

import polars as pl

from obpipeline import schemas
from obpipeline.fidelity.golden import GoldenComparison

OFFSETS = (0, -1, 1)


def _book(snapshots: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    return snapshots.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("pos"),
        pl.col("ts_local").dt.epoch("ns").cum_max().alias("t"),
        "is_valid",
        *names,
    )


def align(
    snapshots: pl.DataFrame,
    references: pl.DataFrame,
    pairs: list[tuple[str, str, int]],
) -> pl.DataFrame:
    """Per reference (input order): ``pos`` (aligned row j or null), ``aligned``, ``offset``.

    ``pairs`` are (reference column, book column, level) compared with exact equality; a pair is
    skipped for references whose ``levels`` column (if any) is below its level.
    """
    book_cols = sorted({b for _, b, _ in pairs})
    book = _book(snapshots, book_cols)
    refs = references.with_row_index("ref").with_columns(
        pl.col("ts_local").dt.epoch("ns").alias("t_ref")
    )
    has_levels = "levels" in refs.columns
    joined = (
        refs.sort("t_ref")
        .join_asof(book.select("t", "pos"), left_on="t_ref", right_on="t", strategy="backward")
        .sort("ref")
    )
    valid_book = (
        book.filter(pl.col("is_valid"))
        .drop("t", "is_valid")
        .rename({c: f"{c}__b" for c in book_cols})
        .with_columns(pl.lit(True).alias("__hit"))
    )
    ref_cols = sorted({r for r, _, _ in pairs})
    matched_cols, present_cols = [], []
    for o in OFFSETS:
        cand = joined.select(
            "ref",
            (pl.col("pos") + o).alias("pos_o"),
            *ref_cols,
            *(["levels"] if has_levels else []),
        ).join(
            valid_book,
            left_on="pos_o",
            right_on="pos",
            how="left",
            maintain_order="left",
        )
        present = pl.col("__hit").fill_null(False)
        equal = pl.all_horizontal(
            pl.col(r).eq_missing(pl.col(f"{b}__b"))
            | (pl.col("levels") < level if has_levels else pl.lit(False))
            for r, b, level in pairs
        )
        res = cand.select(present.alias("present"), (present & equal).alias("match"))
        matched_cols.append(res["match"].alias(f"match_{o}"))
        present_cols.append(res["present"].alias(f"present_{o}"))
    out = joined.select("ref", "pos").with_columns(*matched_cols, *present_cols)
    offset = pl.when(pl.col("match_0")).then(0)
    for o in OFFSETS[1:]:
        offset = offset.when(pl.col(f"match_{o}")).then(o)
    return out.select(
        "pos",
        (pl.col("pos").is_not_null() & pl.any_horizontal(f"present_{o}" for o in OFFSETS)).alias(
            "aligned"
        ),
        offset.otherwise(None).cast(pl.Int8).alias("offset"),
    )


def _comparison(
    kind: str,
    snapshots: pl.DataFrame,
    references: pl.DataFrame,
    pairs: list[tuple[str, str, int]],
) -> GoldenComparison:
    if references.height == 0:
        return GoldenComparison(kind, 0, 0, 0, references.head(0))
    a = align(snapshots, references, pairs)
    compared = int(a["aligned"].sum())
    matched = int((a["aligned"] & a["offset"].is_not_null()).sum())
    book_cols = sorted({b for _, b, _ in pairs})
    book = _book(snapshots, book_cols).select("pos", *book_cols)
    mismatches = (
        pl.concat([references, a], how="horizontal")
        .filter(pl.col("aligned") & pl.col("offset").is_null())
        .join(book, on="pos", how="left", suffix="_book", maintain_order="left")
    )
    return GoldenComparison(kind, references.height, compared, matched, mismatches)


def compare_depth(snapshots: pl.DataFrame, golden_depth: pl.DataFrame) -> GoldenComparison:
    """``book_snapshot_N`` records against the book within ±1 message of their arrival time."""
    depth = min(schemas.depth_of(snapshots), schemas.depth_of(golden_depth))
    pairs = []
    for group in schemas.level_names(depth):
        pairs += [(n, n, int(n.rsplit("_", 1)[1])) for n in group]
    return _comparison("book_snapshot", snapshots, golden_depth, pairs)


def compare_bbo(snapshots: pl.DataFrame, golden_bbo: pl.DataFrame) -> GoldenComparison:
    """``quotes`` / ``book_ticker`` records against level 1 within ±1 message of their time."""
    pairs = [
        ("bid_price", "bid_price_1", 1),
        ("bid_size", "bid_size_1", 1),
        ("ask_price", "ask_price_1", 1),
        ("ask_size", "ask_size_1", 1),
    ]
    return _comparison("quotes", snapshots, golden_bbo, pairs)


def offset_counts(snapshots: pl.DataFrame, golden: pl.DataFrame) -> dict[str, int]:
    """How many references matched at offset 0 / -1 / +1, and how many were not aligned."""
    if "levels" in golden.columns:
        depth = min(schemas.depth_of(snapshots), schemas.depth_of(golden))
        pairs = [(n, n, int(n.rsplit("_", 1)[1])) for g in schemas.level_names(depth) for n in g]
    else:
        pairs = [
            ("bid_price", "bid_price_1", 1),
            ("bid_size", "bid_size_1", 1),
            ("ask_price", "ask_price_1", 1),
            ("ask_size", "ask_size_1", 1),
        ]
    a = align(snapshots, golden, pairs)
    return {
        "offset_0": int((a["offset"] == 0).sum()),
        "offset_-1": int((a["offset"] == -1).sum()),
        "offset_+1": int((a["offset"] == 1).sum()),
        "not_aligned": int((~a["aligned"]).sum()),
    }

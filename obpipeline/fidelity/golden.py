"""Exact comparison of reconstructed books with what the exchange published (golden samples).

Alignment is by update id, never by time: a golden record stamped ``u`` is compared with the
valid book_snapshots row whose ``last_update_id`` is ``u`` (the book after that message). A
record whose ``u`` falls inside a message, or on a row that is not valid, is not aligned and not
compared; the aligned counts are reported so "0 mismatches of 0 compared" cannot pass for proof.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from obpipeline import schemas


@dataclass
class GoldenComparison:
    kind: str
    records: int  # golden records in the input
    compared: int  # aligned with a valid book row and compared
    matched: int
    mismatches: pl.DataFrame  # one row per mismatching record, with both sides
    time_mismatched: int = 0  # this simple comparison does not check times (see fidelity.exact)

    @property
    def mismatched(self) -> int:
        return self.mismatches.height


def _valid_rows(snapshots: pl.DataFrame) -> pl.DataFrame:
    return snapshots.filter(pl.col("is_valid")).unique(
        "last_update_id", keep="last", maintain_order=True
    )


def compare_bbo(snapshots: pl.DataFrame, golden_bbo: pl.DataFrame) -> GoldenComparison:
    """bookTicker best bid/ask (price and size) against level 1 of the book at the same update id."""
    book = _valid_rows(snapshots).select(
        "last_update_id", "bid_price_1", "bid_size_1", "ask_price_1", "ask_size_1"
    )
    joined = golden_bbo.join(book, left_on="update_id", right_on="last_update_id", how="inner")
    equal = pl.all_horizontal(
        pl.col(g).eq_missing(pl.col(b))
        for g, b in (
            ("bid_price", "bid_price_1"),
            ("bid_size", "bid_size_1"),
            ("ask_price", "ask_price_1"),
            ("ask_size", "ask_size_1"),
        )
    )
    mismatches = joined.filter(~equal)
    return GoldenComparison(
        "bookTicker",
        golden_bbo.height,
        joined.height,
        joined.height - mismatches.height,
        mismatches,
    )


def compare_depth(snapshots: pl.DataFrame, golden_depth: pl.DataFrame) -> GoldenComparison:
    """Partial-book records (depth5/10/20) against the same levels of the book at the same update id."""
    depth = min(schemas.depth_of(snapshots), schemas.depth_of(golden_depth))
    names = [n for group in schemas.level_names(depth) for n in group]
    book = _valid_rows(snapshots).select("last_update_id", *names)
    joined = golden_depth.select("update_id", "levels", *names).join(
        book, left_on="update_id", right_on="last_update_id", how="inner", suffix="_book"
    )
    level = {n: int(n.rsplit("_", 1)[1]) for n in names}
    equal = pl.all_horizontal(
        (pl.col(n).eq_missing(pl.col(n + "_book")) | (pl.col("levels") < level[n])) for n in names
    )
    mismatches = joined.filter(~equal)
    return GoldenComparison(
        "depth", golden_depth.height, joined.height, joined.height - mismatches.height, mismatches
    )


def summary(comparisons: list) -> dict[str, int]:
    """CLI totals (compared / matched / mismatched / time mismatched, + per kind) of golden or exact comparisons."""
    out = {
        "golden_records": sum(c.records for c in comparisons),
        "golden_compared": sum(c.compared for c in comparisons),
        "golden_matched": sum(c.matched for c in comparisons),
        "golden_mismatched": sum(c.mismatched for c in comparisons),
        "golden_time_mismatched": sum(c.time_mismatched for c in comparisons),
    }
    for c in comparisons:
        out[f"golden_{c.kind}_compared"] = c.compared
        out[f"golden_{c.kind}_mismatched"] = c.mismatched
    return out

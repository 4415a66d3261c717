"""What the Dagster fidelity assets call: one function per asset, no Dagster import here.

``fidelity_day`` is the ``fidelity_metrics`` asset of one day: Gate A over the lake's datasets
(``lakeio.evaluate_lake_day``, with the A1 + A2 results the book_snapshots step stored: the day is
compared once), Gate C over the window of days ending at D, and the outcomes of three asset
checks:

=========  ========  ==========================================================================
check      severity  passes when
=========  ========  ==========================================================================
gate_a     ERROR     no A0 (integrity) or A1 (exact golden agreement) check failed
gate_a2    ERROR     no A2 (materiality on the aligned pairs) check failed
gate_c     WARN      no Gate C (realism) figure is outside its range (never blocks)
=========  ========  ==========================================================================

``fidelity_report_day`` is the ``fidelity_report`` asset: the per-day summary table of every day
up to D, its Markdown for the Dagster UI and the HTML report (``report.build_report``).
"""

from __future__ import annotations

import functools
import math
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from obpipeline import features as F
from obpipeline import lake
from obpipeline.fidelity import checksum_gate, gates, lakeio, realism
from obpipeline.fidelity.config import Thresholds, thresholds_for
from obpipeline.fidelity.frames import batches
from obpipeline.fidelity.gates import FAIL, NOT_GOLDEN, WARN, GateResult, golden_counts
from obpipeline.fidelity.stats import clopper_pearson_upper
from obpipeline.verdict import Severity, Status, Verdict, status_legend

WALK_BATCH_ROWS = 1 << 16  # book_snapshots rows decoded at once for the walk sample (~90 MB)
WINDOW_CACHE_DAYS = 8  # Gate C's 7-day window, and the day that joins it
GATES = {"gate_a": ("A0", "A1"), "gate_a2": ("A2",), "gate_c": ("C",)}
_LEGEND = (
    "\n\nEach gate check has a status, counted in the metadata (`n_<status>`) with its figures "
    "by name (`<gate>_<check>`, `_threshold`, and its own metrics):\n" + status_legend()
)
CHECKS: dict[str, tuple[Severity, str]] = {
    "gate_a": (Severity.ERROR, "Gate A0 integrity and A1 exact agreement with every golden "
               "record (mismatch-rate upper bound at 95 %, aligned records, match rate)" + _LEGEND),
    "gate_a2": (Severity.ERROR, "Gate A2 materiality: paired feature and book-walk deltas"
                + _LEGEND),
    "gate_c": (Severity.WARN, "Gate C realism over the days up to D (statistics and their "
               "intervals; warning only)" + _LEGEND),
}  # fmt: skip


@dataclass
class DayAssetResult:
    metrics: pl.DataFrame  # the long fidelity_metrics frame of the day (Gate A + Gate C rows)
    results: list[GateResult]
    checks: list[Verdict]
    metadata: dict[str, Any]  # flat figures for the asset's materialization metadata


def _number(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def gate_figures(results: list[GateResult]) -> dict[str, float]:
    """Every numeric figure of ``results`` by name (``<gate>_<check>[_<metric>]``): what plots."""
    out: dict[str, float] = {}
    for r in results:
        name = f"{r.gate}_{r.check}"
        for suffix, v in (("", r.value), ("_threshold", r.threshold), *(
            (f"_{m}", x) for m, x in r.metrics.items()
        )):  # fmt: skip
            if (f := _number(v)) is not None:
                out[name + suffix] = f
    return out


def gate_verdict(name: str, results: list[GateResult]) -> Verdict:
    """One Dagster check (``gate_a``, ``gate_a2``, ``gate_c``) over its gates' results."""
    severity, what = CHECKS[name]
    mine = [r for r in results if r.gate in GATES[name]]
    bad = [r for r in mine if r.status in (FAIL, WARN)]
    counts = {f"n_{s.value}": sum(r.status == s.value for r in mine) for s in Status}
    if not bad:
        desc = (
            f"{len(mine)} checks, none failed or warned ({counts['n_insufficient']} insufficient)"
        )
    else:
        desc = "; ".join(f"{r.gate}:{r.check} {r.detail or r.status}" for r in bad[:8])
    meta: dict[str, Any] = {"checks": len(mine), **counts, **gate_figures(mine)}
    meta["statuses"] = {f"{r.gate}:{r.check}": r.status for r in mine}
    return Verdict(name, not bad, severity, desc, meta)


def day_walk(snapshots: Path, t: Thresholds) -> pl.DataFrame:
    """A day's book-walk costs (Gate C's impact exponent) from an even sample of ~20 000
    book_snapshots rows: the median cost needs no more. gate_c and the HTML report both use it,
    so they judge the same Gate C checks."""
    return _day_walk(*_identity(snapshots), t.walk_sizes)


def _identity(path: Path) -> tuple[str, int, int]:
    """A file's cache key: path, size and modification time (a rewritten day is read again)."""
    st = Path(path).stat()
    return str(Path(path).resolve()), st.st_size, st.st_mtime_ns


# Gate C's window re-reads six of its seven days every day: a run of consecutive days reads each
# day's inputs once (~1 CPU-s a day for the walk sample of a real day, which decodes every column)
@functools.lru_cache(maxsize=WINDOW_CACHE_DAYS)
def _day_walk(path: str, _size: int, _mtime_ns: int, walk_sizes: tuple[float, ...]) -> pl.DataFrame:
    pf = pq.ParquetFile(path)
    step = max(1, pf.metadata.num_rows // 20_000)
    # rows 0, step, 2 step, ... (``gather_every``), taken batch by batch: a lazy gather_every
    # decodes the whole day first (1.3 GB for a real day)
    parts, offset = [], 0
    for batch in batches(path, pf.schema_arrow.names, WALK_BATCH_ROWS):
        parts.append(batch.gather_every(step, offset=(-offset) % step))
        offset += batch.height
    sample = pl.concat(parts) if parts else pl.read_parquet(path, n_rows=0)
    return F.book_walk(sample, walk_sizes)


@functools.lru_cache(maxsize=WINDOW_CACHE_DAYS)
def _day_mids(path: str, _size: int, _mtime_ns: int, whole_seconds: bool) -> pl.DataFrame:
    if whole_seconds:  # mid grids need L1 only, and only the last row of each second
        return realism.mid_rows(path)
    return pl.read_parquet(path, columns=realism.L1_COLUMNS)


@functools.lru_cache(maxsize=WINDOW_CACHE_DAYS)
def _day_grid(path: str, _size: int, _mtime_ns: int) -> pl.DataFrame:
    names = pq.read_schema(path).names
    return pl.read_parquet(path, columns=[c for c in realism.GRID_COLUMNS if c in names])


def window_inputs(
    root: Path, venue: str, symbol: str, days: list[date], t: Thresholds
) -> tuple[list[tuple[str, pl.DataFrame]], dict[str, pl.DataFrame], dict[str, pl.DataFrame]]:
    """Gate C's inputs for ``days`` (each materialised): per day its mid rows, its 1-s features
    grid (absent days left out) and its book-walk sample; gate_c and the HTML report read them
    here, so they judge the same figures."""
    pairs, grids, walks = [], {}, {}
    whole_seconds = F.parse_duration(t.return_every) % 1_000_000_000 == 0
    for d in days:
        path = lake.partition_path("book_snapshots", venue, symbol, d, root)
        pairs.append((str(d), _day_mids(*_identity(path), whole_seconds)))
        walks[str(d)] = day_walk(path, t)
        g = lake.partition_path("book_features_1s", venue, symbol, d, root)
        if g.exists():
            grids[str(d)] = _day_grid(*_identity(g))
    return pairs, grids, walks


def realism_window(
    root: Path, venue: str, symbol: str, day: date, t: Thresholds, days: int
) -> realism.RealismReport | None:
    """Gate C over the materialised days in (D - days, D] (1-s feature grids when written)."""
    have = [
        d
        for d in lakeio.lake_days(root, "book_snapshots", venue, symbol)
        if day - timedelta(days=days) < d <= day
    ]
    if not have:
        return None
    pairs, grids, walks = window_inputs(root, venue, symbol, have, t)
    if len(grids) < len(have):  # profiles need the grids: without them, returns-only facts
        grids = {}
    rep = realism.realism_report(pairs, t, grids, walks) if grids else None
    if rep is None:
        rep = _returns_only(pairs, t)
    return rep


def _returns_only(pairs, t: Thresholds) -> realism.RealismReport:
    """Gate C from mid returns alone (no feature grids in the lake yet)."""
    import numpy as np

    r = np.concatenate([realism.log_returns(realism.mid_grid(s, t.return_every)) for _, s in pairs])
    lags = min(t.acf_lags, max(1, r.size // 4))
    rep = realism.RealismReport(
        n_returns=int(r.size),
        days=[d for d, _ in pairs],
        hill=realism.hill_tails(r[r != 0], t.hill_fractions, samples=t.bootstrap_samples),
        acf_abs=realism.acf(np.abs(r), lags),
        acf_sq=realism.acf(r**2, lags),
        acf_r=realism.acf(r, lags),
        lb_r=realism.ljung_box(r, t.ljung_box_lags),
        lb_sq=realism.ljung_box(r**2, t.ljung_box_lags),
        garch=realism.fit_garch_t(r),
        impact=(float("nan"),) * 3,  # type: ignore[arg-type]
        impact_points=pl.DataFrame(),
        profiles=pl.DataFrame(),
        day_figures=pl.DataFrame(),
        signature={},
        results=[],
    )
    rep.results = realism.realism_results(rep, t)
    return rep


def fidelity_day(
    root: Path | str,
    venue: str,
    symbol: str,
    day: date | str,
    thresholds: Thresholds | None = None,
    realism_days: int = 7,
    reuse_golden: bool = True,
) -> DayAssetResult:
    """The fidelity_metrics asset for one day: metrics frame, verdicts, check outcomes, metadata.

    ``reuse_golden``: Gates A1 + A2 from the stored ``golden_results`` when there are any
    (``lakeio.evaluate_lake_day``); the metrics and metadata are the same either way."""
    root, d = Path(root), date.fromisoformat(str(day))
    t = thresholds or thresholds_for(venue)
    fid = lakeio.evaluate_lake_day(root, venue, symbol, d, t, reuse_golden=reuse_golden)
    checksums = checksum_gate.lake_checksum_results(root, venue, symbol, d, t)
    gate_a = [*fid.results, *checksums]  # Gates A0, A1, A2 (Gate C never blocks)
    results = list(gate_a)
    rep = realism_window(root, venue, symbol, d, t, realism_days)
    if rep is not None:
        results += rep.results
    from obpipeline.fidelity.gates import metrics_frame

    metrics = metrics_frame(results)
    checks = [gate_verdict(name, results) for name in GATES]
    f = fid.integrity.figures
    golden = golden_counts(fid.kinds)
    compared, mismatched = golden["golden_compared"], golden["golden_mismatched"]
    records = golden["golden_records"]
    passed = gates.gate_passed(gate_a)
    meta: dict[str, Any] = {
        "gate_a_passed": passed,
        "integrity_ok": passed,  # name kept for the demo CLI and earlier readers
        "failed_checks": [f"{r.gate}:{r.check}" for r in gates.failures(gate_a)],
        **golden,
        "golden_aligned_fraction": compared / records if records else 0.0,
        "mismatch_rate_upper95": clopper_pearson_upper(mismatched, compared),
        "gaps": int(f["gaps"]),
        "resyncs": int(f["resyncs"]),
        "invalid_rows": int(f["invalid_rows"]),
        "gap_invalid_seconds": float(f["gap_invalid_seconds"]),
        "crossed": int(f["crossed"]),
        "duplicates": int(f["duplicates"]),
    }
    for r in checksums:  # the venue's per-message checksums (A1 checksum)
        meta |= {f"checksum_{m}": int(r.metrics[m]) for m in ("compared", "matched", "mismatched")}
        meta["checksum_cp_upper"] = r.metrics["cp_upper"]
    for c in fid.kinds:
        meta[f"{c.kind}_aligned"] = c.aligned
        meta[f"{c.kind}_incidents"] = c.incidents
    if rep is not None:
        meta["realism_days"] = len(rep.days)
        for h in rep.hill:
            if abs(h.fraction - 0.02) < 1e-9:
                meta[f"hill_{h.tail}_2pct"] = h.alpha
        meta["garch_persistence"] = rep.garch.persistence
    return DayAssetResult(metrics, results, checks, meta)


def daily_table(metrics: pl.DataFrame) -> pl.DataFrame:
    """One row per day from the long metrics (``collect_metrics``): verdict and key figures."""
    if metrics.height == 0:
        return pl.DataFrame(schema={"day": pl.Date, "integrity_ok": pl.Boolean})
    v = metrics.filter(pl.col("metric") == "value")

    def fig(check: str, metric: str, name: str) -> pl.DataFrame:
        return (
            metrics.filter((pl.col("check") == check) & (pl.col("metric") == metric))
            .group_by("date")
            .agg(pl.col("value").sum().alias(name))
        )

    verdict = v.group_by("date").agg(
        (~(pl.col("blocking") & (pl.col("status") == FAIL)).any()).alias("integrity_ok"),
        (pl.col("blocking") & (pl.col("status") == FAIL)).sum().alias("failed_checks"),
        (pl.col("status") == WARN).sum().alias("warnings"),
    )
    golden = (
        metrics.filter(pl.col("metric").is_in(["aligned", "mismatched", "incidents"]))
        .filter(pl.col("gate") == "A1", ~pl.col("check").is_in(NOT_GOLDEN))
        .group_by("date")
        .agg(
            pl.col("value").filter(pl.col("metric") == "aligned").sum().alias("golden_compared"),
            pl.col("value")
            .filter(pl.col("metric") == "mismatched")
            .sum()
            .alias("golden_mismatched"),
            pl.col("value").filter(pl.col("metric") == "incidents").sum().alias("incidents"),
        )
    )
    out = verdict
    for part in (
        golden,
        fig("gaps", "value", "gaps"),
        fig("gaps", "resyncs", "resyncs"),
        fig("gaps", "messages", "messages"),
        fig("gaps", "invalid_rows", "invalid_rows"),
        fig("crossed", "value", "crossed"),
    ):
        out = out.join(part, on="date", how="left")
    return out.rename({"date": "day"}).sort("day")


def fidelity_report_day(
    root: Path | str, venue: str, symbol: str, day: date | str, html_dir: Path | str | None = None
) -> tuple[pl.DataFrame, dict[str, Any], str, Path | None]:
    """The fidelity_report asset for day D: (per-day table up to D, summary, markdown, HTML path).

    The HTML report (every day of the lake for this instrument) is written to ``html_dir``
    (default ``<lake>/_reports/<venue>/<symbol>/``) as ``fidelity_report_<first>_<D>.html``
    (the days it covers, so names sort by what they hold) and, when D is the lake's newest day,
    copied to ``latest.html`` there (a stable address to bookmark).
    """
    from obpipeline.fidelity.report import build_report, report_summary

    root, d = Path(root), date.fromisoformat(str(day))
    all_metrics = lakeio.collect_metrics(root, venue, symbol, compute_missing=False)
    metrics = all_metrics.filter(pl.col("date") <= d)
    table = daily_table(metrics)
    summary = report_summary(metrics)
    summary["days_passing"] = int(table["integrity_ok"].sum()) if table.height else 0
    for k in ("messages", "gaps", "resyncs"):
        summary[k] = int(table[k].fill_null(0).sum()) if k in table.columns else 0
    lines = [
        f"### Fidelity of {venue} {symbol} up to {d}",
        "",
        f"{summary.get('days', 0)} day(s), {summary['days_passing']} passing Gate A; golden "
        f"records compared {summary.get('golden_compared', 0)}, mismatched "
        f"{summary.get('golden_mismatched', 0)}.",
        "",
        "| day | Gate A | golden compared | mismatched | incidents | gaps | warnings |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table.tail(10).iter_rows(named=True):
        lines.append(
            f"| {r['day']} | {'pass' if r['integrity_ok'] else '**FAIL**'} | "
            f"{int(r.get('golden_compared') or 0)} | {int(r.get('golden_mismatched') or 0)} | "
            f"{int(r.get('incidents') or 0)} | {int(r.get('gaps') or 0)} | "
            f"{int(r.get('warnings') or 0)} |"
        )
    out_dir = Path(html_dir) if html_dir else root / "_reports" / venue / symbol
    first = table["day"].min() if table.height else d
    html_path = build_report(
        root, out_dir / f"fidelity_report_{first}_{d}.html", venue=venue, symbol=symbol,
        compute_missing=False,
    )  # fmt: skip
    if html_path is not None and not (all_metrics.height and all_metrics["date"].max() > d):
        shutil.copyfile(html_path, out_dir / "latest.html")  # the newest day's report
    return table, summary, "\n".join(lines), html_path

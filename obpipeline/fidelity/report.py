"""The fidelity report: one static HTML page over every materialised day of the lake.

What a stakeholder sees, top to bottom: the verdict per day (Gate A: integrity, exact agreement
with every golden record, materiality), exact-match evidence over days with its Clopper–Pearson
bound, the mutation proof (Gate B) when a mutation run is available, and the realism report
(Gate C: tails, volatility clustering, GARCH, profiles against earlier days, book-walk costs).
Plots are matplotlib PNGs embedded as base64, so the file is self-contained (mail it, archive it).

    build_report(Path("data/lake"), Path("report.html"))            # every instrument
    build_report(root, out, venue="binance-usdm", symbol="BTCUSDT")  # one
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from obpipeline import features as F  # noqa: E402
from obpipeline import lake  # noqa: E402
from obpipeline.fidelity import lakeio, realism  # noqa: E402
from obpipeline.fidelity.config import Thresholds, thresholds_for  # noqa: E402
from obpipeline.fidelity.gates import FAIL, INSUFFICIENT, NOT_GOLDEN, PASS, SKIPPED, WARN  # noqa: E402

KIND_ORDER = ("bookTicker", "depth", "rest", "book_snapshot", "quotes")
SHORT_CHECK = {  # compact labels for the mutation table
    "snapshot_consistency": "snapshot vs diffs",
    "bookTicker_time": "bbo time",
    "depth_time": "depth time",
    "uncross_repairs": "uncross",
    "snapshot_mismatches": "REST",
    "gap_invalid_fraction": "invalid time",
}
POOLED = ("touch", "top")  # the day's pooled A1 evidence (not golden kinds: never summed)
COLORS = {
    "bookTicker": "#1f77b4",
    "depth": "#2ca02c",
    "rest": "#9467bd",
    "book_snapshot": "#ff7f0e",
    "quotes": "#8c564b",
}
STATUS_CLASS = {PASS: "ok", FAIL: "bad", INSUFFICIENT: "meh", WARN: "warn", SKIPPED: "skip"}


# --------------------------------------------------------------------------------------------
# small helpers


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _img(fig, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(fig)}">'


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    return html.escape(str(v))


def _badge(status: str | None) -> str:
    s = status or "–"
    return f'<span class="badge {STATUS_CLASS.get(s, "skip")}">{html.escape(s)}</span>'


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    th = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


# --------------------------------------------------------------------------------------------
# Gate A over days


@dataclass
class InstrumentSection:
    venue: str
    symbol: str
    metrics: pl.DataFrame  # long, with date
    thresholds: Thresholds
    realism: realism.RealismReport | None
    html: str = ""


def _verdicts(metrics: pl.DataFrame) -> pl.DataFrame:
    return metrics.filter(pl.col("metric") == "value")


def _metric(metrics: pl.DataFrame, check: str, metric: str) -> pl.DataFrame:
    return metrics.filter((pl.col("check") == check) & (pl.col("metric") == metric)).select(
        "date", "value"
    )


def day_table(metrics: pl.DataFrame) -> str:
    """One row per day: Gate A verdict, golden evidence per kind, failed checks."""
    v = _verdicts(metrics)
    kinds = [k for k in KIND_ORDER if k in set(v["check"].to_list())]
    header = ["day", "Gate A", "A0", "A1 touch", "A1 top-N", "A2"]
    header += [f"{k}<br>aligned / mism. / inc." for k in kinds]
    header += ["flagged checks"]
    rows = []
    for (d,), part in v.sort("date").group_by("date", maintain_order=True):
        blocking = part.filter(pl.col("blocking"))
        failed = blocking.filter(pl.col("status") == FAIL)
        gate = PASS if failed.height == 0 else FAIL

        def gate_status(g: str, part=part) -> str:
            s = set(part.filter(pl.col("gate") == g)["status"].to_list())
            for cand in (FAIL, INSUFFICIENT, PASS):
                if cand in s:
                    return cand
            return SKIPPED

        def scope_status(check: str, part=part) -> str:
            hit = part.filter((pl.col("gate") == "A1") & (pl.col("check") == check))
            s = hit["status"][0] if hit.height else SKIPPED
            kinds_failed = part.filter((pl.col("gate") == "A1") & (pl.col("status") == FAIL))
            return FAIL if kinds_failed.height and s != PASS and s != SKIPPED else s

        row = [str(d), _badge(gate), _badge(gate_status("A0"))]
        row += [_badge(scope_status("touch")), _badge(scope_status("top"))]
        row.append(_badge(gate_status("A2")))
        day_m = metrics.filter(pl.col("date") == d)
        for k in kinds:
            vals = {
                m: day_m.filter((pl.col("check") == k) & (pl.col("metric") == m))["value"]
                for m in ("aligned", "mismatched", "incidents")
            }
            cell = " / ".join(_fmt(int(x[0])) if x.len() else "–" for x in vals.values())
            row.append(cell)
        flagged = part.filter(pl.col("status").is_in([FAIL, WARN]))
        row.append(
            ", ".join(f"{g}:{c}" for g, c in flagged.select("gate", "check").iter_rows()) or "–"
        )
        rows.append(row)
    return _table(header, rows, "days")


def plot_golden_over_days(metrics: pl.DataFrame, t: Thresholds) -> str:
    v = _verdicts(metrics)
    kinds = [k for k in KIND_ORDER if k in set(v["check"].to_list())]
    if not kinds:
        return "<p>No golden records in the lake.</p>"
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for k in kinds:
        al = _metric(metrics, k, "aligned").sort("date")
        mr = _metric(metrics, k, "matched").sort("date")
        ub = v.filter(pl.col("check") == k).select("date", "value").sort("date")
        if al.height == 0:
            continue
        x = al["date"].to_list()
        axes[0].plot(x, np.maximum(al["value"].to_numpy(), 0.5), "o-", color=COLORS.get(k), label=k)
        rate = mr["value"].to_numpy() / np.maximum(al["value"].to_numpy(), 1)
        axes[1].plot(x, rate * 100, "o-", color=COLORS.get(k), label=k)
        axes[2].plot(ub["date"].to_list(), ub["value"].to_numpy() * 100, "o-", color=COLORS.get(k))
    axes[0].set_yscale("log")
    axes[0].set_title("aligned golden records per day")
    axes[1].set_title("exact match rate (%)")
    axes[1].set_ylim(min(99.0, axes[1].get_ylim()[0]), 100.2)
    axes[2].set_yscale("log")
    axes[2].axhline(t.max_mismatch_rate_top * 100, ls="--", color="k", lw=1, label="top-N limit")
    axes[2].axhline(t.max_mismatch_rate_touch * 100, ls=":", color="k", lw=1, label="touch limit")
    axes[2].set_title("95 % upper bound of the mismatch rate (%)")
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        ax.grid(alpha=0.3)
    return _img(fig, "golden agreement over days")


def plot_integrity_over_days(metrics: pl.DataFrame) -> str:
    figs = {
        "gaps": _metric(metrics, "gaps", "value"),
        "crossed": _metric(metrics, "crossed", "value"),
        "uncross_repairs": _metric(metrics, "uncross_repairs", "value"),
        "duplicates": _metric(metrics, "duplicates", "value"),
    }
    inv = _metric(metrics, "gaps", "gap_invalid_seconds")
    start = _metric(metrics, "gaps", "startup_invalid_seconds")
    if all(f.height == 0 for f in figs.values()):
        return ""
    fig, axes = plt.subplots(1, 2, figsize=(15, 3.2))
    width = 0.2
    days = sorted(set().union(*[set(f["date"].to_list()) for f in figs.values()]))
    pos = np.arange(len(days))
    for i, (name, f) in enumerate(figs.items()):
        vals = dict(f.iter_rows())
        axes[0].bar(pos + (i - 1.5) * width, [vals.get(d, 0) for d in days], width, label=name)
    axes[0].set_xticks(pos, [str(d) for d in days], rotation=30, fontsize=8)
    if not any(any(dict(f.iter_rows()).values()) for f in figs.values()):
        axes[0].text(0.5, 0.5, "all zero on every day", transform=axes[0].transAxes,
                     ha="center", va="center", fontsize=12, color="#155c15")  # fmt: skip
    axes[0].set_title("A0 counts per day (0 on a faithful day)")
    axes[0].legend(fontsize=8)
    for f, label in ((inv, "after a gap"), (start, "startup sync")):
        if f.height:
            f = f.sort("date")
            axes[1].plot(f["date"].to_list(), f["value"].to_numpy(), "o-", label=label)
    axes[1].set_title("seconds with an invalid book")
    axes[1].legend(fontsize=8)
    axes[1].tick_params(axis="x", rotation=30, labelsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    return _img(fig, "integrity over days")


def per_level_table(metrics: pl.DataFrame) -> str:
    """Per-level accuracy, summed over days, for kinds covering more than the touch."""
    acc = metrics.filter(pl.col("metric").str.starts_with("accuracy_L"))
    if acc.height == 0:
        return ""
    rows = []
    for (kind,), part in acc.group_by("check", maintain_order=True):
        levels = part.with_columns(
            pl.col("metric").str.extract(r"L(\d+)").cast(pl.Int32).alias("L")
        )
        worst = levels.group_by("L").agg(pl.col("value").min()).sort("L")
        n = worst.height
        below = worst.filter(pl.col("value") < 1.0)
        if below.height == 0:
            cells = f"L1–L{n}: 100 % on every day" if n > 1 else "L1: 100 % on every day"
        else:
            cells = (
                " ".join(
                    f"L{r['L']}: {r['value'] * 100:.3f} %" for r in below.iter_rows(named=True)
                )
                + f" (other levels of L1–L{n}: 100 %)"
            )
        rows.append([html.escape(str(kind)), cells])
    return _table(["golden kind", "worst day's accuracy per level"], rows, "levels")


# --------------------------------------------------------------------------------------------
# Gate B


def mutation_section(mutation: dict | None) -> str:
    if not mutation:
        return (
            "<p class='note'>No mutation run found. Run <code>obpipeline mutation-test --json "
            "&lt;lake&gt;/_fidelity/mutation.json</code> to add the proof that the gates catch "
            "every injected fault.</p>"
        )
    runs = mutation.get("runs", [])
    s = mutation.get("summary", {})
    datasets = list(dict.fromkeys(r["dataset"] for r in runs))
    mutants = list(dict.fromkeys(r["mutant"] for r in runs))
    by = {(r["dataset"], r["mutant"]): r for r in runs}

    def cell(r: dict | None) -> str:
        if r is None:
            return "–"
        if r["mutant"] == "clean":
            return _badge(PASS) if r["passed"] else '<span class="badge bad">false alarm</span>'
        if not r["applicable"]:
            return '<span class="badge skip" title="nothing to mutate in this input">n/a</span>'
        if r["detected"]:
            tip = html.escape("failed: " + ", ".join(r.get("failed_checks", [])))
            check = (r.get("first_check") or "").split(":", 1)[-1]
            check = html.escape(SHORT_CHECK.get(check, check))
            lat, msgs = r.get("latency_seconds"), r.get("latency_messages")
            where = f"{lat:.2f} s" if lat is not None else ""
            if msgs is not None:
                where += f" · {msgs} msg"
            return f'<span class="badge ok" title="{tip}">{check}</span><br><small>{where}</small>'
        if r.get("undetectable"):
            why = html.escape(r["undetectable"])
            return f'<span class="badge warn" title="{why}">by design</span>'
        return '<span class="badge bad">MISSED</span>'

    def short(name: str) -> str:
        m = re.search(r"(usdm|spot|cm)/\w+?_(\d{4})(\d{2})(\d{2})", name)
        if name.startswith("sim "):
            label = "sim<br>" + html.escape(name[4:])
        elif m:
            label = f"{m.group(1)}<br>{m.group(2)}-{m.group(3)}-{m.group(4)}"
        else:
            label = html.escape(name)
        return label + ("<br><small>from D-1 ckpt</small>" if "checkpoint" in name else "")

    rows = [[html.escape(m)] + [cell(by.get((d, m))) for d in datasets] for m in mutants]
    short_names = [short(d) for d in datasets]
    head = (
        f"<p>{s.get('mutant_runs', 0)} mutant runs: <b>{s.get('detected', 0)} caught</b>, "
        f"{s.get('missed', 0)} missed, {s.get('undetectable_by_design', 0)} undetectable by "
        f"design, {s.get('not_applicable', 0)} not applicable; {s.get('clean_runs', 0)} clean "
        f"runs with <b>{s.get('false_alarms', 0)} false alarms</b>.</p>"
    )
    legend = (
        "<p class='note'>Each cell: the first check that failed and the detection latency from "
        "the first injected fault (exchange seconds · depth messages). <i>by design</i>: a "
        "uniform time shift changes no book, and spot publishes no golden record with an "
        "exchange time; <i>n/a</i>: a continuation day has no REST snapshot to make stale. "
        "Hover a cell for every failed check.</p>"
    )
    return head + legend + _table(["mutant"] + short_names, rows, "mutation")


def _find_mutation(root: Path) -> dict | None:
    for p in (root / "_fidelity" / "mutation.json", root.parent / "fidelity" / "mutation.json"):
        if p.exists():
            return json.loads(p.read_text())
    return None


# --------------------------------------------------------------------------------------------
# Gate C


def _load_realism(
    root: Path, venue: str, symbol: str, t: Thresholds, max_days: int
) -> realism.RealismReport | None:
    from obpipeline.fidelity.assets import window_inputs

    days = lakeio.lake_days(root, "book_snapshots", venue, symbol)[-max_days:]
    if not days:
        return None
    pairs, grids, walks = window_inputs(root, venue, symbol, days, t)
    for d in days:  # a day without its grid: computed from the whole day at full depth
        if str(d) not in grids:
            path = lake.partition_path("book_snapshots", venue, symbol, d, root)
            grids[str(d)] = F.grid_features(
                pl.read_parquet(path),
                every="1s",
                config=F.FeatureConfig(walk_sizes=t.walk_sizes[:1]),
            )
    return realism.realism_report(pairs, t, grids, walks)


def plot_tails(rep: realism.RealismReport, returns: np.ndarray) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(15, 3.8))
    ax = axes[0]
    for sign, name, color in ((1, "right (gains)", "#2ca02c"), (-1, "left (losses)", "#d62728")):
        x = np.sort(sign * returns[sign * returns > 0])[::-1]
        if x.size < 10:
            continue
        ccdf = np.arange(1, x.size + 1) / returns.size
        ax.loglog(x, ccdf, ".", ms=3, color=color, alpha=0.5, label=name)
        est = [h for h in rep.hill if h.tail == ("right" if sign > 0 else "left")]
        h2 = next((h for h in est if abs(h.fraction - 0.02) < 1e-9), est[0] if est else None)
        if h2 and np.isfinite(h2.alpha) and h2.k < x.size:
            xk = x[h2.k]
            xs = np.geomspace(xk, x[0], 20)
            ax.loglog(xs, (h2.k / returns.size) * (xs / xk) ** -h2.alpha, "--", color="k",
                      lw=1.5)  # fmt: skip
            ax.annotate(f"α̂ = {h2.alpha:.2f}", (xs[-1], h2.k / returns.size * (xs[-1] / xk)
                        ** -h2.alpha), color=color, fontsize=8, ha="right", va="top")  # fmt: skip
    body = np.abs(returns[returns != 0])
    if body.size:
        ax.set_xlim(left=float(np.quantile(body, 0.5)))
    ax.set_title("tails of 1-min mid returns (CCDF, upper half) with Hill fits at k = 2 %")
    ax.set_xlabel("|return|")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax = axes[1]
    fr = sorted({h.fraction for h in rep.hill})
    for j, tail in enumerate(("left", "right")):
        hs = [next(h for h in rep.hill if h.tail == tail and h.fraction == f) for f in fr]
        x = np.arange(len(fr)) + (j - 0.5) * 0.2
        a = np.array([h.alpha for h in hs])
        lo = np.array([h.boot_low if np.isfinite(h.boot_low) else h.iid_low for h in hs])
        hi = np.array([h.boot_high if np.isfinite(h.boot_high) else h.iid_high for h in hs])
        ax.errorbar(x, a, yerr=[np.maximum(a - lo, 0), np.maximum(hi - a, 0)], fmt="o", capsize=4,
                    label=f"{tail} tail")  # fmt: skip
    ax.axhspan(2, 5, color="grey", alpha=0.1, label="stylized range 2–5")
    ax.set_xticks(np.arange(len(fr)), [f"k = {f:.0%}" for f in fr])
    ax.set_title("Hill tail index with 95 % block-bootstrap intervals")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _img(fig, "tails")


def plot_acf(rep: realism.RealismReport) -> str:
    fig, ax = plt.subplots(figsize=(15, 3.4))
    lags = np.arange(1, rep.acf_abs.size)
    for series, label in ((rep.acf_abs, "|r|"), (rep.acf_sq, "r²"), (rep.acf_r, "r")):
        ax.plot(lags, series[1:], "-", lw=1.3, label=f"ACF of {label}")
    band = 1.96 / math.sqrt(max(rep.n_returns, 1))
    ax.axhspan(-band, band, color="grey", alpha=0.15, label="±1.96/√n")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("lag (minutes)")
    ax.set_title(
        f"autocorrelation of 1-min returns (n = {rep.n_returns}); Ljung–Box Q(10) on r² = "
        f"{rep.lb_sq[0]:.1f}, p = {rep.lb_sq[1]:.2g}"
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _img(fig, "acf")


PROFILE_LABELS = {
    "spread_l1_ticks": "L1 spread (ticks)",
    "spread_l5_bp": "L5 spread (bp)",
    "depth_10bp": "depth within 10 bp (both sides)",
    "imbalance_1": "L1 imbalance",
}


def plot_profiles(rep: realism.RealismReport) -> str:
    prof = rep.profiles
    if prof.height == 0:
        return ""
    days = sorted(set(prof["day"].to_list()))
    last = days[-1]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    for ax, (col, label) in zip(axes, PROFILE_LABELS.items(), strict=True):
        earlier = prof.filter(pl.col("day") != last)
        if earlier.height:
            band = realism.group_means(earlier, "hour", [col]).join(
                earlier.group_by("hour").agg(pl.col(col).min().alias("lo"),
                                             pl.col(col).max().alias("hi")),
                on="hour",
                maintain_order="left",
            )  # fmt: skip
            ax.fill_between(band["hour"], band["lo"], band["hi"], color="grey", alpha=0.25,
                            label=f"earlier days ({len(days) - 1}) range")  # fmt: skip
            ax.plot(band["hour"], band[col], color="grey", lw=1)
        cur = prof.filter(pl.col("day") == last).sort("hour")
        ax.plot(cur["hour"], cur[col], "o-", ms=3, color="#1f77b4", label=f"{last}")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("hour (UTC)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"hourly profile of {last} against the earlier days of the window", fontsize=11)
    fig.tight_layout()
    return _img(fig, "intraday profiles")


def plot_day_figures(rep: realism.RealismReport) -> str:
    f = rep.day_figures
    if f.height == 0:
        return ""
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.0))
    for ax, (col, label) in zip(axes, PROFILE_LABELS.items(), strict=True):
        part = f.filter(pl.col("figure") == col)
        x = np.arange(part.height)
        m, se = part["mean"].to_numpy(), part["se"].to_numpy()
        ax.errorbar(x, m, yerr=1.96 * np.nan_to_num(se), fmt="o", capsize=3)
        base = part["baseline_mean"].to_numpy()
        ax.plot(x, base, "--", color="grey", label="rolling baseline")
        ax.set_xticks(x, [d[5:] for d in part["day"].to_list()], rotation=45, fontsize=7)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        "daily means (± 95 %, 5-min block bootstrap) against the rolling baseline of earlier days",
        fontsize=11,
    )
    fig.tight_layout()
    return _img(fig, "daily means vs baseline")


def plot_signature_impact(rep: realism.RealismReport) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(15, 3.2))
    sig = rep.signature
    if sig:
        ks = sorted(sig)
        axes[0].plot(ks, [sig[k] for k in ks], "o-")
        axes[0].set_xscale("log")
        axes[0].set_xlabel("sampling interval (s)")
        axes[0].set_title("signature plot: realized variance per second")
        axes[0].grid(alpha=0.3)
    pts = rep.impact_points
    if pts.height:
        for side, color in (("buy", "#2ca02c"), ("sell", "#d62728")):
            p = pts.filter(pl.col("side") == side)
            axes[1].loglog(p["size"], p["slip_bp"], "o", color=color, alpha=0.6, label=side)
        y, delta, r2 = rep.impact
        if np.isfinite(delta):
            q = np.geomspace(pts["size"].min(), pts["size"].max(), 20)
            axes[1].loglog(q, y * q**delta, "k-", lw=1, label=f"fit δ = {delta:.2f} (R² {r2:.2f})")
        axes[1].set_xlabel("market order size")
        axes[1].set_ylabel("median slippage (bp)")
        axes[1].set_title("book-walk cost (static book: the book's shape, not market impact)")
        axes[1].legend(fontsize=8)
        axes[1].grid(alpha=0.3, which="both")
    return _img(fig, "signature and impact")


def realism_tables(rep: realism.RealismReport) -> str:
    rows = []
    for h in rep.hill:
        rows.append([h.tail, f"{h.fraction:.0%}", str(h.k), _fmt(h.alpha, 3),
                     f"[{_fmt(h.iid_low, 3)}, {_fmt(h.iid_high, 3)}]",
                     f"[{_fmt(h.boot_low, 3)}, {_fmt(h.boot_high, 3)}]"])  # fmt: skip
    hill = _table(["tail", "k / n", "k", "Hill α̂", "i.i.d. 95 %", "block bootstrap 95 %"], rows)
    g = rep.garch
    garch = _table(
        ["α", "β", "α+β", "ν", "ω", "half-life (min)", "log-lik", "n"],
        [[f"{_fmt(g.alpha)} ± {_fmt(g.se.get('alpha'), 2)}",
          f"{_fmt(g.beta)} ± {_fmt(g.se.get('beta'), 2)}", _fmt(g.persistence),
          f"{_fmt(g.nu, 3)} ± {_fmt(g.se.get('nu'), 2)}", _fmt(g.omega), _fmt(g.half_life, 3),
          _fmt(g.loglik, 6), str(g.n)]],
    )  # fmt: skip
    checks = _table(
        ["check", "status", "value", "detail"],
        [[html.escape(r.check), _badge(r.status), _fmt(r.value), html.escape(r.detail)]
         for r in rep.results],
    )  # fmt: skip
    return (
        "<div class='cols'><div><h4>Hill tail index</h4>" + hill + "</div>"
        "<div><h4>GARCH(1,1)-t, maximum likelihood</h4>" + garch + "<h4>Gate C checks "
        "(WARN only)</h4>" + checks + "</div></div>"
    )


# --------------------------------------------------------------------------------------------
# assembly


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px 32px;color:#222;
max-width:1500px} h1{font-size:24px;margin-bottom:4px} h2{font-size:19px;margin-top:34px;
border-bottom:2px solid #ddd;padding-bottom:4px} h3{font-size:16px;margin:22px 0 6px}
h4{font-size:13px;margin:10px 0 4px;color:#444} .sub{color:#666;font-size:13px}
table{border-collapse:collapse;font-size:12px;margin:6px 0 12px} th,td{border:1px solid #ddd;
padding:3px 7px;text-align:left;vertical-align:top} th{background:#f4f4f4}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:11px;font-weight:600}
.ok{background:#d9f2d9;color:#155c15}.bad{background:#f8d4d4;color:#8a1010}
.meh{background:#e6ecf7;color:#2a4a80}.warn{background:#fcebc7;color:#7a5200}
.skip{background:#eee;color:#666} .cards{display:flex;gap:14px;flex-wrap:wrap;margin:12px 0}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 16px;min-width:170px;
max-width:300px}
.card .big{font-size:24px;font-weight:700} .card .lbl{font-size:12px;color:#666}
img{max-width:100%;margin:6px 0} .note{color:#555;font-size:13px;background:#fafafa;
border-left:3px solid #ccc;padding:6px 10px} .cols{display:flex;gap:28px;flex-wrap:wrap}
code{background:#f4f4f4;padding:0 3px} table.mutation td{font-size:11px;white-space:nowrap;padding:2px 5px}
table.mutation small{color:#555}
"""


def _cards(metrics: pl.DataFrame) -> str:
    v = _verdicts(metrics)
    days = v["date"].n_unique()
    failed_days = v.filter(pl.col("blocking") & (pl.col("status") == FAIL))["date"].n_unique()
    per_kind = metrics.filter(pl.col("gate") == "A1", ~pl.col("check").is_in(POOLED))
    aligned = per_kind.filter(pl.col("metric") == "aligned")
    mism = per_kind.filter(pl.col("metric") == "mismatched")
    n_al = int(aligned["value"].sum() or 0)
    n_mm = int(mism["value"].sum() or 0)
    from obpipeline.fidelity.stats import clopper_pearson_upper

    cards = [
        (f"{days - failed_days} / {days}", "days passing Gate A"),
        (f"{n_al:,}", "golden records compared exactly"),
        (f"{n_mm:,}", "records that differed"),
    ]
    t = thresholds_for(None)
    for scope, limit, label in (
        ("touch", t.max_mismatch_rate_touch, "touch"),
        ("top", t.max_mismatch_rate_top, "top-N"),
    ):
        al = metrics.filter((pl.col("check") == scope) & (pl.col("metric") == "aligned"))
        inc = metrics.filter((pl.col("check") == scope) & (pl.col("metric") == "incidents"))
        n, x = int(al["value"].sum() or 0), int(inc["value"].sum() or 0)
        if n == 0:
            continue
        bound = clopper_pearson_upper(x, n)
        verdict = "certified" if bound < limit else ("FAILS" if x else "not yet certified")
        cards.append(
            (
                f"{bound * 100:.4f} %",
                f"{label}: 95 % bound over all days ({n:,} states, {x} incidents) — "
                f"{verdict} &lt; {limit * 100:g} %",
            )
        )
    return (
        "<div class='cards'>"
        + "".join(
            f"<div class='card'><div class='big'>{a}</div><div class='lbl'>{b}</div></div>"
            for a, b in cards
        )
        + "</div>"
    )


def thresholds_table(t: Thresholds) -> str:
    rows = [[html.escape(k), html.escape(str(v))] for k, v in t.to_dict().items() if k != "notes"]
    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in t.notes)
    return notes + _table(["threshold", "value"], rows, "thresholds")


def instrument_section(
    root: Path,
    venue: str,
    symbol: str,
    compute_missing: bool = True,
    realism_days: int = 30,
) -> InstrumentSection:
    t = thresholds_for(venue)
    metrics = lakeio.collect_metrics(root, venue, symbol, compute_missing=compute_missing)
    rep = _load_realism(root, venue, symbol, t, realism_days)
    parts = [f"<h2>{html.escape(venue)} · {html.escape(symbol)}</h2>"]
    if metrics.height:
        first, last = metrics["date"].min(), metrics["date"].max()
        parts.append(f"<p class='sub'>{metrics['date'].n_unique()} day(s), {first} → {last}</p>")
        parts.append(_cards(metrics))
        parts.append("<h3>Gate A — per day, blocking</h3>")
        parts.append(
            "<p class='note'>A0 integrity (no reference), A1 exact agreement with every record "
            "the exchange published, aligned by update id (Clopper–Pearson bound on incidents), "
            "A2 materiality on the same pairs. <i>insufficient</i> = no error seen but too few "
            "aligned records to certify the bound (it is not a failure).</p>"
        )
        parts.append(day_table(metrics))
        parts.append(plot_golden_over_days(metrics, t))
        parts.append(plot_integrity_over_days(metrics))
        parts.append(per_level_table(metrics))
    else:
        parts.append("<p>No fidelity metrics and no book_snapshots for this instrument.</p>")
    if rep is not None and rep.n_returns > 30:
        parts.append("<h3>Gate C — realism, non-blocking</h3>")
        parts.append(
            "<p class='note'>Stylized facts cannot see 1 % reconstruction errors (FIDELITY.md); "
            "they catch gross bugs and describe the market. Profiles compare the last day with "
            "the earlier days of the window (rolling real-vs-real baseline).</p>"
        )
        days = rep.days
        rets = np.concatenate(
            [
                realism.log_returns(
                    realism.mid_grid(
                        pl.read_parquet(
                            lake.partition_path("book_snapshots", venue, symbol, d, root),
                            columns=["ts_event", "is_valid", "bid_price_1", "ask_price_1"],
                        ),
                        t.return_every,
                    )
                )
                for d in days
            ]
        )
        rets = rets[rets != 0]
        parts.append(plot_tails(rep, rets))
        parts.append(plot_acf(rep))
        parts.append(realism_tables(rep))
        parts.append(plot_profiles(rep))
        parts.append(plot_day_figures(rep))
        parts.append(plot_signature_impact(rep))
    elif rep is not None:
        parts.append(f"<p class='note'>Gate C needs more data: {rep.n_returns} 1-min returns.</p>")
    parts.append("<details><summary>Thresholds of this venue</summary>")
    parts.append(thresholds_table(t) + "</details>")
    return InstrumentSection(venue, symbol, metrics, t, rep, "\n".join(parts))


def build_report(
    root: Path | str,
    out: Path | str,
    venue: str | None = None,
    symbol: str | None = None,
    mutation: dict | Path | str | None = None,
    compute_missing: bool = True,
    realism_days: int = 30,
) -> Path:
    """Write the self-contained HTML fidelity report of the lake at ``root`` to ``out``."""
    root, out = Path(root), Path(out)
    pairs = lakeio.instruments_in_lake(root)
    pairs += [p for p in lakeio.instruments_in_lake(root, lakeio.METRICS) if p not in pairs]
    if venue:
        pairs = [p for p in pairs if p[0] == venue]
    if symbol:
        pairs = [p for p in pairs if p[1] == symbol]
    if isinstance(mutation, str | Path):
        mutation = json.loads(Path(mutation).read_text())
    if mutation is None:
        mutation = _find_mutation(root)
    sections = [instrument_section(root, v, s, compute_missing, realism_days) for v, s in pairs]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        "<h1>Order-book fidelity report</h1>",
        f"<p class='sub'>lake <code>{html.escape(str(root))}</code> · generated {now} · "
        f"{len(sections)} instrument(s)</p>",
        "<p class='note'>Is our book, at update id u, <b>equal</b> to the exchange's book at u? "
        "Gate A answers per day (blocking); Gate B proves the checks catch injected faults; "
        "Gate C checks the data behaves like a market (descriptive).</p>",
    ]
    if not sections:
        body.append("<p>The lake holds no book_snapshots or fidelity_metrics.</p>")
    body += [s.html for s in sections]
    body.append("<h2>Gate B — the mutation proof</h2>")
    body.append(mutation_section(mutation))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Fidelity report</title>"
        f"<style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def report_summary(metrics: pl.DataFrame) -> dict[str, Any]:
    """Numbers for Dagster metadata: days, passing days, golden records compared/mismatched."""
    if metrics.height == 0:
        return {"days": 0}
    v = _verdicts(metrics)
    failing = sorted(
        {str(d) for d in v.filter(pl.col("blocking") & (pl.col("status") == FAIL))["date"]}
    )
    per_kind = metrics.filter(pl.col("gate") == "A1", ~pl.col("check").is_in(NOT_GOLDEN))
    n_al = int(per_kind.filter(pl.col("metric") == "aligned")["value"].sum() or 0)
    n_mm = int(per_kind.filter(pl.col("metric") == "mismatched")["value"].sum() or 0)
    return {
        "days": v["date"].n_unique(),
        "days_failing": len(failing),
        "failing_days": failing[:20],
        "golden_compared": n_al,
        "golden_mismatched": n_mm,
        "golden_match_rate": (n_al - n_mm) / n_al if n_al else None,
    }


__all__ = ["build_report", "instrument_section", "report_summary"]

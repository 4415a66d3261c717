"""The asset factory: one chain of daily-partitioned assets per configured venue/symbol.

::

    raw_book_events ─► book_checkpoint (D-1 → D) ─┐
           │   (+ golden_bbo, golden_depth,       ▼
           │    trades, quarantine)          book_snapshots ─► book_features ─► fidelity_metrics
           └──────────────────────────────────────▲                                │
                                                                                  ▼
                                                                           fidelity_report

Why this shape (DESIGN §8, research/dagster.md §1): only ``book_checkpoint`` is chained, through
a self-dependency on D-1 with a ``BackfillPolicy.multi_run`` and an ordered in-run day loop, so a
12-month backfill costs ~12 sequential runs, not 365 daemon ticks; ``book_snapshots`` replays day
D from the D-1 checkpoint, so every other asset fans out in parallel.

Every asset loops over ``context.partition_keys`` (one key, or a range in backfill runs), writes
its own hive-lake files (``obpipeline.lake``, atomic) and returns ``MaterializeResult`` with
per-partition numeric metadata. Its invariant checks run on the frames *before* writing and are
emitted as partitioned check evaluations; a blocking ERROR leaves the day unwritten and fails the
step, so downstream steps do not run and bad data never lands. The other days of a range are
still recorded (``Days``), so a backfill carries on with them.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from obpipeline import lake
from obpipeline.book import checkpoint as ckpt
from obpipeline.book.engine import replay_parquet
from obpipeline.book.stream import Book, ReplayCounters
from obpipeline.defs import checks
from obpipeline.defs.config import InstrumentConfig, PlatformConfig
from obpipeline.defs.resources import DaySource
from obpipeline.fidelity import assets as fidelity_assets
from obpipeline.fidelity import exact
from obpipeline.instruments import Instrument, get_instrument
from obpipeline.procstat import peak_rss_mb
from obpipeline.sources import day as daylib
from obpipeline.sources.binance import CaptureError

RAW, CHECKPOINT, SNAPSHOTS = "raw_book_events", "book_checkpoint", "book_snapshots"
FEATURES, METRICS, REPORT = "book_features", "fidelity_metrics", "fidelity_report"
ALONGSIDE_RAW = ("golden_bbo", "golden_depth", "trades", "quarantine")
COUNTERS = "replay_counters"  # one row per day, written alongside book_snapshots
PREV_DAY = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
SOURCE_RESOURCE = "day_source"


def counters_schema() -> pl.Schema:
    return pl.Schema({k: pl.Int64 for k in ReplayCounters().to_dict()})


@dataclass(frozen=True)
class Chain:
    """What every asset of one instrument needs: config, keys, partitions, lake paths."""

    cfg: PlatformConfig
    inst: InstrumentConfig
    partitions: dg.DailyPartitionsDefinition

    @property
    def prefix(self) -> list[str]:
        venue, symbol = self.inst.slug.split("__")
        return [venue, symbol]

    def key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([*self.prefix, name])

    @property
    def group(self) -> str:
        return self.inst.slug

    def path(self, dataset: str, day: date | str) -> Path:
        return lake.partition_path(
            dataset, self.inst.venue_id, self.inst.symbol, day, self.cfg.lake
        )

    def write(self, frame: pl.DataFrame, dataset: str, day: date | str) -> Path:
        return lake.write_parquet_atomic(frame, self.path(dataset, day))

    def request(self, day: date | str) -> daylib.DayRequest:
        inst = self.inst
        return daylib.DayRequest(
            inst.source, inst.venue, inst.market, inst.symbol, date.fromisoformat(str(day)),
            self.cfg.lake, self.cfg.depth,
        )  # fmt: skip

    def existing(self, dataset: str, day: date | str) -> Path:
        """The path of a dataset's day, which must have been materialised."""
        path = self.path(dataset, day)
        if not path.exists():
            raise dg.Failure(
                f"{dataset} for {day} is missing ({path}): materialise it first",
                metadata={"path": str(path)},
            )
        return path

    def day_instrument(self, day: date | str) -> Instrument:
        """The instrument of a materialised day (scales from its raw_book_events schema)."""
        return self.instrument(pl.scan_parquet(self.existing(RAW, day)).head(0).collect())

    def read(self, dataset: str, day: date | str) -> pl.DataFrame:
        return pl.read_parquet(self.existing(dataset, day))

    def instrument(self, frame: pl.DataFrame | None = None) -> Instrument:
        """Registered instrument, else scales from the Decimal columns of a written frame."""
        inst = self.inst
        known = get_instrument(inst.venue, inst.market, inst.symbol)
        if known is not None:
            return known
        if frame is None or not isinstance(frame.schema.get("price"), pl.Decimal):
            raise dg.Failure(f"{inst.venue_id} {inst.symbol}: unknown instrument, no frame")
        ps = frame.schema["price"].scale
        ss = frame.schema["size"].scale
        rule = (
            "binance_spot"
            if (inst.venue, inst.market) == ("binance", "spot")
            else "binance_futures"
        )
        return Instrument(
            inst.venue,
            inst.market,
            inst.symbol,
            Decimal(1).scaleb(-ps),
            Decimal(1).scaleb(-ss),
            rule,  # type: ignore[arg-type]
        )

    @property
    def policy(self) -> dg.BackfillPolicy:
        return dg.BackfillPolicy.multi_run(self.cfg.days_per_run)


# ----------------------------------------------------------------------------- helpers


def _metadata(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, dict | list):
            out[k] = dg.MetadataValue.json(v)
        elif isinstance(v, bool | int | float | str) or v is None:
            out[k] = v
        else:
            out[k] = str(v)
    return out


def _specs(chain: Chain, asset: str, names: dict[str, str]) -> list[dg.AssetCheckSpec]:
    blocking = {n: n not in ("raw_quarantine", "checkpoint_in_sync") for n in names}
    return [
        dg.AssetCheckSpec(
            name,
            asset=chain.key(asset),
            description=desc,
            blocking=blocking[name],
            partitions_def=chain.partitions,
        )
        for name, desc in names.items()
    ]


def _evaluations(
    context: dg.AssetExecutionContext, key: dg.AssetKey, day: str, outcomes: list[checks.Outcome]
) -> Iterator[dg.AssetCheckEvaluation]:
    """Partition-stamped evaluations (``AssetCheckResult`` would carry no partition in a range run)."""
    selected = {ck.name for ck in context.selected_asset_check_keys if ck.asset_key == key}
    for o in outcomes:
        if o.name not in selected:
            continue
        yield dg.AssetCheckEvaluation(
            asset_key=key,
            check_name=o.name,
            passed=o.passed,
            metadata=_metadata(o.metadata),
            target_materialization_data=None,
            severity=dg.AssetCheckSeverity(o.severity),
            description=o.description,
            blocking=o.severity == checks.ERROR,
            partition=day,
        )


def _check_outputs(context: dg.AssetExecutionContext) -> Iterator[dg.Output]:
    """The (empty) outputs of the selected checks, so the step succeeds; results were events."""
    for ck in context.selected_asset_check_keys:
        yield dg.Output(
            None, output_name=context.assets_def.get_output_name_for_asset_check_key(ck)
        )


# Per-day problems that fail their day only; anything else (a bug) fails the step at once.
DAY_ERRORS = (
    dg.Failure,
    daylib.SourceUnavailable,
    daylib.MissingStartBook,
    CaptureError,
    FileNotFoundError,
)


class Days:
    """Per-day bookkeeping of one asset step over its partition keys (one day or a range).

    All days good: one ``MaterializeResult`` (+ per-partition metadata). Some days bad: the good
    ones are recorded as materialised one by one, then the step fails naming the bad ones. The
    backfill daemon subtracts what a failed range run did materialise (``asset_backfill.py``:
    "a ranged run can materialize some partitions of an asset and fail on others"), so a bad day
    holds back only itself and what depends on it, not the other days of its range.
    """

    def __init__(self, context: dg.AssetExecutionContext, key: dg.AssetKey) -> None:
        self.context, self.key = context, key
        self.good: dict[str, dict[str, Any]] = {}
        self.bad: dict[str, list[str]] = {}

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.context.partition_keys))

    def written(self, day: str, metadata: dict[str, Any]) -> None:
        self.good[day] = _metadata(metadata)

    def failed(self, day: str, reasons: list[str]) -> None:
        self.bad[day] = reasons

    def blocked(self, day: str, outcomes: list[checks.Outcome]) -> bool:
        """Record the day as failed when a blocking check failed; True if so."""
        reasons = [f"{o.name}: {o.description}" for o in outcomes if o.blocks]
        if reasons:
            self.failed(day, reasons)
        return bool(reasons)

    def finish(self) -> Iterator[Any]:
        if not self.bad:
            for day, metadata in self.good.items():
                self.context.add_asset_metadata(metadata, partition_key=day)
            yield from _check_outputs(self.context)
            yield dg.MaterializeResult()
            return
        for day, metadata in self.good.items():
            yield dg.AssetMaterialization(asset_key=self.key, partition=day, metadata=metadata)
        lines = [f"{day}: " + "; ".join(r) for day, r in sorted(self.bad.items())]
        raise dg.Failure(
            description=f"{self.key.path[-1]}: {len(self.bad)} day(s) failed and were not "
            f"written; {len(self.good)} day(s) written:\n" + "\n".join(lines),
            metadata={"failed_days": dg.MetadataValue.json(sorted(self.bad))},
        )


def _start_book(chain: Chain, day: str, carried: Book | None) -> Book | None:
    """The book day ``day`` starts from (``sources.day.start_book``: never silently empty).

    Dagster passes no data here: the D-1 dependency only orders the runs.
    """
    events = chain.existing(RAW, day)
    return daylib.start_book(
        chain.request(day),
        chain.day_instrument(day),
        lambda: daylib.message_table(events),
        chain.cfg.snapshot_open_seconds,
        carried,
    )


def _replay(
    chain: Chain, day: str, start: Book | None, out: Path | None
) -> tuple[Instrument, Book, ReplayCounters]:
    """Replay the day's raw_book_events file, streamed; book_snapshots to ``out`` if given."""
    events = chain.existing(RAW, day)
    instrument = chain.day_instrument(day)
    book, counters = replay_parquet(events, out, instrument, chain.cfg.depth, start)
    return instrument, book, counters


def _golden_comparisons(chain: Chain, day: str, snapshots: Path) -> list[exact.ExactComparison]:
    """Gate A1 on the staged book_snapshots (``fidelity.exact``: the one comparison)."""
    return exact.day_comparisons(
        snapshots,
        None,
        chain.existing("golden_bbo", day),
        chain.existing("golden_depth", day),
        aligned_by="time" if chain.inst.source.is_tardis else "update_id",
        rest=False,
    )


def _staging(path: Path) -> Path:
    """Where a file is built before its checks pass (hidden, same folder: the rename is atomic)."""
    return path.with_name(f".{path.name}.staged")


# ----------------------------------------------------------------------------- the factory


def build_assets(chain: Chain) -> list[dg.AssetsDefinition]:
    """The six assets of one instrument (GE checks are built separately, see ``defs.ge``)."""
    cfg, inst = chain.cfg, chain.inst
    common: dict[str, Any] = {
        "partitions_def": chain.partitions,
        "backfill_policy": chain.policy,
        "group_name": chain.group,
        "tags": {"venue": inst.venue_id, "symbol": inst.symbol},
    }

    @dg.asset(
        key=chain.key(RAW),
        description=(
            f"{inst.venue_id} {inst.symbol} level changes in arrival order, from the "
            f"{inst.source.kind} source; golden_bbo, golden_depth, trades and quarantine are "
            "written alongside for the same day."
        ),
        check_specs=_specs(chain, RAW, checks.RAW_CHECKS),
        required_resource_keys={SOURCE_RESOURCE},
        kinds={"polars", "parquet"},
        **common,
    )
    def raw_book_events(context: dg.AssetExecutionContext):
        source: DaySource = getattr(context.resources, SOURCE_RESOURCE)
        days = Days(context, chain.key(RAW))
        for day in days:
            started = time.perf_counter()
            d = date.fromisoformat(day)
            try:
                staged = source.ingest(chain.request(d))
            except DAY_ERRORS as exc:
                days.failed(day, [f"source: {exc}"])
                continue
            outcomes = checks.raw_checks(staged, d, d in inst.source.accept_damaged_days)
            yield from _evaluations(context, chain.key(RAW), day, outcomes)
            if days.blocked(day, outcomes):
                staged.discard()
                continue
            out = staged.days[d]
            paths = staged.publish(d, chain.path("quarantine", d))
            chain_meta = next(o for o in outcomes if o.name == "raw_id_chain").metadata
            days.written(
                day,
                {
                    "rows": out.rows(RAW),
                    "messages": chain_meta["messages"],
                    "level_updates": out.level_updates,
                    "snapshots": chain_meta["snapshots"],
                    "gaps": chain_meta["gaps"],
                    "duplicates_or_stale": chain_meta["duplicates_or_stale"],
                    "golden_bbo": out.rows("golden_bbo"),
                    "golden_depth": out.rows("golden_depth"),
                    "trades": out.rows("trades"),
                    "quarantined": staged.quarantine.rows,
                    "lines_read": staged.stats.get("lines", 0),
                    "seconds": round(time.perf_counter() - started, 3),
                    "peak_rss_mb": round(peak_rss_mb()),
                    "path": str(paths[RAW]),
                },
            )
        yield from days.finish()

    @dg.asset(
        key=chain.key(CHECKPOINT),
        description=(
            "Full book at the end of day D, replayed from the D-1 checkpoint: the only chained "
            "asset. Backfills run ranges of days in order inside one run."
        ),
        deps=[
            dg.AssetDep(chain.key(RAW)),
            dg.AssetDep(chain.key(CHECKPOINT), partition_mapping=PREV_DAY),
        ],
        check_specs=_specs(chain, CHECKPOINT, checks.CHECKPOINT_CHECKS),
        kinds={"polars", "parquet"},
        **common,
    )
    def book_checkpoint(context: dg.AssetExecutionContext):
        # A checkpoint replay encodes no book_snapshots rows (``out=None``): the day's engine
        # pass and parquet decode only, about a third of book_snapshots' cost (DECISIONS.md).
        days = Days(context, chain.key(CHECKPOINT))
        carried: Book | None = None
        for day in days:
            started = time.perf_counter()
            try:
                start = _start_book(chain, day, carried)
                instrument, end_book, c = _replay(chain, day, start, None)
            except DAY_ERRORS as exc:
                days.failed(day, [str(exc)])
                break  # the chain stops: later days need this one's book
            outcomes = checks.checkpoint_checks(end_book, c, start)
            yield from _evaluations(context, chain.key(CHECKPOINT), day, outcomes)
            if days.blocked(day, outcomes):
                break  # later days would start from a book known to be wrong
            path = ckpt.write(end_book, instrument, chain.path(CHECKPOINT, day), day=day)
            carried = end_book
            days.written(
                day,
                {
                    "messages": c.messages,
                    "levels": len(end_book.bid_price) + len(end_book.ask_price),
                    "last_update_id": int(end_book.last_update_id),
                    "in_sync": bool(end_book.is_valid),
                    "started_from": "D-1 checkpoint" if start is not None else "own snapshot",
                    "gaps": c.gaps,
                    "resyncs": c.resyncs,
                    "seconds": round(time.perf_counter() - started, 3),
                    "path": str(path),
                },
            )
        yield from days.finish()

    @dg.asset(
        key=chain.key(SNAPSHOTS),
        description=(
            f"Top-{cfg.depth} book after every exchange message, replayed from the D-1 "
            "checkpoint (not chained: days run in parallel); replay counters written alongside."
        ),
        deps=[
            dg.AssetDep(chain.key(RAW)),
            dg.AssetDep(chain.key(CHECKPOINT), partition_mapping=PREV_DAY),
        ],
        check_specs=_specs(chain, SNAPSHOTS, checks.SNAPSHOT_CHECKS),
        kinds={"polars", "parquet"},
        **common,
    )
    def book_snapshots(context: dg.AssetExecutionContext):
        days = Days(context, chain.key(SNAPSHOTS))
        for day in days:
            started = time.perf_counter()
            final = chain.path(SNAPSHOTS, day)
            staged = _staging(final)
            try:
                start = _start_book(chain, day, None)
                instrument, _, c = _replay(chain, day, start, staged)
                comparisons = _golden_comparisons(chain, day, staged)
            except DAY_ERRORS as exc:
                staged.unlink(missing_ok=True)
                days.failed(day, [str(exc)])
                continue
            outcomes = checks.snapshot_checks(
                pl.scan_parquet(staged), c, instrument, cfg.depth, comparisons
            )
            yield from _evaluations(context, chain.key(SNAPSHOTS), day, outcomes)
            if days.blocked(day, outcomes):
                staged.unlink(missing_ok=True)
                continue
            lake.promote(staged, final)
            counters = pl.DataFrame([c.to_dict()], schema=counters_schema())
            chain.write(counters, COUNTERS, day)
            g = next(o for o in outcomes if o.name == "golden_exact").metadata
            days.written(
                day,
                {
                    "rows": c.rows,
                    "messages": c.messages,
                    "level_updates": c.level_updates,
                    "gaps": c.gaps,
                    "resyncs": c.resyncs,
                    "invalid_rows": c.invalid_rows,
                    "duplicates": c.duplicates,
                    "crossed": c.crossed,
                    "golden_compared": g["golden_compared"],
                    "golden_mismatched": g["golden_mismatched"],
                    "golden_match_rate": g["golden_match_rate"],
                    "seconds": round(time.perf_counter() - started, 3),
                    "peak_rss_mb": round(peak_rss_mb()),
                    "path": str(final),
                },
            )
        yield from days.finish()

    @dg.asset(
        key=chain.key(FEATURES),
        description=(
            "Microstructure features per message (book_features) and on time grids "
            f"({', '.join(cfg.feature_grids) or 'none'}: book_features_<grid>), from "
            "obpipeline.features."
        ),
        deps=[dg.AssetDep(chain.key(SNAPSHOTS))],
        kinds={"polars", "parquet"},
        **common,
    )
    def book_features(context: dg.AssetExecutionContext):
        from obpipeline import features as F

        config = (
            F.FeatureConfig(walk_sizes=inst.walk_sizes) if inst.walk_sizes else F.FeatureConfig()
        )
        days = Days(context, chain.key(FEATURES))
        for day in days:
            started = time.perf_counter()
            try:
                snapshots = chain.existing(SNAPSHOTS, day)
                trades = chain.existing("trades", day)
            except DAY_ERRORS as exc:
                days.failed(day, [str(exc)])
                continue
            instrument = chain.day_instrument(day)
            grids = {every: chain.path(f"{FEATURES}_{every}", day) for every in cfg.feature_grids}
            path = chain.path(FEATURES, day)
            summary = F.write_day_features(
                snapshots, trades, path, grids, config, instrument=instrument
            )  # streamed: one row per book_snapshots row, by construction
            days.written(
                day,
                {
                    "rows": summary["rows"],
                    **{f"rows_{every}": summary[f"rows_{every}"] for every in grids},
                    "invalid_rows": summary["invalid_rows"],
                    "no_mid_rows": summary["no_mid_rows"],
                    "seconds": round(time.perf_counter() - started, 3),
                    "peak_rss_mb": round(peak_rss_mb()),
                    "path": str(path),
                },
            )
        yield from days.finish()

    @dg.asset(
        key=chain.key(METRICS),
        description=(
            "Per-day fidelity (FIDELITY.md): Gate A0 integrity, A1 exact agreement with every "
            "golden record, A2 materiality (blocking), Gate C realism over the days up to D "
            "(warning); long metrics frame from obpipeline.fidelity."
        ),
        deps=[dg.AssetDep(chain.key(FEATURES)), dg.AssetDep(chain.key(SNAPSHOTS))],
        check_specs=[
            dg.AssetCheckSpec(
                name,
                asset=chain.key(METRICS),
                description=desc,
                blocking=severity == checks.ERROR,
                partitions_def=chain.partitions,
            )
            for name, (severity, desc) in fidelity_assets.CHECKS.items()
        ],
        kinds={"polars", "parquet"},
        **common,
    )
    def fidelity_metrics(context: dg.AssetExecutionContext):
        days = Days(context, chain.key(METRICS))
        for day in days:
            started = time.perf_counter()
            try:
                result = fidelity_assets.fidelity_day(cfg.lake, inst.venue_id, inst.symbol, day)
            except DAY_ERRORS as exc:
                days.failed(day, [str(exc)])
                continue
            outcomes = [
                checks.Outcome(o.name, o.passed, o.severity, o.description, o.metadata)
                for o in result.checks
            ]
            yield from _evaluations(context, chain.key(METRICS), day, outcomes)
            # Metrics are written even when the gate fails: they are the evidence.
            path = chain.write(result.metrics, METRICS, day)
            if days.blocked(day, outcomes):
                continue
            seconds = round(time.perf_counter() - started, 3)
            days.written(day, {**result.metadata, "seconds": seconds, "path": str(path)})
        yield from days.finish()

    @dg.asset(
        key=chain.key(REPORT),
        description=(
            "Rolling fidelity report: every day's verdict up to and including D (all days of "
            "the lake, not only this run's), and the HTML report (Gates A, B, C) with plots."
        ),
        deps=[dg.AssetDep(chain.key(METRICS))],
        kinds={"polars", "parquet", "html"},
        **common,
    )
    def fidelity_report(context: dg.AssetExecutionContext):
        # The HTML report covers every day of the lake and costs tens of seconds: in a range run
        # (backfill) it is built once, for the range's last day; the other days get their rolling
        # table and summary only (the same table bytes either way).
        days = Days(context, chain.key(REPORT))
        last = max(context.partition_keys)
        for day in days:
            started = time.perf_counter()
            html_path = None
            if day == last:
                table, summary, markdown, html_path = fidelity_assets.fidelity_report_day(
                    cfg.lake, inst.venue_id, inst.symbol, day
                )
            else:
                table, summary, markdown = _rolling_report(chain, day)
            path = chain.write(table, REPORT, day)
            seconds = round(time.perf_counter() - started, 3)
            days.written(day, {**summary, "seconds": seconds, "path": str(path)})
            days.good[day]["report"] = dg.MetadataValue.md(markdown)
            if html_path is not None:
                days.good[day]["html"] = dg.MetadataValue.path(str(html_path))
        yield from days.finish()

    return [
        raw_book_events,
        book_checkpoint,
        book_snapshots,
        book_features,
        fidelity_metrics,
        fidelity_report,
    ]


# ----------------------------------------------------------------------------- the report


def _rolling_report(chain: Chain, day: str) -> tuple[pl.DataFrame, dict[str, Any], str]:
    """fidelity_report of one day without the HTML: the rolling table and its summary."""
    from obpipeline.fidelity import lakeio
    from obpipeline.fidelity.report import report_summary

    d = date.fromisoformat(day)
    metrics = lakeio.collect_metrics(
        chain.cfg.lake, chain.inst.venue_id, chain.inst.symbol, compute_missing=False
    ).filter(pl.col("date") <= d)
    table = fidelity_assets.daily_table(metrics)
    summary = report_summary(metrics)
    summary["days_passing"] = int(table["integrity_ok"].sum()) if table.height else 0
    markdown = (
        f"### Fidelity of {chain.inst.venue_id} {chain.inst.symbol} up to {day}\n\n"
        f"{summary.get('days', 0)} day(s), {summary['days_passing']} passing Gate A. The HTML "
        "report is built for the last day of each run."
    )
    return table, summary, markdown

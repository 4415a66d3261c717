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
run, so downstream steps do not run and bad data never lands.
"""

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from obpipeline import book, lake
from obpipeline.book import checkpoint as ckpt
from obpipeline.book.stream import Book, ReplayCounters
from obpipeline.defs import checks
from obpipeline.defs.config import InstrumentConfig, PlatformConfig
from obpipeline.defs.resources import DaySource
from obpipeline.defs.sources import opens_with_snapshot, tardis_day_base
from obpipeline.fidelity import assets as fidelity_assets
from obpipeline.fidelity import golden
from obpipeline.instruments import Instrument, get_instrument

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

    def read(self, dataset: str, day: date | str) -> pl.DataFrame:
        path = self.path(dataset, day)
        if not path.exists():
            raise dg.Failure(
                f"{dataset} for {day} is missing ({path}): materialise it first",
                metadata={"path": str(path)},
            )
        return pl.read_parquet(path)

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

    def golden_module(self) -> Any:
        """Update-id-aligned golden comparison, or time-aligned (±1 message) for Tardis files."""
        if self.inst.source.kind == "landing" and self.inst.source.format == "tardis":
            from obpipeline.fidelity import tardis_golden

            return tardis_golden
        return golden

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


def _fail(asset: str, bad: dict[str, list[checks.Outcome]]) -> dg.Failure:
    lines = [
        f"{day}: " + "; ".join(f"{o.name}: {o.description}" for o in outs if o.blocks)
        for day, outs in bad.items()
    ]
    return dg.Failure(
        description=f"{asset}: blocking check failed on {len(bad)} day(s), nothing written "
        "for them:\n" + "\n".join(lines),
        metadata={"failed_days": dg.MetadataValue.json(sorted(bad))},
    )


def _days(context: dg.AssetExecutionContext) -> list[str]:
    return sorted(context.partition_keys)


def _start_book(chain: Chain, day: str, events: pl.DataFrame, carried: Book | None) -> Book | None:
    """The book day ``day`` starts from: the D-1 checkpoint, or nothing if D opens with a snapshot.

    Dagster passes no data here: the D-1 dependency only orders the runs. A missing checkpoint
    is never silently an empty book (research/dagster.md §1.3): it fails unless the day has its
    own opening exchange snapshot to sync on.
    """
    prev = date.fromisoformat(day) - timedelta(days=1)
    path = chain.path(CHECKPOINT, prev)
    if carried is None and path.exists():
        carried = ckpt.read(path)
    if carried is not None:
        if chain.inst.source.kind == "landing" and chain.inst.source.format == "tardis":
            # Tardis ids are synthetic and restart at each day's base: the opening snapshot of
            # D carries that base, so the carried book must too to be compared with it.
            base = tardis_day_base(date.fromisoformat(day))
            carried = dataclasses.replace(carried, last_update_id=base)
        return carried
    if opens_with_snapshot(events, chain.cfg.snapshot_open_seconds):
        return None
    raise dg.Failure(
        description=(
            f"{chain.inst.symbol} {day}: the D-1 book_checkpoint ({prev}) is missing and the day "
            f"does not open with its own exchange snapshot (none within "
            f"{chain.cfg.snapshot_open_seconds} s of its first message). Materialise "
            f"book_checkpoint for {prev} first (or backfill the range in order)."
        ),
        metadata={"missing": str(path)},
    )


def _replay(chain: Chain, events: pl.DataFrame, start: Book | None):
    instrument = chain.instrument(events)
    engine = chain.cfg.engine or book.DEFAULT_ENGINE
    return instrument, book.replay(events, instrument, chain.cfg.depth, start, engine=engine)


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
        bad: dict[str, list[checks.Outcome]] = {}
        for day in _days(context):
            started = time.perf_counter()
            capture = source.load(inst, date.fromisoformat(day), cfg.depth)
            outcomes = checks.raw_checks(capture, cfg.depth)
            yield from _evaluations(context, chain.key(RAW), day, outcomes)
            if any(o.blocks for o in outcomes):
                bad[day] = outcomes
                continue
            path = chain.write(capture.events, RAW, day)
            for dataset in ALONGSIDE_RAW:
                chain.write(getattr(capture, dataset), dataset, day)
            chain_meta = outcomes[1].metadata
            context.add_asset_metadata(
                _metadata(
                    {
                        "rows": capture.events.height,
                        "messages": chain_meta["messages"],
                        "level_updates": int(capture.events["side"].is_not_null().sum()),
                        "snapshots": chain_meta["snapshots"],
                        "gaps": chain_meta["gaps"],
                        "duplicates_or_stale": chain_meta["duplicates_or_stale"],
                        "golden_bbo": capture.golden_bbo.height,
                        "golden_depth": capture.golden_depth.height,
                        "trades": capture.trades.height,
                        "quarantined": capture.quarantine.height,
                        "seconds": round(time.perf_counter() - started, 3),
                        "path": str(path),
                    }
                ),
                partition_key=day,
            )
        if bad:
            raise _fail(RAW, bad)
        yield from _check_outputs(context)
        yield dg.MaterializeResult()

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
        carried: Book | None = None
        for day in _days(context):
            started = time.perf_counter()
            events = chain.read(RAW, day)
            start = _start_book(chain, day, events, carried)
            _, result = _replay(chain, events, start)
            outcomes = checks.checkpoint_checks(result.checkpoint, result.counters)
            yield from _evaluations(context, chain.key(CHECKPOINT), day, outcomes)
            if any(o.blocks for o in outcomes):
                # The chain stops here: later days would start from a book known to be wrong.
                raise _fail(CHECKPOINT, {day: outcomes})
            path = ckpt.write(
                result.checkpoint, chain.instrument(events), chain.path(CHECKPOINT, day)
            )
            carried = result.checkpoint
            c = result.counters
            context.add_asset_metadata(
                _metadata(
                    {
                        "messages": c.messages,
                        "levels": len(carried.bid_price) + len(carried.ask_price),
                        "last_update_id": int(carried.last_update_id),
                        "in_sync": bool(carried.is_valid),
                        "started_from": "D-1 checkpoint" if start is not None else "own snapshot",
                        "gaps": c.gaps,
                        "resyncs": c.resyncs,
                        "seconds": round(time.perf_counter() - started, 3),
                        "path": str(path),
                    }
                ),
                partition_key=day,
            )
        yield from _check_outputs(context)
        yield dg.MaterializeResult()

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
        bad: dict[str, list[checks.Outcome]] = {}
        for day in _days(context):
            started = time.perf_counter()
            events = chain.read(RAW, day)
            start = _start_book(chain, day, events, None)
            instrument, result = _replay(chain, events, start)
            gold = chain.golden_module()
            comparisons = [gold.compare_bbo(result.snapshots, chain.read("golden_bbo", day))]
            depth_records = chain.read("golden_depth", day)
            if depth_records.height:
                comparisons.append(gold.compare_depth(result.snapshots, depth_records))
            outcomes = checks.snapshot_checks(
                result.snapshots, result.counters, instrument, cfg.depth, comparisons
            )
            yield from _evaluations(context, chain.key(SNAPSHOTS), day, outcomes)
            if any(o.blocks for o in outcomes):
                bad[day] = outcomes
                continue
            path = chain.write(result.snapshots, SNAPSHOTS, day)
            counters = pl.DataFrame([result.counters.to_dict()], schema=counters_schema())
            chain.write(counters, COUNTERS, day)
            c = result.counters
            g = outcomes[-1].metadata
            context.add_asset_metadata(
                _metadata(
                    {
                        "rows": result.snapshots.height,
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
                        "path": str(path),
                    }
                ),
                partition_key=day,
            )
        if bad:
            raise _fail(SNAPSHOTS, bad)
        yield from _check_outputs(context)
        yield dg.MaterializeResult()

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
    def book_features(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        try:
            from obpipeline import features as F
        except ImportError as exc:
            raise dg.Failure(f"obpipeline.features is not available: {exc}") from exc
        config = (
            F.FeatureConfig(walk_sizes=inst.walk_sizes) if inst.walk_sizes else F.FeatureConfig()
        )
        for day in _days(context):
            started = time.perf_counter()
            snapshots = chain.read(SNAPSHOTS, day)
            trades = chain.read("trades", day)
            instrument = chain.instrument(chain.read(RAW, day).head(1))
            per_message = F.compute_features(snapshots, trades, config, instrument=instrument)
            if per_message.height != snapshots.height:
                raise dg.Failure(
                    f"book_features {day}: {per_message.height} rows for "
                    f"{snapshots.height} book_snapshots rows (they must align one to one)"
                )
            path = chain.write(per_message, FEATURES, day)
            meta: dict[str, Any] = {"rows": per_message.height}
            for every in cfg.feature_grids:
                grid = F.grid_features(
                    per_message, trades, every=every, config=config, instrument=instrument
                )
                chain.write(grid, f"{FEATURES}_{every}", day)
                meta[f"rows_{every}"] = grid.height
            summary = F.feature_summary(per_message, config)
            meta.update(
                invalid_rows=summary["invalid_rows"],
                no_mid_rows=summary["no_mid_rows"],
                seconds=round(time.perf_counter() - started, 3),
                path=str(path),
            )
            context.add_asset_metadata(_metadata(meta), partition_key=day)
        return dg.MaterializeResult()

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
        bad: dict[str, list[checks.Outcome]] = {}
        for day in _days(context):
            started = time.perf_counter()
            result = fidelity_assets.fidelity_day(cfg.lake, inst.venue_id, inst.symbol, day)
            outcomes = [
                checks.Outcome(o.name, o.passed, o.severity, o.description, o.metadata)
                for o in result.checks
            ]
            yield from _evaluations(context, chain.key(METRICS), day, outcomes)
            # Metrics are written even when the gate fails: they are the evidence.
            path = chain.write(result.metrics, METRICS, day)
            if any(o.blocks for o in outcomes):
                bad[day] = outcomes
            meta = {**result.metadata, "seconds": round(time.perf_counter() - started, 3)}
            context.add_asset_metadata(_metadata({**meta, "path": str(path)}), partition_key=day)
        if bad:
            raise _fail(METRICS, bad)
        yield from _check_outputs(context)
        yield dg.MaterializeResult()

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
    def fidelity_report(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        # The HTML report covers every day of the lake and costs tens of seconds: in a range run
        # (backfill) it is built once, for the range's last day; the other days get their rolling
        # table and summary only (the same table bytes either way).
        days = _days(context)
        for day in days:
            started = time.perf_counter()
            html_path = None
            if day == days[-1]:
                table, summary, markdown, html_path = fidelity_assets.fidelity_report_day(
                    cfg.lake, inst.venue_id, inst.symbol, day
                )
            else:
                table, summary, markdown = _rolling_report(chain, day)
            path = chain.write(table, REPORT, day)
            meta = _metadata(
                {**summary, "seconds": round(time.perf_counter() - started, 3), "path": str(path)}
            )
            meta["report"] = dg.MetadataValue.md(markdown)
            if html_path is not None:
                meta["html"] = dg.MetadataValue.path(str(html_path))
            context.add_asset_metadata(meta, partition_key=day)
        return dg.MaterializeResult()

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

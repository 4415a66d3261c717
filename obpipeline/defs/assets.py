"""The asset factory: one chain of daily-partitioned asset steps per configured venue/symbol.

::

    raw_book_events ─► book_checkpoint (D-1 → D) ─┐
      + golden_bbo, golden_depth,                 ▼
        trades, quarantine ─────────────────► book_snapshots ─► book_features ─► fidelity_metrics
                                                + replay_counters  + book_features_<grid>   │
                                                + golden_results ─────────────────────────►│
                                                                                           ▼
                                                                                fidelity_report

``golden_results`` holds Gates A1 + A2 of the day's one golden comparison, run by the
book_snapshots step for its blocking ``golden_exact`` check: fidelity_metrics reads them instead
of comparing the day again.

Why this shape (docs/DESIGN.md §8): only ``book_checkpoint`` is chained, through
a self-dependency on D-1 with a ``BackfillPolicy.multi_run`` and an ordered in-run day loop, so a
12-month backfill costs ~12 sequential runs, not 365 daemon ticks; ``book_snapshots`` replays day
D from the D-1 checkpoint, so every other asset fans out in parallel.

Each step is a multi-asset (one ``AssetSpec`` per dataset it writes, with what it reads as deps)
whose body is ``run_days`` over one per-day function (``raw_day``, ``checkpoint_day``, ...): a
notebook can call that function for one day. A day's invariant checks run on its files *before*
they are published; a blocking ERROR leaves the day unwritten and fails the step, so downstream
does not run and bad data never lands; the other days of a range are still recorded, so a
backfill carries on with them. Check evaluations are emitted after the materializations and tied
to their day's (``target``): that is what gives each check its per-day status in the UI.
"""

import functools
import inspect
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pyarrow.parquet as pq

from obpipeline import lake, schemas
from obpipeline.book import checkpoint as ckpt
from obpipeline.book.parquet_stream import replay_parquet
from obpipeline.book.stream import Book, ReplayCounters
from obpipeline.defs import checks
from obpipeline.defs.config import InstrumentConfig, PlatformConfig
from obpipeline.defs.reports import report_url
from obpipeline.defs.resources import DaySource
from obpipeline.errors import PipelineError
from obpipeline.fidelity import assets as fidelity_assets
from obpipeline.fidelity import checksum_gate, lakeio
from obpipeline.fidelity.config import thresholds_for
from obpipeline.fidelity.gates import METRICS_SCHEMA, metrics_frame
from obpipeline.instruments import Instrument, get_instrument, instrument_from_schema
from obpipeline.procstat import peak_rss_mb
from obpipeline.sources import day as daylib
from obpipeline.verdict import Severity, Verdict, by_name

RAW, CHECKPOINT, SNAPSHOTS = "raw_book_events", "book_checkpoint", "book_snapshots"
FEATURES, METRICS, REPORT = "book_features", "fidelity_metrics", "fidelity_report"
ALONGSIDE_RAW = ("golden_bbo", "golden_depth", "trades", "quarantine")
COUNTERS = "replay_counters"  # one row per day, written alongside book_snapshots
# The ingest step's concurrency pool (dagster.yaml: 2 at a time, counted per run): the third
# backfill slot then goes to the book_checkpoint runs queued behind the ingest ranges
# (docs/DECISIONS.md "How a backfill uses two cores").
INGEST_POOL = "ingest"
GOLDEN = lakeio.GOLDEN  # Gates A1 + A2 of the day (long metrics rows), written alongside too
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
        schema = None if frame is None else frame.schema
        return instrument_from_schema(inst.venue, inst.market, inst.symbol, schema)

    @property
    def policy(self) -> dg.BackfillPolicy:
        return dg.BackfillPolicy.multi_run(self.cfg.days_per_run)


# ----------------------------------------------------------------------------- helpers


def _metadata(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, dg.MetadataValue):
            out[k] = v
        elif isinstance(v, dict | list):
            out[k] = dg.MetadataValue.json(v)
        elif isinstance(v, float) and not math.isfinite(v):
            out[k] = str(v)  # NaN/inf do not plot; keep them readable
        elif isinstance(v, bool | int | float | str) or v is None:
            out[k] = v
        else:
            out[k] = str(v)
    return out


def _written(path: Path, **figures: Any) -> dict[str, Any]:
    """Materialization metadata of one written file: its row count (Dagster's name) and path."""
    return {"dagster/row_count": pq.ParquetFile(path).metadata.num_rows, **figures,
            "path": dg.MetadataValue.path(str(path))}  # fmt: skip


def target(instance: dg.DagsterInstance, key: dg.AssetKey, day: str) -> Any:
    """The latest materialization of ``key`` on ``day`` as a check evaluation's target.

    Dagster counts a partitioned check's status for a day only when the evaluation targets the
    day's latest materialization (``AssetCheckPartitionInfo.is_current``); an evaluation without
    a target is cleared by the next materialization, and the day shows as *Missing*.
    """
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,
    )

    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1
    ).records
    if not found:
        return None
    m = found[0]
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=m.storage_id, run_id=m.event_log_entry.run_id, timestamp=m.timestamp
    )


def evaluation(
    instance: dg.DagsterInstance, key: dg.AssetKey, day: str, v: Verdict, checked_at: float
) -> dg.AssetCheckEvaluation:
    """A verdict as the check evaluation of ``day``, tied to that day's latest materialization."""
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=v.name,
        passed=v.passed,
        metadata=_metadata({**v.metadata, "checked_at": dg.MetadataValue.timestamp(checked_at)}),
        target_materialization_data=target(instance, key, day),
        severity=dg.AssetCheckSeverity(v.severity.value),
        description=v.description,
        blocking=v.severity == Severity.ERROR,
        partition=day,
    )


# Per-day problems that fail their day only; anything else (a bug) fails the step at once.
DAY_ERRORS = (dg.Failure, PipelineError, FileNotFoundError)


@dataclass
class Day:
    """What one asset step did on one day: the files written (dataset → metadata), the
    verdicts of its checks, and why it was not written (empty when it was)."""

    written: dict[str, dict[str, Any]] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    carry: Any = None  # what the next day of a chained step starts from
    checked_at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return not self.problems


def blocked(verdicts: list[Verdict]) -> list[str]:
    """The reasons a day may not be written: its failed blocking verdicts."""
    return [f"{v.name}: {v.description}" for v in verdicts if v.blocks]


Step = Callable[[str, "Day | None"], Day]


def run_days(
    context: dg.AssetExecutionContext, chain: Chain, check_on: str, step: Step, chained=False
) -> Iterator[Any]:
    """Run ``step`` on every day of the run (one key, or a range in backfill runs), in order.

    All days good: one ``MaterializeResult`` per asset (+ per-partition metadata). Some bad: the
    good days are recorded one by one, then the step fails naming the bad ones. The backfill
    daemon subtracts what a failed range run did materialise (``asset_backfill.py``: "a ranged
    run can materialize some partitions of an asset and fail on others"), so a bad day holds back
    only itself and what depends on it. ``chained``: a bad day stops the loop (later days start
    from its book). The checks' evaluations come last, each tied to its day's materialization.
    """
    days: dict[str, Day] = {}
    previous: Day | None = None
    for key in sorted(context.partition_keys):
        started, cpu = time.perf_counter(), time.process_time()
        try:
            day = step(key, previous)
        except DAY_ERRORS as exc:
            day = Day(problems=[str(exc)])
        for meta in day.written.values():
            meta["seconds"] = round(time.perf_counter() - started, 3)
            meta["cpu_seconds"] = round(time.process_time() - cpu, 3)  # all threads: load-proof
            meta["peak_rss_mb"] = round(peak_rss_mb())  # the run process's so far (VmHWM)
        days[key], previous = day, day
        if chained and not day.ok:
            break
    good = {k: d for k, d in days.items() if d.ok}
    bad = {k: d.problems for k, d in days.items() if not d.ok}
    if not bad:
        for k, d in good.items():
            for name, meta in d.written.items():
                context.add_asset_metadata(
                    _metadata(meta), asset_key=chain.key(name), partition_key=k
                )
        for ck in context.selected_asset_check_keys:
            name = context.assets_def.get_output_name_for_asset_check_key(ck)
            yield dg.Output(None, output_name=name)
        for asset_key in sorted(context.selected_asset_keys, key=str):
            yield dg.MaterializeResult(asset_key=asset_key)
    else:
        for k, d in good.items():
            for name, meta in d.written.items():
                yield dg.AssetMaterialization(
                    chain.key(name), partition=k, metadata=_metadata(meta)
                )
    checked = chain.key(check_on)
    selected = {ck.name for ck in context.selected_asset_check_keys if ck.asset_key == checked}
    for k, d in days.items():
        for v in d.verdicts:
            if v.name in selected:
                yield evaluation(context.instance, checked, k, v, d.checked_at)
    if bad:
        lines = [f"{k}: " + "; ".join(r) for k, r in sorted(bad.items())]
        raise dg.Failure(
            description=f"{check_on}: {len(bad)} day(s) failed and were not written; "
            f"{len(good)} day(s) written:\n" + "\n".join(lines),
            metadata={"failed_days": dg.MetadataValue.json(sorted(bad))},
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


def _staging(path: Path) -> Path:
    """Where a file is built before its checks pass (hidden, same folder: the rename is atomic)."""
    return path.with_name(f".{path.name}.staged")


# ----------------------------------------------------------------------------- one day of each step


def raw_day(chain: Chain, source: DaySource, day: str) -> Day:
    """Ingest one day; raw_book_events, golden_bbo, golden_depth, trades, quarantine."""
    d = date.fromisoformat(day)
    try:
        staged = source.ingest(chain.request(d))
    except DAY_ERRORS as exc:
        return Day(problems=[f"source: {exc}"])
    verdicts = checks.raw_checks(staged, d, d in chain.inst.source.accept_damaged_days)
    if problems := blocked(verdicts):
        staged.discard()
        return Day(verdicts=verdicts, problems=problems)
    out = staged.days[d]
    paths = staged.publish(d, chain.path("quarantine", d))
    ids = by_name(verdicts, "raw_id_chain").metadata
    figures = {k: ids[k] for k in ("messages", "snapshots", "gaps", "duplicates_or_stale")}
    written = {
        RAW: _written(
            paths[RAW],
            **figures,
            level_updates=out.level_updates,
            quarantined=staged.quarantine.rows,
            lines_read=staged.stats.get("lines", 0),
        ),  # fmt: skip
        **{name: _written(path) for name, path in paths.items() if name != RAW},
    }
    return Day(written, verdicts)


def checkpoint_day(chain: Chain, day: str, previous: Day | None) -> Day:
    """The end-of-day book from D-1's (carried in a range run) and day D's events.

    A checkpoint replay encodes no book_snapshots rows (``out=None``): the day's engine pass and
    parquet decode only, about a third of book_snapshots' cost (DECISIONS.md).
    """
    start = _start_book(chain, day, previous.carry if previous else None)
    instrument, end_book, c = _replay(chain, day, start, None)
    verdicts = checks.checkpoint_checks(end_book, c, thresholds_for(instrument.venue_id), start)
    if problems := blocked(verdicts):  # later days would start from a book known to be wrong
        return Day(verdicts=verdicts, problems=problems)
    path = ckpt.write(end_book, instrument, chain.path(CHECKPOINT, day), day=day)
    meta = _written(
        path,
        messages=c.messages,
        last_update_id=int(end_book.last_update_id),
        in_sync=bool(end_book.is_valid),
        started_from="D-1 checkpoint" if start is not None else "own snapshot",
        gaps=c.gaps,
        resyncs=c.resyncs,
    )
    return Day({CHECKPOINT: meta}, verdicts, carry=end_book)


def snapshots_day(chain: Chain, day: str) -> Day:
    """Replay day D from D-1's checkpoint into a staged file; published when its checks pass."""
    final = chain.path(SNAPSHOTS, day)
    staged = _staging(final)
    try:
        start = _start_book(chain, day, None)
        instrument, _, c = _replay(chain, day, start, staged)
        inst = chain.inst  # a checksum venue's rows: invalid from a mismatch to the next snapshot
        c = checksum_gate.mark_lake_day(
            chain.cfg.lake, inst.venue_id, inst.symbol, day, staged, start, c
        )
        # Gates A1 + A2, the day's one golden comparison: golden_exact here, fidelity_metrics later
        for name in ("golden_bbo", "golden_depth"):  # the raw step writes both: never skipped
            chain.existing(name, day)
        golden = lakeio.golden_lake_day(chain.cfg.lake, inst.venue_id, inst.symbol, day, staged)
        verdicts = checks.snapshot_checks(
            pl.scan_parquet(staged),
            c,
            instrument,
            chain.cfg.depth,
            golden.comparisons,
            thresholds_for(instrument.venue_id),
        )
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    if problems := blocked(verdicts):
        staged.unlink(missing_ok=True)
        return Day(verdicts=verdicts, problems=problems)
    lake.promote(staged, final)
    counters = chain.write(pl.DataFrame([c.to_dict()], schema=counters_schema()), COUNTERS, day)
    results = chain.write(metrics_frame(golden.results), GOLDEN, day)
    proven = by_name(verdicts, "golden_exact").metadata
    meta = _written(
        final,
        messages=c.messages,
        level_updates=c.level_updates,
        gaps=c.gaps,
        resyncs=c.resyncs,
        invalid_rows=c.invalid_rows,
        duplicates=c.duplicates,
        crossed=c.crossed,
        checksum_mismatched=c.checksum_mismatched,
        **{k: proven[k] for k in ("golden_compared", "golden_mismatched", "golden_match_rate")},
    )
    return Day({SNAPSHOTS: meta, COUNTERS: _written(counters), GOLDEN: _written(results)}, verdicts)


def features_day(chain: Chain, day: str) -> Day:
    """Per-message features and the time grids of one day, streamed from its book_snapshots."""
    from obpipeline import features as F

    walk = chain.inst.walk_sizes
    config = F.FeatureConfig(walk_sizes=walk) if walk else F.FeatureConfig()
    snapshots, trades = chain.existing(SNAPSHOTS, day), chain.existing("trades", day)
    grids = {f"{FEATURES}_{every}": every for every in chain.cfg.feature_grids}
    paths = {name: chain.path(name, day) for name in grids}
    path = chain.path(FEATURES, day)
    summary = F.write_day_features(
        snapshots, trades, path, {grids[n]: p for n, p in paths.items()}, config,
        instrument=chain.day_instrument(day),
    )  # fmt: skip
    meta = _written(path, invalid_rows=summary["invalid_rows"], no_mid_rows=summary["no_mid_rows"])
    return Day({FEATURES: meta, **{name: _written(p) for name, p in paths.items()}})


def metrics_day(chain: Chain, day: str) -> Day:
    """Gates A and C of one day. The metrics are written even when a gate fails: the evidence."""
    inst = chain.inst
    result = fidelity_assets.fidelity_day(chain.cfg.lake, inst.venue_id, inst.symbol, day)
    path = chain.write(result.metrics, METRICS, day)
    return Day({METRICS: _written(path, **result.metadata)}, result.checks, blocked(result.checks))


def report_day(chain: Chain, day: str, last: str) -> Day:
    """The rolling report up to D; the HTML report (every day, tens of seconds) on the run's last
    day only: in a range run the other days get their table and summary (the same table bytes)."""
    inst = chain.inst
    if day == last:
        table, summary, markdown, html = fidelity_assets.fidelity_report_day(
            chain.cfg.lake, inst.venue_id, inst.symbol, day
        )
    else:
        (table, summary, markdown), html = _rolling_report(chain, day), None
    path = chain.write(table, REPORT, day)
    meta = _written(path, **summary, report=dg.MetadataValue.md(markdown))
    if html is not None:  # links the UI opens (``defs.reports``), and the file itself
        meta["html"] = dg.MetadataValue.url(report_url(chain.cfg, html))
        latest = Path(html).with_name("latest.html")
        if latest.exists():
            meta["latest"] = dg.MetadataValue.url(report_url(chain.cfg, latest))
        meta["html_file"] = dg.MetadataValue.path(str(Path(html).resolve()))
    return Day({REPORT: meta})


# ----------------------------------------------------------------------------- the factory


def _code(fn: Callable) -> dg.CodeReferencesMetadataValue:
    """Where a step's per-day logic lives (shown as *Code references* in the UI)."""
    lines, first = inspect.getsourcelines(fn)
    return dg.CodeReferencesMetadataValue(
        code_references=[
            dg.LocalFileCodeReference(file_path=inspect.getsourcefile(fn) or "", line_number=first)
        ]
    )


def _columns(schema: pl.Schema | None) -> dict[str, Any]:
    if schema is None:
        return {}
    return {"dagster/column_schema": dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in schema.items()]
    )}  # fmt: skip


def dataset_schemas(chain: Chain) -> dict[str, pl.Schema]:
    """Every dataset's columns, from ``schemas.py`` (decimals at the instrument's scales)."""
    from obpipeline import features as F

    inst, depth = chain.inst, chain.cfg.depth
    known = get_instrument(inst.venue, inst.market, inst.symbol)
    out: dict[str, pl.Schema] = {
        "quarantine": schemas.quarantine(),
        COUNTERS: counters_schema(),
        GOLDEN: METRICS_SCHEMA,
        METRICS: METRICS_SCHEMA,
        "golden_checksum": schemas.golden_checksum(),
        FEATURES: F.features_schema(),
        **{f"{FEATURES}_{g}": F.features_schema(grid=True) for g in chain.cfg.feature_grids},
    }
    if known is not None:
        out |= {
            RAW: schemas.raw_book_events(known),
            "golden_bbo": schemas.golden_bbo(known),
            "golden_depth": schemas.golden_depth(known, depth),
            "trades": schemas.trades(known),
            CHECKPOINT: schemas.book_checkpoint(known),
            SNAPSHOTS: schemas.book_snapshots(known, depth),
        }
    return out


def build_assets(chain: Chain) -> list[dg.AssetsDefinition]:
    """The asset steps of one instrument (GE checks are built separately, see ``defs.ge_checks``).

    Each body is one ``run_days`` over a per-day function above; what each step writes is one
    ``AssetSpec`` per dataset, with what it reads as deps.
    """
    cfg, inst = chain.cfg, chain.inst
    columns = dataset_schemas(chain)
    grids = [f"{FEATURES}_{g}" for g in cfg.feature_grids]
    k = chain.key
    prev_checkpoint = dg.AssetDep(k(CHECKPOINT), partition_mapping=PREV_DAY)
    # OKX / Bitget / Kraken landings also write the venue's checksums (sources/checksum_venues)
    checksum_datasets = ["golden_checksum"] if inst.source.is_checksum_venue else []

    def spec(name: str, description: str, deps: list, fn: Callable, kinds=("polars", "parquet")):
        return dg.AssetSpec(
            k(name),
            description=description,
            deps=deps,
            group_name=chain.group,
            owners=list(cfg.owners),
            kinds=set(kinds),
            partitions_def=chain.partitions,
            tags={"venue": inst.venue_id, "symbol": inst.symbol},
            metadata={**_columns(columns.get(name)), "dagster/code_references": _code(fn)},
        )

    def step(
        specs: list[dg.AssetSpec], checks_of: dict[str, tuple[Severity, str]] | None = None, **kw
    ):
        """A multi-asset over ``specs`` whose first spec carries the checks ``checks_of``."""
        check_specs = [
            dg.AssetCheckSpec(
                name,
                asset=specs[0].key,
                description=desc,
                partitions_def=chain.partitions,
                blocking=severity == Severity.ERROR,
            )  # fmt: skip
            for name, (severity, desc) in (checks_of or {}).items()
        ]
        return dg.multi_asset(
            specs=specs,
            check_specs=check_specs,
            name=f"{chain.group}__{specs[0].key.path[-1]}",
            backfill_policy=chain.policy,
            **kw,
        )

    @step(
        [
            spec(
                RAW,
                f"{inst.venue_id} {inst.symbol} level changes in arrival order, from the "
                f"{inst.source.kind} source.",
                [],
                raw_day,
            ),  # fmt: skip
            spec(
                "golden_bbo",
                "The venue's own best bid/offer records (Gate A1 reference).",
                [],
                raw_day,
            ),  # fmt: skip
            spec(
                "golden_depth",
                "The venue's own top-N depth records (Gate A1 reference).",
                [],
                raw_day,
            ),  # fmt: skip
            spec("trades", "Trades of the day (features' trade columns).", [], raw_day),
            *[
                spec(
                    name,
                    "The venue's CRC32 of its top levels per message (Gate A1 checksum).",
                    [],
                    raw_day,
                )  # fmt: skip
                for name in checksum_datasets
            ],
            spec(
                "quarantine",
                "Capture lines that could not be read, with file, line and reason.",
                [],
                raw_day,
            ),  # fmt: skip
        ],
        checks.RAW_CHECKS,
        required_resource_keys={SOURCE_RESOURCE},
        pool=INGEST_POOL,
    )
    def raw_book_events(context: dg.AssetExecutionContext):
        source: DaySource = getattr(context.resources, SOURCE_RESOURCE)
        yield from run_days(context, chain, RAW, lambda day, _: raw_day(chain, source, day))

    @step(
        [
            spec(
                CHECKPOINT,
                "Full book at the end of day D, replayed from the D-1 checkpoint: "
                "the only chained asset. Backfills run ranges of days in order inside one run.",
                [k(RAW), prev_checkpoint],
                checkpoint_day,
            ),  # fmt: skip
        ],
        checks.CHECKPOINT_CHECKS,
    )
    def book_checkpoint(context: dg.AssetExecutionContext):
        day = functools.partial(checkpoint_day, chain)
        yield from run_days(context, chain, CHECKPOINT, day, chained=True)

    def daily(fn: Callable[[Chain, str], Day], specs: list[dg.AssetSpec], checks_of=None):
        """A step whose day needs only the chain and the day: ``run_days`` over ``fn``."""

        @step(specs, checks_of)
        def run(context: dg.AssetExecutionContext):
            yield from run_days(context, chain, specs[0].key.path[-1], lambda d, _: fn(chain, d))

        return run

    book_snapshots = daily(
        snapshots_day,
        [
            spec(
                SNAPSHOTS,
                f"Top-{cfg.depth} book after every exchange message, replayed from "
                "the D-1 checkpoint (not chained: days run in parallel).",
                [k(RAW), prev_checkpoint, k("golden_bbo"), k("golden_depth")],
                snapshots_day,
            ),  # fmt: skip
            spec(
                COUNTERS,
                "The replay's counters of the day (one row): messages, gaps, "
                "resyncs, invalid rows, crossed books.",
                [k(RAW), prev_checkpoint],
                snapshots_day,
            ),  # fmt: skip
            spec(
                GOLDEN,
                "Gates A1 (exact agreement with every golden record and REST snapshot) and A2 "
                "(materiality) of the day's one golden comparison, as long metrics rows: "
                "fidelity_metrics reads them instead of comparing again.",
                [k(RAW), prev_checkpoint, k("golden_bbo"), k("golden_depth")],
                snapshots_day,
            ),  # fmt: skip
        ],
        checks.SNAPSHOT_CHECKS,
    )

    book_features = daily(
        features_day,
        [
            spec(
                FEATURES,
                "Microstructure features per message (obpipeline.features).",
                [k(SNAPSHOTS), k("trades")],
                features_day,
            ),  # fmt: skip
            *[
                spec(
                    g,
                    f"Features on the {g.rsplit('_', 1)[1]} time grid.",
                    [k(SNAPSHOTS), k("trades")],
                    features_day,
                )  # fmt: skip
                for g in grids
            ],
        ],
    )

    reads = [RAW, "golden_bbo", "golden_depth", *checksum_datasets, "quarantine", SNAPSHOTS]
    reads += [COUNTERS, GOLDEN, FEATURES]
    fidelity_metrics = daily(
        metrics_day,
        [
            spec(
                METRICS,
                "Per-day fidelity: Gate A0 integrity, A1 exact agreement with every "
                "golden record, A2 materiality (blocking), Gate C realism over the days up to "
                "D (warning); the long metrics frame (one row per check and figure).",
                [*map(k, reads), *map(k, grids), prev_checkpoint],
                metrics_day,
            ),  # fmt: skip
        ],
        fidelity_assets.CHECKS,
    )

    @step(
        [
            spec(
                REPORT,
                "Rolling fidelity report: every day's verdict up to and including D "
                "(all days of the lake), and the HTML report (Gates A, B, C) with plots.",
                [k(METRICS)],
                report_day,
                kinds=("polars", "parquet", "html"),
            ),  # fmt: skip
        ]
    )
    def fidelity_report(context: dg.AssetExecutionContext):
        last = max(context.partition_keys)
        yield from run_days(context, chain, REPORT, lambda day, _: report_day(chain, day, last))

    return [
        raw_book_events, book_checkpoint, book_snapshots, book_features, fidelity_metrics,
        fidelity_report,
    ]  # fmt: skip


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

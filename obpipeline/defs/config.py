"""Platform configuration: which instruments, from which source, over which window, alerting where.

Read from ``obpipeline.yaml`` at the repository root (or the file named by ``$OBPIPELINE_CONFIG``),
then overridden by a few environment variables, so a deployment changes behaviour without
editing code. Relative paths are resolved against the config file's folder, not the working
directory: the webserver, the daemon and each run process may start in different folders.

Environment overrides (all optional):

========================== =============================================================
``OBPIPELINE_CONFIG``      path of the YAML file (default: ``<repo>/obpipeline.yaml``)
``OBPIPELINE_LAKE``        lake root (default ``data/lake``), or ``s3://bucket/prefix``
``OBPIPELINE_ALERT_LOG``   JSONL alert log (default ``data/alerts/alerts.jsonl``)
``OBPIPELINE_ALERT_WEBHOOK`` URL that receives each alert as a JSON POST
``OBPIPELINE_REPORTS_URL`` where ``<lake>/_reports`` is served (``make ui``), or ``file`` for none
``OBPIPELINE_SLACK_TOKEN``  Slack bot token: alerts also go to ``alerts.slack_channel`` (dagster-slack)
``OBPIPELINE_WINDOW_START`` first partition ``YYYY-MM-DD``
``OBPIPELINE_WINDOW_END``  exclusive end ``YYYY-MM-DD``, or ``open`` for no end
``OBPIPELINE_SOURCE``      ``simulator`` or ``landing``: the source of every instrument
``OBPIPELINE_LANDING``     landing folder for ``landing`` sources
========================== =============================================================
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from obpipeline import storage
from obpipeline.sources.day import SourceConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "obpipeline.yaml"


@dataclass(frozen=True)
class InstrumentConfig:
    venue: str = "binance"
    market: str = "usdm"
    symbol: str = "BTCUSDT"
    source: SourceConfig = field(default_factory=SourceConfig)
    # book-walk order sizes in the instrument's size units (None: the features default, in BTC;
    # COIN-M sizes are contracts, e.g. [1, 10, 100])
    walk_sizes: tuple[float, ...] | None = None

    @property
    def venue_id(self) -> str:
        """The lake's ``venue=`` value (``binance-usdm``), as ``Instrument.venue_id``."""
        return f"{self.venue}-{self.market}"

    @property
    def slug(self) -> str:
        """Identifier-safe name used in asset keys, job and sensor names (``binance_usdm__btcusdt``)."""
        return f"{_ident(self.venue)}_{_ident(self.market)}__{_ident(self.symbol)}"


@dataclass(frozen=True)
class PlatformConfig:
    instruments: tuple[InstrumentConfig, ...] = (InstrumentConfig(),)
    lake: Path = REPO_ROOT / "data" / "lake"
    alert_log: Path = REPO_ROOT / "data" / "alerts" / "alerts.jsonl"
    alert_webhook: str | None = None
    slack_channel: str | None = None  # e.g. "#market-data-alerts"; needs OBPIPELINE_SLACK_TOKEN
    reports_url: str | None = None  # where <lake>/_reports is served; None: file:// links
    window_start: date | None = None  # None: 12 months up to yesterday (UTC)
    window_end: date | None = None  # exclusive; None: open-ended
    schedule_enabled: bool = True
    schedule_delay: str = "00:30"  # HH:MM after UTC midnight
    landing_sensor_interval: int = 60  # seconds
    landing_sensor_enabled: bool = True  # off: a backfill of the same files must not race it
    days_per_run: int = 31  # BackfillPolicy.multi_run(N)
    depth: int = 20
    engine: str | None = None  # None: the library's default engine
    great_expectations: bool = True
    feature_grids: tuple[str, ...] = ("1s",)
    snapshot_open_seconds: int = 300  # "day D opens with its own snapshot": within this many s
    owners: tuple[str, ...] = ("team:market-data",)  # Dagster asset owners (emails or team:x)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"\d{1,2}:\d{2}", self.schedule_delay):
            raise ValueError(f"schedule delay {self.schedule_delay!r}: use HH:MM")
        if self.days_per_run < 1:
            raise ValueError("days_per_run must be >= 1")
        slugs = [i.slug for i in self.instruments]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"instruments configured twice: {slugs}")

    @property
    def start(self) -> date:
        """First partition: configured, else one year before today (UTC), so yesterday is last."""
        if self.window_start is not None:
            return self.window_start
        today = datetime.now(UTC).date()
        try:
            return today.replace(year=today.year - 1)
        except ValueError:  # 29 February
            return today - timedelta(days=365)

    @property
    def schedule_hour_minute(self) -> tuple[int, int]:
        h, m = (int(x) for x in self.schedule_delay.split(":"))
        return h, m

    def with_(self, **changes: Any) -> PlatformConfig:
        return replace(self, **changes)


def _ident(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _date(value: Any) -> date | None:
    if value in (None, "", "open"):
        return None
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _path(value: Any, base: Path) -> Path:
    p = Path(os.path.expanduser(str(value)))
    return p if p.is_absolute() else (base / p).resolve()


def _lake(value: Any, base: Path) -> Path:
    """A lake folder, or the local cache folder of an ``s3://bucket/prefix`` lake (``storage``)."""
    if storage.is_remote(str(value)):
        return storage.local_root(str(value))
    return _path(value, base)


def _source(raw: dict[str, Any], base: Path) -> SourceConfig:
    raw = dict(raw or {})
    if raw.get("path") is not None:
        raw["path"] = _path(raw["path"], base)
    raw["options"] = dict(raw.get("options") or {})
    raw["fault_days"] = tuple(_date(d) for d in raw.get("fault_days") or ())
    raw["accept_damaged_days"] = tuple(_date(d) for d in raw.get("accept_damaged_days") or ())
    unknown = set(raw) - set(SourceConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown source settings {sorted(unknown)}")
    return SourceConfig(**raw)


def parse_config(raw: dict[str, Any], base: Path = REPO_ROOT) -> PlatformConfig:
    """A ``PlatformConfig`` from the YAML mapping (documented in ``obpipeline.yaml``)."""
    raw = raw or {}
    defaults = PlatformConfig()
    instruments = tuple(
        InstrumentConfig(
            venue=str(i.get("venue", "binance")),
            market=str(i.get("market", "usdm")),
            symbol=str(i.get("symbol", "BTCUSDT")).upper(),
            source=_source(i.get("source") or {}, base),
            walk_sizes=tuple(float(x) for x in i["walk_sizes"]) if i.get("walk_sizes") else None,
        )
        for i in (raw.get("instruments") or [{}])
    )
    window = raw.get("window") or {}
    schedule = raw.get("schedule") or {}
    alerts = raw.get("alerts") or {}
    book = raw.get("book") or {}
    checks = raw.get("checks") or {}
    features = raw.get("features") or {}
    return PlatformConfig(
        instruments=instruments,
        lake=_lake(raw.get("lake", defaults.lake), base),
        alert_log=_path(alerts.get("log", defaults.alert_log), base),
        alert_webhook=alerts.get("webhook_url") or None,
        slack_channel=alerts.get("slack_channel") or None,
        reports_url=(raw.get("reports") or {}).get("url") or None,
        window_start=_date(window.get("start")),
        window_end=_date(window.get("end")),
        schedule_enabled=bool(schedule.get("enabled", True)),
        schedule_delay=str(schedule.get("delay", defaults.schedule_delay)),
        landing_sensor_interval=int(
            schedule.get("landing_sensor_interval", defaults.landing_sensor_interval)
        ),
        landing_sensor_enabled=bool(schedule.get("landing_sensor", True)),
        days_per_run=int((raw.get("backfill") or {}).get("days_per_run", defaults.days_per_run)),
        depth=int(book.get("depth", defaults.depth)),
        engine=book.get("engine") or None,
        great_expectations=bool(checks.get("great_expectations", True)),
        feature_grids=tuple(features.get("grids", defaults.feature_grids)),
        snapshot_open_seconds=int(
            book.get("snapshot_open_seconds", defaults.snapshot_open_seconds)
        ),
        owners=tuple(str(o) for o in raw.get("owners") or defaults.owners),
    )


def apply_env(config: PlatformConfig, env: dict[str, str] | None = None) -> PlatformConfig:
    """Environment overrides on top of the file (see the module docstring)."""
    env = dict(os.environ if env is None else env)
    changes: dict[str, Any] = {}
    if env.get("OBPIPELINE_LAKE"):
        changes["lake"] = _lake(env["OBPIPELINE_LAKE"], Path.cwd())
    if env.get("OBPIPELINE_ALERT_LOG"):
        changes["alert_log"] = Path(env["OBPIPELINE_ALERT_LOG"]).resolve()
    if env.get("OBPIPELINE_ALERT_WEBHOOK"):
        changes["alert_webhook"] = env["OBPIPELINE_ALERT_WEBHOOK"]
    if env.get("OBPIPELINE_REPORTS_URL"):
        url = env["OBPIPELINE_REPORTS_URL"]
        changes["reports_url"] = None if url == "file" else url
    if env.get("OBPIPELINE_WINDOW_START"):
        changes["window_start"] = _date(env["OBPIPELINE_WINDOW_START"])
    if env.get("OBPIPELINE_WINDOW_END"):
        changes["window_end"] = _date(env["OBPIPELINE_WINDOW_END"])
    kind, landing = env.get("OBPIPELINE_SOURCE"), env.get("OBPIPELINE_LANDING")
    if kind or landing:
        changes["instruments"] = tuple(
            replace(
                i,
                source=replace(
                    i.source,
                    kind=kind or i.source.kind,
                    path=Path(landing).resolve() if landing else i.source.path,
                ),
            )
            for i in config.instruments
        )
    return replace(config, **changes) if changes else config


def load_config(path: Path | str | None = None) -> PlatformConfig:
    """The YAML file (when it exists) plus environment overrides."""
    path = Path(path or os.environ.get("OBPIPELINE_CONFIG") or DEFAULT_CONFIG)
    raw: dict[str, Any] = {}
    if path.exists():
        raw = yaml.safe_load(path.read_text()) or {}
    return apply_env(parse_config(raw, path.resolve().parent))

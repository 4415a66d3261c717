"""The hive-partitioned parquet lake: ``<root>/<dataset>/venue=<v>/symbol=<s>/date=<d>/part-0.parquet``.

Writes are atomic (temporary file in the same folder, fsync, rename), so a reader never sees a
half-written file and a crashed run leaves the previous version intact. Parquet is written with
fixed settings and no timestamps in metadata, so re-running a partition gives the same bytes.
"""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path

import polars as pl

DEFAULT_ROOT = Path("data/lake")
PART = "part-0.parquet"


def lake_root() -> Path:
    """``$OBPIPELINE_LAKE`` or ``data/lake`` under the working directory."""
    return Path(os.environ.get("OBPIPELINE_LAKE", DEFAULT_ROOT))


def partition_dir(
    dataset: str, venue: str, symbol: str, day: date | str, root: Path | None = None
) -> Path:
    return (root or lake_root()) / dataset / f"venue={venue}" / f"symbol={symbol}" / f"date={day}"


def partition_path(
    dataset: str, venue: str, symbol: str, day: date | str, root: Path | None = None
) -> Path:
    return partition_dir(dataset, venue, symbol, day, root) / PART


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> Path:
    """Write ``frame`` to ``path`` so that the file is either the old one or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the lake is shared like any output
    try:
        frame.write_parquet(tmp, compression="zstd", compression_level=3, statistics=True)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_partition(
    frame: pl.DataFrame,
    dataset: str,
    venue: str,
    symbol: str,
    day: date | str,
    root: Path | None = None,
) -> Path:
    return write_parquet_atomic(frame, partition_path(dataset, venue, symbol, day, root))


def scan_partition(
    dataset: str, venue: str, symbol: str, day: date | str, root: Path | None = None
) -> pl.LazyFrame:
    path = partition_path(dataset, venue, symbol, day, root)
    if not path.exists():
        raise FileNotFoundError(f"{dataset} partition missing: {path}")
    return pl.scan_parquet(path)


def scan_dataset(dataset: str, root: Path | None = None) -> pl.LazyFrame:
    """All partitions of a dataset with ``venue``/``symbol``/``date`` as columns (hive)."""
    base = (root or lake_root()) / dataset
    return pl.scan_parquet(base / "**" / "*.parquet", hive_partitioning=True)

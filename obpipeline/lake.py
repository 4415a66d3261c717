"""The hive-partitioned parquet lake: ``<root>/<dataset>/venue=<v>/symbol=<s>/date=<d>/part-0.parquet``.

Writes are atomic (temporary file in the same folder, fsync, rename, fsync of the folder), so a
reader never sees a half-written file and a crashed run leaves the previous version intact; the
temporary files a killed write left behind are removed by the next write of that file.
Venue and symbol are checked (``instruments.check_name``) before any path is built, so no name
taken from file contents can place a file outside the root. Parquet is written with
fixed settings and no timestamps in metadata, so re-running a partition gives the same bytes.

The root may also be an object-store lake, ``s3://bucket/prefix`` (``obpipeline.storage``): the
files are then read and written in its local cache folder, a write is published as one object
before it is renamed into the cache (``publish``; writers that stream their own temporary file
call it after their rename), and ``partition_path`` first brings the partition's object into the
cache, so every reader that resolves its path through here reads the published version.
"""

from __future__ import annotations

import fcntl
import glob
import os
import tempfile
from datetime import date
from pathlib import Path

import polars as pl

from obpipeline import storage
from obpipeline.instruments import check_name

DEFAULT_ROOT = Path("data/lake")
PART = "part-0.parquet"


def lake_root() -> Path:
    """``$OBPIPELINE_LAKE`` or ``data/lake`` under the working directory (for ``s3://`` lakes: the
    local cache folder, ``storage.local_root``)."""
    return root_of(os.environ.get("OBPIPELINE_LAKE") or DEFAULT_ROOT)


def root_of(location: str | Path) -> Path:
    """The local folder of a lake given as a path or as ``s3://bucket/prefix``."""
    return storage.local_root(location)


def publish(path: Path) -> None:
    """Publish a lake file just renamed into place to the object store (no-op for local lakes)."""
    storage.publish(path)


def partition_dir(
    dataset: str, venue: str, symbol: str, day: date | str, root: Path | None = None
) -> Path:
    check_name("dataset", dataset)
    check_name("venue", venue)
    check_name("symbol", symbol)
    check_name("date", str(day))
    return (root or lake_root()) / dataset / f"venue={venue}" / f"symbol={symbol}" / f"date={day}"


def partition_path(
    dataset: str, venue: str, symbol: str, day: date | str, root: Path | None = None
) -> Path:
    """The partition's file; for an object-store lake, brought up to date in the cache first."""
    path = partition_dir(dataset, venue, symbol, day, root) / PART
    storage.localise(path)
    return path


def write_parquet_atomic(
    frame: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None
) -> Path:
    """Write ``frame`` to ``path`` so that the file is either the old one or the complete new one
    (``metadata``: key-value pairs for the parquet footer)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held until done: tells a live write from a killed one
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the lake is shared like any output
    try:
        frame.write_parquet(
            tmp, compression="zstd", compression_level=3, statistics=True, metadata=metadata
        )
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        storage.publish(path, source=tmp)  # the object first, then the rename into place
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return path


def _remove_stale_temps(path: Path) -> None:
    """Remove the temporary files of ``path`` left by killed writes: a live write holds the lock
    on its temporary file (the kernel drops it when the writer dies), so only dead ones go."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except FileNotFoundError:  # finished or removed meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a write in progress
            continue
        else:
            tmp.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable: the directory entry is on disk, not only the file's bytes."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def dataset_instruments(dataset: str, root: Path | None = None) -> list[tuple[str, str]]:
    """``(venue, symbol)`` of every instrument with a folder in the dataset (object-store lakes:
    listed from the store)."""
    base = (root or lake_root()) / dataset
    return [
        (v.removeprefix("venue="), s.removeprefix("symbol="))
        for v in _folders(base, "venue=")
        for s in _folders(base / v, "symbol=")
    ]


def dataset_days(dataset: str, venue: str, symbol: str, root: Path | None = None) -> list[date]:
    """The days with a written partition file (object-store lakes: listed from the store)."""
    base = (root or lake_root()) / dataset / f"venue={venue}" / f"symbol={symbol}"
    names = storage.files_below(base)
    if names is None:
        names = [str(p.relative_to(base)) for p in base.glob(f"date=*/{PART}")]
    return sorted(
        date.fromisoformat(d.removeprefix("date="))
        for d, _, f in (n.partition("/") for n in names)
        if d.startswith("date=") and f == PART
    )


def _folders(base: Path, prefix: str) -> list[str]:
    listed = storage.listing(base)
    if listed is not None:
        names = listed[0]
    else:
        names = [p.name for p in base.iterdir() if p.is_dir()] if base.is_dir() else []
    return sorted(n for n in names if n.startswith(prefix))


def promote(staged: Path, final: Path) -> Path:
    """Make a checked staged file (hidden, beside ``final``) the partition: published to the
    object store first for an object-store lake, then renamed into place."""
    storage.publish(final, source=staged)
    return final


def scan_dataset(dataset: str, root: Path | None = None) -> pl.LazyFrame:
    """All partitions of a dataset with ``venue``/``symbol``/``date`` as columns (hive)."""
    base = (root or lake_root()) / dataset
    storage.localise_prefix(base)
    return pl.scan_parquet(base / "**" / "*.parquet", hive_partitioning=True)

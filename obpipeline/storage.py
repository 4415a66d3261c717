"""The one storage layer of the lake: a local folder (the default) or ``s3://bucket/prefix``.

Every reader and writer of the lake works on local paths. For an object-store lake those paths
lie in a local cache, ``<cache>/s3/<bucket>/<prefix>/...`` (``$OBPIPELINE_LAKE_CACHE``, default
``data/lake-cache``), so the object key of a cached file is its path below ``<cache>/s3/<bucket>``
and no process needs to be told which cache belongs to which lake:

- ``publish(path)``: once a file is complete on local disk (the lake's write-then-rename), it is
  uploaded with one PUT, or a multipart upload that only ``CompleteMultipartUpload`` makes
  visible. S3 never shows a partial object: a killed upload leaves the previous object (or
  none). The bytes are the local file's, so the lake's deterministic writes stay deterministic.
- ``localise(path)``: before a read, the object is downloaded into the cache when the cache
  lacks it or holds another version (its ETag, kept beside the file as ``.<name>.etag``, differs).
  Downloads are written to a temporary file and renamed, like any lake write.

A plain local lake makes both no-ops. The S3 client is ``obstore`` (Rust ``object_store``),
configured from the standard ``AWS_*`` variables (``AWS_ENDPOINT_URL`` for an S3-API server such
as moto or MinIO; plain ``http://`` endpoints are allowed).
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any

SCHEME = "s3://"
CACHE_ENV = "OBPIPELINE_LAKE_CACHE"
DEFAULT_CACHE = Path("data/lake-cache")


def is_remote(location: str | Path) -> bool:
    """True for ``s3://bucket/prefix`` (a ``Path`` never is: it collapses ``//``)."""
    return isinstance(location, str) and location.startswith(SCHEME)


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``; a clear error for anything else."""
    if not is_remote(url):
        raise ValueError(f"{url!r}: an object-store lake is s3://bucket[/prefix]")
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    prefix = prefix.rstrip("/")
    if not bucket or any(p in ("", ".", "..") for p in (prefix.split("/") if prefix else [])):
        raise ValueError(f"{url!r}: an object-store lake is s3://bucket[/prefix]")
    return bucket, prefix


def cache_base() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).resolve() / "s3"


def local_root(location: str | Path) -> Path:
    """The folder on this machine through which the lake at ``location`` is read and written."""
    if not is_remote(location):
        return Path(location)
    bucket, prefix = split_url(str(location))
    return cache_base().joinpath(bucket, *prefix.split("/")) if prefix else cache_base() / bucket


def remote_of(path: Path | str) -> tuple[str, str] | None:
    """``(bucket, key)`` of a file in the object-store cache, ``None`` for a plain local path."""
    try:
        rel = Path(path).resolve().relative_to(cache_base())
    except ValueError:
        return None
    if len(rel.parts) < 2:
        return None
    return rel.parts[0], "/".join(rel.parts[1:])


def url_of(path: Path | str) -> str:
    """``s3://bucket/key`` for a cached file, else the path itself (for messages and metadata)."""
    remote = remote_of(path)
    return f"{SCHEME}{remote[0]}/{remote[1]}" if remote else str(path)


@functools.cache
def store(bucket: str) -> Any:
    """The bucket's ``obstore`` S3 store (one per process and bucket: it holds a connection pool)."""
    from obstore.store import S3Store

    env = os.environ
    config: dict[str, str] = {}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        config["endpoint"] = endpoint
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        config["region"] = region
    client = {"allow_http": True} if endpoint and endpoint.startswith("http://") else None
    return S3Store(bucket, config=config or None, client_options=client)


def _etag_file(path: Path) -> Path:
    return path.parent / f".{path.name}.etag"


def publish(path: Path | str, source: Path | str | None = None) -> None:
    """Upload a complete lake file to its object (no-op for a plain local lake).

    ``source``: a complete temporary file that becomes ``path`` (renamed) only once its object is
    published, so the cache never holds a version the object store does not. Hidden names
    (``.x.staged``) are local staging: they are renamed, not uploaded."""
    remote = remote_of(path)
    path = Path(path)
    if remote is None or path.name.startswith("."):  # hidden: staging, published when renamed
        if source is not None:
            os.replace(source, path)
        return
    import obstore

    _record_etag(path, None)  # until the end, the cache may differ from the object
    result = obstore.put(store(remote[0]), remote[1], Path(source or path))
    if source is not None:
        os.replace(source, path)
    _record_etag(path, result.get("e_tag"))


def localise(path: Path | str) -> bool:
    """Bring the object of a cached lake file up to date on local disk; True when it exists
    (locally for a plain lake). A missing object leaves the cache as it is."""
    path = Path(path)
    remote = remote_of(path)
    if remote is None:
        return path.exists()
    import obstore

    bucket, key = remote
    try:
        meta = obstore.head(store(bucket), key)
    except FileNotFoundError:
        return path.exists()
    etag = meta.get("e_tag")
    if path.exists() and etag and _read_etag(path) == etag:
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in obstore.get(store(bucket), key).stream():
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _record_etag(path, etag)
    return True


def localise_prefix(folder: Path | str) -> int:
    """Bring every object below a cached folder up to date on local disk (for readers that
    scan the lake); returns how many objects there are. No-op (0) for a plain local lake."""
    names = files_below(folder)
    for name in names or []:
        localise(Path(folder).resolve() / name)
    return len(names or [])


def listing(folder: Path | str) -> tuple[list[str], list[str]] | None:
    """``(sub-folders, files)`` directly below a cached folder, from the object store (the truth
    for an object-store lake: other machines' files are not in this cache); ``None`` for a plain
    local folder."""
    remote = remote_of(Path(folder) / "_")
    if remote is None:
        return None
    import obstore

    bucket, key = remote
    prefix = key[: -len("_")]
    found = obstore.list_with_delimiter(store(bucket), prefix=prefix or None)
    folders = [p.rstrip("/").rsplit("/", 1)[-1] for p in found["common_prefixes"]]
    files = [m["path"].rsplit("/", 1)[-1] for m in found["objects"]]
    return sorted(folders), sorted(files)


def files_below(folder: Path | str) -> list[str] | None:
    """Paths (relative, ``/``-separated) of every object below a cached folder, listed from the
    object store; ``None`` for a plain local folder."""
    remote = remote_of(Path(folder) / "_")
    if remote is None:
        return None
    import obstore

    bucket, key = remote
    prefix = key[: -len("_")]
    return sorted(
        meta["path"][len(prefix) :]
        for batch in obstore.list(store(bucket), prefix=prefix or None)
        for meta in batch
    )


def _record_etag(path: Path, etag: str | None) -> None:
    if etag:
        _etag_file(path).write_text(etag)
    else:
        _etag_file(path).unlink(missing_ok=True)


def _read_etag(path: Path) -> str | None:
    try:
        return _etag_file(path).read_text()
    except FileNotFoundError:
        return None

"""Run the project's DuckDB queries (``sql/*.sql``) over the lake, from code or the CLI.

The queries read the lake's hive-partitioned parquet with ``read_parquet(getvariable('lake') ||
...)``: their parameters are DuckDB variables, so the same file runs by hand in the ``duckdb``
shell (``SET VARIABLE lake = 'data/lake'`` first) and here, where ``run_sql`` sets them. A file may
hold several statements; the result of the last one is returned as a Polars frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import polars as pl

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def sql_path(name: str | Path) -> Path:
    """A query file by path, or by name in the project's ``sql/`` folder (``.sql`` optional)."""
    p = Path(name)
    if p.exists():
        return p
    for cand in (SQL_DIR / p, SQL_DIR / f"{p}.sql"):
        if cand.exists():
            return cand
    raise FileNotFoundError(f"no SQL file {name!r} (looked in . and {SQL_DIR})")


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def run_sql(
    query: str | Path,
    lake: Path | str | None = None,
    variables: dict[str, Any] | None = None,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> pl.DataFrame:
    """Run a query file (or SQL text) with ``lake`` and ``variables`` set as DuckDB variables."""
    text = query if isinstance(query, str) and "\n" in query else sql_path(query).read_text()
    con = connection or duckdb.connect()
    try:
        settings = dict(variables or {})
        if lake is not None:
            settings["lake"] = str(lake)
        for name, value in settings.items():
            if not name.isidentifier():
                raise ValueError(f"bad variable name {name!r}")
            con.execute(f"SET VARIABLE {name} = {_literal(value)}").fetchall()
        statements = con.extract_statements(text)
        if not statements:
            raise ValueError("no SQL statement")
        for st in statements[:-1]:
            con.execute(st).fetchall()  # duckdb 2: finish each result before the next
        return con.sql(statements[-1].query).pl()
    finally:
        if connection is None:
            con.close()

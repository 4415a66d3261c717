-- Gate A1 per-level accuracy of the partial-book comparison: for each level, the share of
-- aligned records whose bid and ask price and size at that level equal our book's (the
-- ``per_level`` table of obpipeline.fidelity.exact.compare_depth, tested to agree).
-- Parameters (DuckDB variables): lake (default 'data/lake'), venue, symbol, date_from, date_to.
SET VARIABLE lake = coalesce(getvariable('lake'), 'data/lake');

WITH golden AS (
    SELECT * EXCLUDE (file_row_number), file_row_number AS golden_row
    FROM read_parquet(getvariable('lake') || '/golden_depth/*/*/*/*.parquet',
                      hive_partitioning = true, file_row_number = true)
    WHERE (getvariable('venue') IS NULL OR venue = getvariable('venue'))
      AND (getvariable('symbol') IS NULL OR symbol = getvariable('symbol'))
      AND (getvariable('date_from') IS NULL OR date >= CAST(getvariable('date_from') AS DATE))
      AND (getvariable('date_to') IS NULL OR date <= CAST(getvariable('date_to') AS DATE))
),
book_rows AS (
    SELECT * EXCLUDE (file_row_number)
    FROM read_parquet(getvariable('lake') || '/book_snapshots/*/*/*/*.parquet',
                      hive_partitioning = true, file_row_number = true)
    WHERE is_valid
    QUALIFY row_number() OVER (
        PARTITION BY venue, symbol, last_update_id ORDER BY date DESC, file_row_number DESC
    ) = 1
),
g_long AS (
    SELECT * FROM (
        SELECT venue, symbol, date, update_id, golden_row, levels,
               COLUMNS('^(bid|ask)_(price|size)_[0-9]+$')
        FROM golden)
    UNPIVOT INCLUDE NULLS (golden_value FOR col IN (COLUMNS('^(bid|ask)_(price|size)_[0-9]+$')))
),
b_long AS (
    SELECT * FROM (
        SELECT venue, symbol, last_update_id, COLUMNS('^(bid|ask)_(price|size)_[0-9]+$')
        FROM book_rows
        WHERE last_update_id IN (SELECT update_id FROM golden))
    UNPIVOT INCLUDE NULLS (book_value FOR col IN (COLUMNS('^(bid|ask)_(price|size)_[0-9]+$')))
),
levels AS (
    SELECT g.venue, g.symbol, g.update_id, g.golden_row,
           CAST(regexp_extract(g.col, '_([0-9]+)$', 1) AS INTEGER) AS level,
           bool_and(g.golden_value IS NOT DISTINCT FROM b.book_value) AS equal
    FROM g_long g
    JOIN b_long b ON b.venue = g.venue AND b.symbol = g.symbol
                 AND b.last_update_id = g.update_id AND b.col = g.col
    WHERE CAST(regexp_extract(g.col, '_([0-9]+)$', 1) AS INTEGER) <= g.levels
    GROUP BY ALL
)
SELECT venue, symbol, level,
       count(*) AS compared,
       count(*) FILTER (WHERE equal) AS matched,
       count(*) FILTER (WHERE equal) / count(*) AS accuracy
FROM levels
GROUP BY ALL
ORDER BY venue, symbol, level;

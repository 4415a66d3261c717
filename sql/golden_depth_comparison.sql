-- Gate A1, partial-book streams (depth5/10/20): every level a record covers, price and size,
-- against our book at the same update id, per venue / symbol / day. Same rule as
-- obpipeline.fidelity.exact.compare_depth (tested to agree): levels beyond the record's
-- ``levels`` are not compared; incidents are runs of consecutive mismatching records.
-- Wide rows are unpivoted to (level column, value), so any depth works without listing columns.
--
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
cells AS (
    SELECT g.venue, g.symbol, g.date, g.update_id, g.golden_row,
           CAST(regexp_extract(g.col, '_([0-9]+)$', 1) AS INTEGER) AS level,
           g.golden_value IS NOT DISTINCT FROM b.book_value AS equal
    FROM g_long g
    JOIN b_long b ON b.venue = g.venue AND b.symbol = g.symbol
                 AND b.last_update_id = g.update_id AND b.col = g.col
    WHERE CAST(regexp_extract(g.col, '_([0-9]+)$', 1) AS INTEGER) <= g.levels
),
records_aligned AS (
    SELECT venue, symbol, date, update_id, golden_row, NOT bool_and(equal) AS mismatch
    FROM cells GROUP BY ALL
),
runs AS (
    SELECT *, mismatch AND NOT coalesce(
        lag(mismatch) OVER (PARTITION BY venue, symbol, date ORDER BY update_id, golden_row),
        false) AS incident_start
    FROM records_aligned
),
records AS (
    SELECT venue, symbol, date, count(*) AS records FROM golden GROUP BY ALL
),
per_day AS (
    SELECT venue, symbol, date,
           count(*) AS aligned,
           count(*) FILTER (WHERE NOT mismatch) AS matched,
           count(*) FILTER (WHERE mismatch) AS mismatched,
           count(*) FILTER (WHERE incident_start) AS incidents
    FROM runs GROUP BY ALL
)
SELECT r.venue, r.symbol, r.date, r.records,
       coalesce(p.aligned, 0) AS aligned,
       coalesce(p.matched, 0) AS matched,
       coalesce(p.mismatched, 0) AS mismatched,
       coalesce(p.incidents, 0) AS incidents,
       coalesce(p.aligned, 0) / r.records AS aligned_fraction,
       p.matched / nullif(p.aligned, 0) AS match_rate
FROM records r
LEFT JOIN per_day p USING (venue, symbol, date)
ORDER BY r.venue, r.symbol, r.date;

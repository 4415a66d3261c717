-- Gate A1, bookTicker: the exchange's best bid/offer against level 1 of our book at the same
-- update id, per venue / symbol / day, over the lake's hive-partitioned parquet.
-- The same rule as obpipeline.fidelity.exact.compare_bbo (and tested to agree with it):
--   * our book at update id u = the last valid book_snapshots row with last_update_id = u
--     (file row order: after a resync the buffered diffs are re-emitted after the snapshot);
--   * a record matches when bid/ask price and size are equal (exact decimals, NULL = NULL);
--   * incidents = runs of consecutive mismatching aligned records, in update-id order;
--   * time_checked / time_mismatched: records carrying an exchange time (ts_event <> ts_local)
--     against the time of the depth diff message with the same update id.
--
-- Parameters are DuckDB variables (obpipeline sql FILE --lake DIR [--var venue=...] sets them):
--   lake (default 'data/lake'), venue, symbol, date_from, date_to (NULL = no filter).
-- By hand: duckdb -c "SET VARIABLE lake = 'data/lake'" -c ".read sql/golden_bbo_comparison.sql"
SET VARIABLE lake = coalesce(getvariable('lake'), 'data/lake');

WITH golden AS (
    SELECT venue, symbol, date, update_id, ts_event, ts_local,
           bid_price, bid_size, ask_price, ask_size, file_row_number AS golden_row
    FROM read_parquet(getvariable('lake') || '/golden_bbo/*/*/*/*.parquet',
                      hive_partitioning = true, file_row_number = true)
    WHERE (getvariable('venue') IS NULL OR venue = getvariable('venue'))
      AND (getvariable('symbol') IS NULL OR symbol = getvariable('symbol'))
      AND (getvariable('date_from') IS NULL OR date >= CAST(getvariable('date_from') AS DATE))
      AND (getvariable('date_to') IS NULL OR date <= CAST(getvariable('date_to') AS DATE))
),
book AS (
    SELECT venue, symbol, last_update_id,
           bid_price_1, bid_size_1, ask_price_1, ask_size_1
    FROM read_parquet(getvariable('lake') || '/book_snapshots/*/*/*/*.parquet',
                      hive_partitioning = true, file_row_number = true)
    WHERE is_valid
    QUALIFY row_number() OVER (
        PARTITION BY venue, symbol, last_update_id ORDER BY date DESC, file_row_number DESC
    ) = 1
),
messages AS (  -- one row per depth diff message: its update id and exchange time
    SELECT venue, symbol, last_update_id, min(ts_event) AS ts_message
    FROM read_parquet(getvariable('lake') || '/raw_book_events/*/*/*/*.parquet',
                      hive_partitioning = true)
    WHERE NOT is_snapshot
    GROUP BY venue, symbol, last_update_id
),
aligned AS (
    SELECT g.venue, g.symbol, g.date, g.update_id, g.golden_row,
           NOT (g.bid_price IS NOT DISTINCT FROM b.bid_price_1
                AND g.bid_size IS NOT DISTINCT FROM b.bid_size_1
                AND g.ask_price IS NOT DISTINCT FROM b.ask_price_1
                AND g.ask_size IS NOT DISTINCT FROM b.ask_size_1) AS mismatch
    FROM golden g
    JOIN book b ON b.venue = g.venue AND b.symbol = g.symbol AND b.last_update_id = g.update_id
),
runs AS (
    SELECT *, mismatch AND NOT coalesce(
        lag(mismatch) OVER (PARTITION BY venue, symbol, date ORDER BY update_id, golden_row),
        false) AS incident_start
    FROM aligned
),
times AS (
    SELECT g.venue, g.symbol, g.date,
           count(*) AS time_checked,
           count(*) FILTER (WHERE g.ts_event <> m.ts_message) AS time_mismatched
    FROM golden g
    JOIN messages m ON m.venue = g.venue AND m.symbol = g.symbol AND m.last_update_id = g.update_id
    WHERE g.ts_event <> g.ts_local
    GROUP BY ALL
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
       p.matched / nullif(p.aligned, 0) AS match_rate,
       coalesce(t.time_checked, 0) AS time_checked,
       coalesce(t.time_mismatched, 0) AS time_mismatched
FROM records r
LEFT JOIN per_day p USING (venue, symbol, date)
LEFT JOIN times t USING (venue, symbol, date)
ORDER BY r.venue, r.symbol, r.date;

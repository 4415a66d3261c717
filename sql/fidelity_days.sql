-- Gate verdicts per day from the fidelity_metrics dataset (one row per check and metric): which
-- checks failed or warned, per venue / symbol / day. A quick audit of what the report shows.
-- Parameters (DuckDB variables): lake (default 'data/lake'), venue, symbol, date_from, date_to.
SET VARIABLE lake = coalesce(getvariable('lake'), 'data/lake');

SELECT venue, symbol, date,
       count(*) FILTER (WHERE blocking) AS blocking_checks,
       count(*) FILTER (WHERE blocking AND status = 'fail') AS failed,
       count(*) FILTER (WHERE status = 'insufficient') AS insufficient,
       count(*) FILTER (WHERE status = 'warn') AS warned,
       string_agg(gate || ':' || "check", ', ' ORDER BY gate, "check")
           FILTER (WHERE status IN ('fail', 'warn')) AS flagged,
       bool_and(NOT blocking OR status <> 'fail') AS gate_a_passed
FROM read_parquet(getvariable('lake') || '/fidelity_metrics/*/*/*/*.parquet',
                  hive_partitioning = true, union_by_name = true)
WHERE metric = 'value'
  AND (getvariable('venue') IS NULL OR venue = getvariable('venue'))
  AND (getvariable('symbol') IS NULL OR symbol = getvariable('symbol'))
  AND (getvariable('date_from') IS NULL OR date >= CAST(getvariable('date_from') AS DATE))
  AND (getvariable('date_to') IS NULL OR date <= CAST(getvariable('date_to') AS DATE))
GROUP BY ALL
ORDER BY venue, symbol, date;

-- Issue 18: the rollup fold moves out of SQL. The store folds each batch in Rust (the same
-- code the SQLite store uses) and sends, besides the events as parallel typed arrays, the
-- batch's partial rollup rows of each granularity, also as parallel arrays (element i of
-- every m_* array is minute row i, of every h_* array hour row i; bucket_ms is the bucket
-- start in unix milliseconds). Per 1000 events (psql, bench machine) the SQL fold cost as
-- much as the insert itself, and its INSERT … RETURNING with array_agg added more.
--
-- ingest_prefolded keeps the exactly-once contract of aggregate_metrics_columns:
--   * fast path: a plain INSERT (no ON CONFLICT, no RETURNING). If it succeeds, every event
--     of the batch is new, so the partials (which the caller computed from the whole batch)
--     are exactly what the new rows add: they are upserted with the same merge rules as the
--     SQL fold (sums, LEAST/GREATEST, hist_merge, sum_nullable);
--   * any unique_violation (a replayed batch, an id twice in the batch, a concurrent writer
--     committing one of these ids) rolls back this insert alone (a subtransaction), the
--     partials are discarded, and aggregate_metrics_columns stores the batch idempotently,
--     folding only the rows it actually inserts.
-- Either way it runs in the caller's one transaction and returns the number inserted. The
-- partials are trusted: the caller must compute them from exactly these events.
-- aggregate_metrics(jsonb) and aggregate_metrics_columns are unchanged.
CREATE OR REPLACE FUNCTION monitoring.ingest_prefolded(
    ids uuid[], ts_ms bigint[], instances text[], sources text[], types text[], datas jsonb[],
    m_bucket_ms bigint[], m_type text[], m_source text[], m_model text[],
    m_count bigint[], m_errors bigint[], m_latency_count bigint[],
    m_latency_sum double precision[], m_latency_min double precision[],
    m_latency_max double precision[], m_latency_hist jsonb[],
    m_prompt_tokens bigint[], m_completion_tokens bigint[], m_cost_usd double precision[],
    h_bucket_ms bigint[], h_type text[], h_source text[], h_model text[],
    h_count bigint[], h_errors bigint[], h_latency_count bigint[],
    h_latency_sum double precision[], h_latency_min double precision[],
    h_latency_max double precision[], h_latency_hist jsonb[],
    h_prompt_tokens bigint[], h_completion_tokens bigint[], h_cost_usd double precision[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    inserted integer;
BEGIN
    BEGIN
        -- The same row values as aggregate_metrics_columns' INSERTs.
        INSERT INTO monitoring.monitoring_events (id, ts, instance, source, type, data)
        SELECT b.id,
               timestamptz 'epoch' + b.ts_ms * interval '1 millisecond',
               coalesce(b.instance, ''),
               coalesce(b.source, ''),
               coalesce(b.type, ''),
               coalesce(b.data, '{}'::jsonb)
        FROM unnest(ids, ts_ms, instances, sources, types, datas)
             AS b(id, ts_ms, instance, source, type, data);
        GET DIAGNOSTICS inserted = ROW_COUNT;
    EXCEPTION WHEN unique_violation THEN
        -- Runs after the subtransaction's rollback, in the caller's transaction.
        RETURN monitoring.aggregate_metrics_columns(ids, ts_ms, instances, sources, types, datas);
    END;

    INSERT INTO monitoring.metrics_1min AS m
        (bucket, type, source, model, count, error_count, latency_count, latency_sum,
         latency_min, latency_max, latency_hist, prompt_tokens, completion_tokens, cost_usd)
    SELECT timestamptz 'epoch' + p.bucket_ms * interval '1 millisecond', p.type, p.source,
           p.model, p.count, p.errors, p.latency_count, p.latency_sum, p.latency_min,
           p.latency_max, coalesce(p.latency_hist, '{}'::jsonb), p.prompt_tokens,
           p.completion_tokens, p.cost_usd
    FROM unnest(m_bucket_ms, m_type, m_source, m_model, m_count, m_errors, m_latency_count,
                m_latency_sum, m_latency_min, m_latency_max, m_latency_hist,
                m_prompt_tokens, m_completion_tokens, m_cost_usd)
         AS p(bucket_ms, type, source, model, count, errors, latency_count, latency_sum,
              latency_min, latency_max, latency_hist, prompt_tokens, completion_tokens,
              cost_usd)
    ON CONFLICT (bucket, type, source, model) DO UPDATE SET
        count = m.count + EXCLUDED.count,
        error_count = m.error_count + EXCLUDED.error_count,
        latency_count = m.latency_count + EXCLUDED.latency_count,
        latency_sum = m.latency_sum + EXCLUDED.latency_sum,
        latency_min = LEAST(m.latency_min, EXCLUDED.latency_min),
        latency_max = GREATEST(m.latency_max, EXCLUDED.latency_max),
        latency_hist = monitoring.hist_merge(m.latency_hist, EXCLUDED.latency_hist),
        prompt_tokens = monitoring.sum_nullable(m.prompt_tokens, EXCLUDED.prompt_tokens),
        completion_tokens = monitoring.sum_nullable(m.completion_tokens, EXCLUDED.completion_tokens),
        cost_usd = monitoring.sum_nullable(m.cost_usd, EXCLUDED.cost_usd);

    INSERT INTO monitoring.metrics_1hour AS m
        (bucket, type, source, model, count, error_count, latency_count, latency_sum,
         latency_min, latency_max, latency_hist, prompt_tokens, completion_tokens, cost_usd)
    SELECT timestamptz 'epoch' + p.bucket_ms * interval '1 millisecond', p.type, p.source,
           p.model, p.count, p.errors, p.latency_count, p.latency_sum, p.latency_min,
           p.latency_max, coalesce(p.latency_hist, '{}'::jsonb), p.prompt_tokens,
           p.completion_tokens, p.cost_usd
    FROM unnest(h_bucket_ms, h_type, h_source, h_model, h_count, h_errors, h_latency_count,
                h_latency_sum, h_latency_min, h_latency_max, h_latency_hist,
                h_prompt_tokens, h_completion_tokens, h_cost_usd)
         AS p(bucket_ms, type, source, model, count, errors, latency_count, latency_sum,
              latency_min, latency_max, latency_hist, prompt_tokens, completion_tokens,
              cost_usd)
    ON CONFLICT (bucket, type, source, model) DO UPDATE SET
        count = m.count + EXCLUDED.count,
        error_count = m.error_count + EXCLUDED.error_count,
        latency_count = m.latency_count + EXCLUDED.latency_count,
        latency_sum = m.latency_sum + EXCLUDED.latency_sum,
        latency_min = LEAST(m.latency_min, EXCLUDED.latency_min),
        latency_max = GREATEST(m.latency_max, EXCLUDED.latency_max),
        latency_hist = monitoring.hist_merge(m.latency_hist, EXCLUDED.latency_hist),
        prompt_tokens = monitoring.sum_nullable(m.prompt_tokens, EXCLUDED.prompt_tokens),
        completion_tokens = monitoring.sum_nullable(m.completion_tokens, EXCLUDED.completion_tokens),
        cost_usd = monitoring.sum_nullable(m.cost_usd, EXCLUDED.cost_usd);

    RETURN inserted;
END
$$;

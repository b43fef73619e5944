-- Issue 17: rollups gain a model dimension and token and cost sums, read from `request`
-- events (the one event per client call). `model` is the request's resolved model ('' for
-- every other event type, and for calls that never resolved one, so client-chosen names
-- cannot grow the table). The sums are NULL while no event of the row reported them: no
-- usage is not zero usage, and no price is not a free call. The fold stays O(batch): it
-- reads only the rows this call inserted.

ALTER TABLE monitoring.metrics_1min
    ADD COLUMN IF NOT EXISTS model text NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS prompt_tokens bigint,
    ADD COLUMN IF NOT EXISTS completion_tokens bigint,
    ADD COLUMN IF NOT EXISTS cost_usd double precision;
ALTER TABLE monitoring.metrics_1min DROP CONSTRAINT IF EXISTS metrics_1min_pkey;
ALTER TABLE monitoring.metrics_1min ADD PRIMARY KEY (bucket, type, source, model);

ALTER TABLE monitoring.metrics_1hour
    ADD COLUMN IF NOT EXISTS model text NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS prompt_tokens bigint,
    ADD COLUMN IF NOT EXISTS completion_tokens bigint,
    ADD COLUMN IF NOT EXISTS cost_usd double precision;
ALTER TABLE monitoring.metrics_1hour DROP CONSTRAINT IF EXISTS metrics_1hour_pkey;
ALTER TABLE monitoring.metrics_1hour ADD PRIMARY KEY (bucket, type, source, model);

-- Adds two nullable sums: NULL only when both are.
CREATE OR REPLACE FUNCTION monitoring.sum_nullable(a anyelement, b anyelement)
RETURNS anyelement LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(a + b, a, b)
$$;

-- The same insert as 20261201000001 (fast path, then the idempotent path), with the fold
-- keyed by (bucket, type, source, model) and summing tokens and cost.
CREATE OR REPLACE FUNCTION monitoring.aggregate_metrics_columns(
    ids uuid[], ts_ms bigint[], instances text[], sources text[], types text[], datas jsonb[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    done boolean := false;
    new_ts timestamptz[];
    new_types text[];
    new_sources text[];
    new_data jsonb[];
    inserted integer;
BEGIN
    -- Fast path: see 20261201000001. Keep the two INSERTs identical but for ON CONFLICT.
    BEGIN
        WITH ins AS (
            INSERT INTO monitoring.monitoring_events AS e
                (id, ts, instance, source, type, data)
            SELECT b.id,
                   timestamptz 'epoch' + b.ts_ms * interval '1 millisecond',
                   coalesce(b.instance, ''),
                   coalesce(b.source, ''),
                   coalesce(b.type, ''),
                   coalesce(b.data, '{}'::jsonb)
            FROM unnest(ids, ts_ms, instances, sources, types, datas)
                 AS b(id, ts_ms, instance, source, type, data)
            RETURNING e.ts, e.type, e.source, e.data
        )
        SELECT array_agg(ts), array_agg(type), array_agg(source), array_agg(data)
        INTO new_ts, new_types, new_sources, new_data
        FROM ins;
        done := true;
    EXCEPTION WHEN unique_violation THEN
        done := false;
    END;

    IF NOT done THEN
        WITH ins AS (
            INSERT INTO monitoring.monitoring_events AS e
                (id, ts, instance, source, type, data)
            SELECT b.id,
                   timestamptz 'epoch' + b.ts_ms * interval '1 millisecond',
                   coalesce(b.instance, ''),
                   coalesce(b.source, ''),
                   coalesce(b.type, ''),
                   coalesce(b.data, '{}'::jsonb)
            FROM unnest(ids, ts_ms, instances, sources, types, datas)
                 AS b(id, ts_ms, instance, source, type, data)
            ON CONFLICT (id) DO NOTHING
            RETURNING e.ts, e.type, e.source, e.data
        )
        SELECT array_agg(ts), array_agg(type), array_agg(source), array_agg(data)
        INTO new_ts, new_types, new_sources, new_data
        FROM ins;
    END IF;

    -- The fold, over the new rows only.
    WITH facts AS (
        SELECT date_bin('1 minute', f.ts, timestamptz 'epoch') AS minute,
               f.type, f.source,
               CASE WHEN f.type = 'request' AND jsonb_typeof(f.data->'resolved_model') = 'string'
                    THEN f.data->>'resolved_model' ELSE '' END AS model,
               f.data @> '{"ok": false}'::jsonb AS failed,
               CASE WHEN jsonb_typeof(f.data->'latency_ms') = 'number'
                    THEN (f.data->>'latency_ms')::double precision END AS latency,
               CASE WHEN f.type = 'request' AND jsonb_typeof(f.data->'prompt_tokens') = 'number'
                    THEN (f.data->>'prompt_tokens')::numeric::bigint END AS prompt_tokens,
               CASE WHEN f.type = 'request' AND jsonb_typeof(f.data->'completion_tokens') = 'number'
                    THEN (f.data->>'completion_tokens')::numeric::bigint END AS completion_tokens,
               CASE WHEN f.type = 'request' AND jsonb_typeof(f.data->'cost_usd') = 'number'
                    THEN (f.data->>'cost_usd')::double precision END AS cost_usd
        FROM unnest(new_ts, new_types, new_sources, new_data) AS f(ts, type, source, data)
    ),
    parts AS (
        SELECT minute, type, source, model, monitoring.latency_bucket(latency) AS idx,
               count(*) AS n, count(*) FILTER (WHERE failed) AS errors,
               count(latency) AS latency_count, sum(latency) AS latency_sum,
               min(latency) AS latency_min, max(latency) AS latency_max,
               sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
               sum(cost_usd) AS cost_usd
        FROM facts
        GROUP BY 1, 2, 3, 4, 5
    ),
    hour_parts AS (
        SELECT date_bin('1 hour', minute, timestamptz 'epoch') AS hour, type, source, model, idx,
               sum(n) AS n, sum(errors) AS errors, sum(latency_count) AS latency_count,
               sum(latency_sum) AS latency_sum,
               min(latency_min) AS latency_min, max(latency_max) AS latency_max,
               sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
               sum(cost_usd) AS cost_usd
        FROM parts
        GROUP BY 1, 2, 3, 4, 5
    ),
    up_minute AS (
        INSERT INTO monitoring.metrics_1min AS m
            (bucket, type, source, model, count, error_count, latency_count, latency_sum,
             latency_min, latency_max, latency_hist, prompt_tokens, completion_tokens, cost_usd)
        SELECT minute, type, source, model, sum(n), sum(errors), sum(latency_count),
               coalesce(sum(latency_sum), 0), min(latency_min), max(latency_max),
               coalesce(jsonb_object_agg(idx::text, latency_count)
                            FILTER (WHERE latency_count > 0), '{}'::jsonb),
               sum(prompt_tokens), sum(completion_tokens), sum(cost_usd)
        FROM parts
        GROUP BY 1, 2, 3, 4
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
            cost_usd = monitoring.sum_nullable(m.cost_usd, EXCLUDED.cost_usd)
        RETURNING 1
    ),
    up_hour AS (
        INSERT INTO monitoring.metrics_1hour AS m
            (bucket, type, source, model, count, error_count, latency_count, latency_sum,
             latency_min, latency_max, latency_hist, prompt_tokens, completion_tokens, cost_usd)
        SELECT hour, type, source, model, sum(n), sum(errors), sum(latency_count),
               coalesce(sum(latency_sum), 0), min(latency_min), max(latency_max),
               coalesce(jsonb_object_agg(idx::text, latency_count)
                            FILTER (WHERE latency_count > 0), '{}'::jsonb),
               sum(prompt_tokens), sum(completion_tokens), sum(cost_usd)
        FROM hour_parts
        GROUP BY 1, 2, 3, 4
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
            cost_usd = monitoring.sum_nullable(m.cost_usd, EXCLUDED.cost_usd)
        RETURNING 1
    )
    SELECT coalesce(sum(n), 0)::integer INTO inserted FROM parts;
    RETURN inserted;
END
$$;

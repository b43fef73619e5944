-- exai monitoring schema (DESIGN §6): raw events, per-minute and per-hour rollups with a
-- latency histogram, and aggregate_metrics(jsonb), the one write path used by the flusher.

CREATE SCHEMA IF NOT EXISTS monitoring;

CREATE TABLE IF NOT EXISTS monitoring.monitoring_events (
    id       uuid        PRIMARY KEY,          -- UUIDv7, the idempotency key
    ts       timestamptz NOT NULL,
    instance text        NOT NULL,
    source   text        NOT NULL,
    type     text        NOT NULL,
    data     jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS monitoring_events_type_ts ON monitoring.monitoring_events (type, ts);
CREATE INDEX IF NOT EXISTS monitoring_events_ts ON monitoring.monitoring_events (ts);

-- Rollups. latency_hist maps a log bucket index (see actors/src/histogram.rs) to a count.
CREATE TABLE IF NOT EXISTS monitoring.metrics_1min (
    bucket        timestamptz      NOT NULL,
    type          text             NOT NULL,
    source        text             NOT NULL,
    count         bigint           NOT NULL,
    error_count   bigint           NOT NULL,
    latency_count bigint           NOT NULL,
    latency_sum   double precision NOT NULL,
    latency_min   double precision,
    latency_max   double precision,
    latency_hist  jsonb            NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (bucket, type, source)
);

CREATE TABLE IF NOT EXISTS monitoring.metrics_1hour (LIKE monitoring.metrics_1min INCLUDING ALL);

-- The histogram bucket of a latency in ms: bucket i >= 1 holds [0.001 * g^(i-1), 0.001 * g^i)
-- with g = 2^(1/8); bucket 0 holds values below 1 µs; 320 is the last bucket. Computed in
-- float8 exactly as actors/src/histogram.rs does (floor(ln(v / 0.001) / ln 2 * 8) + 1), so
-- both stores put every value in the same bucket.
CREATE OR REPLACE FUNCTION monitoring.latency_bucket(latency double precision)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN latency IS NULL OR latency = 'NaN'::float8 OR latency < 0.001::float8 THEN 0
        ELSE LEAST(floor(ln(latency / 0.001::float8) / ln(2.0::float8) * 8.0::float8)::integer + 1, 320)
    END
$$;

-- Sums two sparse histograms bucket by bucket.
CREATE OR REPLACE FUNCTION monitoring.hist_merge(a jsonb, b jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(k, n), '{}'::jsonb)
    FROM (
        SELECT k, sum(v::bigint) AS n
        FROM (
            SELECT key AS k, value AS v FROM jsonb_each_text(coalesce(a, '{}'::jsonb))
            UNION ALL
            SELECT key, value FROM jsonb_each_text(coalesce(b, '{}'::jsonb))
        ) AS both_sides
        GROUP BY k
    ) AS summed
$$;

-- Inserts a JSON array of events idempotently and folds ONLY the newly inserted rows into
-- both rollups, in this one statement (hence one transaction). Returns the number inserted.
-- Cost is O(batch): no rollup is ever recomputed from history.
CREATE OR REPLACE FUNCTION monitoring.aggregate_metrics(batch jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    inserted integer;
BEGIN
    WITH ins AS (
        INSERT INTO monitoring.monitoring_events AS e (id, ts, instance, source, type, data)
        SELECT (x->>'id')::uuid,
               timestamptz 'epoch' + (x->>'ts')::bigint * interval '1 millisecond',
               coalesce(x->>'instance', ''),
               coalesce(x->>'source', ''),
               coalesce(x->>'type', ''),
               coalesce(x->'data', '{}'::jsonb)
        FROM jsonb_array_elements(batch) AS x
        ON CONFLICT (id) DO NOTHING
        RETURNING e.ts, e.source, e.type, e.data
    ),
    facts AS (
        SELECT ts, source, type, failed, latency, monitoring.latency_bucket(latency) AS idx
        FROM (
            SELECT ts, source, type,
                   (data->'ok' = 'false'::jsonb) IS TRUE AS failed,
                   CASE WHEN jsonb_typeof(data->'latency_ms') = 'number'
                        THEN (data->>'latency_ms')::double precision END AS latency
            FROM ins
        ) AS parsed
    ),
    agg_minute AS (
        SELECT date_trunc('minute', ts, 'UTC') AS bucket, type, source,
               count(*) AS n, count(*) FILTER (WHERE failed) AS errors,
               count(latency) AS latency_count, coalesce(sum(latency), 0) AS latency_sum,
               min(latency) AS latency_min, max(latency) AS latency_max
        FROM facts
        GROUP BY 1, 2, 3
    ),
    hist_minute AS (
        SELECT bucket, type, source, jsonb_object_agg(idx::text, n) AS hist
        FROM (SELECT date_trunc('minute', ts, 'UTC') AS bucket, type, source, idx, count(*) AS n
              FROM facts WHERE latency IS NOT NULL GROUP BY 1, 2, 3, 4) AS per_bucket
        GROUP BY 1, 2, 3
    ),
    up_minute AS (
        INSERT INTO monitoring.metrics_1min AS m
            (bucket, type, source, count, error_count, latency_count, latency_sum,
             latency_min, latency_max, latency_hist)
        SELECT a.bucket, a.type, a.source, a.n, a.errors, a.latency_count, a.latency_sum,
               a.latency_min, a.latency_max, coalesce(h.hist, '{}'::jsonb)
        FROM agg_minute AS a
        LEFT JOIN hist_minute AS h USING (bucket, type, source)
        ON CONFLICT (bucket, type, source) DO UPDATE SET
            count = m.count + EXCLUDED.count,
            error_count = m.error_count + EXCLUDED.error_count,
            latency_count = m.latency_count + EXCLUDED.latency_count,
            latency_sum = m.latency_sum + EXCLUDED.latency_sum,
            latency_min = LEAST(m.latency_min, EXCLUDED.latency_min),
            latency_max = GREATEST(m.latency_max, EXCLUDED.latency_max),
            latency_hist = monitoring.hist_merge(m.latency_hist, EXCLUDED.latency_hist)
        RETURNING 1
    ),
    agg_hour AS (
        SELECT date_trunc('hour', ts, 'UTC') AS bucket, type, source,
               count(*) AS n, count(*) FILTER (WHERE failed) AS errors,
               count(latency) AS latency_count, coalesce(sum(latency), 0) AS latency_sum,
               min(latency) AS latency_min, max(latency) AS latency_max
        FROM facts
        GROUP BY 1, 2, 3
    ),
    hist_hour AS (
        SELECT bucket, type, source, jsonb_object_agg(idx::text, n) AS hist
        FROM (SELECT date_trunc('hour', ts, 'UTC') AS bucket, type, source, idx, count(*) AS n
              FROM facts WHERE latency IS NOT NULL GROUP BY 1, 2, 3, 4) AS per_bucket
        GROUP BY 1, 2, 3
    ),
    up_hour AS (
        INSERT INTO monitoring.metrics_1hour AS m
            (bucket, type, source, count, error_count, latency_count, latency_sum,
             latency_min, latency_max, latency_hist)
        SELECT a.bucket, a.type, a.source, a.n, a.errors, a.latency_count, a.latency_sum,
               a.latency_min, a.latency_max, coalesce(h.hist, '{}'::jsonb)
        FROM agg_hour AS a
        LEFT JOIN hist_hour AS h USING (bucket, type, source)
        ON CONFLICT (bucket, type, source) DO UPDATE SET
            count = m.count + EXCLUDED.count,
            error_count = m.error_count + EXCLUDED.error_count,
            latency_count = m.latency_count + EXCLUDED.latency_count,
            latency_sum = m.latency_sum + EXCLUDED.latency_sum,
            latency_min = LEAST(m.latency_min, EXCLUDED.latency_min),
            latency_max = GREATEST(m.latency_max, EXCLUDED.latency_max),
            latency_hist = monitoring.hist_merge(m.latency_hist, EXCLUDED.latency_hist)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM ins)::integer INTO inserted;
    RETURN inserted;
END
$$;

-- Supabase: let realtime subscribers follow the raw stream too.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
        ALTER PUBLICATION supabase_realtime ADD TABLE monitoring.monitoring_events;
    END IF;
END
$$;

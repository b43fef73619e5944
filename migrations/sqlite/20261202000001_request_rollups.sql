-- Issue 17: rollups gain a model dimension and token and cost sums, read from `request`
-- events (the one event per client call). `model` is the request's resolved model ('' for
-- every other event type, and for calls that never resolved one, so client-chosen names
-- cannot grow the table). The sums are NULL while no event of the row reported them: no
-- usage is not zero usage, and no price is not a free call.
--
-- SQLite cannot change a primary key in place: each table is rebuilt with the new key and
-- its rows copied (model '' for the rows folded before this migration).

CREATE TABLE metrics_1min_new (
    bucket            INTEGER NOT NULL,
    type              TEXT    NOT NULL,
    source            TEXT    NOT NULL,
    model             TEXT    NOT NULL DEFAULT '',
    count             INTEGER NOT NULL,
    error_count       INTEGER NOT NULL,
    latency_count     INTEGER NOT NULL,
    latency_sum       REAL    NOT NULL,
    latency_min       REAL,
    latency_max       REAL,
    latency_hist      TEXT    NOT NULL DEFAULT '{}',
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    cost_usd          REAL,
    PRIMARY KEY (bucket, type, source, model)
) WITHOUT ROWID;
INSERT INTO metrics_1min_new (bucket, type, source, model, count, error_count, latency_count,
                              latency_sum, latency_min, latency_max, latency_hist)
    SELECT bucket, type, source, '', count, error_count, latency_count, latency_sum,
           latency_min, latency_max, latency_hist
    FROM metrics_1min;
DROP TABLE metrics_1min;
ALTER TABLE metrics_1min_new RENAME TO metrics_1min;

CREATE TABLE metrics_1hour_new (
    bucket            INTEGER NOT NULL,
    type              TEXT    NOT NULL,
    source            TEXT    NOT NULL,
    model             TEXT    NOT NULL DEFAULT '',
    count             INTEGER NOT NULL,
    error_count       INTEGER NOT NULL,
    latency_count     INTEGER NOT NULL,
    latency_sum       REAL    NOT NULL,
    latency_min       REAL,
    latency_max       REAL,
    latency_hist      TEXT    NOT NULL DEFAULT '{}',
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    cost_usd          REAL,
    PRIMARY KEY (bucket, type, source, model)
) WITHOUT ROWID;
INSERT INTO metrics_1hour_new (bucket, type, source, model, count, error_count, latency_count,
                               latency_sum, latency_min, latency_max, latency_hist)
    SELECT bucket, type, source, '', count, error_count, latency_count, latency_sum,
           latency_min, latency_max, latency_hist
    FROM metrics_1hour;
DROP TABLE metrics_1hour;
ALTER TABLE metrics_1hour_new RENAME TO metrics_1hour;

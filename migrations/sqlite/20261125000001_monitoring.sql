-- exai monitoring schema for SQLite: the same tables and semantics as PostgreSQL's
-- `monitoring` schema. The insert-and-fold of a batch is done from Rust in one transaction
-- (actors/src/store/sqlite.rs), because SQLite has no stored procedures.

CREATE TABLE IF NOT EXISTS monitoring_events (
    id       TEXT    PRIMARY KEY NOT NULL,  -- UUIDv7, hyphenated lowercase: sorts by time
    ts       INTEGER NOT NULL,              -- unix milliseconds
    instance TEXT    NOT NULL,
    source   TEXT    NOT NULL,
    type     TEXT    NOT NULL,
    data     TEXT    NOT NULL DEFAULT '{}'  -- JSON
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS monitoring_events_type_ts ON monitoring_events (type, ts);
CREATE INDEX IF NOT EXISTS monitoring_events_ts ON monitoring_events (ts);

-- Rollups; bucket is the bucket start in unix milliseconds. latency_hist is the sparse JSON
-- histogram of actors/src/histogram.rs.
CREATE TABLE IF NOT EXISTS metrics_1min (
    bucket        INTEGER NOT NULL,
    type          TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    count         INTEGER NOT NULL,
    error_count   INTEGER NOT NULL,
    latency_count INTEGER NOT NULL,
    latency_sum   REAL    NOT NULL,
    latency_min   REAL,
    latency_max   REAL,
    latency_hist  TEXT    NOT NULL DEFAULT '{}',
    PRIMARY KEY (bucket, type, source)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS metrics_1hour (
    bucket        INTEGER NOT NULL,
    type          TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    count         INTEGER NOT NULL,
    error_count   INTEGER NOT NULL,
    latency_count INTEGER NOT NULL,
    latency_sum   REAL    NOT NULL,
    latency_min   REAL,
    latency_max   REAL,
    latency_hist  TEXT    NOT NULL DEFAULT '{}',
    PRIMARY KEY (bucket, type, source)
) WITHOUT ROWID;

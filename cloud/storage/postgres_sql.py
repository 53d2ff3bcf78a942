"""The SQL text of the PostgreSQL store. Batches travel as arrays and are unnested server side."""

CREATE_MIGRATIONS = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
MIGRATION_LOCK = 7_306_915_200  # advisory lock key: one process migrates at a time
# Advisory lock (two-key form, a key space of its own) held by an edge's ingest transaction: the batches
# of one edge are stored one after the other, whichever replica received them.
INGEST_LOCK_SPACE = 7_306
LOCK_EDGE = f"SELECT pg_advisory_xact_lock({INGEST_LOCK_SPACE}, hashtext($1))"
NOTIFY = "SELECT pg_notify($1, $2)"

DEVICE_OWNERS = "SELECT name, id, owner_edge FROM devices WHERE name = ANY($1::text[])"
INSERT_DEVICES = """INSERT INTO devices (name, first_seen, owner_edge) SELECT n, $2, $3 FROM unnest($1::text[]) AS n
    ORDER BY n ON CONFLICT (name) DO NOTHING"""
CLAIM_DEVICES = "UPDATE devices SET owner_edge = $2 WHERE name = ANY($1::text[]) AND owner_edge IS NULL"
INSERT_FRAMES = """INSERT INTO frames (device_id, ts, edge, seq, status)
    SELECT d, t, $3, s, st FROM unnest($1::int[], $2::bigint[], $4::bigint[], $5::text[]) AS u(d, t, s, st)
    ORDER BY d, t ON CONFLICT DO NOTHING RETURNING device_id, ts"""
INSERT_SERIES = """INSERT INTO series (device_id, field, kind)
    SELECT d, f, k FROM unnest($1::int[], $2::text[], $3::text[]) AS u(d, f, k)
    ORDER BY d, f ON CONFLICT (device_id, field) DO NOTHING"""
SERIES_IDS = """SELECT s.device_id, s.field, s.id FROM series s
    JOIN unnest($1::int[], $2::text[]) AS u(d, f) ON s.device_id = u.d AND s.field = u.f"""
INSERT_SAMPLES = """INSERT INTO samples (series_id, ts, value, text)
    SELECT * FROM unnest($1::int[], $2::bigint[], $3::float8[], $4::text[]) ON CONFLICT DO NOTHING"""
# Ingest merges a batch's rollup partials into the rows stored, in Python: concurrent batches of the same
# series (two replicas) take turns on a transaction-level advisory lock per series, in id order.
ROLLUP_LOCK = 730_691  # first key of the advisory locks (series id the second)
LOCK_SERIES = "SELECT pg_advisory_xact_lock($1, id) FROM unnest($2::int[]) AS id"
STORED_ROLLUPS = """SELECT series_id, width, bucket, cnt, sum_m, sum_e, vmin, vmax, first_ts, first_value,
        last_ts, last_value
    FROM rollups WHERE series_id = ANY($1::int[]) AND width = $2 AND bucket >= $3 AND bucket <= $4"""
PUT_ROLLUPS = """INSERT INTO rollups AS r
    (series_id, width, bucket, cnt, sum_m, sum_e, vmin, vmax, first_ts, first_value, last_ts, last_value)
    SELECT * FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::int[],
                         $7::float8[], $8::float8[], $9::bigint[], $10::float8[], $11::bigint[], $12::float8[])
    ON CONFLICT (series_id, width, bucket) DO UPDATE SET
        cnt = excluded.cnt, sum_m = excluded.sum_m, sum_e = excluded.sum_e, vmin = excluded.vmin,
        vmax = excluded.vmax, first_ts = excluded.first_ts, first_value = excluded.first_value,
        last_ts = excluded.last_ts, last_value = excluded.last_value"""
UPDATE_SERIES_LAST = """UPDATE series s SET last_ts = u.t, last_value = u.v, last_text = u.x
    FROM unnest($1::int[], $2::bigint[], $3::float8[], $4::text[]) AS u(id, t, v, x)
    WHERE s.id = u.id AND (s.last_ts IS NULL OR s.last_ts < u.t)"""
UPDATE_DEVICES_LAST = """UPDATE devices d SET last_ts = u.t, last_status = u.st, last_edge = $4
    FROM unnest($1::int[], $2::bigint[], $3::text[]) AS u(id, t, st)
    WHERE d.id = u.id AND (d.last_ts IS NULL OR d.last_ts < u.t)"""

_EDGE_COUNTS = """last_seen = excluded.last_seen,
        last_seq = CASE WHEN excluded.last_seq IS NULL THEN e.last_seq
                        ELSE GREATEST(e.last_seq, excluded.last_seq) END,
        frames_stored = e.frames_stored + excluded.frames_stored,
        duplicates = e.duplicates + excluded.duplicates,
        rejected = e.rejected + excluded.rejected,
        clock_skew_s = coalesce(excluded.clock_skew_s, e.clock_skew_s)"""
_EDGE_INSERT = """INSERT INTO edge_status AS e (name, last_seen, last_seq, queue_depth, oldest_age_s, drops,
    quarantined, sources, frames_stored, duplicates, rejected, clock_skew_s)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"""
UPSERT_EDGE = f"""{_EDGE_INSERT} ON CONFLICT (name) DO UPDATE SET {_EDGE_COUNTS},
        queue_depth = excluded.queue_depth, oldest_age_s = excluded.oldest_age_s, drops = excluded.drops,
        quarantined = excluded.quarantined, sources = excluded.sources"""
UPSERT_EDGE_COUNTS = f"{_EDGE_INSERT} ON CONFLICT (name) DO UPDATE SET {_EDGE_COUNTS}"

INSERT_IDENTITY = """INSERT INTO identities (kind, name, role, token_hash, created_at)
    VALUES ($1, $2, $3, $4, $5)"""
SET_ROLE = "UPDATE identities SET role = $1 WHERE kind = 'user' AND name = $2"
SET_TOKEN = "UPDATE identities SET token_hash = $1, revoked_at = NULL WHERE kind = $2 AND name = $3"
REVOKE = "UPDATE identities SET token_hash = NULL, revoked_at = $1 WHERE kind = $2 AND name = $3"
PRINCIPAL = "SELECT kind, name, role FROM identities WHERE token_hash = $1 AND revoked_at IS NULL"
IDENTITIES = "SELECT name, role, created_at, revoked_at FROM identities WHERE kind = $1 ORDER BY name"
EDGES = """SELECT i.name, i.created_at, i.revoked_at, e.last_seen, e.last_seq, e.queue_depth, e.oldest_age_s,
        e.drops, e.quarantined, e.sources, e.frames_stored, e.duplicates, e.rejected, e.clock_skew_s
    FROM identities i LEFT JOIN edge_status e ON e.name = i.name
    WHERE i.kind = 'edge' ORDER BY i.name"""

DEVICES = "SELECT name FROM devices WHERE last_ts IS NOT NULL ORDER BY name"
DEVICE_RECORDS = "SELECT name, owner_edge, last_ts, last_edge FROM devices ORDER BY name"
DEVICE_OWNER = "SELECT id, owner_edge FROM devices WHERE name = $1"
NEW_DEVICE = """INSERT INTO devices (name, first_seen, owner_edge) VALUES ($1, $2, $3)
    ON CONFLICT (name) DO NOTHING RETURNING id"""
SET_OWNER = "UPDATE devices SET owner_edge = $1 WHERE id = $2"
INSERT_MOVE = """INSERT INTO device_moves (device_id, from_edge, to_edge, moved_by, at, reason)
    VALUES ($1, $2, $3, $4, $5, $6)"""
MOVES = """SELECT from_edge, to_edge, moved_by, at, reason FROM device_moves WHERE device_id = $1
    ORDER BY id DESC LIMIT $2"""
DEVICE = "SELECT id, last_ts, last_status, last_edge FROM devices WHERE name = $1"
# A device and its series in one round trip (no series: one row with NULLs on the right).
LOOKUP = """SELECT d.id, d.last_ts, d.last_status, d.last_edge, s.id, s.field, s.kind, s.last_ts, s.last_value,
        s.last_text
    FROM devices d LEFT JOIN series s ON s.device_id = d.id WHERE d.name = $1"""
SCAN = """SELECT ts, value, text FROM samples WHERE series_id = $1 AND ts >= $2 AND ts < $3
    ORDER BY ts LIMIT $4"""
STATUSES = "SELECT ts, status FROM frames WHERE device_id = $1 AND ts > $2 AND ts <= $3"

# The reads of history and aggregates are prepared once per connection and then run with a generic plan,
# which cannot see how short the arrays are: a plain join of unnest() with samples was planned as a
# parallel scan of the whole table (300 ms instead of 0.1 ms). Each series' rows are therefore read in a
# LATERAL subquery (fenced with LIMIT or OFFSET 0), which only an index scan per series can answer.

# Several series' samples from their own start (series id, start; k numbers them), oldest first within
# each: at most $4 per series and $5 over all. The outer limit keeps the series order of a nested loop
# over unnest(); the caller checks that order and asks series by series otherwise.
SCAN_MANY = """SELECT s.k, x.ts, x.value, x.text
    FROM unnest($1::int[], $2::bigint[]) WITH ORDINALITY AS s(id, lo, k)
    CROSS JOIN LATERAL (SELECT r.ts, r.value, r.text FROM samples r WHERE r.series_id = s.id AND r.ts >= s.lo
                        AND r.ts < $3 ORDER BY r.ts LIMIT $4) AS x
    LIMIT $5"""
# All that an aggregate reads: rollup rows of each level's ranges (width, lo, hi), tagged with the width,
# and numeric samples of the raw ranges, tagged 0 (series id, ts, value in the ``vmin`` column).
AGGREGATE_ROWS = """SELECT g.w, x.series_id, x.bucket, x.cnt, x.sum_m, x.sum_e, x.vmin, x.vmax, x.first_ts,
        x.first_value, x.last_ts, x.last_value
    FROM unnest($1::int[]) AS s(id) CROSS JOIN unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS g(w, lo, hi)
    CROSS JOIN LATERAL (SELECT * FROM rollups r WHERE r.series_id = s.id AND r.width = g.w AND r.bucket >= g.lo
                        AND r.bucket < g.hi OFFSET 0) AS x
    UNION ALL
    SELECT 0, s.id, x.ts, NULL, NULL, NULL, x.value, NULL, NULL, NULL, NULL, NULL
    FROM unnest($1::int[]) AS s(id) CROSS JOIN unnest($5::bigint[], $6::bigint[]) AS g(lo, hi)
    CROSS JOIN LATERAL (SELECT r.ts, r.value FROM samples r WHERE r.series_id = s.id AND r.ts >= g.lo
                        AND r.ts < g.hi AND r.value IS NOT NULL OFFSET 0) AS x"""
ROLLUP_ROWS = """SELECT x.series_id, x.bucket, x.cnt, x.sum_m, x.sum_e, x.vmin, x.vmax, x.first_ts, x.first_value,
        x.last_ts, x.last_value
    FROM unnest($1::int[]) AS s(id) CROSS JOIN unnest($3::bigint[], $4::bigint[]) AS g(lo, hi)
    CROSS JOIN LATERAL (SELECT * FROM rollups r WHERE r.series_id = s.id AND r.width = $2 AND r.bucket >= g.lo
                        AND r.bucket < g.hi OFFSET 0) AS x"""
RAW_ROWS = """SELECT s.id, x.ts, x.value
    FROM unnest($1::int[]) AS s(id) CROSS JOIN unnest($2::bigint[], $3::bigint[]) AS g(lo, hi)
    CROSS JOIN LATERAL (SELECT r.ts, r.value FROM samples r WHERE r.series_id = s.id AND r.ts >= g.lo
                        AND r.ts < g.hi AND r.value IS NOT NULL OFFSET 0) AS x"""

INSERT_ASSEMBLY = """INSERT INTO assemblies (id, name, sha256, size, created, body, parts)
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING"""
ASSEMBLY = "SELECT id, name, sha256, size, created, body, parts FROM assemblies WHERE id = $1"
ASSEMBLIES = """SELECT id, name, parts, size, created FROM assemblies
    WHERE ($1::bigint IS NULL OR (created, id) < ($1::bigint, $2::text)) ORDER BY created DESC, id DESC LIMIT $3"""
ASSEMBLY_IDS = "SELECT id FROM assemblies ORDER BY created, id"

BRIN_INDEX = "CREATE INDEX IF NOT EXISTS samples_ts_brin ON samples USING brin (ts)"
TIMESCALE_AVAILABLE = "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
IS_HYPERTABLE = """SELECT 1 FROM timescaledb_information.hypertables
    WHERE hypertable_name = 'samples' AND hypertable_schema = current_schema()"""
TIMESCALE_SETUP = [
    "CREATE EXTENSION IF NOT EXISTS timescaledb",
    """CREATE OR REPLACE FUNCTION twincloud_now_us() RETURNS BIGINT LANGUAGE SQL STABLE
        AS $$ SELECT (extract(epoch FROM now()) * 1000000)::bigint $$""",
    "SELECT create_hypertable('samples', 'ts', chunk_time_interval => 86400000000, migrate_data => true)",
    "SELECT set_integer_now_func('samples', 'twincloud_now_us')",
    """ALTER TABLE samples SET (timescaledb.compress, timescaledb.compress_segmentby = 'series_id',
        timescaledb.compress_orderby = 'ts')""",
    "SELECT add_compression_policy('samples', compress_after => 604800000000::bigint)",
]

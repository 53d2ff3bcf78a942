"""The SQL text of the SQLite store, kept apart so the store's module reads as logic."""

import functools

CREATE_MIGRATIONS = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"""
VERSION = "SELECT max(version) FROM schema_migrations"

# Device names travel as one JSON array parameter: a batch may name thousands of devices.
DEVICE_OWNERS = "SELECT name, id, owner_edge FROM devices WHERE name IN (SELECT value FROM json_each(?))"
INSERT_DEVICES = """INSERT OR IGNORE INTO devices (name, first_seen, owner_edge)
    SELECT value, ?, ? FROM json_each(?)"""
CLAIM_DEVICES = """UPDATE devices SET owner_edge = ?
    WHERE name IN (SELECT value FROM json_each(?)) AND owner_edge IS NULL"""
FRAMES_PER_STATEMENT = 200


@functools.cache
def insert_frames(count: int, returning: bool = False) -> str:
    """An insert of ``count`` frames: (device id, ts, edge, seq, status) each. With ``returning`` it answers
    with the keys it stored (ignored duplicates are left out)."""
    return ("INSERT OR IGNORE INTO frames (device_id, ts, edge, seq, status) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?)"] * count) + (" RETURNING device_id, ts" if returning else ""))


INSERT_SERIES = "INSERT OR IGNORE INTO series (device_id, field, kind) VALUES (?, ?, ?)"
SERIES_ID = "SELECT id FROM series WHERE device_id = ? AND field = ?"
SAMPLES_PER_STATEMENT = 250  # 750 parameters, far below SQLite's limit of 32,766


@functools.cache
def insert_numbers(count: int) -> str:
    """An insert of ``count`` numeric samples: (series id, ts, value) each."""
    return "INSERT OR IGNORE INTO samples (series_id, ts, value, text) VALUES " + ", ".join(["(?, ?, ?, NULL)"] * count)


@functools.cache
def insert_texts(count: int) -> str:
    """An insert of ``count`` text samples: (series id, ts, text) each."""
    return "INSERT OR IGNORE INTO samples (series_id, ts, value, text) VALUES " + ", ".join(["(?, ?, NULL, ?)"] * count)


# The rows stored already for the keys a batch touches, read and merged in Python under the write lock.
STORED_ROLLUPS = """SELECT r.series_id, r.width, r.bucket, r.cnt, r.sum_m, r.sum_e, r.vmin, r.vmax, r.first_ts,
        r.first_value, r.last_ts, r.last_value
    FROM json_each(?) AS s CROSS JOIN rollups AS r
    WHERE r.series_id = s.value AND r.width = ? AND r.bucket >= ? AND r.bucket <= ?"""
ROLLUPS_PER_STATEMENT = 80  # 960 parameters


@functools.cache
def put_rollups(count: int) -> str:
    """A write of ``count`` merged rollup rows, 12 parameters each."""
    return "INSERT OR REPLACE INTO rollups VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * count)


UPDATE_SERIES_LAST = """UPDATE series SET last_ts = ?, last_value = ?, last_text = ?
    WHERE id = ? AND (last_ts IS NULL OR last_ts < ?)"""
UPDATE_DEVICE_LAST = """UPDATE devices SET last_ts = ?, last_status = ?, last_edge = ?
    WHERE id = ? AND (last_ts IS NULL OR last_ts < ?)"""

_EDGE_COLUMNS = """(name, last_seen, last_seq, queue_depth, oldest_age_s, drops, quarantined, sources,
    frames_stored, duplicates, rejected, clock_skew_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_EDGE_COUNTS = """last_seen = excluded.last_seen,
        last_seq = CASE WHEN excluded.last_seq IS NULL THEN last_seq
                        ELSE max(coalesce(last_seq, excluded.last_seq), excluded.last_seq) END,
        frames_stored = frames_stored + excluded.frames_stored,
        duplicates = duplicates + excluded.duplicates,
        rejected = rejected + excluded.rejected,
        clock_skew_s = coalesce(excluded.clock_skew_s, clock_skew_s)"""
UPSERT_EDGE = f"""INSERT INTO edge_status {_EDGE_COLUMNS}
    ON CONFLICT (name) DO UPDATE SET {_EDGE_COUNTS},
        queue_depth = excluded.queue_depth, oldest_age_s = excluded.oldest_age_s, drops = excluded.drops,
        quarantined = excluded.quarantined, sources = excluded.sources"""
UPSERT_EDGE_COUNTS = f"INSERT INTO edge_status {_EDGE_COLUMNS} ON CONFLICT (name) DO UPDATE SET {_EDGE_COUNTS}"

INSERT_IDENTITY = "INSERT INTO identities (kind, name, role, token_hash, created_at) VALUES (?, ?, ?, ?, ?)"
SET_ROLE = "UPDATE identities SET role = ? WHERE kind = 'user' AND name = ?"
SET_TOKEN = "UPDATE identities SET token_hash = ?, revoked_at = NULL WHERE kind = ? AND name = ?"
REVOKE = "UPDATE identities SET token_hash = NULL, revoked_at = ? WHERE kind = ? AND name = ?"
PRINCIPAL = "SELECT kind, name, role FROM identities WHERE token_hash = ? AND revoked_at IS NULL"
IDENTITIES = "SELECT name, role, created_at, revoked_at FROM identities WHERE kind = ? ORDER BY name"
EDGES = """SELECT i.name, i.created_at, i.revoked_at, e.last_seen, e.last_seq, e.queue_depth, e.oldest_age_s,
        e.drops, e.quarantined, e.sources, e.frames_stored, e.duplicates, e.rejected, e.clock_skew_s
    FROM identities i LEFT JOIN edge_status e ON e.name = i.name
    WHERE i.kind = 'edge' ORDER BY i.name"""

DEVICES = "SELECT name FROM devices WHERE last_ts IS NOT NULL ORDER BY name"
DEVICE_RECORDS = "SELECT name, owner_edge, last_ts, last_edge FROM devices ORDER BY name"
DEVICE_OWNER = "SELECT id, owner_edge FROM devices WHERE name = ?"
NEW_DEVICE = "INSERT OR IGNORE INTO devices (name, first_seen, owner_edge) VALUES (?, ?, ?)"
SET_OWNER = "UPDATE devices SET owner_edge = ? WHERE id = ?"
INSERT_MOVE = """INSERT INTO device_moves (device_id, from_edge, to_edge, moved_by, at, reason)
    VALUES (?, ?, ?, ?, ?, ?)"""
MOVES = """SELECT from_edge, to_edge, moved_by, at, reason FROM device_moves WHERE device_id = ?
    ORDER BY id DESC LIMIT ?"""
DEVICE = "SELECT id, last_ts, last_status, last_edge FROM devices WHERE name = ?"
SERIES = "SELECT id, field, kind, last_ts, last_value, last_text FROM series WHERE device_id = ?"
SCAN = """SELECT ts, coalesce(text, value) FROM samples WHERE series_id = ? AND ts >= ? AND ts < ?
    ORDER BY ts LIMIT ?"""

# Series and [lo, hi) ranges travel as JSON arrays; CROSS JOIN keeps them the outer loops, so that each
# (series, range) is one seek into the primary key.
ROLLUP_ROWS = """SELECT r.series_id, r.bucket, r.cnt, r.sum_m, r.sum_e, r.vmin, r.vmax, r.first_ts, r.first_value,
        r.last_ts, r.last_value
    FROM json_each(?) AS s CROSS JOIN json_each(?) AS g CROSS JOIN rollups AS r
    WHERE r.series_id = s.value AND r.width = ? AND r.bucket >= g.value ->> 0 AND r.bucket < g.value ->> 1"""
RAW_ROWS = """SELECT r.series_id, r.ts, r.value
    FROM json_each(?) AS s CROSS JOIN json_each(?) AS g CROSS JOIN samples AS r
    WHERE r.series_id = s.value AND r.ts >= g.value ->> 0 AND r.ts < g.value ->> 1 AND r.value IS NOT NULL"""

INSERT_ASSEMBLY = """INSERT OR IGNORE INTO assemblies (id, name, sha256, size, created, body, parts)
    VALUES (?, ?, ?, ?, ?, ?, ?)"""
ASSEMBLY = "SELECT id, name, sha256, size, created, body, parts FROM assemblies WHERE id = ?"
ASSEMBLIES = """SELECT id, name, parts, size, created FROM assemblies
    WHERE ? IS NULL OR (created, id) < (?, ?) ORDER BY created DESC, id DESC LIMIT ?"""
ASSEMBLY_IDS = "SELECT id FROM assemblies ORDER BY created, id"

"""Schema version 1: devices, series, frames, samples, per-minute rollups, identities, edge status."""

SQLITE = """
CREATE TABLE devices (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    first_seen INTEGER NOT NULL,
    last_ts INTEGER,
    last_status TEXT,
    last_edge TEXT
);
CREATE TABLE series (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id),
    field TEXT NOT NULL,
    kind TEXT NOT NULL,
    last_ts INTEGER,
    last_value REAL,
    last_text TEXT,
    UNIQUE (device_id, field)
);
CREATE TABLE frames (
    device_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    edge TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (device_id, ts)
) WITHOUT ROWID;
CREATE TABLE samples (
    series_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value REAL,
    text TEXT,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;
CREATE TABLE rollups_1m (
    series_id INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    cnt INTEGER NOT NULL,
    total REAL NOT NULL,
    vmin REAL NOT NULL,
    vmax REAL NOT NULL,
    first_ts INTEGER NOT NULL,
    first_value REAL NOT NULL,
    last_ts INTEGER NOT NULL,
    last_value REAL NOT NULL,
    PRIMARY KEY (series_id, bucket)
) WITHOUT ROWID;
CREATE TABLE identities (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('edge', 'user')),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    UNIQUE (kind, name)
);
CREATE TABLE edge_status (
    name TEXT PRIMARY KEY,
    last_seen INTEGER NOT NULL,
    last_seq INTEGER,
    queue_depth INTEGER,
    oldest_age_s REAL,
    drops TEXT NOT NULL DEFAULT '{}',
    quarantined INTEGER,
    sources TEXT NOT NULL DEFAULT '{}',
    frames_stored INTEGER NOT NULL DEFAULT 0
);
"""

POSTGRES = """
CREATE TABLE devices (
    id SERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    first_seen BIGINT NOT NULL,
    last_ts BIGINT,
    last_status TEXT,
    last_edge TEXT
);
CREATE TABLE series (
    id SERIAL PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id),
    field TEXT NOT NULL,
    kind TEXT NOT NULL,
    last_ts BIGINT,
    last_value DOUBLE PRECISION,
    last_text TEXT,
    UNIQUE (device_id, field)
);
CREATE TABLE frames (
    device_id INTEGER NOT NULL,
    ts BIGINT NOT NULL,
    edge TEXT NOT NULL,
    seq BIGINT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (device_id, ts)
);
CREATE TABLE samples (
    series_id INTEGER NOT NULL,
    ts BIGINT NOT NULL,
    value DOUBLE PRECISION,
    text TEXT,
    PRIMARY KEY (series_id, ts)
);
CREATE TABLE rollups_1m (
    series_id INTEGER NOT NULL,
    bucket BIGINT NOT NULL,
    cnt BIGINT NOT NULL,
    total DOUBLE PRECISION NOT NULL,
    vmin DOUBLE PRECISION NOT NULL,
    vmax DOUBLE PRECISION NOT NULL,
    first_ts BIGINT NOT NULL,
    first_value DOUBLE PRECISION NOT NULL,
    last_ts BIGINT NOT NULL,
    last_value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (series_id, bucket)
);
CREATE TABLE identities (
    id SERIAL PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('edge', 'user')),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    UNIQUE (kind, name)
);
CREATE TABLE edge_status (
    name TEXT PRIMARY KEY,
    last_seen BIGINT NOT NULL,
    last_seq BIGINT,
    queue_depth BIGINT,
    oldest_age_s DOUBLE PRECISION,
    drops TEXT NOT NULL DEFAULT '{}',
    quarantined BIGINT,
    sources TEXT NOT NULL DEFAULT '{}',
    frames_stored BIGINT NOT NULL DEFAULT 0
);
"""

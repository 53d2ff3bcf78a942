"""Schema version 11: the edges' documents (CNC programs, MTConnect assets and device models) and what is read
from them.

``documents`` keeps each document an edge sent once per (edge, the edge's document sequence): it is the history
of changes. ``status`` is ``ok`` or ``invalid`` (with ``reason``: a program body that is no ProgramRecord, a body
over 256 KiB, which is not kept). ``documents_latest`` names the newest document per (edge, kind, key) by the
edge's time, then sequence, and counts the versions seen.

From ``program`` documents: ``programs`` (one row per edge and content hash, with the searchable features and the
record as sent), ``program_tools`` (each tool use in program order) and ``program_offsets`` (work offsets). From
``asset`` documents: ``assets`` (the newest per edge and asset id). From ``mtconnect_device`` documents:
``mtconnect_devices`` and ``mtconnect_items`` (each device's keys with category, type, sub-type and units).
"""

_COMMON = """
CREATE TABLE documents (
    id {serial} PRIMARY KEY,
    edge TEXT NOT NULL,
    seq {big} NOT NULL,
    ts {big} NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    device TEXT,
    source TEXT,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    received_at {big} NOT NULL,
    UNIQUE (edge, seq)
);
CREATE INDEX documents_key ON documents (edge, kind, key, ts);
CREATE INDEX documents_status ON documents (status, received_at);
CREATE TABLE documents_latest (
    edge TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    seq {big} NOT NULL,
    ts {big} NOT NULL,
    versions {big} NOT NULL,
    PRIMARY KEY (edge, kind, key)
);
CREATE TABLE programs (
    id {serial} PRIMARY KEY,
    edge TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    device TEXT,
    folder TEXT NOT NULL,
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    stem TEXT NOT NULL,
    number TEXT,
    number_key TEXT,
    dialect TEXT NOT NULL,
    units TEXT NOT NULL,
    lines {big} NOT NULL,
    size {big} NOT NULL,
    holes {big} NOT NULL,
    feed_mm DOUBLE PRECISION NOT NULL,
    rapid_mm DOUBLE PRECISION NOT NULL,
    estimate_s DOUBLE PRECISION,
    errors {big} NOT NULL,
    warnings {big} NOT NULL,
    search TEXT NOT NULL,
    record TEXT NOT NULL,
    renames TEXT NOT NULL,
    first_seen {big} NOT NULL,
    last_seen {big} NOT NULL,
    UNIQUE (edge, sha256)
);
CREATE INDEX programs_seen ON programs (last_seen, id);
CREATE INDEX programs_sha ON programs (sha256);
CREATE INDEX programs_name ON programs (name);
CREATE INDEX programs_stem ON programs (stem);
CREATE INDEX programs_number ON programs (number_key);
CREATE TABLE program_tools (
    edge TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    pos INTEGER NOT NULL,
    tool {big} NOT NULL,
    comment TEXT,
    type TEXT,
    diameter_mm DOUBLE PRECISION,
    PRIMARY KEY (edge, sha256, pos)
);
CREATE INDEX program_tools_tool ON program_tools (tool, edge, sha256);
CREATE TABLE program_offsets (
    edge TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    work_offset TEXT NOT NULL,
    PRIMARY KEY (edge, sha256, work_offset)
);
CREATE INDEX program_offsets_offset ON program_offsets (work_offset, edge, sha256);
CREATE TABLE assets (
    edge TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    asset_type TEXT NOT NULL,
    device_uuid TEXT,
    device TEXT,
    asset_ts TEXT NOT NULL,
    xml TEXT NOT NULL,
    removed SMALLINT NOT NULL,
    ts {big} NOT NULL,
    PRIMARY KEY (edge, asset_id)
);
CREATE INDEX assets_type ON assets (asset_type, ts);
CREATE TABLE mtconnect_devices (
    edge TEXT NOT NULL,
    uuid TEXT NOT NULL,
    name TEXT NOT NULL,
    device_id TEXT NOT NULL,
    instance_id {big},
    ts {big} NOT NULL,
    PRIMARY KEY (edge, uuid)
);
CREATE INDEX mtconnect_devices_device ON mtconnect_devices (device_id);
CREATE TABLE mtconnect_items (
    edge TEXT NOT NULL,
    uuid TEXT NOT NULL,
    pos INTEGER NOT NULL,
    key TEXT NOT NULL,
    item_id TEXT NOT NULL,
    name TEXT,
    category TEXT NOT NULL,
    type TEXT NOT NULL,
    sub_type TEXT,
    units TEXT,
    PRIMARY KEY (edge, uuid, key)
)
"""

SQLITE = _COMMON.format(big="INTEGER", serial="INTEGER")
POSTGRES = _COMMON.format(big="BIGINT", serial="BIGSERIAL")

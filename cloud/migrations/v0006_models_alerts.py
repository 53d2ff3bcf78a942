"""Schema version 6: the model registry, model assignments, the edges' alerts and their model reports.

``model_versions`` holds every uploaded model package whole (the ZIP bytes),
with its name, version (1, 2, ... per name, given at upload), SHA-256, size,
kind, and its schema and card as JSON, so that every replica serves every
package; ``model_names`` keeps the last version given per name, so that a
number is never given twice, even after a delete. ``model_assignments`` says which model version scores which devices:
one rule per scope target (``scope`` device, edge or fleet; the fleet's
target is the empty text), and ``assignment_changes`` records every change.

``alerts`` is one row per alert an edge raised (unique on edge and the edge's
alert id): the raised and cleared events fill it in whichever order they
arrive. ``alert_events`` remembers each event by the edge's alert sequence,
so that a batch sent again stores nothing twice. ``model_reports`` is the
newest report of each edge about the model scoring each of its devices
(state, last score, drift and the PSI of the columns that moved).
"""

_COMMON = """
CREATE TABLE model_names (
    name TEXT PRIMARY KEY,
    last_version INTEGER NOT NULL
);
CREATE TABLE model_assignments (
    scope TEXT NOT NULL,
    target TEXT NOT NULL,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    assigned_by TEXT NOT NULL,
    assigned_at {big} NOT NULL,
    PRIMARY KEY (scope, target)
);
CREATE INDEX model_assignments_model ON model_assignments (model, version);
CREATE TABLE assignment_changes (
    id {serial} PRIMARY KEY,
    scope TEXT NOT NULL,
    target TEXT NOT NULL,
    model TEXT,
    version INTEGER,
    previous_model TEXT,
    previous_version INTEGER,
    changed_by TEXT NOT NULL,
    at {big} NOT NULL
);
CREATE TABLE alerts (
    id {serial} PRIMARY KEY,
    edge TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    device TEXT NOT NULL,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    at {big} NOT NULL,
    raised_ts {big},
    cleared_ts {big},
    score {real},
    peak {real},
    threshold {real},
    label TEXT,
    message TEXT,
    acked_by TEXT,
    acked_at {big},
    ack_comment TEXT,
    received_at {big} NOT NULL,
    UNIQUE (edge, alert_id)
);
CREATE INDEX alerts_at ON alerts (at, id);
CREATE INDEX alerts_device ON alerts (device, at);
CREATE INDEX alerts_open ON alerts (cleared_ts, acked_at);
CREATE TABLE alert_events (
    edge TEXT NOT NULL,
    seq {big} NOT NULL,
    alert_id TEXT NOT NULL,
    event TEXT NOT NULL,
    received_at {big} NOT NULL,
    PRIMARY KEY (edge, seq)
);
CREATE TABLE model_reports (
    edge TEXT NOT NULL,
    device TEXT NOT NULL,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL,
    last_score {real},
    last_scored_at {real},
    drift TEXT NOT NULL,
    psi TEXT NOT NULL,
    rows_scored {big} NOT NULL,
    reported_at {big} NOT NULL,
    PRIMARY KEY (edge, device)
);
"""

SQLITE = """
CREATE TABLE model_versions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    kind TEXT NOT NULL,
    schema TEXT NOT NULL,
    card TEXT NOT NULL,
    package BLOB NOT NULL,
    uploaded_by TEXT NOT NULL,
    uploaded_at INTEGER NOT NULL,
    UNIQUE (name, version)
);
""" + _COMMON.format(big="INTEGER", serial="INTEGER", real="REAL")

POSTGRES = """
CREATE TABLE model_versions (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    size BIGINT NOT NULL,
    kind TEXT NOT NULL,
    schema TEXT NOT NULL,
    card TEXT NOT NULL,
    package BYTEA NOT NULL,
    uploaded_by TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    UNIQUE (name, version)
);
""" + _COMMON.format(big="BIGINT", serial="BIGSERIAL", real="DOUBLE PRECISION")

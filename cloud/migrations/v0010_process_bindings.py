"""Schema version 10: virtual-sensor bindings and the tags of derived points.

``process_bindings`` holds each binding's definition (its spec as JSON), whether
it runs, and its progress: the input watermark (µs of the newest reading it
processed), its state as JSON (window points, the open run), and ``rev``, which
every write raises so that two workers never both store one step.

Derived values are ordinary samples of their device's series (history,
aggregates, the live feed and the console read them like any sensor). Their
tags live in ``derived``, keyed like a sample by (series, ts): the binding, the
input watermark, the model and its version, the parameter hash, the backend
and tolerances, and ``flag`` (why there is no value: a failed solve, a missing
or NaN input). A flagged point has a ``derived`` row and no sample.
"""

_COMMON = """
CREATE TABLE process_bindings (
    id {serial} PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    device TEXT NOT NULL,
    spec TEXT NOT NULL,
    enabled SMALLINT NOT NULL DEFAULT 1,
    rev {big} NOT NULL DEFAULT 0,
    watermark {big},
    state TEXT NOT NULL DEFAULT '{{}}',
    points {big} NOT NULL DEFAULT 0,
    flagged {big} NOT NULL DEFAULT 0,
    last_flag TEXT,
    created_by TEXT NOT NULL,
    created_at {big} NOT NULL,
    updated_at {big} NOT NULL
);
CREATE INDEX process_bindings_device ON process_bindings (device);
CREATE TABLE derived (
    series_id {big} NOT NULL,
    ts {big} NOT NULL,
    binding_id {big} NOT NULL,
    watermark {big} NOT NULL,
    flag TEXT,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    param_hash TEXT NOT NULL,
    backend TEXT NOT NULL,
    rtol DOUBLE PRECISION,
    atol DOUBLE PRECISION,
    PRIMARY KEY (series_id, ts)
);
CREATE INDEX derived_binding ON derived (binding_id, ts)
"""

SQLITE = _COMMON.format(big="INTEGER", serial="INTEGER")
POSTGRES = _COMMON.format(big="BIGINT", serial="BIGSERIAL")

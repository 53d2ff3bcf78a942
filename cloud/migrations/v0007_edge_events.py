"""Schema version 7: the edges' events (what an operator must know: a source lost, a model swapped, ...).

``edge_events`` keeps each event an edge sent once per (edge, the edge's event
sequence), so that a batch sent again stores nothing twice. ``level`` is
0 (operator), 1 (technical) or 2 (developer): a query "up to technical" reads
``level <= 1``. ``ts`` is when it happened on the edge, in µs; the list is
ordered by it, newest first. ``details`` is the event's details as JSON text.
"""

_COMMON = """
CREATE TABLE edge_events (
    id {serial} PRIMARY KEY,
    edge TEXT NOT NULL,
    seq {big} NOT NULL,
    ts {big} NOT NULL,
    level SMALLINT NOT NULL,
    kind TEXT NOT NULL,
    device TEXT,
    source TEXT,
    message TEXT NOT NULL,
    details TEXT NOT NULL,
    received_at {big} NOT NULL,
    UNIQUE (edge, seq)
);
CREATE INDEX edge_events_ts ON edge_events (ts, id);
CREATE INDEX edge_events_edge ON edge_events (edge, ts);
CREATE INDEX edge_events_device ON edge_events (device, ts);
"""

SQLITE = _COMMON.format(big="INTEGER", serial="INTEGER")
POSTGRES = _COMMON.format(big="BIGINT", serial="BIGSERIAL")

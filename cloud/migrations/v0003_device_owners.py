"""Schema version 3: each device belongs to one edge, moves between edges are recorded, and each edge's clock skew.

``devices.owner_edge`` is the only edge whose frames of the device are stored.
Existing devices get the edge that last wrote them, when that is a registered
edge (a database filled by ``twincloud copy`` names the edge ``copy``: such
devices stay unbound and go to the first edge that sends them). ``device_moves``
is the audit trail of bindings an admin made. ``edge_status.clock_skew_s`` is
the edge's clock minus the cloud's when its last batch arrived.
"""

_OWNERS = """
UPDATE devices SET owner_edge = last_edge
    WHERE last_edge IN (SELECT name FROM identities WHERE kind = 'edge');
"""

SQLITE = """
ALTER TABLE devices ADD COLUMN owner_edge TEXT;
""" + _OWNERS + """
CREATE TABLE device_moves (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id),
    from_edge TEXT,
    to_edge TEXT NOT NULL,
    moved_by TEXT NOT NULL,
    at INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX device_moves_device ON device_moves (device_id, id);
ALTER TABLE edge_status ADD COLUMN clock_skew_s REAL;
"""

POSTGRES = """
ALTER TABLE devices ADD COLUMN owner_edge TEXT;
""" + _OWNERS + """
CREATE TABLE device_moves (
    id BIGSERIAL PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id),
    from_edge TEXT,
    to_edge TEXT NOT NULL,
    moved_by TEXT NOT NULL,
    at BIGINT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX device_moves_device ON device_moves (device_id, id);
ALTER TABLE edge_status ADD COLUMN clock_skew_s DOUBLE PRECISION;
"""

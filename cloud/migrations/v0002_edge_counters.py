"""Schema version 2: per-edge counters of duplicate and refused frames (shown by GET /api/v1/edges)."""

SQLITE = """
ALTER TABLE edge_status ADD COLUMN duplicates INTEGER NOT NULL DEFAULT 0;
ALTER TABLE edge_status ADD COLUMN rejected INTEGER NOT NULL DEFAULT 0;
"""

POSTGRES = """
ALTER TABLE edge_status ADD COLUMN duplicates BIGINT NOT NULL DEFAULT 0;
ALTER TABLE edge_status ADD COLUMN rejected BIGINT NOT NULL DEFAULT 0;
"""

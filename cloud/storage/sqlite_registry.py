"""Edge ML in the SQLite store: models, assignments, alerts and model reports (``cloud.storage.registry``).

Plain functions of a connection; ``SQLiteStorage`` runs the writes on its
writer thread (the ingest's part inside the ingest transaction) and the reads
on its readers.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from cloud.storage.registry import (
    ALERT_COLUMNS,
    DRIFTED,
    AlertEventIn,
    AlertQuery,
    AlertRecord,
    Assignment,
    AssignmentChange,
    MlCounts,
    ModelInUse,
    ModelReportRow,
    ModelVersion,
    NewModel,
    UnknownAlert,
    UnknownModel,
    alert_filter,
    in_use,
)

__all__ = ["ack_alert", "alert", "alerts", "assign", "assignment_changes", "assignments", "delete_model",
           "ml_counts", "model_package", "model_reports", "model_version", "models", "purge_alerts", "put_model",
           "store_alerts",
           "store_reports", "unassign"]

_VERSION_COLUMNS = "name, version, sha256, size, kind, schema, card, uploaded_by, uploaded_at"
_ASSIGNMENTS = """SELECT a.scope, a.target, a.model, a.version, m.sha256, m.size, a.assigned_by, a.assigned_at
    FROM model_assignments a JOIN model_versions m ON m.name = a.model AND m.version = a.version"""
_ORDER = " ORDER BY CASE a.scope WHEN 'device' THEN 0 WHEN 'edge' THEN 1 ELSE 2 END, a.target"
_RAISED = """INSERT INTO alerts (edge, alert_id, device, model, version, at, raised_ts, score, threshold, label,
        message, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (edge, alert_id) DO UPDATE SET raised_ts = excluded.raised_ts, at = excluded.at,
        score = excluded.score, threshold = coalesce(excluded.threshold, alerts.threshold),
        label = coalesce(excluded.label, alerts.label), message = coalesce(excluded.message, alerts.message)"""
_CLEARED = """INSERT INTO alerts (edge, alert_id, device, model, version, at, cleared_ts, peak, threshold, label,
        message, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (edge, alert_id) DO UPDATE SET cleared_ts = excluded.cleared_ts, peak = excluded.peak,
        threshold = coalesce(alerts.threshold, excluded.threshold), label = coalesce(alerts.label, excluded.label),
        message = coalesce(alerts.message, excluded.message)"""
_REPORT = """INSERT OR REPLACE INTO model_reports (edge, device, model, version, sha256, state, message, last_score,
        last_scored_at, drift, psi, rows_scored, reported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


def _target(scope: str, target: str | None) -> str:
    return "" if scope == "fleet" else (target or "")


def _assignment(row: Sequence[Any]) -> Assignment:
    return Assignment(row[0], row[1] or None, *row[2:])


@contextlib.contextmanager
def _transaction(con: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise


# --- model versions -------------------------------------------------------------------
def put_model(con: sqlite3.Connection, m: NewModel, version: int | None) -> tuple[ModelVersion, bool]:
    with _transaction(con):
        row = con.execute(f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE sha256 = ?", (m.sha256,)).fetchone()
        if row is None and version is not None:
            row = con.execute(f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE name = ? AND version = ?",
                              (m.name, version)).fetchone()
        if row is not None:
            return ModelVersion(*row), False
        if version is None:
            con.execute("INSERT INTO model_names (name, last_version) VALUES (?, 1) ON CONFLICT (name) DO UPDATE "
                        "SET last_version = last_version + 1", (m.name,))
            version = con.execute("SELECT last_version FROM model_names WHERE name = ?", (m.name,)).fetchone()[0]
        else:
            con.execute("INSERT INTO model_names (name, last_version) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                        "SET last_version = max(last_version, excluded.last_version)", (m.name, version))
        con.execute("INSERT INTO model_versions (name, version, sha256, size, kind, schema, card, package, "
                    "uploaded_by, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (m.name, version, m.sha256, len(m.package), m.kind, m.schema, m.card, m.package,
                     m.uploaded_by, m.uploaded_at))
    return ModelVersion(m.name, version, m.sha256, len(m.package), m.kind, m.schema, m.card, m.uploaded_by,
                        m.uploaded_at), True


def models(con: sqlite3.Connection, name: str | None) -> list[ModelVersion]:
    sql = f"SELECT {_VERSION_COLUMNS} FROM model_versions"
    rows = (con.execute(sql + " ORDER BY name, version") if name is None
            else con.execute(sql + " WHERE name = ? ORDER BY version", (name,)))
    return [ModelVersion(*r) for r in rows]


def model_version(con: sqlite3.Connection, name: str, version: int) -> ModelVersion | None:
    row = con.execute(f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE name = ? AND version = ?",
                      (name, version)).fetchone()
    return ModelVersion(*row) if row else None


def model_package(con: sqlite3.Connection, name: str, version: int) -> tuple[str, bytes] | None:
    row = con.execute("SELECT sha256, package FROM model_versions WHERE name = ? AND version = ?",
                      (name, version)).fetchone()
    return (row[0], bytes(row[1])) if row else None


def delete_model(con: sqlite3.Connection, name: str, version: int) -> None:
    with _transaction(con):
        if con.execute("SELECT 1 FROM model_versions WHERE name = ? AND version = ?", (name, version)).fetchone() \
                is None:
            raise UnknownModel(f"model {name!r} has no version {version}", "version")
        used = con.execute(_ASSIGNMENTS + " WHERE a.model = ? AND a.version = ?" + _ORDER, (name, version)).fetchall()
        if used:
            raise ModelInUse(in_use(name, version, [_assignment(r) for r in used]), "version")
        con.execute("DELETE FROM model_versions WHERE name = ? AND version = ?", (name, version))


# --- assignments ----------------------------------------------------------------------
def assignments(con: sqlite3.Connection) -> list[Assignment]:
    return [_assignment(r) for r in con.execute(_ASSIGNMENTS + _ORDER)]


def assign(con: sqlite3.Connection, scope: str, target: str | None, model: str, version: int, by: str,
           now_us: int) -> Assignment:
    key = _target(scope, target)
    with _transaction(con):
        row = con.execute("SELECT sha256, size FROM model_versions WHERE name = ? AND version = ?",
                          (model, version)).fetchone()
        if row is None:
            raise UnknownModel(f"model {model!r} has no version {version}", "version")
        before = con.execute("SELECT model, version FROM model_assignments WHERE scope = ? AND target = ?",
                             (scope, key)).fetchone() or (None, None)
        con.execute("INSERT OR REPLACE INTO model_assignments (scope, target, model, version, assigned_by, "
                    "assigned_at) VALUES (?, ?, ?, ?, ?, ?)", (scope, key, model, version, by, now_us))
        con.execute("INSERT INTO assignment_changes (scope, target, model, version, previous_model, "
                    "previous_version, changed_by, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (scope, key, model, version, *before, by, now_us))
    return Assignment(scope, key or None, model, version, row[0], row[1], by, now_us)


def unassign(con: sqlite3.Connection, scope: str, target: str | None, by: str, now_us: int) -> bool:
    key = _target(scope, target)
    with _transaction(con):
        before = con.execute("SELECT model, version FROM model_assignments WHERE scope = ? AND target = ?",
                             (scope, key)).fetchone()
        if before is None:
            return False
        con.execute("DELETE FROM model_assignments WHERE scope = ? AND target = ?", (scope, key))
        con.execute("INSERT INTO assignment_changes (scope, target, model, version, previous_model, "
                    "previous_version, changed_by, at) VALUES (?, ?, NULL, NULL, ?, ?, ?, ?)",
                    (scope, key, *before, by, now_us))
    return True


def assignment_changes(con: sqlite3.Connection, limit: int) -> list[AssignmentChange]:
    rows = con.execute("SELECT scope, target, model, version, previous_model, previous_version, changed_by, at "
                       "FROM assignment_changes ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [AssignmentChange(r[0], r[1] or None, *r[2:]) for r in reversed(rows)]


# --- alerts ---------------------------------------------------------------------------
def store_alerts(con: sqlite3.Connection, edge: str, events: Sequence[AlertEventIn], now_us: int) -> int:
    """Inside the ingest transaction: each event not stored yet for (edge, seq); returns how many were new."""
    new = 0
    for a in events:
        if con.execute("INSERT OR IGNORE INTO alert_events (edge, seq, alert_id, event, received_at) "
                       "VALUES (?, ?, ?, ?, ?)", (edge, a.seq, a.alert_id, a.event, now_us)).rowcount == 0:
            continue
        new += 1
        con.execute(_RAISED if a.event == "raised" else _CLEARED,
                    (edge, a.alert_id, a.device, a.model, a.version, a.ts, a.ts, a.score, a.threshold, a.label,
                     a.message, now_us))
    return new


def purge_alerts(con: sqlite3.Connection, before: int) -> int:
    """Alerts raised before ``before``, and the records of events received before it (an edge never sends
    an event again that long after)."""
    with _transaction(con):
        return (con.execute("DELETE FROM alerts WHERE at < ?", (before,)).rowcount
                + con.execute("DELETE FROM alert_events WHERE received_at < ?", (before,)).rowcount)


def alerts(con: sqlite3.Connection, query: AlertQuery) -> list[AlertRecord]:
    sql, args = alert_filter(query, lambda _n: "?")
    return [AlertRecord(*r) for r in con.execute(sql, args)]


def alert(con: sqlite3.Connection, alert_id: int) -> AlertRecord | None:
    row = con.execute(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    return AlertRecord(*row) if row else None


def ack_alert(con: sqlite3.Connection, alert_id: int, by: str, comment: str, now_us: int) -> AlertRecord:
    with _transaction(con):
        con.execute("UPDATE alerts SET acked_by = ?, acked_at = ?, ack_comment = ? WHERE id = ? AND acked_at IS NULL",
                    (by, now_us, comment, alert_id))
        found = alert(con, alert_id)
    if found is None:
        raise UnknownAlert(f"no alert with id {alert_id}", "id")
    return found


# --- model reports --------------------------------------------------------------------
def store_reports(con: sqlite3.Connection, edge: str, reports: Sequence[ModelReportRow]) -> None:
    """Inside the ingest transaction: the edge's reports replace those it sent before. A report on a device that
    belongs to another edge is left out, as its frames and alerts are."""
    listed = json.dumps([r.device for r in reports])
    foreign = {row[0] for row in con.execute(
        "SELECT name FROM devices WHERE name IN (SELECT value FROM json_each(?)) AND owner_edge IS NOT NULL "
        "AND owner_edge != ?", (listed, edge))}
    reports = [r for r in reports if r.device not in foreign]
    con.execute("DELETE FROM model_reports WHERE edge = ? AND device NOT IN (SELECT value FROM json_each(?))",
                (edge, json.dumps([r.device for r in reports])))
    con.executemany(_REPORT, [(edge, r.device, r.model, r.version, r.sha256, r.state, r.message, r.last_score,
                               r.last_scored_at, r.drift, json.dumps(r.psi), r.rows, r.reported_at)
                              for r in reports])


def model_reports(con: sqlite3.Connection) -> list[ModelReportRow]:
    rows = con.execute("SELECT edge, device, model, version, sha256, state, message, last_score, last_scored_at, "
                       "drift, psi, rows_scored, reported_at FROM model_reports ORDER BY device, edge").fetchall()
    return [ModelReportRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], json.loads(r[10]), r[11],
                           r[12]) for r in rows]


def ml_counts(con: sqlite3.Connection) -> MlCounts:
    open_, unacked = con.execute("SELECT count(*) FILTER (WHERE cleared_ts IS NULL), "
                                 "count(*) FILTER (WHERE acked_at IS NULL) FROM alerts").fetchone()
    drift = dict(con.execute("SELECT drift, count(*) FROM model_reports GROUP BY drift").fetchall())
    return MlCounts(open_, unacked, {level: drift.get(level, 0) for level in DRIFTED})

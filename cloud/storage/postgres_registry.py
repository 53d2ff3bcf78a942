"""Edge ML in the PostgreSQL store: models, assignments, alerts and model reports (``cloud.storage.registry``).

Coroutines of a connection; ``PostgresStorage`` hands them one from its pool
(the ingest's part runs inside the ingest transaction). Uploads of one name
take turns on an advisory lock, so that two replicas never give one version
number twice; an assignment holds the version's row (``FOR SHARE``) and a
delete locks it (``FOR UPDATE``), so a version cannot be deleted while an
assignment to it is being made.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

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

MODEL_LOCK_SPACE = 7_307  # advisory locks (two-key form) of uploads, per model name
_VERSION_COLUMNS = "name, version, sha256, size, kind, schema, card, uploaded_by, uploaded_at"
_ASSIGNMENTS = """SELECT a.scope, a.target, a.model, a.version, m.sha256, m.size, a.assigned_by, a.assigned_at
    FROM model_assignments a JOIN model_versions m ON m.name = a.model AND m.version = a.version"""
_ORDER = " ORDER BY CASE a.scope WHEN 'device' THEN 0 WHEN 'edge' THEN 1 ELSE 2 END, a.target"
_RAISED = """INSERT INTO alerts AS x (edge, alert_id, device, model, version, at, raised_ts, score, threshold, label,
        message, received_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (edge, alert_id) DO UPDATE SET raised_ts = excluded.raised_ts, at = excluded.at,
        score = excluded.score, threshold = coalesce(excluded.threshold, x.threshold),
        label = coalesce(excluded.label, x.label), message = coalesce(excluded.message, x.message)"""
_CLEARED = """INSERT INTO alerts AS x (edge, alert_id, device, model, version, at, cleared_ts, peak, threshold, label,
        message, received_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (edge, alert_id) DO UPDATE SET cleared_ts = excluded.cleared_ts, peak = excluded.peak,
        threshold = coalesce(x.threshold, excluded.threshold), label = coalesce(x.label, excluded.label),
        message = coalesce(x.message, excluded.message)"""
_NEW_EVENTS = """INSERT INTO alert_events (edge, seq, alert_id, event, received_at)
    SELECT $1, s, a, e, $5 FROM unnest($2::bigint[], $3::text[], $4::text[]) AS u(s, a, e)
    ON CONFLICT DO NOTHING RETURNING seq"""
_REPORT = """INSERT INTO model_reports (edge, device, model, version, sha256, state, message, last_score,
        last_scored_at, drift, psi, rows_scored, reported_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
        $12, $13)
    ON CONFLICT (edge, device) DO UPDATE SET model = excluded.model, version = excluded.version,
        sha256 = excluded.sha256, state = excluded.state, message = excluded.message,
        last_score = excluded.last_score, last_scored_at = excluded.last_scored_at, drift = excluded.drift,
        psi = excluded.psi, rows_scored = excluded.rows_scored, reported_at = excluded.reported_at"""


def _target(scope: str, target: str | None) -> str:
    return "" if scope == "fleet" else (target or "")


def _assignment(row: Sequence[Any]) -> Assignment:
    return Assignment(row[0], row[1] or None, *row[2:])


# --- model versions -------------------------------------------------------------------
async def put_model(con: asyncpg.Connection, m: NewModel, version: int | None) -> tuple[ModelVersion, bool]:
    async with con.transaction():
        await con.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", MODEL_LOCK_SPACE, m.name)
        row = await con.fetchrow(f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE sha256 = $1", m.sha256)
        if row is None and version is not None:
            row = await con.fetchrow(f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE name = $1 AND version = $2",
                                     m.name, version)
        if row is not None:
            return ModelVersion(*row), False
        version = await con.fetchval(
            "INSERT INTO model_names AS n (name, last_version) VALUES ($1, coalesce($2::int, 1)) ON CONFLICT (name) "
            "DO UPDATE SET last_version = CASE WHEN $2::int IS NULL THEN n.last_version + 1 "
            "ELSE GREATEST(n.last_version, $2::int) END RETURNING CASE WHEN $2::int IS NULL THEN last_version "
            "ELSE $2::int END", m.name, version)
        await con.execute("INSERT INTO model_versions (name, version, sha256, size, kind, schema, card, package, "
                          "uploaded_by, uploaded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                          m.name, version, m.sha256, len(m.package), m.kind, m.schema, m.card, m.package,
                          m.uploaded_by, m.uploaded_at)
    return ModelVersion(m.name, version, m.sha256, len(m.package), m.kind, m.schema, m.card, m.uploaded_by,
                        m.uploaded_at), True


async def models(con: asyncpg.Connection, name: str | None) -> list[ModelVersion]:
    sql = f"SELECT {_VERSION_COLUMNS} FROM model_versions"
    rows = (await con.fetch(sql + " ORDER BY name, version") if name is None
            else await con.fetch(sql + " WHERE name = $1 ORDER BY version", name))
    return [ModelVersion(*r) for r in rows]


async def model_version(con: asyncpg.Connection, name: str, version: int) -> ModelVersion | None:
    row = await con.fetchrow(f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE name = $1 AND version = $2",
                             name, version)
    return ModelVersion(*row) if row else None


async def model_package(con: asyncpg.Connection, name: str, version: int) -> tuple[str, bytes] | None:
    row = await con.fetchrow("SELECT sha256, package FROM model_versions WHERE name = $1 AND version = $2",
                             name, version)
    return (row[0], bytes(row[1])) if row else None


async def delete_model(con: asyncpg.Connection, name: str, version: int) -> None:
    async with con.transaction():
        if await con.fetchval("SELECT 1 FROM model_versions WHERE name = $1 AND version = $2 FOR UPDATE",
                              name, version) is None:
            raise UnknownModel(f"model {name!r} has no version {version}", "version")
        used = await con.fetch(_ASSIGNMENTS + " WHERE a.model = $1 AND a.version = $2" + _ORDER, name, version)
        if used:
            raise ModelInUse(in_use(name, version, [_assignment(r) for r in used]), "version")
        await con.execute("DELETE FROM model_versions WHERE name = $1 AND version = $2", name, version)


# --- assignments ----------------------------------------------------------------------
async def assignments(con: asyncpg.Connection) -> list[Assignment]:
    return [_assignment(r) for r in await con.fetch(_ASSIGNMENTS + _ORDER)]


async def assign(con: asyncpg.Connection, scope: str, target: str | None, model: str, version: int, by: str,
                 now_us: int) -> Assignment:
    key = _target(scope, target)
    async with con.transaction():
        row = await con.fetchrow("SELECT sha256, size FROM model_versions WHERE name = $1 AND version = $2 "
                                 "FOR SHARE", model, version)
        if row is None:
            raise UnknownModel(f"model {model!r} has no version {version}", "version")
        before = await con.fetchrow("SELECT model, version FROM model_assignments WHERE scope = $1 AND target = $2 "
                                    "FOR UPDATE", scope, key)
        await con.execute("INSERT INTO model_assignments (scope, target, model, version, assigned_by, assigned_at) "
                          "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, target) DO UPDATE SET "
                          "model = excluded.model, version = excluded.version, assigned_by = excluded.assigned_by, "
                          "assigned_at = excluded.assigned_at", scope, key, model, version, by, now_us)
        await con.execute("INSERT INTO assignment_changes (scope, target, model, version, previous_model, "
                          "previous_version, changed_by, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                          scope, key, model, version, *(before or (None, None)), by, now_us)
    return Assignment(scope, key or None, model, version, row[0], row[1], by, now_us)


async def unassign(con: asyncpg.Connection, scope: str, target: str | None, by: str, now_us: int) -> bool:
    key = _target(scope, target)
    async with con.transaction():
        before = await con.fetchrow("DELETE FROM model_assignments WHERE scope = $1 AND target = $2 "
                                    "RETURNING model, version", scope, key)
        if before is None:
            return False
        await con.execute("INSERT INTO assignment_changes (scope, target, model, version, previous_model, "
                          "previous_version, changed_by, at) VALUES ($1, $2, NULL, NULL, $3, $4, $5, $6)",
                          scope, key, before[0], before[1], by, now_us)
    return True


async def assignment_changes(con: asyncpg.Connection, limit: int) -> list[AssignmentChange]:
    rows = await con.fetch("SELECT scope, target, model, version, previous_model, previous_version, changed_by, at "
                           "FROM assignment_changes ORDER BY id DESC LIMIT $1", limit)
    return [AssignmentChange(r[0], r[1] or None, *r[2:]) for r in reversed(rows)]


# --- alerts ---------------------------------------------------------------------------
async def store_alerts(con: asyncpg.Connection, edge: str, events: Sequence[AlertEventIn], now_us: int) -> int:
    """Inside the ingest transaction: each event not stored yet for (edge, seq); returns how many were new."""
    if not events:
        return 0
    fresh = {r[0] for r in await con.fetch(_NEW_EVENTS, edge, [a.seq for a in events],
                                           [a.alert_id for a in events], [a.event for a in events], now_us)}
    new = [a for a in events if a.seq in fresh]
    for event, sql in (("raised", _RAISED), ("cleared", _CLEARED)):
        rows = [(edge, a.alert_id, a.device, a.model, a.version, a.ts, a.score, a.threshold, a.label, a.message,
                 now_us) for a in new if a.event == event]
        if rows:
            await con.executemany(sql, rows)
    return len(fresh)


async def purge_alerts(con: asyncpg.Connection, before: int) -> int:
    """Alerts raised before ``before``, and the records of events received before it (an edge never sends
    an event again that long after)."""
    deleted = 0
    for sql in ("DELETE FROM alerts WHERE at < $1", "DELETE FROM alert_events WHERE received_at < $1"):
        status = str(await con.execute(sql, before))
        deleted += int(status.rsplit(" ", 1)[-1]) if status.rsplit(" ", 1)[-1].isdigit() else 0
    return deleted


async def alerts(con: asyncpg.Connection, query: AlertQuery) -> list[AlertRecord]:
    sql, args = alert_filter(query, lambda n: f"${n}")
    return [AlertRecord(*r) for r in await con.fetch(sql, *args)]


async def alert(con: asyncpg.Connection, alert_id: int) -> AlertRecord | None:
    row = await con.fetchrow(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1", alert_id)
    return AlertRecord(*row) if row else None


async def ack_alert(con: asyncpg.Connection, alert_id: int, by: str, comment: str, now_us: int) -> AlertRecord:
    row = await con.fetchrow(
        f"UPDATE alerts SET acked_by = coalesce(acked_by, $2), ack_comment = CASE WHEN acked_at IS NULL THEN $3 "
        f"ELSE ack_comment END, acked_at = coalesce(acked_at, $4) WHERE id = $1 RETURNING {ALERT_COLUMNS}",
        alert_id, by, comment, now_us)
    if row is None:
        raise UnknownAlert(f"no alert with id {alert_id}", "id")
    return AlertRecord(*row)


# --- model reports --------------------------------------------------------------------
async def store_reports(con: asyncpg.Connection, edge: str, reports: Sequence[ModelReportRow]) -> None:
    """Inside the ingest transaction: the edge's reports replace those it sent before. A report on a device that
    belongs to another edge is left out, as its frames and alerts are."""
    foreign = {row[0] for row in await con.fetch(
        "SELECT name FROM devices WHERE name = ANY($1::text[]) AND owner_edge IS NOT NULL AND owner_edge != $2",
        [r.device for r in reports], edge)}
    reports = [r for r in reports if r.device not in foreign]
    await con.execute("DELETE FROM model_reports WHERE edge = $1 AND NOT (device = ANY($2::text[]))",
                      edge, [r.device for r in reports])
    if reports:
        await con.executemany(_REPORT, [(edge, r.device, r.model, r.version, r.sha256, r.state, r.message,
                                         r.last_score, r.last_scored_at, r.drift, json.dumps(r.psi), r.rows,
                                         r.reported_at) for r in reports])


async def model_reports(con: asyncpg.Connection) -> list[ModelReportRow]:
    rows = await con.fetch("SELECT edge, device, model, version, sha256, state, message, last_score, "
                           "last_scored_at, drift, psi, rows_scored, reported_at FROM model_reports "
                           "ORDER BY device, edge")
    return [ModelReportRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], json.loads(r[10]), r[11],
                           r[12]) for r in rows]


async def ml_counts(con: asyncpg.Connection) -> MlCounts:
    row = await con.fetchrow("SELECT count(*) FILTER (WHERE cleared_ts IS NULL), "
                             "count(*) FILTER (WHERE acked_at IS NULL) FROM alerts")
    drift = {r[0]: r[1] for r in await con.fetch("SELECT drift, count(*) FROM model_reports GROUP BY drift")}
    return MlCounts(row[0], row[1], {level: drift.get(level, 0) for level in DRIFTED})

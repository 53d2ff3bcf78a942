"""The storage contract of edge ML on SQLite and a real PostgreSQL: model versions, assignments, alerts, reports."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from cloud.storage.base import Storage
from cloud.storage.registry import (
    AlertEventIn,
    AlertQuery,
    ModelInUse,
    ModelReportRow,
    NewModel,
    UnknownAlert,
    UnknownModel,
)
from cloud.storage.sqlite import SQLiteStorage
from cloud.transfer import copy_database
from shared.frame import TelemetryFrame

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs


def upload(name: str, body: bytes, at: int = 1) -> NewModel:
    return NewModel(name=name, sha256=hashlib.sha256(body).hexdigest(), kind="anomaly",
                    schema=json.dumps({"kind": "anomaly"}), card=json.dumps({"name": name}), package=body,
                    uploaded_by="olga", uploaded_at=at)


def raised(seq: int, alert_id: str, device: str = "press-1", at_s: int = 0, score: float = 3.5) -> AlertEventIn:
    return AlertEventIn(seq=seq, alert_id=alert_id, event="raised", device=device, ts=T0 + at_s * 1_000_000,
                        model="bearing", version=1, score=score, threshold=2.0, message="vibration unusual")


def cleared(seq: int, alert_id: str, device: str = "press-1", at_s: int = 60, peak: float = 7.0) -> AlertEventIn:
    return AlertEventIn(seq=seq, alert_id=alert_id, event="cleared", device=device, ts=T0 + at_s * 1_000_000,
                        model="bearing", version=1, score=peak)


def report(device: str, drift: str = "ok", psi: dict[str, float] | None = None) -> ModelReportRow:
    return ModelReportRow(edge="", device=device, model="bearing", version=1, sha256="ab" * 32, state="serving",
                          message="", last_score=0.4, last_scored_at=1.7e9, drift=drift, psi=psi or {}, rows=1000,
                          reported_at=5)


async def test_uploads_get_the_next_version_and_the_same_package_twice_is_one_version(storage: Storage) -> None:
    first, new1 = await storage.put_model(upload("bearing", b"one"))
    second, new2 = await storage.put_model(upload("bearing", b"two"))
    again, new3 = await storage.put_model(upload("bearing", b"one"))
    other, _ = await storage.put_model(upload("load", b"three"))
    assert (first.version, second.version, other.version) == (1, 2, 1) and (new1, new2) == (True, True)
    assert (again.version, new3) == (1, False)
    assert [(m.name, m.version) for m in await storage.models()] == [("bearing", 1), ("bearing", 2), ("load", 1)]
    assert [m.version for m in await storage.models("bearing")] == [1, 2]
    assert await storage.model_package("bearing", 2) == (hashlib.sha256(b"two").hexdigest(), b"two")
    assert await storage.model_package("bearing", 9) is None
    info = await storage.model_version("bearing", 1)
    assert info is not None and info.size == 3 and info.card_dict() == {"name": "bearing"}


async def test_a_deleted_versions_number_is_never_given_again(storage: Storage) -> None:
    await storage.put_model(upload("bearing", b"one"))
    await storage.put_model(upload("bearing", b"two"))
    await storage.delete_model("bearing", 2)
    third, _ = await storage.put_model(upload("bearing", b"three"))
    assert third.version == 3
    assert [m.version for m in await storage.models("bearing")] == [1, 3]
    with pytest.raises(UnknownModel):
        await storage.delete_model("bearing", 2)


async def test_assignments_name_the_package_and_every_change_is_recorded(storage: Storage) -> None:
    await storage.put_model(upload("bearing", b"one"))
    await storage.put_model(upload("bearing", b"two"))
    await storage.assign("fleet", None, "bearing", 1, "olga", 10)
    await storage.assign("edge", "line-1", "bearing", 2, "olga", 11)
    await storage.assign("device", "press-1", "bearing", 2, "olga", 12)
    await storage.assign("edge", "line-1", "bearing", 1, "ann", 13)  # roll back the canary
    rules = await storage.assignments()
    assert [(a.scope, a.target, a.version) for a in rules] == [
        ("device", "press-1", 2), ("edge", "line-1", 1), ("fleet", None, 1)]
    assert rules[0].sha256 == hashlib.sha256(b"two").hexdigest() and rules[0].size == 3
    assert await storage.unassign("device", "press-1", "ann", 14) is True
    assert await storage.unassign("device", "press-1", "ann", 15) is False
    changes = await storage.assignment_changes(10)
    assert [(c.scope, c.target, c.version, c.previous_version, c.changed_by) for c in changes] == [
        ("fleet", None, 1, None, "olga"), ("edge", "line-1", 2, None, "olga"), ("device", "press-1", 2, None, "olga"),
        ("edge", "line-1", 1, 2, "ann"), ("device", "press-1", None, 2, "ann")]
    with pytest.raises(UnknownModel):
        await storage.assign("fleet", None, "bearing", 7, "olga", 16)


async def test_an_assigned_version_cannot_be_deleted_and_the_refusal_says_where(storage: Storage) -> None:
    await storage.put_model(upload("bearing", b"one"))
    await storage.assign("device", "press-1", "bearing", 1, "olga", 1)
    await storage.assign("fleet", None, "bearing", 1, "olga", 1)
    with pytest.raises(ModelInUse, match="device press-1, the fleet"):
        await storage.delete_model("bearing", 1)
    assert len(await storage.models()) == 1


async def test_alert_events_are_stored_once_per_edge_and_sequence(storage: Storage) -> None:
    events = [raised(1, "a1"), cleared(2, "a1"), raised(3, "a2", at_s=100)]
    first = await storage.ingest("edge-a", [], None, 5, alerts=events)
    again = await storage.ingest("edge-a", [], None, 6, alerts=events)  # the ack was lost: sent again
    assert (first.alerts_stored, first.alerts_duplicate) == (3, 0)
    assert (again.alerts_stored, again.alerts_duplicate) == (0, 3)
    listed = await storage.alerts(AlertQuery())
    assert [(a.alert_id, a.state, a.score, a.peak) for a in listed] == [("a2", "open", 3.5, None),
                                                                        ("a1", "cleared", 3.5, 7.0)]
    assert listed[1].raised_ts == T0 and listed[1].cleared_ts == T0 + 60_000_000
    assert listed[1].message == "vibration unusual" and listed[1].threshold == 2.0


async def test_a_cleared_event_that_arrives_before_its_raised_event_makes_one_alert(storage: Storage) -> None:
    await storage.ingest("edge-a", [], None, 5, alerts=[cleared(2, "a1")])
    [early] = await storage.alerts(AlertQuery())
    assert (early.state, early.raised_ts, early.peak, early.at) == ("cleared", None, 7.0, T0 + 60_000_000)
    await storage.ingest("edge-a", [], None, 6, alerts=[raised(1, "a1")])
    [alert] = await storage.alerts(AlertQuery())
    assert (alert.id, alert.state, alert.raised_ts, alert.at, alert.score, alert.peak) == (
        early.id, "cleared", T0, T0, 3.5, 7.0)
    assert alert.message == "vibration unusual"


async def test_an_alert_of_another_edges_device_is_refused_and_nothing_of_it_stored(storage: Storage) -> None:
    frame = TelemetryFrame(ts=T0 / 1e6, device_id="press-1", sensors={"temp": 1.0})
    await storage.ingest("edge-b", [(1, frame)], None, 1)
    result = await storage.ingest("edge-a", [], None, 2, alerts=[raised(1, "x"), raised(2, "y", device="mill-2")])
    assert result.alerts_stored == 1 and [seq for seq, _ in result.alerts_refused] == [1]
    assert "belongs to edge edge-b" in result.alerts_refused[0][1]
    assert [a.device for a in await storage.alerts(AlertQuery())] == ["mill-2"]
    owners = {d.name: d.owner for d in await storage.device_records()}
    assert owners == {"press-1": "edge-b", "mill-2": "edge-a"}  # an alert's device is claimed like a frame's


async def test_alerts_filter_by_device_edge_state_and_time_and_page_newest_first(storage: Storage) -> None:
    events = [raised(k + 1, f"a{k}", device=f"dev-{k % 2}", at_s=k * 10) for k in range(7)]
    await storage.ingest("edge-a", [], None, 1, alerts=events)
    await storage.ingest("edge-b", [], None, 1, alerts=[raised(1, "b0", device="dev-b", at_s=35)])
    await storage.ingest("edge-a", [], None, 2, alerts=[cleared(8, "a2")])
    ids = {a.alert_id: a.id for a in await storage.alerts(AlertQuery())}
    await storage.ack_alert(ids["a4"], "olga", "checked the bearing", 9)

    async def names(**kw: object) -> list[str]:
        return [a.alert_id for a in await storage.alerts(AlertQuery(**kw))]  # type: ignore[arg-type]
    assert await names() == ["a6", "a5", "a4", "b0", "a3", "a2", "a1", "a0"]
    assert await names(device="dev-0") == ["a6", "a4", "a2", "a0"]
    assert await names(edge="edge-b") == ["b0"]
    assert await names(state="cleared") == ["a2"]
    assert await names(state="open", device="dev-0") == ["a6", "a4", "a0"]
    assert await names(state="acknowledged") == ["a4"]
    assert "a4" not in await names(state="unacknowledged")
    assert await names(start=T0 + 20_000_000, stop=T0 + 40_000_000) == ["b0", "a3", "a2"]
    seen: list[str] = []
    after = None
    while True:
        page = await storage.alerts(AlertQuery(limit=3, after=after))
        seen += [a.alert_id for a in page]
        if len(page) < 3:
            break
        after = (page[-1].at, page[-1].id)
    assert seen == await names()


async def test_an_acknowledgement_is_recorded_once(storage: Storage) -> None:
    await storage.ingest("edge-a", [], None, 1, alerts=[raised(1, "a1")])
    [alert] = await storage.alerts(AlertQuery())
    first = await storage.ack_alert(alert.id, "olga", "seen", 100)
    second = await storage.ack_alert(alert.id, "ann", "seen too", 200)
    assert (first.acked_by, first.acked_at, first.ack_comment) == ("olga", 100, "seen")
    assert (second.acked_by, second.acked_at, second.ack_comment) == ("olga", 100, "seen")
    with pytest.raises(UnknownAlert):
        await storage.ack_alert(alert.id + 100, "olga", "", 1)
    assert await storage.alert(alert.id + 100) is None


async def test_an_edges_model_reports_replace_the_ones_it_sent_before(storage: Storage) -> None:
    await storage.ingest("edge-a", [], None, 1, reports=[report("press-1"), report("press-2", "drift", {"rms": 0.4})])
    await storage.ingest("edge-b", [], None, 1, reports=[report("mill-1", "warn", {"temp": 0.12})])
    await storage.ingest("edge-a", [], None, 2)  # no report with this batch: the last one stands
    assert [(r.edge, r.device) for r in await storage.model_reports()] == [
        ("edge-b", "mill-1"), ("edge-a", "press-1"), ("edge-a", "press-2")]
    assert (await storage.ml_counts()).drift == {"warn": 1, "drift": 1}
    await storage.ingest("edge-a", [], None, 3, reports=[report("press-2", "ok")])
    rows = await storage.model_reports()
    assert [(r.edge, r.device, r.drift) for r in rows] == [("edge-b", "mill-1", "warn"), ("edge-a", "press-2", "ok")]
    assert rows[0].psi == {"temp": 0.12}


async def test_a_report_on_another_edges_device_is_left_out(storage: Storage) -> None:
    frame = TelemetryFrame(ts=T0 / 1e6, device_id="press-1", sensors={"temp": 1.0})
    await storage.ingest("edge-a", [(1, frame)], None, 1)  # press-1 belongs to edge-a from now on
    await storage.ingest("edge-b", [], None, 2, reports=[report("press-1", "drift", {"temp": 9.0}),
                                                        report("mill-1", "warn", {"temp": 0.12})])
    assert [(r.edge, r.device) for r in await storage.model_reports()] == [("edge-b", "mill-1")]
    assert (await storage.ml_counts()).drift == {"warn": 1, "drift": 0}


async def test_the_counts_for_metrics(storage: Storage) -> None:
    await storage.ingest("edge-a", [], None, 1, alerts=[raised(1, "a1"), raised(2, "a2"), cleared(3, "a2")])
    [_, a1] = await storage.alerts(AlertQuery())
    await storage.ack_alert(a1.id, "olga", "", 5)
    counts = await storage.ml_counts()
    assert (counts.alerts_open, counts.alerts_unacknowledged) == (1, 1)


async def test_a_copied_database_keeps_each_versions_number_and_the_rules(storage: Storage, tmp_path) -> None:
    src = SQLiteStorage(tmp_path / "src.db")
    await src.open()
    try:
        for body in (b"one", b"two", b"three"):
            await src.put_model(upload("bearing", body))
        await src.delete_model("bearing", 2)
        await src.assign("fleet", None, "bearing", 3, "olga", 7)
        await src.assign("device", "press-1", "bearing", 1, "ann", 8)
        await copy_database(src, storage)
        await copy_database(src, storage)  # twice: nothing stored twice
    finally:
        await src.close()
    assert [(m.version, m.sha256) for m in await storage.models("bearing")] == [
        (1, hashlib.sha256(b"one").hexdigest()), (3, hashlib.sha256(b"three").hexdigest())]
    assert [(a.scope, a.version, a.assigned_by) for a in await storage.assignments()] == [
        ("device", 1, "ann"), ("fleet", 3, "olga")]
    assert (await storage.put_model(upload("bearing", b"four")))[0].version == 4


async def test_uploads_at_once_get_one_version_each_and_one_package_one_version(storage: Storage) -> None:
    results = await asyncio.gather(*(storage.put_model(upload("race", bytes([k % 5]))) for k in range(10)))
    new = sorted(v.version for v, created in results if created)
    assert new == [1, 2, 3, 4, 5]
    by_sha = {v.sha256: v.version for v, _ in results}
    assert all(by_sha[v.sha256] == v.version for v, _ in results)


async def test_alerts_are_kept_as_long_as_rollups(storage: Storage) -> None:
    await storage.ingest("edge-a", [], None, T0, alerts=[raised(1, "old", at_s=0), raised(2, "new", at_s=7200)])
    await storage.purge(None, T0 + 3600 * 1_000_000)
    assert [a.alert_id for a in await storage.alerts(AlertQuery())] == ["new"]
    await storage.purge(T0 + 9000 * 1_000_000, None)  # the samples' cutoff leaves alerts alone
    assert [a.alert_id for a in await storage.alerts(AlertQuery())] == ["new"]

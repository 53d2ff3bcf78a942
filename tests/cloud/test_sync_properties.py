"""Property: whatever mix of good, bad and repeated frames a batch holds, each reading is stored once,
each bad frame is refused by itself, and the ack covers the whole batch."""

from __future__ import annotations

import math
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cloud.apiclient import T0, Api, auth, batch

GOOD = "good"


@st.composite
def frames(draw: st.DrawFn, device: str) -> tuple[str, dict[str, Any] | Any]:
    kind = draw(st.sampled_from([GOOD, GOOD, GOOD, "bad_ts", "bad_device", "not_a_map", "extra_key", "nan"]))
    ts = T0 + draw(st.integers(0, 30)) * 0.5  # few distinct instants: repeats are likely
    value = draw(st.one_of(st.floats(-1e9, 1e9), st.integers(-1000, 1000), st.booleans(), st.text(max_size=5)))
    frame: Any = {"ts": ts, "device_id": device, "sensors": {"v": value}}
    if kind == "bad_ts":
        frame["ts"] = draw(st.sampled_from([ts * 1000, -1, "soon", None]))
    elif kind == "bad_device":
        frame["device_id"] = "no spaces allowed"
    elif kind == "not_a_map":
        frame = draw(st.sampled_from([[1, 2], "frame", 7, None]))
    elif kind == "extra_key":
        frame["colour"] = "red"
    elif kind == "nan":
        frame["sensors"] = {"v": math.nan}
    return kind, frame


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_a_mixed_batch_is_stored_once_refused_one_by_one_and_acked_whole(api: Api, data: st.DataObject) -> None:
    device = f"prop-{uuid.uuid4().hex[:8]}"
    items = data.draw(st.lists(frames(device), min_size=1, max_size=40))
    gaps = data.draw(st.lists(st.integers(1, 1000), min_size=len(items), max_size=len(items)))
    seqs = [sum(gaps[:k + 1]) for k in range(len(items))]
    body = batch("edge-1", [(s, f) for s, (_, f) in zip(seqs, items, strict=True)])

    ack = (await api.sync(body)).json()
    good = [(s, f) for s, (kind, f) in zip(seqs, items, strict=True) if kind == GOOD]
    assert ack["acked_through"] == seqs[-1]
    assert {r["seq"] for r in ack["rejected"]} == {s for s, (kind, _) in zip(seqs, items, strict=True)
                                                   if kind != GOOD}
    assert all(r["reason"] for r in ack["rejected"])
    distinct = {f["ts"] for _, f in good}
    assert (ack["stored"], ack["duplicates"]) == (len(distinct), len(good) - len(distinct))

    again = (await api.sync(body)).json()  # a retry stores nothing
    assert (again["stored"], again["duplicates"], again["acked_through"]) == (0, len(good), seqs[-1])
    if distinct:
        page = (await api.client.get("/api/v1/twin/history", headers=auth(api.viewer),
                                     params={"device": device, "limit": 1000})).json()
        stored_ts = [p[0] for s in page["series"] for p in s["points"]]
        assert sorted(stored_ts) == sorted(distinct)
        first = {}
        for _, f in good:
            first.setdefault(f["ts"], f["sensors"]["v"])  # the first copy of a reading wins
        for ts, value in (p for s in page["series"] for p in s["points"]):
            expected = first[ts]
            assert value == (expected if isinstance(expected, str | bool) else float(expected))

"""History, aggregate, state and devices over HTTP, and the 4xx answers for bad parameters."""

from __future__ import annotations

import asyncio

import pytest

from tests.cloud.apiclient import T0, Api, auth, batch, make_api, wire


@pytest.fixture
async def loaded(api: Api) -> Api:
    frames = [(i + 1, wire(i)) for i in range(300)]
    frames.append((1000, wire(0, device="m:2", mode="auto", on=True)))
    ack = await api.sync(batch("edge-1", frames))
    assert ack.json()["stored"] == 301
    return api


async def get(api: Api, path: str, **params: object) -> tuple[int, dict]:
    resp = await api.client.get(path, params=params, headers=auth(api.viewer))
    return resp.status_code, resp.json()


async def test_history_pages_through_every_point(loaded: Api) -> None:
    points: list[tuple[str, float]] = []
    cursor = None
    while True:
        params = {"device": "press-1", "fields": "temp,rpm", "limit": 250}
        status, body = await get(loaded, "/api/v1/twin/history", **params, **({"cursor": cursor} if cursor else {}))
        assert status == 200, body
        points += [(s["field"], p[0]) for s in body["series"] for p in s["points"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(points) == 600 and len(set(points)) == 600
    assert points[0] == ("rpm", T0) and points[-1] == ("temp", T0 + 299)


async def test_history_of_a_time_range_in_iso_8601(loaded: Api) -> None:
    status, body = await get(loaded, "/api/v1/twin/history", device="press-1", fields="temp",
                             start="2026-01-01T00:00:10Z", stop="2026-01-01T00:00:13Z")
    assert status == 200
    assert body["series"] == [{"field": "temp", "kind": "num",
                               "points": [[T0 + 10, 30.0], [T0 + 11, 31.0], [T0 + 12, 32.0]]}]


async def test_aggregate_buckets_with_every_function(loaded: Api) -> None:
    status, body = await get(loaded, "/api/v1/twin/history/aggregate", device="press-1", fields="temp",
                             start=T0, stop=T0 + 180, window="1m", funcs="mean,min,max,sum,count,first,last")
    assert status == 200, body
    [series] = body["series"]
    assert series["buckets"][0] == {"start": T0, "mean": 49.5, "min": 20.0, "max": 79.0, "sum": 2970.0,
                                    "count": 60.0, "first": 20.0, "last": 79.0}
    assert [b["start"] for b in series["buckets"]] == [T0, T0 + 60, T0 + 120]


async def test_aggregate_with_a_window_that_is_not_whole_minutes(loaded: Api) -> None:
    status, body = await get(loaded, "/api/v1/twin/history/aggregate", device="press-1", fields="rpm",
                             start=T0, stop=T0 + 20, window="10s", funcs="count,last")
    assert status == 200
    assert body["series"][0]["buckets"] == [{"start": T0, "count": 10.0, "last": 1009.0},
                                            {"start": T0 + 10, "count": 10.0, "last": 1019.0}]


async def test_state_and_devices(loaded: Api) -> None:
    status, body = await get(loaded, "/api/v1/twin/m:2/state")
    assert status == 200
    assert body["values"] == {"mode": {"ts": T0, "value": "auto"}, "on": {"ts": T0, "value": True},
                              "metrics.score": {"ts": T0, "value": 0.0}}
    assert (await get(loaded, "/api/v1/twin/devices"))[1] == ["m:2", "press-1"]


@pytest.mark.parametrize(("path", "params", "status", "where"), [
    ("/api/v1/twin/history", {"device": "nope"}, 404, "device"),
    ("/api/v1/twin/nope/state", {}, 404, "device"),
    ("/api/v1/twin/history/aggregate", {"device": "nope", "start": T0, "stop": T0 + 60}, 404, "device"),
    ("/api/v1/twin/history", {"device": "press-1", "start": T0 + 10, "stop": T0}, 400, "start"),
    ("/api/v1/twin/history", {"device": "press-1", "start": "last tuesday"}, 400, "start"),
    ("/api/v1/twin/history", {"device": "press-1", "stop": "1e30"}, 400, "stop"),
    ("/api/v1/twin/history", {"device": "press-1", "fields": "pressure"}, 400, "fields"),
    ("/api/v1/twin/history", {"device": "press-1", "cursor": "xyz"}, 400, "cursor"),
    ("/api/v1/twin/history", {"device": "press-1", "limit": 0}, 422, "limit"),
    ("/api/v1/twin/history", {}, 422, "device"),
    ("/api/v1/twin/history/aggregate", {"device": "press-1", "window": "5"}, 400, "window"),
    ("/api/v1/twin/history/aggregate", {"device": "press-1", "window": "10ms"}, 400, "window"),
    ("/api/v1/twin/history/aggregate", {"device": "press-1", "start": T0, "stop": T0 + 86400 * 365,
                                        "window": "1s"}, 400, "window"),
    ("/api/v1/twin/history/aggregate", {"device": "press-1", "funcs": "median"}, 400, "funcs"),
])
async def test_bad_parameters_get_a_clear_4xx(loaded: Api, path: str, params: dict, status: int,
                                              where: str) -> None:
    got, body = await get(loaded, path, **params)
    assert got == status, body
    assert body["detail"][0]["path"] == where and body["detail"][0]["message"]


async def test_a_sum_that_overflows_is_null_not_a_server_error(api: Api) -> None:
    frames = [(i + 1, wire(i, device="big", v=1.7e308)) for i in range(3)]
    assert (await api.sync(batch("edge-1", frames))).json()["stored"] == 3
    status, body = await get(api, "/api/v1/twin/history/aggregate", device="big", fields="v", start=T0,
                             stop=T0 + 60, window="1m", funcs="sum,mean,max")
    assert status == 200
    assert body["series"][0]["buckets"] == [{"start": T0, "sum": None, "mean": None, "max": 1.7e308}]


async def test_retention_removes_points_older_than_configured(tmp_path) -> None:
    from cloud.app import apply_retention
    from tests.cloud.apiclient import make_api

    async with make_api(tmp_path, retention={"samples_days": 30, "rollups_days": 0}) as api:
        assert (await api.sync(batch("edge-1", [(i + 1, wire(i * 86_400)) for i in range(10)]))).status_code == 200
        now_us = int((T0 + 35 * 86_400) * 1e6)  # 35 days after the first point: points of days 0-4 are too old
        assert await apply_retention(api.ctx, now_us) > 0
        status, body = await get(api, "/api/v1/twin/history", device="press-1", fields="temp")
        assert [p[0] for p in body["series"][0]["points"]] == [T0 + d * 86_400 for d in range(5, 10)]
        status, agg = await get(api, "/api/v1/twin/history/aggregate", device="press-1", fields="temp",
                                start=T0, stop=T0 + 10 * 86_400, window="24h", funcs="count")
        assert len(agg["series"][0]["buckets"]) == 10  # rollups are kept (rollups_days = 0)


async def test_openapi_and_docs_are_served(api: Api) -> None:
    assert (await api.client.get("/docs")).status_code == 200
    spec = (await api.client.get("/openapi.json", headers=auth(api.viewer))).json()
    assert "/api/v1/sync/batches" in spec["paths"] and "SyncBatch" in spec["components"]["schemas"]


@pytest.mark.parametrize("path", ["/api/v1/twin/history", "/api/v1/twin/history/aggregate"])
async def test_empty_start_and_stop_take_their_defaults(loaded: Api, path: str) -> None:
    status, body = await get(loaded, path, device="press-1", fields="temp", start="", stop="")
    assert status == 200, body
    if path.endswith("aggregate"):  # the last 24 hours: the data of 2026-01-01 is older
        assert body["stop"] - body["start"] == 86_400 and body["series"] == [{"field": "temp", "buckets": []}]
    else:  # everything stored
        assert len(body["series"][0]["points"]) == 300


async def test_an_aggregate_with_only_a_stop_covers_the_day_before_it(loaded: Api) -> None:
    status, body = await get(loaded, "/api/v1/twin/history/aggregate", device="press-1", fields="temp",
                             start="", stop=T0 + 120, window="1m", funcs="count")
    assert status == 200, body
    assert body["start"] == T0 + 120 - 86_400
    assert body["series"][0]["buckets"] == [{"start": T0, "count": 60.0}, {"start": T0 + 60, "count": 60.0}]


async def test_queries_past_the_bound_get_503_with_retry_after(tmp_path) -> None:
    async with make_api(tmp_path, queries={"max_running": 1, "max_queued": 0}) as api:
        await api.sync(batch("edge-1", [(i + 1, wire(i)) for i in range(10)]))
        async with api.ctx.queries.slot("user:someone-else"):  # another dashboard's query runs
            for path in ("/api/v1/twin/history", "/api/v1/twin/history/aggregate"):
                resp = await api.client.get(path, params={"device": "press-1", "start": T0, "stop": T0 + 60},
                                            headers=auth(api.viewer))
                assert resp.status_code == 503
                assert resp.headers["Retry-After"] == "2"
                assert "waiting already" in resp.json()["detail"][0]["message"]
        resp = await api.client.get("/api/v1/twin/history", params={"device": "press-1"}, headers=auth(api.viewer))
        assert resp.status_code == 200


async def test_a_dashboard_sending_many_queries_at_once_waits_in_the_gate(tmp_path) -> None:
    """Short queries run on the event loop without giving it back; requests that arrived together must still
    meet the gate's rules (one running, two waiting for this token) instead of running one after another
    ahead of everybody else's."""
    async with make_api(tmp_path, queries={"max_running": 1, "max_queued_per_client": 2}) as api:
        await api.sync(batch("edge-1", [(i + 1, wire(i)) for i in range(10)]))

        async def query() -> int:
            resp = await api.client.get("/api/v1/twin/history/aggregate", headers=auth(api.viewer),
                                        params={"device": "press-1", "start": T0, "stop": T0 + 60, "window": "10s"})
            return resp.status_code

        statuses = await asyncio.gather(*(query() for _ in range(10)))
        assert sorted(statuses) == [200] * 3 + [503] * 7

"""Every route group checks its token: 401 without a valid one, 403 without the right; tokens revocable."""

from __future__ import annotations

import pytest

from cloud.auth import Authenticator, hash_token, token_from
from cloud.storage.base import Storage
from tests.cloud.apiclient import Api, auth, batch, make_api, wire

SYNC = ("POST", "/api/v1/sync/batches", None)
READ = [("GET", "/api/v1/twin/history?device=press-1", None), ("GET", "/api/v1/twin/press-1/state", None),
        ("GET", "/api/v1/twin/history/aggregate?device=press-1", None), ("GET", "/api/v1/twin/devices", None),
        ("GET", "/api/v1/edges", None), ("GET", "/metrics", None),
        ("GET", "/api/v1/physics/assemblies/0123", None), ("POST", "/api/v1/physics/collision/check", {})]
OPERATE = [("POST", "/api/v1/physics/assemblies", {})]
ADMIN = [("POST", "/api/v1/edges", {"name": "edge-9"}), ("POST", "/api/v1/edges/edge-2/token", None),
         ("DELETE", "/api/v1/edges/edge-2/token", None), ("GET", "/api/v1/users", None),
         ("POST", "/api/v1/users", {"name": "zoe", "role": "viewer"}), ("DELETE", "/api/v1/users/vic/token", None)]
ALL = [SYNC, *READ, *OPERATE, *ADMIN]


async def call(api: Api, route: tuple, headers: dict[str, str]) -> int:
    method, path, body = route
    resp = await api.client.request(method, path, json=body, headers=headers)
    return resp.status_code


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"{r[0]} {r[1]}")
async def test_no_token_or_an_unknown_one_is_401(api: Api, route: tuple) -> None:
    assert await call(api, route, {}) == 401
    assert await call(api, route, auth("twu_not-a-real-token-at-all")) == 401
    assert await call(api, route, {"Authorization": f"Basic {api.admin}"}) == 401


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"{r[0]} {r[1]}")
async def test_each_route_refuses_the_roles_below_it_with_403(api: Api, route: tuple) -> None:
    ranks = [("edge", api.edge), ("viewer", api.viewer), ("operator", api.operator), ("admin", api.admin)]
    needed = ("edge" if route is SYNC else "viewer" if route in READ else "operator" if route in OPERATE
              else "admin")
    for role, token in ranks:
        allowed = role == needed or (needed != "edge" and role != "edge" and
                                     [r for r, _ in ranks].index(role) >= [r for r, _ in ranks].index(needed))
        status = await call(api, route, auth(token))
        if allowed:
            assert status not in (401, 403), (role, status)
        else:
            assert status == 403, (role, status)


async def test_health_needs_no_token(api: Api) -> None:
    resp = await api.client.get("/health")
    assert resp.status_code == 200 and resp.json()["status"] == "ok"


async def test_metrics_can_be_made_public(tmp_path) -> None:
    async with make_api(tmp_path, server={"metrics_public": True}) as api:
        resp = await api.client.get("/metrics")
        assert resp.status_code == 200 and "twincloud_sync_batches_total" in resp.text


async def test_an_edge_added_by_an_admin_can_sync_until_revoked(api: Api) -> None:
    created = await api.client.post("/api/v1/edges", json={"name": "line-7"}, headers=auth(api.admin))
    assert created.status_code == 201
    token = created.json()["token"]
    assert (await api.sync(batch("line-7", [(1, wire(1))]), token=token)).status_code == 200
    assert (await api.client.post("/api/v1/edges", json={"name": "line-7"}, headers=auth(api.admin))).status_code == 409
    rotated = await api.client.post("/api/v1/edges/line-7/token", headers=auth(api.admin))
    assert (await api.sync(batch("line-7", [(2, wire(2))]), token=token)).status_code == 401
    new = rotated.json()["token"]
    assert (await api.sync(batch("line-7", [(2, wire(2))]), token=new)).status_code == 200
    assert (await api.client.delete("/api/v1/edges/line-7/token", headers=auth(api.admin))).status_code == 204
    assert (await api.sync(batch("line-7", [(3, wire(3))]), token=new)).status_code == 401
    assert (await api.client.delete("/api/v1/edges/ghost/token", headers=auth(api.admin))).status_code == 404


async def test_a_revoked_person_is_refused(api: Api) -> None:
    assert (await api.client.get("/api/v1/edges", headers=auth(api.viewer))).status_code == 200
    assert (await api.client.delete("/api/v1/users/vic/token", headers=auth(api.admin))).status_code == 204
    assert (await api.client.get("/api/v1/edges", headers=auth(api.viewer))).status_code == 401
    users = (await api.client.get("/api/v1/users", headers=auth(api.admin))).json()
    assert {u["name"]: u["revoked"] for u in users} == {"olga": False, "root": False, "vic": True}


async def test_tokens_are_stored_only_as_hashes(api: Api) -> None:
    storage: Storage = api.ctx.storage
    assert await storage.principal(api.edge) is None
    assert (await storage.principal(hash_token(api.edge))).name == "edge-1"  # type: ignore[union-attr]


async def test_a_checked_token_is_trusted_only_for_the_cache_time(api: Api) -> None:
    now = [100.0]
    cache = Authenticator(api.ctx.storage, ttl=5.0, clock=lambda: now[0])
    assert (await cache.principal(api.viewer)).role == "viewer"  # type: ignore[union-attr]
    await api.ctx.storage.revoke("user", "vic", 1)
    assert await cache.principal(api.viewer) is not None  # still cached
    now[0] += 5.1
    assert await cache.principal(api.viewer) is None


def test_token_parsing() -> None:
    assert token_from({"authorization": "Bearer abc"}) == "abc"
    assert token_from({"authorization": "bearer  abc "}) == "abc"
    assert token_from({"authorization": "Basic abc"}) is None
    assert token_from({"authorization": "Bearer "}) is None
    assert token_from({}, "q") == "q"
    assert token_from({}) is None

"""People over the admin API: a new token for a person (the old one and its sessions stop), another role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cloud.apiclient import Api, auth, make_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with make_api(tmp_path) as made:
        yield made


async def test_an_admin_rotates_a_persons_token_and_changes_their_role(api: Api) -> None:
    admin = auth(api.admin)
    rotated = await api.client.post("/api/v1/users/vic/token", headers=admin)
    assert rotated.status_code == 200 and rotated.json()["token"].startswith("twu_")
    assert (await api.client.get("/api/v1/edges", headers=auth(api.viewer))).status_code == 401
    fresh = auth(rotated.json()["token"])
    assert (await api.client.get("/api/v1/edges", headers=fresh)).status_code == 200
    changed = await api.client.put("/api/v1/users/vic/role", json={"role": "operator"}, headers=admin)
    assert changed.status_code == 200 and changed.json()["role"] == "operator"
    assert (await api.client.put("/api/v1/model-assignments", headers=fresh, json={
        "scope": "fleet", "model": "none", "version": 1})).status_code == 404  # allowed now: no such model
    own = await api.client.put("/api/v1/users/root/role", json={"role": "viewer"}, headers=admin)
    assert own.status_code == 409 and "ask another admin" in own.text
    bad = await api.client.put("/api/v1/users/vic/role", json={"role": "boss"}, headers=admin)
    assert bad.status_code == 422
    assert (await api.client.put("/api/v1/users/nobody/role", json={"role": "viewer"},
                                 headers=admin)).status_code == 404
    assert (await api.client.post("/api/v1/users/olga/token", headers=fresh)).status_code == 403

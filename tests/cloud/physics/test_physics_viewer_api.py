"""What the console's 3D view reads: the list of uploads (paged) and a part's mesh as compact binary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import trimesh
from physics_helpers import inline

from cloud.physics.viewmesh import HEADER_BYTES, MAGIC
from tests.cloud.apiclient import Api, auth, make_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with make_api(tmp_path) as made:
        yield made


def _two_boxes(name: str, shift_mm: float = 90.0) -> dict:
    box = trimesh.creation.box((100.0, 100.0, 100.0))
    return {"name": name, "unit": "mm", "parts": [
        {"name": "a", "mesh": inline(box), "material": "steel-s235"},
        {"name": "b", "mesh": inline(box), "material": "steel-s235",
         "pose": {"translation": [shift_mm, 0, 0], "rotation_deg": [0, 0, 90]}}]}


async def _upload(api: Api, body: dict) -> str:
    made = await api.client.post("/api/v1/physics/assemblies", json=body, headers=auth(api.operator))
    assert made.status_code == 201, made.text
    return made.json()["id"]


async def test_the_list_is_newest_first_a_page_at_a_time(api: Api) -> None:
    ids = [await _upload(api, _two_boxes(f"cell-{k}")) for k in range(3)]
    viewer = auth(api.viewer)
    first = (await api.client.get("/api/v1/physics/assemblies?limit=2", headers=viewer)).json()
    assert [a["name"] for a in first["assemblies"]] == ["cell-2", "cell-1"]
    assert [a["id"] for a in first["assemblies"]] == ids[:0:-1]
    assert first["assemblies"][0]["parts"] == 2 and first["assemblies"][0]["size"] > 1000
    rest = (await api.client.get(f"/api/v1/physics/assemblies?limit=2&cursor={first['next_cursor']}",
                                 headers=viewer)).json()
    assert [a["name"] for a in rest["assemblies"]] == ["cell-0"] and rest["next_cursor"] is None
    bad = await api.client.get("/api/v1/physics/assemblies?cursor=yesterday", headers=viewer)
    assert bad.status_code == 400 and "cursor" in bad.text
    assert (await api.client.get("/api/v1/physics/assemblies")).status_code == 401


async def test_a_part_mesh_is_its_triangles_and_pose_with_an_etag(api: Api) -> None:
    aid = await _upload(api, _two_boxes("cell"))
    viewer = auth(api.viewer)
    url = f"/api/v1/physics/assemblies/{aid}/parts/b/mesh"
    got = await api.client.get(url, headers=viewer)
    assert got.status_code == 200 and got.headers["content-type"] == "application/octet-stream"
    body = got.content
    assert body[:8] == MAGIC
    nv, nf = np.frombuffer(body, "<u4", 2, 8)
    pose = np.frombuffer(body, "<f8", 16, 16).reshape(4, 4)
    vertices = np.frombuffer(body, "<f4", 3 * nv, HEADER_BYTES).reshape(-1, 3)
    faces = np.frombuffer(body, "<u4", 3 * nf, HEADER_BYTES + 12 * int(nv)).reshape(-1, 3)
    assert (nv, nf) == (8, 12) and len(body) == HEADER_BYTES + 12 * 8 + 12 * 12
    assert pose[:3, 3] == pytest.approx([0.09, 0, 0])  # metres
    assert np.allclose(pose[:3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    assert np.abs(vertices).max() == pytest.approx(0.05)  # part frame, metres
    assert faces.max() == 7
    again = await api.client.get(url, headers={**viewer, "If-None-Match": got.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    missing = await api.client.get(f"/api/v1/physics/assemblies/{aid}/parts/c/mesh", headers=viewer)
    assert missing.status_code == 404 and "no part named 'c'" in missing.text
    assert (await api.client.get(url)).status_code == 401


"""Every physics request works within a time and a memory budget from the config, and checks may
move parts for one request without another request seeing it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import trimesh
from physics_helpers import inline
from test_physics_store import ASSEMBLIES, service, upload_body

from cloud.identities import add_user
from tests.cloud.apiclient import auth

CHECK = "/api/v1/physics/collision/check"
CLEARANCE = "/api/v1/physics/collision/clearance"


def _box(name: str, fixed: bool, x_mm: float) -> dict:
    return {"name": name, "mesh": inline(trimesh.creation.box((100.0, 100.0, 100.0))), "fixed": fixed,
            "material": "steel-s235", "pose": {"translation": [x_mm, 0, 0]}}


def _conflicting_chain(n: int) -> dict:
    """n boxes in a chain of 'distance 0 mm' face mates, plus one 'distance 30 mm' on the first
    joint's faces: the solve cannot succeed and has to search for the conflict."""
    def face(part: str, z: float, nz: float) -> dict:
        return {"part": part, "kind": "plane", "origin": [0, 0, z], "direction": [0, 0, nz]}
    parts = [_box("p0", True, 0.0)] + [_box(f"p{k}", False, 0.0) for k in range(1, n + 1)]
    mates = [{"type": "distance", "distance": 0.0, "a": face(f"p{k - 1}", 50, 1), "b": face(f"p{k}", -50, -1)}
             for k in range(1, n + 1)]
    mates.append({"type": "distance", "distance": 30.0, "a": face("p0", 50, 1), "b": face("p1", -50, -1)})
    return {"name": "chain", "unit": "mm", "parts": parts, "mates": mates}


async def test_a_request_over_the_time_budget_is_answered_422_with_the_reason(tmp_path: Path) -> None:
    async with service(tmp_path, time_budget_s=0.02) as api:
        storage = api.app.state.ctx.storage  # type: ignore[attr-defined]
        operator = auth(await add_user(storage, "olga", "operator"))
        up = await api.post(ASSEMBLIES, json=_conflicting_chain(30), headers=operator)
        assert up.status_code == 201, up.text
        aid = up.json()["id"]
        slow = await api.post("/api/v1/physics/constraints/solve", json={"assembly_id": aid, "max_starts": 100},
                              headers=operator)
        assert slow.status_code == 422, slow.text
        (problem,) = slow.json()["detail"]
        assert "time budget of 0.02 s (physics.time_budget_s)" in problem["message"]
        assert "solving the mates" in problem["message"] or "conflicting mates" in problem["message"]
        # the service carries on: the next request is answered
        assert (await api.get(f"{ASSEMBLIES}/{aid}", headers=operator)).status_code == 200


async def test_an_upload_over_the_memory_budget_is_answered_422_with_the_reason(tmp_path: Path) -> None:
    sphere = trimesh.creation.icosphere(6, radius=50.0)  # 81,920 triangles: about 78 MB of structures
    body = {"name": "fine", "unit": "mm", "parts": [
        {"name": "ball", "mesh": inline(sphere), "material": "steel-s235"}]}
    async with service(tmp_path, memory_budget_mb=16) as api:
        storage = api.app.state.ctx.storage  # type: ignore[attr-defined]
        operator = auth(await add_user(storage, "olga", "operator"))
        big = await api.post(ASSEMBLIES, json=body, headers=operator)
        assert big.status_code == 422, big.text
        (problem,) = big.json()["detail"]
        assert problem["path"] == "parts[0].mesh"
        assert problem["message"].startswith("part ball: about 81,920 triangles would need about 78 MB, over "
                                             "the memory budget of 16 MB")
        assert "(physics.memory_budget_mb)" in problem["message"]
        small = await api.post(ASSEMBLIES, json=upload_body(), headers=operator)
        assert small.status_code == 201, small.text


async def test_poses_move_parts_for_one_request_only(tmp_path: Path) -> None:
    """Two 100 mm cubes, b at x = 90 mm: 10 mm overlap as stored. Moved to x = 120 mm for one
    request they are 20 mm apart; the stored assembly still overlaps."""
    async with service(tmp_path) as api:
        storage = api.app.state.ctx.storage  # type: ignore[attr-defined]
        viewer = auth(await add_user(storage, "vic", "viewer"))
        operator = auth(await add_user(storage, "olga", "operator"))
        aid = (await api.post(ASSEMBLIES, json=upload_body(), headers=operator)).json()["id"]
        moved = {"assembly_id": aid, "poses": {"b": {"translation": [120, 0, 0]}}}
        check = (await api.post(CHECK, json=moved, headers=viewer)).json()
        assert check["interfering"] == 0 and check["pairs"] == []
        clear = (await api.post(CLEARANCE, json={**moved, "threshold_m": 0.05}, headers=viewer)).json()
        assert clear["minimum"]["status"] == "clear"
        assert abs(clear["minimum"]["distance_m"] - 0.020) < 1e-9
        stored = (await api.post(CHECK, json={"assembly_id": aid}, headers=viewer)).json()
        assert stored["interfering"] == 1
        assert abs(stored["pairs"][0]["volume_unit3"] - 10 * 100 * 100) < 1e-6


async def test_concurrent_requests_never_see_each_others_poses(tmp_path: Path) -> None:
    async with service(tmp_path) as api:
        storage = api.app.state.ctx.storage  # type: ignore[attr-defined]
        viewer = auth(await add_user(storage, "vic", "viewer"))
        operator = auth(await add_user(storage, "olga", "operator"))
        aid = (await api.post(ASSEMBLIES, json=upload_body(), headers=operator)).json()["id"]

        async def check(k: int) -> tuple[int, int]:
            x = 90 + 10 * (k % 4)  # 90, 100, 110, 120 mm: overlap 10 mm, touching, 10 mm, 20 mm apart
            body = {"assembly_id": aid, "poses": {"b": {"translation": [x, 0, 0]}}} if k % 5 else \
                {"assembly_id": aid}
            answer = (await api.post(CLEARANCE, json={**body, "threshold_m": 0.1}, headers=viewer)).json()
            gap_mm = round(answer["minimum"]["distance_m"] * 1000, 6)
            return k, gap_mm

        answers = await asyncio.gather(*(check(k) for k in range(60)))
        for k, gap in answers:
            assert gap == (0.0 if k % 5 == 0 else max(0.0, 10.0 * (k % 4) - 10.0)), (k, gap)


async def test_poses_that_name_an_unknown_part_are_answered_422_with_the_path(tmp_path: Path) -> None:
    async with service(tmp_path) as api:
        storage = api.app.state.ctx.storage  # type: ignore[attr-defined]
        viewer = auth(await add_user(storage, "vic", "viewer"))
        operator = auth(await add_user(storage, "olga", "operator"))
        aid = (await api.post(ASSEMBLIES, json=upload_body(), headers=operator)).json()["id"]
        for url in (CHECK, CLEARANCE):
            bad = await api.post(url, json={"assembly_id": aid, "poses": {"zz": {"translation": [0, 0, 0]}}},
                                 headers=viewer)
            assert bad.status_code == 422, bad.text
            assert bad.json()["detail"] == [{"path": "poses.zz", "message": "no part named 'zz' in this assembly"}]

"""An upload over the memory budget is refused before its meshes are parsed: each inline mesh's triangles
are told from its header (binary STL, PLY, GLB), counted (an OBJ's face lines) or bounded by its size
(ASCII STL), and the server does not grow by more than the body it read."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import trimesh
from physics_helpers import inline
from test_physics_store import ASSEMBLIES, service

from cloud.identities import add_user
from cloud.physics.assembly import InlineMesh, inline_triangles
from cloud.physics.mesh import load_mesh_bytes
from tests.cloud.apiclient import auth
from tests.cloud.server import CloudServer


def ball(subdivisions: int) -> trimesh.Trimesh:
    """An icosphere: 20·4^k triangles (the closed form the estimates are checked against)."""
    return trimesh.creation.icosphere(subdivisions, radius=50.0)


def exported(tm: trimesh.Trimesh, fmt: str, **kwargs: object) -> InlineMesh:
    if fmt == "stl_ascii":
        data: bytes | str = trimesh.exchange.stl.export_stl_ascii(tm)
        fmt = "stl"
    else:
        data = tm.export(file_type=fmt, **kwargs)
    raw = data.encode() if isinstance(data, str) else data
    return InlineMesh(format=fmt, data_base64=base64.b64encode(raw).decode())


@pytest.mark.parametrize(("fmt", "kwargs"), [("stl", {}), ("ply", {}), ("ply", {"encoding": "ascii"}),
                                             ("glb", {}), ("obj", {})])
def test_the_triangles_a_file_states_are_read_without_parsing_it(fmt: str, kwargs: dict) -> None:
    estimate = inline_triangles(exported(ball(3), fmt, **kwargs))
    assert estimate is not None and estimate.triangles == 20 * 4**3


def test_an_ascii_stl_is_bounded_by_its_size() -> None:
    mesh = exported(ball(3), "stl_ascii")
    estimate = inline_triangles(mesh)
    size = len(base64.b64decode(mesh.data_base64))
    assert estimate is not None and not estimate.exact
    assert 20 * 4**3 <= estimate.triangles <= size // 86


@pytest.mark.parametrize("data", [b"\x00" * 90, b"glTF" + b"\x00" * 40, b"ply\nformat ascii 1.0\n"])
def test_a_header_that_does_not_add_up_gives_no_estimate(data: bytes) -> None:
    """A binary STL whose count its size contradicts, or a header that cannot be read: the loader explains."""
    for fmt in ("stl", "glb", "ply"):
        assert inline_triangles(InlineMesh(format=fmt, data_base64=base64.b64encode(data).decode())) is None
    assert inline_triangles(InlineMesh(format="step", data_base64=base64.b64encode(data).decode())) is None


@pytest.mark.parametrize(("fmt", "kwargs"), [("stl", {}), ("stl_ascii", {}), ("ply", {}), ("glb", {}),
                                             ("obj", {})])
async def test_each_format_over_the_budget_is_refused_with_the_part_and_its_estimate(
        tmp_path: Path, fmt: str, kwargs: dict) -> None:
    mesh = exported(ball(6), fmt, **kwargs).model_dump()  # 81,920 triangles: about 78 MB of structures
    body = {"name": "fine", "parts": [{"name": "small", "mesh": inline(ball(1)), "material": "steel-s235"},
                                      {"name": "ball", "mesh": mesh, "material": "steel-s235"}]}
    async with service(tmp_path, memory_budget_mb=16) as api:
        operator = auth(await add_user(api.app.state.ctx.storage, "olga", "operator"))  # type: ignore[attr-defined]
        resp = await api.post(ASSEMBLIES, json=body, headers=operator)
        assert resp.status_code == 422, resp.text
        (problem,) = resp.json()["detail"]
        assert problem["path"] == "parts[1].mesh"
        assert problem["message"].startswith("part ball: about ")
        assert "over the memory budget of 16 MB" in problem["message"]
        body["parts"] = body["parts"][:1]
        assert (await api.post(ASSEMBLIES, json=body, headers=operator)).status_code == 201


async def test_parts_over_the_budget_together_are_refused(tmp_path: Path) -> None:
    """Four 20,480-triangle balls: about 20 MB each, 78 MB together, over a 64 MB budget."""
    parts = [{"name": f"b{k}", "mesh": inline(ball(5)), "material": "steel-s235",
              "pose": {"translation": [200 * k, 0, 0]}} for k in range(4)]
    async with service(tmp_path, memory_budget_mb=64) as api:
        operator = auth(await add_user(api.app.state.ctx.storage, "olga", "operator"))  # type: ignore[attr-defined]
        resp = await api.post(ASSEMBLIES, json={"name": "four", "parts": parts}, headers=operator)
        assert resp.status_code == 422, resp.text
        assert resp.json()["detail"] == [{"path": "parts", "message": (
            "the parts' meshes, about 81,920 triangles, would need about 78 MB together, over the memory budget "
            "of 64 MB; send a coarser mesh or fewer parts, or ask the operator to raise the budget "
            "(physics.memory_budget_mb)")}]
        ok = await api.post(ASSEMBLIES, json={"name": "three", "parts": parts[:3]}, headers=operator)
        assert ok.status_code == 201, ok.text


def _kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key}")


def test_a_real_server_refuses_a_big_mesh_without_parsing_it(tmp_path: Path) -> None:
    """327,680 triangles (a 16 MB binary STL) against a 64 MB budget: the server's peak memory grows by the
    body it reads and its JSON text (about three times the body), not by the mesh's parse (ten times)."""
    body = json.dumps({"name": "big", "parts": [
        {"name": "ball", "mesh": inline(ball(7)), "material": "steel-s235"}]}).encode()
    with CloudServer(tmp_path / "cloud", extra_config="[physics]\nmemory_budget_mb = 64\n") as server:
        assert server.pid is not None
        before = _kib(server.pid, "VmHWM")
        resp = httpx.post(server.base_url + ASSEMBLIES, content=body, timeout=60, headers={
            **auth(server.admin_token), "Content-Type": "application/json"})
        assert resp.status_code == 422, resp.text
        assert resp.json()["detail"][0]["message"].startswith(
            "part ball: about 327,680 triangles would need about 312 MB, over the memory budget of 64 MB")
        grown = _kib(server.pid, "VmHWM") - before
        assert grown < 4 * len(body) // 1024, (grown, len(body) // 1024)


def test_a_binary_stl_is_joined_into_the_closed_mesh_it_describes() -> None:
    """An icosphere of 5,120 triangles has 2,562 vertices (10·4^k + 2) once its corners are joined; a
    repeated triangle and a zero-area one are removed and said so."""
    tm = ball(4)
    corners = tm.vertices[tm.faces].astype(np.float32)
    extra = np.stack([corners[7], np.stack([corners[3, 0]] * 3)])
    soup = np.concatenate([corners, extra])
    records = np.zeros(len(soup), dtype=[("n", "<f4", (3,)), ("v", "<f4", (3, 3)), ("a", "<u2")])
    records["v"] = soup
    data = b"\0" * 80 + np.uint32(len(soup)).tobytes() + records.tobytes()
    mesh = load_mesh_bytes(data, "stl", "mm")
    assert (mesh.check.faces, mesh.check.vertices, mesh.closed) == (5120, 2562, True)
    assert mesh.check.repairs == ("removed 2 degenerate or duplicate triangles",)
    assert abs(mesh.volume_m3 / (tm.volume * 1e-9) - 1) < 1e-6  # float32 corners: 6e-8 of 50 mm

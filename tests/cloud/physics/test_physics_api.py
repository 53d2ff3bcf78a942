"""The physics API over httpx.ASGITransport and the CLI on the example assembly."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trimesh
from fastapi import FastAPI
from physics_helpers import inline

from cloud.api import physics
from cloud.physics.cli import main
from tests.cloud.apiclient import auth, make_api

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "assembly"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The cloud app with an operator's token (who may upload)."""
    async with make_api(tmp_path, physics={"max_upload_bytes": 200_000}) as api:
        api.client.headers.update(auth(api.operator))
        yield api.client


def _upload_body(shift_mm: float = 90.0) -> dict:
    box = trimesh.creation.box((100.0, 100.0, 100.0))
    return {"name": "two boxes", "unit": "mm", "parts": [
        {"name": "a", "mesh": inline(box), "material": "steel-s235", "fixed": True},
        {"name": "b", "mesh": inline(box, "obj"), "material": "aluminium-6061-t6",
         "pose": {"translation": [shift_mm, 0, 0]}}],
        "mates": [{"type": "coincident", "a": {"part": "a", "kind": "point", "origin": [50, 0, 0]},
                   "b": {"part": "b", "kind": "point", "origin": [-50, 0, 0]}}]}


async def test_upload_then_every_check(client: httpx.AsyncClient) -> None:
    up = await client.post("/api/v1/physics/assemblies", json=_upload_body())
    assert up.status_code == 201, up.text
    aid = up.json()["id"]
    coll = (await client.post("/api/v1/physics/collision/check", json={"assembly_id": aid})).json()
    assert coll["interfering"] == 1
    assert coll["pairs"][0]["volume_unit3"] == pytest.approx(10 * 100 * 100, rel=1e-9)
    clear = (await client.post("/api/v1/physics/collision/clearance",
                               json={"assembly_id": aid, "threshold_m": 0.01})).json()
    assert clear["minimum"]["distance_m"] == 0.0
    mass = (await client.post("/api/v1/physics/mass-properties", json={"assembly_id": aid})).json()
    assert mass["assembly"]["mass_kg"] == pytest.approx(0.001 * (7850 + 2700))
    solve = (await client.post("/api/v1/physics/constraints/solve", json={"assembly_id": aid})).json()
    assert solve["converged"] and solve["dof_total"] == 3
    assert solve["poses"]["b"][0][3] == pytest.approx(100.0)  # mm
    check = (await client.post("/api/v1/physics/constraints/validate",
                               json={"assembly_id": aid})).json()
    assert check["violated"][0]["length_residual_m"] == pytest.approx(0.01)
    robot = (await client.post("/api/v1/physics/robot-check", json={
        "assembly_id": aid, "payload_parts": ["b"], "flange": {"translation": [90, 0, 100]},
        "robot": {"rated_payload_kg": 5, "payload_curve": [
            {"offset_m": 0, "max_mass_kg": 5}, {"offset_m": 0.2, "max_mass_kg": 2}]},
        "grip": {"friction_coefficient": 0.5, "fingers": 2, "safety_factor": 2}})).json()
    assert robot["ok"]
    assert robot["offset_m"] == pytest.approx(0.1)
    assert robot["usages"][0]["limit"] == pytest.approx(3.5)
    assert robot["grip_force_per_finger_n"] == pytest.approx(2.7 * 9.80665 * 2 / 0.5 / 2)
    png = await client.get(f"/api/v1/physics/assemblies/{aid}/picture.png")
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"


async def test_mass_answer_names_the_overlap_and_the_mass_counted_twice(client: httpx.AsyncClient) -> None:
    """Two 100 mm cubes, B moved by (90, 30, -20) mm: they share a 10 × 70 × 80 mm box (closed form)."""
    body = _upload_body()
    body["parts"][1]["pose"] = {"translation": [90, 30, -20]}
    up = await client.post("/api/v1/physics/assemblies", json=body)
    assert up.status_code == 201, up.text
    resp = await client.post("/api/v1/physics/mass-properties", json={"assembly_id": up.json()["id"]})
    assert resp.status_code == 200, resp.text
    mass = resp.json()
    shared = 10 * 70 * 80 * 1e-9  # m³
    assert len(mass["overlaps"]) == 1
    overlap = mass["overlaps"][0]
    assert (overlap["a"], overlap["b"]) == ("a", "b")
    assert overlap["volume_m3"] == pytest.approx(shared, rel=1e-9)
    assert overlap["mass_kg"] == pytest.approx(shared * 2700, rel=1e-9)  # aluminium, the lighter of the two
    # the total still counts both cubes whole, and the answer says by how much that overcounts
    assert mass["assembly"]["mass_kg"] == pytest.approx(0.001 * (7850 + 2700))
    [warning] = [w for w in mass["warnings"] if "twice" in w]
    assert "56000 mm³" in warning and f"{shared * 2700:.6g} kg" in warning
    # only b asked for: no pair, no overlap, no warning
    alone = (await client.post("/api/v1/physics/mass-properties",
                               json={"assembly_id": up.json()["id"], "parts": ["b"]})).json()
    assert alone["overlaps"] == [] and not any("twice" in w for w in alone["warnings"])


@pytest.mark.parametrize(("mutate", "status", "words"), [
    (lambda b: b["parts"][0]["mesh"].update(data_base64="AAAA" * 10), 422, "STL"),
    (lambda b: b["parts"][0]["mesh"].update(data_base64="not base64!"), 422, "base64"),
    (lambda b: b["parts"][0].update(material="unobtainium"), 422, "unknown material"),
    (lambda b: b["parts"][1].update(pose={"matrix": [[1, 0], [0, 1]]}), 422, "4×4"),
    (lambda b: b["parts"][0].update(colour="red"), 422, "unknown key"),
    (lambda b: b["parts"][0]["mesh"].update(data_base64="QUJD" * 60_000), 413, "limit"),
    # a small body whose STL announces more triangles than the limit: 413 for that part, with its path
    (lambda b: b["parts"][0]["mesh"].update(data_base64=base64.b64encode(
        b"\0" * 80 + (3_000_000).to_bytes(4, "little") + b"\0" * 50).decode()), 413, "parts[0].mesh"),
])
async def test_bad_uploads_get_4xx_with_the_reason(client, mutate, status, words) -> None:
    body = _upload_body()
    mutate(body)
    resp = await client.post("/api/v1/physics/assemblies", json=body)
    assert resp.status_code == status
    assert words in resp.text


async def test_the_store_keeps_the_configured_upload_limit(tmp_path: Path) -> None:
    async with make_api(tmp_path, physics={"max_upload_bytes": 1024}) as api:  # the body is ~2 kB
        api.client.headers.update(auth(api.operator))
        resp = await api.client.post("/api/v1/physics/assemblies", json=_upload_body())
    assert resp.status_code == 413 and "1,024" in resp.text


async def test_malformed_json_and_unknown_id_are_4xx(client) -> None:
    bad = await client.post("/api/v1/physics/assemblies", content=b"{nope",
                            headers={"content-type": "application/json"})
    missing = await client.post("/api/v1/physics/collision/check",
                                json={"assembly_id": "0" * 32})
    assert bad.status_code == 422
    assert missing.status_code == 404 and "no assembly" in missing.text


def test_openapi_fields_state_their_units() -> None:
    app = FastAPI()
    app.include_router(physics.router)
    schemas = app.openapi()["components"]["schemas"]
    assert "metres" in schemas["PairOut"]["properties"]["distance_m"]["description"]
    assert "kg·m²" in schemas["MassOut"]["properties"]["inertia_com_kgm2"]["description"]


def test_cli_check_on_the_example_prints_the_report_and_writes_a_png(tmp_path, capsys) -> None:
    png = tmp_path / "cell.png"
    code = main(["check", str(EXAMPLE / "cell.json"), "--png", str(png),
                 "--robot", str(EXAMPLE / "robot.json")])
    out = capsys.readouterr().out
    assert code == 1  # the example's bracket interferes on purpose
    assert "INTERFERING  column / bracket" in out
    assert "2 degrees of freedom remain" in out
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_json_and_bad_input(tmp_path, capsys) -> None:
    assert main(["check", str(EXAMPLE / "cell.json"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["collision"]["interfering"] == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"parts": [{"name": "x", "mesh": "../etc/passwd.stl", "material": "pa6"}]}')
    assert main(["check", str(bad)]) == 2
    assert "inside the assembly folder" in capsys.readouterr().err


def test_cli_reports_a_bad_robot_file_one_problem_per_line(tmp_path, capsys) -> None:
    robot = tmp_path / "robot.json"
    robot.write_text('{"robot": {"rated_payload_kg": -1}, "colour": "red"}')
    assert main(["check", str(EXAMPLE / "cell.json"), "--robot", str(robot)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {robot}: robot.rated_payload_kg: Input should be greater than 0 (got -1)",
        f"error: {robot}: colour: unknown key"]


@pytest.mark.parametrize("option, value", [("--tolerance", "-1"), ("--tolerance", "0"), ("--tolerance", "nan"),
                                           ("--tolerance", "inf"), ("--clearance", "-5"), ("--clearance", "nan")])
def test_cli_refuses_a_tolerance_or_clearance_the_api_refuses(option, value, capsys) -> None:
    # a negative tolerance made the check list no interference while the clearance report listed one,
    # and the exit status said all clear
    with pytest.raises(SystemExit) as exit_:
        main(["check", str(EXAMPLE / "cell.json"), option, value])
    assert exit_.value.code == 2
    assert f"{option}: must be" in capsys.readouterr().err

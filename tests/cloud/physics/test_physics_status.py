"""Every status the physics API documents, against a real server: bad input is a 4xx with its path, never a 500.

A body over the limit is refused from its Content-Length or while it streams, before it is parsed; mates
and poses naming unknown parts, unknown mesh formats, STEP units that contradict the part and an ASCII STL
without facets each get their own answer; schemathesis finds no 5xx on the physics routes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import trimesh
from hypothesis import HealthCheck, given, settings
from physics_helpers import inline
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.cloud.apiclient import auth
from tests.cloud.rawhttp import closed_by_server, open_request, read_response, send_all
from tests.cloud.server import CloudServer

API = "/api/v1/physics"
UPLOAD_LIMIT = 4 * 1024 * 1024
CONFIG = f"[retention]\nsamples_days = 0\nrollups_days = 0\n\n[physics]\nmax_upload_bytes = {UPLOAD_LIMIT}\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    """A real server: uploads up to 4 MiB, check bodies up to 1 MiB (server.max_json_bytes)."""
    with CloudServer(tmp_path_factory.mktemp("physics-status"), extra_config=CONFIG) as cloud:
        yield cloud


def two_boxes() -> dict:
    box = trimesh.creation.box((100.0, 100.0, 100.0))
    return {"name": "two boxes", "parts": [
        {"name": "a", "mesh": inline(box), "material": "steel-s235", "fixed": True},
        {"name": "b", "mesh": inline(box), "material": "steel-s235", "pose": {"translation": [150, 0, 0]}}]}


@pytest.fixture(scope="module")
def assembly_id(server: CloudServer) -> str:
    resp = httpx.post(server.base_url + API + "/assemblies", json=two_boxes(), headers=auth(server.admin_token),
                      timeout=30)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def post(server: CloudServer, route: str, body: dict, token: str | None = None) -> httpx.Response:
    return httpx.post(server.base_url + API + route, json=body, headers=auth(token or server.admin_token),
                      timeout=30)


def detail(resp: httpx.Response) -> list[tuple[str, str]]:
    return [(d["path"], d["message"]) for d in resp.json()["detail"]]


POINT = {"kind": "point", "origin": [0, 0, 0]}


@pytest.mark.parametrize("route", ["/constraints/solve", "/constraints/validate"])
def test_request_mates_naming_unknown_parts_are_422_with_their_paths(server, assembly_id, route) -> None:
    mates = [{"type": "coincident", "a": {**POINT, "part": "a"}, "b": {**POINT, "part": "b"}},
             {"type": "coincident", "a": {**POINT, "part": "ghost"}, "b": {**POINT, "part": "b"}},
             {"type": "fixed", "a": {**POINT, "part": "phantom"}}]
    resp = post(server, route, {"assembly_id": assembly_id, "mates": mates}, server.viewer_token)
    assert resp.status_code == 422, resp.text
    assert detail(resp) == [("mates[1].a.part", "no part named 'ghost' in this assembly"),
                            ("mates[2].a.part", "no part named 'phantom' in this assembly")]
    again = post(server, route, {"assembly_id": assembly_id, "mates": mates[:1]}, server.viewer_token)
    assert again.status_code == 200  # the same connection pool, the server still up


def test_poses_naming_unknown_parts_are_422_with_their_paths(server, assembly_id) -> None:
    resp = post(server, "/constraints/validate", {"assembly_id": assembly_id, "poses": {"ghost": {}}})
    assert resp.status_code == 422 and detail(resp) == [("poses.ghost", "no part named 'ghost' in this assembly")]


@pytest.mark.parametrize(("change", "status", "path", "words"), [
    ({"format": "3mf"}, 415, "parts[0].mesh.format", "unknown mesh format '3mf'"),
    ({"data_base64": base64.b64encode(b"solid empty\nendsolid empty\n").decode()}, 422, "parts[0].mesh",
     "part a: ASCII STL has no facets: after 'solid empty' there is no 'facet normal' block"),
    ({"data_base64": base64.b64encode(b"\x01\x02garbage").decode()}, 422, "parts[0].mesh",
     "too short to be binary STL (9 bytes"),
])
def test_bad_meshes_get_their_status_and_reason(server, change, status, path, words) -> None:
    body = two_boxes()
    body["parts"][0]["mesh"].update(change)
    resp = post(server, "/assemblies", body)
    assert resp.status_code == status, resp.text
    [(got_path, message)] = detail(resp)
    assert got_path == path and words in message


def test_a_step_part_whose_unit_contradicts_the_file_is_422(server, tmp_path) -> None:
    pytest.importorskip("OCP")
    from OCP.BRepPrimAPI import BRepPrimAPI_MakeBox
    from test_physics_units import step_bytes

    data = step_bytes(BRepPrimAPI_MakeBox(30.0, 20.0, 10.0).Shape(), "INCH", tmp_path)
    body = two_boxes()
    body["parts"][0].update(unit="mm", mesh={"format": "step", "data_base64": base64.b64encode(data).decode()})
    resp = post(server, "/assemblies", body)
    assert resp.status_code == 422
    [(path, message)] = detail(resp)
    assert path == "parts[0].unit" and message.startswith("part a: the STEP file is in inches, the part says mm")
    del body["parts"][0]["unit"]
    ok = post(server, "/assemblies", body)
    assert ok.status_code == 201 and ok.json()["parts"][0]["unit"] == "inch"


# --- bodies over the limit: refused before they are read ----------------------------------------------------


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize(("route", "limit"), [("/assemblies", UPLOAD_LIMIT), ("/collision/check", 1024**2)])
def test_a_200_mb_body_is_413_from_its_content_length_before_a_byte_is_read(server, route, limit) -> None:
    assert server.pid is not None
    before = peak_rss_kib(server.pid)
    size = 200 * 1024**2
    sock = open_request(server.port, "POST", API + route, {
        **auth(server.admin_token), "Content-Type": "application/json", "Content-Length": str(size)})
    try:
        status, headers, body = read_response(sock)  # answered on the head alone
        assert status == 413 and headers["connection"] == "close"
        assert json.loads(body)["detail"] == [{"path": "body", "message": f"{size:,} bytes; the limit for this "
                                                                          f"route is {limit:,} bytes"}]
        assert send_all(sock, b"x" * (16 * 1024**2)) < 16 * 1024**2 and closed_by_server(sock)
    finally:
        sock.close()
    assert peak_rss_kib(server.pid) - before < 8 * 1024


@pytest.mark.parametrize("route", ["/assemblies", "/collision/check"])
def test_a_streamed_200_mb_body_is_cut_off_at_the_limit_and_never_buffered(server, route) -> None:
    assert server.pid is not None
    before = peak_rss_kib(server.pid)
    sock = open_request(server.port, "POST", API + route, {
        **auth(server.admin_token), "Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    sent = 0
    try:
        chunk = b'{"name": "' + b"x" * (1024**2 - 10)
        for _ in range(200):  # up to 200 MiB
            piece = b"%x\r\n%s\r\n" % (len(chunk), chunk)
            n = send_all(sock, piece)
            sent += n
            if n < len(piece):
                break
        status, headers, body = read_response(sock)
        assert status == 413 and "more than the limit" in body.decode()
        assert closed_by_server(sock)
    finally:
        sock.close()
    assert sent < 40 * 1024**2  # the server stopped reading soon after the limit (socket buffers aside)
    assert peak_rss_kib(server.pid) - before < 16 * 1024
    assert httpx.get(server.base_url + "/health", timeout=10).status_code == 200


# --- schemathesis over the physics routes -------------------------------------------------------------------

EXAMPLES = 60


def physics_operations() -> list[tuple[str, str]]:
    from cloud.app import create_app
    from cloud.config import CloudConfig

    spec = create_app(CloudConfig()).openapi()
    return [(m.upper(), p) for p, item in spec["paths"].items() if p.startswith(API) for m in item]


@pytest.fixture(scope="module")
def schema(server: CloudServer) -> OpenApiSchema:
    return schemathesis.openapi.from_url(f"{server.base_url}/openapi.json", headers=auth(server.viewer_token))


@pytest.mark.parametrize(("method", "path"), physics_operations(), ids=lambda v: v)
def test_generated_physics_requests_on_a_real_assembly_get_no_5xx(server, assembly_id, schema, method,
                                                                  path) -> None:
    """Every generated body is aimed at the stored assembly; its generated mates, poses and part lists name
    parts that mostly do not exist."""
    operation = schema[path][method]
    failures: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def check(case: schemathesis.Case) -> None:
        if isinstance(case.body, dict) and "assembly_id" in case.body:
            case.body["assembly_id"] = assembly_id
        if case.path_parameters and "assembly_id" in case.path_parameters:
            case.path_parameters["assembly_id"] = assembly_id
        response = case.call(base_url=server.base_url, headers=auth(server.admin_token), timeout=30)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} body={str(case.body)[:300]} -> "
                            f"{response.status_code} {response.text[:300]}")
        assert response.status_code < 500, failures[-1]

    check()
    assert not failures


@pytest.mark.parametrize("route, body", [
    ("/collision/clearance", {"poses": {"b": {"translation": [1e308, 0, 0]}}}),
    ("/collision/check", {"poses": {"b": {"matrix": [[1, 0, 0, -1e300], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}}}),
    ("/mass-properties", {"frame": {"translation": [0, 1e200, 0]}}),
])
def test_a_pose_beyond_reach_is_422_not_an_overflow(server, assembly_id, route, body) -> None:
    resp = post(server, route, {"assembly_id": assembly_id, **body})
    assert resp.status_code == 422, resp.text
    path, message = detail(resp)[0]
    assert path in ("poses.b", "frame") and "within ±1,000,000" in message


def test_an_upload_whose_mates_name_unknown_parts_is_422_with_each_mates_path(server) -> None:
    body = two_boxes()
    body["mates"] = [{"type": "coincident", "a": {**POINT, "part": "a"}, "b": {**POINT, "part": "b"}},
                     {"type": "fixed", "a": {**POINT, "part": "ghost"}}]
    resp = post(server, "/assemblies", body)
    assert resp.status_code == 422, resp.text
    assert detail(resp) == [("mates[1].a.part", "no part named 'ghost' in this assembly")]


@pytest.mark.parametrize("route, body, field", [
    ("/mass-properties", {}, "parts"),
    ("/robot-check", {"robot": {"rated_payload_kg": 5}}, "payload_parts")])
def test_parts_named_twice_or_unknown_are_422_with_their_paths(server, assembly_id, route, body, field) -> None:
    # a part listed twice made the assembly's mass twice the part's (two 100 mm steel cubes: 7.85 kg each)
    resp = post(server, route, {"assembly_id": assembly_id, field: ["a", "ghost", "a"], **body})
    assert resp.status_code == 422, resp.text
    assert detail(resp) == [(f"{field}[1]", "no part named 'ghost' in this assembly"),
                            (f"{field}[2]", "part 'a' is listed twice")]
    once = post(server, "/mass-properties", {"assembly_id": assembly_id, "parts": ["a"]})
    assert once.json()["assembly"]["mass_kg"] == pytest.approx(7850 * 0.1**3)


@pytest.mark.parametrize("route, body, field", [
    ("/mass-properties", {}, "parts"),
    ("/robot-check", {"robot": {"rated_payload_kg": 5}}, "payload_parts")])
def test_an_empty_part_list_is_refused_not_read_as_all_parts(server, assembly_id, route, body, field) -> None:
    resp = post(server, route, {"assembly_id": assembly_id, field: [], **body})
    assert resp.status_code == 422, resp.text
    assert detail(resp) == [(field, f"name at least one part, or leave {field} out for all")]


@pytest.mark.parametrize("route", ["/collision/check", "/collision/clearance", "/constraints/validate"])
def test_a_pose_naming_an_unknown_part_reads_the_same_on_every_route(server, assembly_id, route) -> None:
    resp = post(server, route, {"assembly_id": assembly_id, "poses": {"ghost": {"translation": [1, 0, 0]}}})
    assert resp.status_code == 422, resp.text
    assert detail(resp) == [("poses.ghost", "no part named 'ghost' in this assembly")]


def test_a_density_beyond_any_material_is_refused(server) -> None:
    body = two_boxes()
    body["parts"][1]["density_kg_m3"] = 1e308  # was accepted: a 100 mm cube of 1e302 kg
    resp = post(server, "/assemblies", body)
    assert resp.status_code == 422, resp.text
    [(path, message)] = detail(resp)
    assert path == "parts[1].density_kg_m3"
    assert "density must be above 0 and at most 25,000 kg/m³" in message and "got 1e+308 kg/m³" in message
    body["parts"][1]["density_kg_m3"] = 22_590.0  # osmium
    assert post(server, "/assemblies", body).status_code == 201


def test_a_repeated_part_name_is_refused_at_the_repeat(server) -> None:
    body = two_boxes()
    body["parts"][1]["name"] = "a"
    resp = post(server, "/assemblies", body)
    assert resp.status_code == 422, resp.text
    assert detail(resp) == [("parts[1].name", "part name 'a' is already used by parts[0]")]


# Words of Python's and numpy's own errors, which tell an engineer nothing about the value.
INTERNALS = ("NoneType", "reshape", "unpack", "array element", "inhomogeneous", "sequence", "index out of")


@pytest.mark.parametrize("matrix, words", [
    ([[1, 0], [0, 1]], "matrix must be 4×4, 4 rows of 4 numbers (got 2 rows of 2, 2 numbers)"),
    ([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0]], "(got 4 rows of 4, 4, 4, 3 numbers)"),
    ([[1, 0, 0, 0], [0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "(got 4 rows of 4, 3, 4, 4 numbers)"),
    ([], "(got no rows)"),
    ([[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "must be a proper rotation"),
])
@pytest.mark.parametrize("where", ["upload", "collision"])
def test_a_malformed_pose_matrix_is_explained_at_its_path(server, assembly_id, matrix, words, where) -> None:
    if where == "upload":
        body = two_boxes()
        body["parts"][1]["pose"] = {"matrix": matrix}
        resp, path = post(server, "/assemblies", body), "parts[1].pose.matrix"
    else:
        resp = post(server, "/collision/check", {"assembly_id": assembly_id, "poses": {"b": {"matrix": matrix}}})
        path = "poses.b.matrix"
    assert resp.status_code == 422, resp.text
    [(got_path, message)] = detail(resp)
    assert got_path == path and words in message
    assert not [w for w in INTERNALS if w in message], message

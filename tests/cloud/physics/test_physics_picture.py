"""The picture of an assembly: colliding faces checked against OCCT, the PNG's panels, labels and legend, the routes."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import trimesh
from OCP.BRepBuilderAPI import BRepBuilderAPI_MakeFace, BRepBuilderAPI_MakePolygon, BRepBuilderAPI_Transform
from OCP.BRepExtrema import BRepExtrema_DistShapeShape
from OCP.BRepPrimAPI import BRepPrimAPI_MakeBox
from OCP.gp import gp_Pnt, gp_Trsf
from physics_helpers import inline
from picture_cell import EXPECTED, PROBLEMS, cell
from PIL import Image

from cloud.physics.interference import CollisionWorld
from cloud.physics.picture import COLOURS, MAX_PAIR_VIEWS, layout, picture_out
from cloud.physics.render import draw
from cloud.physics.report import collision
from tests.cloud.apiclient import auth, make_api

TOL = 1e-5  # m
HALF_MM = 50.0  # the cell's problem parts are 100 mm cubes centred on their origin


@pytest.fixture(scope="module")
def scene():
    asm, boxes = cell()
    return asm, boxes, CollisionWorld(asm.parts).check(TOL)


def _occt_box(pose: np.ndarray):
    """The exact 100 mm cube at a pose, in mm (OCCT)."""
    shape = BRepPrimAPI_MakeBox(gp_Pnt(-HALF_MM, -HALF_MM, -HALF_MM), 2 * HALF_MM, 2 * HALF_MM, 2 * HALF_MM).Shape()
    r, t = pose[:3, :3], pose[:3, 3] * 1000
    trsf = gp_Trsf()
    trsf.SetValues(*r[0], t[0], *r[1], t[1], *r[2], t[2])
    return BRepBuilderAPI_Transform(shape, trsf, True).Shape()


def _distance_mm(triangle_m: np.ndarray, solid) -> float:
    """OCCT's distance from a triangle to the cube's surface; 0 when a corner lies inside the cube."""
    poly = BRepBuilderAPI_MakePolygon()
    for p in triangle_m * 1000:
        poly.Add(gp_Pnt(*map(float, p)))
    poly.Close()
    dist = BRepExtrema_DistShapeShape(BRepBuilderAPI_MakeFace(poly.Wire()).Face(), solid)
    assert dist.IsDone()
    return dist.Value()


def _inside(points_m: np.ndarray, pose: np.ndarray) -> bool:
    local = (points_m - pose[:3, 3]) @ pose[:3, :3] * 1000
    return bool(np.any(np.all(np.abs(local) <= HALF_MM, axis=1)))


def test_json_lists_the_problem_parts_and_pairs_with_faces_that_lie_on_the_other_part(scene) -> None:
    asm, boxes, results = scene
    out = picture_out("cell", asm, layout(asm, results, TOL))
    assert {(p.a, p.b): p.state for p in out.pairs} == EXPECTED
    assert sorted(p.name for p in out.parts) == sorted({n for pair in EXPECTED for n in pair})
    assert out.unit == "mm" and out.tolerance_m == TOL and out.more == 0
    parts = {p.name: p for p in asm.parts}
    for listed in out.parts:
        assert listed.state == max((EXPECTED[k] for k in EXPECTED if listed.name in k),
                                   key=["touching", "interfering"].index)
        assert listed.colour == COLOURS[listed.state]
        for group in listed.faces:
            assert group.faces, f"{listed.name} has no faces in pair {group.pair}"
            other = _occt_box(boxes[group.other])
            world = parts[listed.name].mesh.triangles[group.faces] @ boxes[listed.name][:3, :3].T \
                + boxes[listed.name][:3, 3]
            for tri in world:  # every highlighted triangle reaches the other part (within the tolerance)
                assert _inside(tri, boxes[group.other]) or _distance_mm(tri, other) <= TOL * 1000


def test_a_large_cell_gets_an_overview_and_one_view_per_problem_pair_looking_across_the_pair(scene) -> None:
    asm, boxes, results = scene
    pic = layout(asm, results, TOL)
    assert [v.kind for v in pic.views] == ["overview"] + ["pair"] * len(PROBLEMS)
    for view in pic.views[1:]:
        pair = pic.pairs[view.pairs[0]]
        joining = boxes[pair.b][:3, 3] - boxes[pair.a][:3, 3]
        joining /= np.linalg.norm(joining)
        # neither along the line joining the parts (one hides the other) nor square to it (faces edge-on)
        assert abs(float(view.direction @ joining)) == pytest.approx(np.sin(np.radians(35)), abs=1e-9)
        box_lo, box_hi = pair.box_min_m, pair.box_max_m
        assert np.all(np.abs((box_lo + box_hi) / 2 - view.target_m) <= view.half_extent_m)


def test_beyond_six_problem_pairs_the_rest_are_counted(scene) -> None:
    problems = [(s, (0.0, 0.0), 0.01) for s in range(0, 80, 10)]  # 8 interfering pairs
    asm, _ = cell(problems)
    results = CollisionWorld(asm.parts).check(TOL)
    pic = layout(asm, results, TOL)
    assert len(pic.pairs) == 8 and len(pic.views) == 1 + MAX_PAIR_VIEWS and pic.more == 2
    fig, drawn = draw(asm, results, width_px=800, height_px=600)
    assert "and 2 more without a view of their own" in drawn.legend


def _count(pixels: np.ndarray, colour: str) -> int:
    rgb = np.array([int(colour[k:k + 2], 16) for k in (1, 3, 5)])
    return int((np.abs(pixels[..., :3].astype(int) - rgb).max(axis=-1) <= 40).sum())


def test_png_has_the_size_asked_and_every_problem_is_visible_labelled_and_explained(scene) -> None:
    asm, _, results = scene
    fig, drawn = draw(asm, results, tolerance_m=TOL, width_px=1100, height_px=760)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    image = Image.open(io.BytesIO(buf.getvalue()))
    assert image.size == (1100, 760)
    pixels = np.asarray(image.convert("RGB"))
    pic = layout(asm, results, TOL)
    for view, (x0, y0, x1, y1) in drawn.panels[1:]:
        pair = pic.pairs[view.pairs[0]]
        panel = pixels[int(y0):int(y1), int(x0):int(x1)]
        assert _count(panel, COLOURS[pair.state]) > 500, view.title
    for index, (x, y) in drawn.rings.items():  # each problem is in sight in the overview, at its ring
        around = pixels[int(y) - 12:int(y) + 12, int(x) - 12:int(x) + 12]
        assert _count(around, COLOURS[pic.pairs[index].state]) > 0, pic.pairs[index]
    assert sorted(drawn.rings) == list(range(len(PROBLEMS)))
    texts = {t.get_text() for t in fig.texts}
    names = {n for pair in EXPECTED for n in pair}
    assert names <= texts and names <= {name for name, _ in drawn.labels}
    assert {"interfering (shared volume)", "touching (within the tolerance)", "other parts",
            "lengths in mm; tolerance 0.01 mm"} <= texts
    assert len(drawn.scale_bars) == 1 + len(PROBLEMS) and all(b.endswith(" mm") for b in drawn.scale_bars)
    for _, (x0, y0, x1, y1) in drawn.panels[1:]:  # the two labels of a pair view do not overlap
        boxes = [b for _, b in drawn.labels if x0 <= b[0] <= x1 and y0 <= b[1] <= y1]
        assert len(boxes) == 2
        (a0, b0, a1, b1), (c0, d0, c1, d1) = boxes
        assert a1 <= c0 or c1 <= a0 or b1 <= d0 or d1 <= b0


def test_a_small_assembly_gets_one_overview() -> None:
    asm, _ = cell([(0, (20.0, 0.0), 0.012)])
    small = [p for p in asm.parts if p.name in ("p00", "p01", "p02")]
    from physics_helpers import assembly

    results = CollisionWorld(small).check(TOL)
    pic = layout(assembly(small), results, TOL)
    assert [v.kind for v in pic.views] == ["overview"] and pic.more == 0
    fig, drawn = draw(assembly(small), results, width_px=640, height_px=480)
    assert [name for name, _ in drawn.labels] == ["p00", "p01"]


@pytest.mark.parametrize("size", [(100, 500), (500, 5000)])
def test_draw_refuses_sizes_out_of_bounds(scene, size) -> None:
    asm, _, results = scene
    with pytest.raises(ValueError, match="picture size"):
        draw(asm, results, width_px=size[0], height_px=size[1])


# --- the routes -------------------------------------------------------------------------
@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator:
    async with make_api(tmp_path, physics={"max_upload_bytes": 200_000}) as api:
        yield api


def _three_boxes() -> dict:
    box = trimesh.creation.box((100.0, 100.0, 100.0))
    return {"name": "three", "unit": "mm", "parts": [
        {"name": "base", "mesh": inline(box), "material": "steel-s235"},
        {"name": "pushed", "mesh": inline(box), "material": "steel-s235", "pose": {"translation": [90, 0, 0]}},
        {"name": "flush", "mesh": inline(box), "material": "steel-s235", "pose": {"translation": [-20, 100, 0]}},
        {"name": "away", "mesh": inline(box), "material": "steel-s235", "pose": {"translation": [0, 0, 500]}}]}


async def test_picture_routes_answer_a_viewer_with_the_same_data_as_the_png(api) -> None:
    up = await api.client.post("/api/v1/physics/assemblies", json=_three_boxes(), headers=auth(api.operator))
    assert up.status_code == 201, up.text
    aid = up.json()["id"]
    viewer = auth(api.viewer)
    got = await api.client.get(f"/api/v1/physics/assemblies/{aid}/picture.json", headers=viewer)
    assert got.status_code == 200, got.text
    body = got.json()
    assert {(p["a"], p["b"]): p["state"] for p in body["pairs"]} == {
        ("base", "pushed"): "interfering", ("base", "flush"): "touching"}
    assert {p["name"]: p["state"] for p in body["parts"]} == {
        "base": "interfering", "pushed": "interfering", "flush": "touching"}
    base = next(p for p in body["parts"] if p["name"] == "base")
    assert base["faces"][0]["other"] == "pushed" and base["faces"][0]["faces"]
    assert body["views"][0]["kind"] == "overview" and body["unit"] == "mm"
    assert body["pairs"][0]["volume_m3"] == pytest.approx(10 * 100 * 100 * 1e-9, rel=1e-9)
    png = await api.client.get(f"/api/v1/physics/assemblies/{aid}/picture.png",
                               params={"width_px": 640, "height_px": 400}, headers=viewer)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (640, 400)


@pytest.mark.parametrize(("route", "params", "status", "words"), [
    ("picture.png", {"width_px": 10_000}, 422, "width_px"),
    ("picture.png", {"height_px": "tall"}, 422, "height_px"),
    ("picture.png", {"tolerance_m": -1}, 422, "tolerance_m"),
    ("picture.json", {"tolerance_m": "nan"}, 422, "tolerance_m"),
    ("picture.json", {"tolerance_m": 1}, 422, "tolerance_m"),
])
async def test_bad_picture_queries_are_refused_with_the_parameter_named(api, route, params, status, words) -> None:
    up = await api.client.post("/api/v1/physics/assemblies", json=_three_boxes(), headers=auth(api.operator))
    aid = up.json()["id"]
    got = await api.client.get(f"/api/v1/physics/assemblies/{aid}/{route}", params=params,
                               headers=auth(api.viewer))
    assert got.status_code == status and words in got.text


async def test_picture_of_an_unknown_assembly_is_404(api) -> None:
    for route in ("picture.png", "picture.json"):
        got = await api.client.get(f"/api/v1/physics/assemblies/nope/{route}", headers=auth(api.viewer))
        assert got.status_code == 404


def test_cli_png_is_the_new_picture(tmp_path: Path) -> None:
    from cloud.physics.cli import main

    png = tmp_path / "cell.png"
    example = Path(__file__).resolve().parents[3] / "docs" / "examples" / "assembly" / "cell.json"
    assert main(["check", str(example), "--png", str(png)]) == 1  # the bracket cuts into the column
    image = np.asarray(Image.open(png).convert("RGB"))
    assert image.shape == (800, 1200, 3) and _count(image, COLOURS["interfering"]) > 0


def test_the_picture_numbers_the_pairs_in_the_order_the_collision_answer_lists_them(scene) -> None:
    asm, _, results = scene
    answer, _ = collision("cell", asm, CollisionWorld(asm.parts), TOL)
    out = picture_out("cell", asm, layout(asm, results, TOL))
    assert [(p.a, p.b) for p in out.pairs] == [(p.a, p.b) for p in answer.pairs]
    depths = [p.depth_m for p in answer.pairs if p.status == "interfering"]
    assert depths == sorted(depths, reverse=True)  # deepest first

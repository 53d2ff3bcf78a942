"""What the assembly picture shows: problem pairs, the faces to highlight, part states and views.

The PNG (``cloud.physics.render``) and the JSON for a web viewer
(``GET .../picture.json``) are drawn from this one layout, so they always
agree. Pairs are ordered worst first (interfering before touching, larger
overlap first). A small assembly gets one overview; a larger one gets an
overview plus one zoomed view per problem pair, up to ``MAX_PAIR_VIEWS``
(the rest are counted in ``Picture.more``). Each pair view looks at the
pair's contact box from a direction 35° off the line joining the two parts'
centres, so both parts and the faces between them are in sight.
Coordinates in metres, world frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from cloud.physics import schemas as s
from cloud.physics.assembly import Assembly, Part
from cloud.physics.pair_result import PairResult, Status, severity

__all__ = ["COLOURS", "MAX_PAIR_VIEWS", "Picture", "PicturePair", "PicturePart", "View", "layout", "picture_out"]

COLOURS: dict[str, str] = {"interfering": "#d62728", "touching": "#ff9f1c", "clear": "#b4b9c0"}
MAX_PAIR_VIEWS = 6
SMALL_PARTS = 8  # up to this many parts and ...
SMALL_PAIRS = 4  # ... this many problem pairs: one overview is enough
_OVERVIEW_DIRECTION = np.array([0.433, -0.75, 0.5])  # matplotlib's default camera (azim -60°, elev 30°)
_RANK = {"interfering": 2, "touching": 1, "clear": 0}


@dataclass(frozen=True)
class PicturePair:
    """One touching or interfering pair as drawn: its region and the faces to highlight."""

    index: int
    a: str
    b: str
    state: Status
    box_min_m: np.ndarray
    box_max_m: np.ndarray
    centroid_m: np.ndarray  # the overlap's centroid, else the centre of the contact box
    points_a_m: np.ndarray
    points_b_m: np.ndarray
    faces_a: np.ndarray
    faces_b: np.ndarray
    volume_m3: float | None
    depth_m: float | None


@dataclass(frozen=True)
class PicturePart:
    """A part in at least one problem pair: its worst state and its highlighted faces per pair."""

    name: str
    state: Status
    faces: dict[int, np.ndarray]  # pair index -> indices into part.mesh.faces
    label_at_m: np.ndarray  # centre of the part's box, where its label points


@dataclass(frozen=True)
class View:
    """A camera: looks at ``target_m`` from ``direction`` (unit vector, target to camera)."""

    kind: Literal["overview", "pair"]
    title: str
    target_m: np.ndarray
    direction: np.ndarray
    half_extent_m: float  # half the side of the cube shown
    pairs: tuple[int, ...]


@dataclass(frozen=True)
class Picture:
    unit: str
    tolerance_m: float
    pairs: list[PicturePair]
    parts: list[PicturePart]
    views: list[View]
    more: int  # problem pairs without a view of their own
    lo_m: np.ndarray = field(repr=False)  # the whole assembly's box
    hi_m: np.ndarray = field(repr=False)


def part_box(part: Part) -> tuple[np.ndarray, np.ndarray]:
    """World AABB of a part (m)."""
    world = part.mesh.vertices @ part.pose[:3, :3].T + part.pose[:3, 3]
    return world.min(axis=0), world.max(axis=0)


def _unit(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 * max(1.0, float(np.abs(v).max(initial=0.0))) and n > 0 else fallback


def _pair(index: int, r: PairResult, boxes: dict[str, tuple[np.ndarray, np.ndarray]]) -> PicturePair:
    if r.region_min_m is not None and r.region_max_m is not None:
        lo, hi = np.asarray(r.region_min_m, float), np.asarray(r.region_max_m, float)
    else:  # no region known: the overlap of the two parts' boxes (or the box spanning them)
        (la, ha), (lb, hb) = boxes[r.a], boxes[r.b]
        lo, hi = np.maximum(la, lb), np.minimum(ha, hb)
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    centroid = np.asarray(r.centroid_m, float) if r.centroid_m is not None else (lo + hi) / 2
    empty = np.zeros((0, 3))
    return PicturePair(
        index, r.a, r.b, r.status, lo, hi, centroid,
        empty if r.points_a_m is None else np.asarray(r.points_a_m, float).reshape(-1, 3),
        empty if r.points_b_m is None else np.asarray(r.points_b_m, float).reshape(-1, 3),
        np.asarray(r.faces_a, dtype=np.int64), np.asarray(r.faces_b, dtype=np.int64),
        r.volume_m3, r.depth_m)


def pair_direction(pair: PicturePair, boxes: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Camera direction for a pair: 35° off the line joining the parts' centres, towards the default view.

    When the centres coincide (one part inside the other) the line is the contact box's thinnest axis.
    """
    (la, ha), (lb, hb) = boxes[pair.a], boxes[pair.b]
    thin = np.eye(3)[int(np.argmin(pair.box_max_m - pair.box_min_m))]
    u = _unit((lb + hb) / 2 - (la + ha) / 2, thin)
    iso = _OVERVIEW_DIRECTION / np.linalg.norm(_OVERVIEW_DIRECTION)
    perp = _unit(iso - (iso @ u) * u, _unit(np.cross(u, [0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])))
    if perp @ iso < 0:
        perp = -perp
    side = u if u @ iso >= 0 else -u
    return _unit(np.sin(np.radians(35)) * side + np.cos(np.radians(35)) * perp, iso)


def _pair_view(pair: PicturePair, boxes: dict[str, tuple[np.ndarray, np.ndarray]]) -> View:
    """Both parts whole, unless they are much larger than the region: then the region and its surroundings."""
    (la, ha), (lb, hb) = boxes[pair.a], boxes[pair.b]
    lo, hi = np.minimum(la, lb), np.maximum(ha, hb)
    whole = 0.55 * float((hi - lo).max())
    smaller = min(float(np.linalg.norm(ha - la)), float(np.linalg.norm(hb - lb)))
    near = max(2.0 * float((pair.box_max_m - pair.box_min_m).max()), 0.6 * smaller)
    if whole <= near:
        target, half = (lo + hi) / 2, whole
    else:
        target, half = (pair.box_min_m + pair.box_max_m) / 2, near
    return View("pair", f"{pair.index + 1}: {pair.a} / {pair.b} {pair.state}", target,
                pair_direction(pair, boxes), max(half, 1e-6), (pair.index,))


def _overview(lo: np.ndarray, hi: np.ndarray, pairs: list[PicturePair]) -> View:
    """The whole assembly, seen from the default direction tipped towards its thinnest axis."""
    thin = np.eye(3)[int(np.argmin(hi - lo))]
    direction = _unit(_OVERVIEW_DIRECTION / np.linalg.norm(_OVERVIEW_DIRECTION) + 0.6 * thin,
                      _OVERVIEW_DIRECTION)
    half = max(float((hi - lo).max()) / 2 * 1.05, 1e-6)
    return View("overview", "overview", (lo + hi) / 2, direction, half, tuple(p.index for p in pairs))


def layout(asm: Assembly, results: list[PairResult], tolerance_m: float) -> Picture:
    """The picture's content for these check results (clear pairs are ignored)."""
    boxes = {p.name: part_box(p) for p in asm.parts}
    problems = sorted((r for r in results if r.status != "clear"), key=severity)
    pairs = [_pair(k, r, boxes) for k, r in enumerate(problems)]
    states: dict[str, Status] = {}
    faces: dict[str, dict[int, np.ndarray]] = {}
    for p in pairs:
        for name, f in ((p.a, p.faces_a), (p.b, p.faces_b)):
            if _RANK[p.state] > _RANK[states.get(name, "clear")]:
                states[name] = p.state
            faces.setdefault(name, {})[p.index] = f
    parts = [PicturePart(part.name, states[part.name], faces[part.name],
                         (boxes[part.name][0] + boxes[part.name][1]) / 2)
             for part in asm.parts if part.name in states]
    if asm.parts:
        lo = np.min([b[0] for b in boxes.values()], axis=0)
        hi = np.max([b[1] for b in boxes.values()], axis=0)
    else:
        lo = hi = np.zeros(3)
    views = [_overview(lo, hi, pairs)]
    small = len(asm.parts) <= SMALL_PARTS and len(pairs) <= SMALL_PAIRS
    shown = [] if small else pairs[:MAX_PAIR_VIEWS]
    views += [_pair_view(p, boxes) for p in shown]
    more = 0 if small else len(pairs) - len(shown)
    return Picture(asm.unit, tolerance_m, pairs, parts, views, more, lo, hi)


def _v(x: np.ndarray) -> tuple[float, float, float]:
    return (float(x[0]), float(x[1]), float(x[2]))


def picture_out(assembly_id: str, asm: Assembly, pic: Picture) -> s.PictureResponse:
    """The picture's content for a web viewer (``GET .../picture.json``)."""
    shown = {v.pairs[0]: k for k, v in enumerate(pic.views) if v.kind == "pair"}
    pairs = [s.PicturePairOut(
        index=p.index, a=p.a, b=p.b, state=p.state, colour=COLOURS[p.state], box_min_m=_v(p.box_min_m),
        box_max_m=_v(p.box_max_m), centroid_m=_v(p.centroid_m),
        points_a_m=[_v(q) for q in p.points_a_m[:64]], points_b_m=[_v(q) for q in p.points_b_m[:64]],
        volume_m3=p.volume_m3, depth_m=p.depth_m, view=shown.get(p.index)) for p in pic.pairs]

    def faces(part: PicturePart) -> list[s.PictureFacesOut]:
        out = []
        for index, f in part.faces.items():
            pair = pic.pairs[index]
            out.append(s.PictureFacesOut(pair=index, other=pair.b if pair.a == part.name else pair.a,
                                         state=pair.state, colour=COLOURS[pair.state], faces=f.tolist()))
        return out

    parts = [s.PicturePartOut(name=p.name, state=p.state, colour=COLOURS[p.state], label_at_m=_v(p.label_at_m),
                              faces=faces(p)) for p in pic.parts]
    views = [s.PictureViewOut(kind=v.kind, title=v.title, target_m=_v(v.target_m), direction=_v(v.direction),
                              half_extent_m=v.half_extent_m, pairs=list(v.pairs)) for v in pic.views]
    return s.PictureResponse(
        assembly_id=assembly_id, name=asm.spec.name, unit=asm.unit, tolerance_m=pic.tolerance_m,
        colours=dict(COLOURS), box_min_m=_v(pic.lo_m), box_max_m=_v(pic.hi_m), parts=parts, pairs=pairs,
        views=views, more=pic.more, warnings=list(asm.warnings))

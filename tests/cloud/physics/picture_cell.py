"""A 100-part cell with six problem pairs (four interfering, two touching), for the picture tests and bench."""

from __future__ import annotations

import numpy as np
import trimesh
from scipy.spatial.transform import Rotation

from cloud.physics.assembly import Assembly, Part
from cloud.physics.materials import get_material
from cloud.physics.mesh import build_part_mesh

SPACING_M, SIZE_M = 0.15, 0.1
# (slot of a, turn of b about z and x in degrees, how far b is pushed into a in m): b sits in slot + 1
PROBLEMS = [(0, (20.0, 0.0), 0.012), (13, (0.0, 25.0), 0.02), (36, (35.0, 10.0), 0.008),
            (52, (10.0, 10.0), 0.015), (74, (0.0, 0.0), 0.000002), (88, (0.0, 0.0), 0.000003)]
EXPECTED = {(f"p{s:02d}", f"p{s + 1:02d}"): ("touching" if push < 1e-5 else "interfering")
            for s, _, push in PROBLEMS}


def _pose(rot: np.ndarray, t: np.ndarray) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rot, t
    return pose


def cell(problems: list[tuple[int, tuple[float, float], float]] = PROBLEMS
         ) -> tuple[Assembly, dict[str, np.ndarray]]:
    """The assembly and, for each part of a problem pair, its box's pose (a 100 mm cube centred at 0)."""
    from physics_helpers import assembly

    mat = get_material("steel-s235")
    box = build_part_mesh(trimesh.creation.box((100.0, 100.0, 100.0)).vertices,
                          trimesh.creation.box((100.0, 100.0, 100.0)).faces, "mm")
    sphere = trimesh.creation.icosphere(3, radius=45.0)
    cyl = trimesh.creation.cylinder(radius=40.0, height=90.0, sections=64)
    others = [build_part_mesh(sphere.vertices, sphere.faces, "mm"), build_part_mesh(cyl.vertices, cyl.faces, "mm")]
    rng = np.random.default_rng(3)
    slots: dict[int, np.ndarray] = {}
    for s, (about_z, about_x), push in problems:
        base = np.array([(s // 10) * SPACING_M, (s % 10) * SPACING_M, 0.0])
        slots[s] = _pose(np.eye(3), base)
        turn = Rotation.from_euler("zx", [about_z, about_x], degrees=True).as_matrix()
        reach = 0.05 * np.abs(turn[1]).sum()  # b's half extent along y
        slots[s + 1] = _pose(turn, base + [0.0, 0.05 + reach - push, 0.0])
    parts, boxes = [], {}
    for s in range(100):
        name = f"p{s:02d}"
        if s in slots:
            parts.append(Part(name, box, slots[s], mat, mat.density, "mm"))
            boxes[name] = slots[s]
        else:
            pose = _pose(Rotation.random(random_state=rng).as_matrix(),
                         np.array([(s // 10) * SPACING_M, (s % 10) * SPACING_M, 0.0]))
            parts.append(Part(name, others[s % 2], pose, mat, mat.density, "mm"))
    return assembly(parts), boxes

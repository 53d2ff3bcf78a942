"""Physics benchmark: `python bench/bench_physics.py [--json]` prints the figures of issue 4.

Scene: 100 parts of ~1,000 triangles (icospheres and 250-section cylinders,
~100 mm) on a 10 × 10 grid in a 20 m cell, with a few touching and
interfering neighbours. Mates: chains of revolute joints. Bounded run time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial.transform import Rotation

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud.physics.assembly import Assembly, AssemblySpec, Part  # noqa: E402
from cloud.physics.interference import CollisionWorld  # noqa: E402
from cloud.physics.materials import get_material  # noqa: E402
from cloud.physics.mesh import build_part_mesh  # noqa: E402
from cloud.physics.solver import MateSystem  # noqa: E402


def _scene(rng: np.random.Generator) -> list[Part]:
    mat = get_material("steel-s235")
    shapes = [trimesh.creation.icosphere(3, radius=50.0),  # 1,280 faces
              trimesh.creation.cylinder(radius=50.0, height=100.0, sections=250)]  # 1,000 faces
    meshes = [build_part_mesh(s.vertices, s.faces) for s in shapes]
    parts = []
    for k in range(100):
        pose = np.eye(4)
        pose[:3, :3] = Rotation.random(random_state=rng).as_matrix()
        gx, gy = divmod(k, 10)
        # neighbours 150 mm apart; every 17th part is pushed into its neighbour
        pose[:3, 3] = [-9.0 + gx * 0.15 + (0.052 if k % 17 == 0 else 0.0), -9 + gy * 0.15, 5.0]
        parts.append(Part(f"p{k}", meshes[k % 2], pose, mat, mat.density, "mm"))
    return parts


def _times(fn, n: int) -> np.ndarray:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return np.array(out) * 1000


def _chain(n_parts: int, n_mates: int, rng: np.random.Generator) -> Assembly:
    box = trimesh.creation.box((100.0, 100.0, 100.0))
    mesh = build_part_mesh(box.vertices, box.faces)
    mat = get_material("steel-s235")
    parts, specs, mates = [], [], []
    for k in range(n_parts):
        pose = np.eye(4)
        if k:
            pose[:3, :3] = Rotation.from_rotvec(rng.normal(scale=0.2, size=3)).as_matrix()
            pose[:3, 3] = [0.08 * k, 0.0, 0.1 * k]
        parts.append(Part(f"l{k}", mesh, pose, mat, mat.density, "mm", k == 0))
        specs.append({"name": f"l{k}", "mesh": {"format": "stl", "data_base64": ""},
                      "material": "steel-s235", "fixed": k == 0})
    for k in range(1, n_parts):
        a, b = f"l{k - 1}", f"l{k}"
        z = [0, 0, 1]
        mates += [{"type": "concentric",
                   "a": {"part": a, "kind": "axis", "origin": [40, 0, 50], "direction": z},
                   "b": {"part": b, "kind": "axis", "origin": [-40, 0, -50], "direction": z}},
                  {"type": "coincident",
                   "a": {"part": a, "kind": "plane", "origin": [0, 0, 50], "direction": z},
                   "b": {"part": b, "kind": "plane", "origin": [0, 0, -50], "direction": [0, 0, -1]}}]
    mates = mates[:n_mates]
    spec = AssemblySpec.model_validate({"parts": specs, "mates": mates})
    return Assembly(spec, parts)


def run() -> dict[str, float]:
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    parts = _scene(rng)
    world = CollisionWorld(parts, cache_results=False)
    first = world.check(1e-5)
    cold_ms = (time.perf_counter() - t0) * 1000
    pairs = world.check(1e-5)
    fig: dict[str, float] = {
        "parts": len(parts), "faces_per_part": float(np.mean([p.mesh.check.faces for p in parts])),
        "pairs_touching_or_interfering": len(pairs),
        "interfering": sum(p.status == "interfering" for p in first),
        "cold_start_incl_structures_ms": cold_ms,
    }
    uncached = _times(lambda: world.check(1e-5), 30)
    fig["interference_check_p95_ms(volumes recomputed)"] = float(np.percentile(uncached, 95))
    cached = CollisionWorld(parts)
    cached.check(1e-5)
    warm = _times(lambda: cached.check(1e-5), 200)
    fig["interference_check_p95_ms(cached structures+results)"] = float(np.percentile(warm, 95))
    fig["min_clearance_median_ms"] = float(np.median(_times(world.min_clearance, 20)))
    fig["clearance_report_5mm_median_ms"] = float(np.median(_times(lambda: world.clearances(0.005), 20)))
    fig["clearance_pairs_under_5mm"] = len(world.clearances(0.005))
    for n_parts, n_mates, reps in ((5, 10, 30), (20, 40, 5)):
        times, ok = [], 0
        for _ in range(reps):
            asm = _chain(n_parts + 1, n_mates, rng)
            t = time.perf_counter()
            res = MateSystem(asm).solve()
            times.append((time.perf_counter() - t) * 1000)
            ok += res.converged
        fig[f"mate_solve_{n_parts}parts_{n_mates}mates_median_ms"] = float(np.median(times))
        fig[f"mate_solve_{n_parts}parts_{n_mates}mates_converged"] = f"{ok}/{reps}"
    return fig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    fig = run()
    if args.json:
        print(json.dumps(fig, indent=2))
    else:
        width = max(len(k) for k in fig)
        for key, value in fig.items():
            shown = f"{value:10.2f}" if isinstance(value, float) else f"{value!s:>10}"
            print(f"{key:<{width}}  {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

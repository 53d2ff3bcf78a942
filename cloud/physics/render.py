"""A headless PNG picture of an assembly with interfering regions highlighted (matplotlib, Agg).

Parts are drawn translucent grey-blue; intersection solids of interfering
pairs in red, touching contacts as orange points. No display is needed: the
figure is drawn on an Agg canvas without pyplot's global state.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from cloud.physics.assembly import Assembly
from cloud.physics.interference import PairResult
from cloud.physics.units import METRES_PER

__all__ = ["render_png"]

_MAX_FACES_PER_PART = 4000


def _decimated(tri: np.ndarray) -> np.ndarray:
    if len(tri) <= _MAX_FACES_PER_PART:
        return tri
    step = int(np.ceil(len(tri) / _MAX_FACES_PER_PART))
    return tri[::step]  # a picture, not a measurement: thinning is fine


def render_png(asm: Assembly, pairs: list[PairResult], *, size_px: int = 900,
               title: str | None = None) -> bytes:
    """PNG bytes of the assembly; coordinates drawn in the assembly unit."""
    k = METRES_PER[asm.unit]
    fig = Figure(figsize=(size_px / 100, size_px / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(projection="3d")
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for part in asm.parts:
        tri = part.mesh.triangles @ part.pose[:3, :3].T + part.pose[:3, 3]
        tri = _decimated(tri) / k
        lo, hi = np.minimum(lo, tri.reshape(-1, 3).min(0)), np.maximum(hi, tri.reshape(-1, 3).max(0))
        ax.add_collection3d(Poly3DCollection(tri, facecolor=(0.55, 0.65, 0.8, 0.25),
                                             edgecolor=(0.3, 0.35, 0.45, 0.15), linewidth=0.2))
    bad = 0
    for pair in pairs:
        if pair.status == "interfering" and pair.intersection is not None and len(pair.intersection[1]):
            verts, faces = pair.intersection
            ax.add_collection3d(Poly3DCollection(verts[faces] / k, facecolor=(0.9, 0.1, 0.1, 0.9),
                                                 edgecolor=(0.6, 0, 0, 0.9), linewidth=0.3))
            bad += 1
        elif pair.status == "touching" and pair.point_a_m is not None:
            p = pair.point_a_m / k
            ax.scatter([p[0]], [p[1]], [p[2]], color="orange", s=30)
        elif pair.status == "interfering" and pair.centroid_m is not None:
            p = pair.centroid_m / k
            ax.scatter([p[0]], [p[1]], [p[2]], color="red", s=60)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-9)
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_zlim(centre[2] - half, centre[2] + half)
    for setter, axis in ((ax.set_xlabel, "x"), (ax.set_ylabel, "y"), (ax.set_zlabel, "z")):
        setter(f"{axis} [{asm.unit}]")
    ax.set_title(title or f"{asm.spec.name}: {bad} interfering pair(s) in red")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()

"""A headless PNG of an assembly that shows where parts touch and interfere (matplotlib, Agg).

Drawn from ``cloud.physics.picture.layout``: the colliding faces of each
part (``PairResult.faces_a``/``faces_b``) in red (interfering) or amber
(touching), the parts of problem pairs translucent blue-grey, every other
part muted grey and thinned to a triangle budget. One overview panel, plus a
zoomed panel per problem pair for larger assemblies; numbered rings mark the
problems in the overview, the problem parts are labelled, and a legend panel
gives the colours, the unit, the tolerance and the pair list. Every 3-D panel
has a scale bar in the assembly unit. Projections are orthographic, so the
scale bar holds everywhere in its panel. Highlighted faces are drawn last
(``computed_zorder=False``) so no other part hides them. No display is
needed: the figure is drawn on an Agg canvas without pyplot's global state.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from mpl_toolkits.mplot3d import Axes3D, proj3d
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from cloud.physics.assembly import Assembly, Part
from cloud.physics.pair_result import PairResult
from cloud.physics.picture import COLOURS, Picture, View, layout, part_box
from cloud.physics.units import DEFAULT_TOLERANCE_M, METRES_PER

__all__ = ["MAX_PX", "MIN_PX", "Drawn", "draw", "render_png"]

MIN_PX, MAX_PX = 240, 2400  # picture width and height bounds, pixels
_MUTED_BUDGET = 24_000  # triangles of parts in no problem pair, all panels together
_INVOLVED_CAP = 3_000  # triangles per problem part per panel (its highlighted faces always drawn)
_BODY = (0.55, 0.65, 0.8, 0.22)
_MUTED = (0.72, 0.74, 0.77, 0.18)
_HEADER_PX = 34


@dataclass
class Drawn:
    """Where things ended up, in image pixels (origin top left, y down): for tests and callers."""

    width_px: int
    height_px: int
    panels: list[tuple[View, tuple[float, float, float, float]]] = field(default_factory=list)
    labels: list[tuple[str, tuple[float, float, float, float]]] = field(default_factory=list)
    legend: list[str] = field(default_factory=list)
    scale_bars: list[str] = field(default_factory=list)
    rings: dict[int, tuple[float, float]] = field(default_factory=dict)  # pair index -> its ring in the overview


def _decimated(tri: np.ndarray, cap: int) -> np.ndarray:
    if len(tri) <= cap:
        return tri
    return tri[:: int(math.ceil(len(tri) / max(cap, 1)))]  # a picture, not a measurement: thinning is fine


def _grid(n_panels: int, legend_wide: bool) -> tuple[int, int]:
    cells = n_panels + 1  # + the legend
    if legend_wide:
        return 1, 2
    cols = 2 if cells <= 4 else 3 if cells <= 6 else 4
    return math.ceil(cells / cols), cols


class _Renderer:
    def __init__(self, asm: Assembly, pic: Picture, width_px: int, height_px: int) -> None:
        self.asm, self.pic = asm, pic
        self.k = METRES_PER[asm.unit]
        self.w, self.h = width_px, height_px
        self.fig = Figure(figsize=(width_px / 100, height_px / 100), dpi=100)
        FigureCanvasAgg(self.fig)
        self.drawn = Drawn(width_px, height_px)
        self._tris: dict[str, np.ndarray] = {}
        self.involved = {p.name: p for p in pic.parts}

    def tris(self, part: Part) -> np.ndarray:
        """World triangles (m) of a part, computed once per picture."""
        out = self._tris.get(part.name)
        if out is None:
            out = part.mesh.triangles @ part.pose[:3, :3].T + part.pose[:3, 3]
            self._tris[part.name] = out
        return out

    # --- panels ---------------------------------------------------------------------
    def rects(self) -> list[tuple[float, float, float, float]]:
        """Figure-fraction rectangles of the 3-D panels, then the legend's."""
        n = len(self.pic.views)
        wide = n == 1
        rows, cols = _grid(n, wide)
        top = 1 - _HEADER_PX / self.h
        out = []
        for c in range(n + 1):
            r, col = divmod(c, cols)
            if wide:
                x0, x1 = (0.0, 0.7) if c == 0 else (0.7, 1.0)
            else:
                x0, x1 = col / cols, (col + 1) / cols
            y1 = top - r * top / rows
            out.append((x0, y1 - top / rows, x1 - x0, top / rows))
        return out

    def panel(self, view: View, rect: tuple[float, float, float, float]) -> None:
        ax = self.fig.add_axes(rect, projection="3d", computed_zorder=False)
        assert isinstance(ax, Axes3D)
        ax.set_proj_type("ortho")
        ax.set_box_aspect((1, 1, 1), zoom=1.25)
        c, h = view.target_m / self.k, view.half_extent_m / self.k
        ax.set_xlim(c[0] - h, c[0] + h)
        ax.set_ylim(c[1] - h, c[1] + h)
        ax.set_zlim(c[2] - h, c[2] + h)
        d = view.direction
        ax.view_init(math.degrees(math.asin(max(-1.0, min(1.0, float(d[2]))))),
                     math.degrees(math.atan2(float(d[1]), float(d[0]))))
        ax.set_axis_off()
        ax.apply_aspect()  # the projection to pixels below must be the one drawn
        self._bodies(ax, view)
        self._highlights(ax, view)
        x0, y0, w, hh = rect
        self.fig.add_artist(Rectangle((x0, y0), w, hh, fill=False, edgecolor="#cccccc", linewidth=0.8,
                                      transform=self.fig.transFigure))
        self.fig.text(x0 + 6 / self.w, y0 + hh - 6 / self.h, view.title, fontsize=9, va="top",
                      fontweight="bold")
        box = (x0 * self.w, (1 - y0 - hh) * self.h, (x0 + w) * self.w, (1 - y0) * self.h)
        self.drawn.panels.append((view, box))
        self._scale_bar(ax, view, rect)
        self._labels(ax, view, rect)

    def _in_view(self, tri: np.ndarray, view: View) -> np.ndarray:
        if view.kind == "overview":
            return tri
        lo, hi = view.target_m - 1.2 * view.half_extent_m, view.target_m + 1.2 * view.half_extent_m
        keep = np.all(tri.max(axis=1) >= lo, axis=1) & np.all(tri.min(axis=1) <= hi, axis=1)
        return tri[keep]

    def _bodies(self, ax: Axes3D, view: View) -> None:
        """Problem parts translucent, the others muted and thinned to this panel's share of the budget."""
        muted: list[np.ndarray] = []
        bodies: list[np.ndarray] = []
        near_lo = view.target_m - 1.2 * view.half_extent_m
        near_hi = view.target_m + 1.2 * view.half_extent_m
        for part in self.asm.parts:
            if view.kind == "pair":
                lo, hi = part_box(part)
                if np.any(hi < near_lo) or np.any(lo > near_hi):
                    continue
            tri = self._in_view(self.tris(part), view)
            (bodies if part.name in self.involved else muted).append(tri)
        cap = max(12, _MUTED_BUDGET // (len(self.pic.views) * max(len(muted), 1)))
        groups = (([_decimated(t, cap) for t in muted], _MUTED, (0.5, 0.52, 0.55, 0.12), 1),
                  ([_decimated(t, _INVOLVED_CAP) for t in bodies], _BODY, (0.25, 0.3, 0.4, 0.25), 2))
        for group, colour, edge, z in groups:
            if group and sum(len(g) for g in group):
                ax.add_collection3d(Poly3DCollection(np.concatenate(group) / self.k, facecolor=colour,
                                                     edgecolor=edge, linewidth=0.2, zorder=z))

    def _highlights(self, ax: Axes3D, view: View) -> None:
        by_state: dict[str, list[np.ndarray]] = {"touching": [], "interfering": []}
        shown = set(view.pairs)
        for name, pp in self.involved.items():
            tri = self.tris(self.asm.part(name))
            for index, faces in pp.faces.items():
                if index in shown and len(faces):
                    by_state[self.pic.pairs[index].state].append(self._in_view(tri[faces], view))
        for z, state in ((3, "touching"), (4, "interfering")):
            group = [g for g in by_state[state] if len(g)]
            if group:
                ax.add_collection3d(Poly3DCollection(np.concatenate(group) / self.k, facecolor=COLOURS[state],
                                                     edgecolor=COLOURS[state], linewidth=0.8, alpha=0.85,
                                                     zorder=z))
        for index in view.pairs:
            pair = self.pic.pairs[index]
            if view.kind == "overview" or not (len(pair.faces_a) or len(pair.faces_b)):
                self._box(ax, pair.box_min_m / self.k, pair.box_max_m / self.k, COLOURS[pair.state])

    def _box(self, ax: Axes3D, lo: np.ndarray, hi: np.ndarray, colour: str) -> None:
        """A contact box's edges: where faces are unknown, or too small to see in the overview."""
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        for i, j in ((0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)):
            ax.plot(*corners[[i, j]].T, color=colour, linewidth=1.2, zorder=5)

    def pixels(self, ax: Axes3D, points_m: np.ndarray) -> np.ndarray:
        """Display pixels (origin bottom left) of world points (m) in a panel."""
        p = np.atleast_2d(points_m) / self.k
        xs, ys, _ = proj3d.proj_transform(p[:, 0], p[:, 1], p[:, 2], ax.get_proj())
        return ax.transData.transform(np.c_[xs, ys])

    def _scale_bar(self, ax: Axes3D, view: View, rect: tuple[float, float, float, float]) -> None:
        d = view.direction
        across = np.cross([0.0, 0.0, 1.0], d)
        across = across / np.linalg.norm(across) if np.linalg.norm(across) > 1e-9 else np.array([1.0, 0, 0])
        ends = self.pixels(ax, np.stack([view.target_m, view.target_m + view.half_extent_m * across]))
        px_per_unit = float(np.linalg.norm(ends[1] - ends[0])) / (view.half_extent_m / self.k)
        if not px_per_unit > 0:
            return
        want = 0.25 * rect[2] * self.w / px_per_unit
        step = 10 ** math.floor(math.log10(want))
        length = max(m * step for m in (1, 2, 5) if m * step <= want)
        x0, y0 = rect[0] * self.w + 12, rect[1] * self.h + 14
        x1 = x0 + length * px_per_unit
        self.fig.add_artist(Line2D([x0 / self.w, x1 / self.w], [y0 / self.h] * 2, color="black",
                                   linewidth=2.5, transform=self.fig.transFigure))
        text = f"{length:g} {self.asm.unit}"
        self.fig.text(x0 / self.w, (y0 + 5) / self.h, text, fontsize=8)
        self.drawn.scale_bars.append(text)

    def _labels(self, ax: Axes3D, view: View, rect: tuple[float, float, float, float]) -> None:
        names = [p.name for p in self.pic.parts] if view.kind == "overview" else [
            self.pic.pairs[view.pairs[0]].a, self.pic.pairs[view.pairs[0]].b]
        bounds = (rect[0] * self.w, rect[1] * self.h, (rect[0] + rect[2]) * self.w, (rect[1] + rect[3]) * self.h)
        placed: list[tuple[float, float, float, float]] = []
        if view.kind == "overview":
            for index in view.pairs:  # numbered rings: small regions stay findable in a large cell
                pair = self.pic.pairs[index]
                x, y = self.pixels(ax, pair.centroid_m)[0]
                ax.plot(*(pair.centroid_m / self.k)[:, None], marker="o", markersize=15, markerfacecolor="none",
                        markeredgecolor="#222222", markeredgewidth=1.5, zorder=6)
                self.drawn.rings[index] = (float(x), float(self.h - y))
                box = _place(np.array([x, y]), str(index + 1), placed, bounds, near=10)
                placed.append(box)
                self.fig.text(box[0] / self.w, box[1] / self.h, str(index + 1), fontsize=8, fontweight="bold",
                              zorder=10, color=COLOURS[pair.state],
                              bbox={"boxstyle": "square,pad=0.1", "facecolor": "#222222", "edgecolor": "none"})
            if len(names) > 12:
                return  # the legend names them by pair number
        for name in names:
            anchor = self.pixels(ax, self.involved[name].label_at_m)[0]
            box = _place(anchor, name, placed, bounds)
            placed.append(box)
            self.fig.text(box[0] / self.w, box[1] / self.h, name, fontsize=8, zorder=10,
                          bbox={"boxstyle": "square,pad=0.15", "facecolor": "white", "alpha": 0.8,
                                "edgecolor": "#888888", "linewidth": 0.5})
            self.fig.add_artist(Line2D([anchor[0] / self.w, box[0] / self.w], [anchor[1] / self.h, box[1] / self.h],
                                       color="#555555", linewidth=0.6, transform=self.fig.transFigure))
            self.drawn.labels.append((name, (box[0], self.h - box[3], box[2], self.h - box[1])))

    def legend(self, rect: tuple[float, float, float, float]) -> None:
        x, y = rect[0] + 10 / self.w, rect[1] + rect[3] - 10 / self.h
        line = 15 / self.h
        u, k, pic = self.asm.unit, self.k, self.pic
        rows: list[tuple[str, str | None]] = [
            ("interfering (shared volume)", COLOURS["interfering"]),
            ("touching (within the tolerance)", COLOURS["touching"]),
            ("other parts", COLOURS["clear"]),
            (f"lengths in {u}; tolerance {pic.tolerance_m / k:.4g} {u}", None),
            ("scale bar: bottom left of each view", None), ("", None)]
        for p in pic.pairs[:14]:
            size = ""
            if p.volume_m3 is not None and p.state == "interfering":
                size = f", {p.volume_m3 / k**3:.4g} {u}³"
            rows.append((f"{p.index + 1}: {p.a} / {p.b} {p.state}{size}", None))
        if len(pic.pairs) > 14:
            rows.append((f"and {len(pic.pairs) - 14} more pairs", None))
        if pic.more:
            rows.append((f"and {pic.more} more without a view of their own", None))
        if not pic.pairs:
            rows.append(("no touching or interfering pairs", None))
        for text, colour in rows:
            if colour is not None:
                self.fig.add_artist(Rectangle((x, y - 10 / self.h), 14 / self.w, 10 / self.h, facecolor=colour,
                                              edgecolor="none", transform=self.fig.transFigure))
            self.fig.text(x + (20 / self.w if colour else 0), y, text, fontsize=8, va="top")
            self.drawn.legend.append(text)
            y -= line


def _place(anchor: np.ndarray, text: str, placed: list[tuple[float, float, float, float]],
           bounds: tuple[float, float, float, float], near: float = 14) -> tuple[float, float, float, float]:
    """A label box (x0, y0, x1, y1 display px) near the anchor that overlaps no placed one, if possible."""
    w, h = 6.0 * len(text) + 6, 14.0
    ax_, ay = float(anchor[0]), float(anchor[1])
    first = None
    for dy in (near + 4, -near - 16, near + 26, -near - 38, near + 48, -near - 60, near + 70, -near - 82):
        for dx in (near, -w - near, -w / 2):
            x0 = min(max(ax_ + dx, bounds[0] + 4), bounds[2] - w - 4)
            y0 = min(max(ay + dy, bounds[1] + 30), bounds[3] - h - 20)
            box = (x0, y0, x0 + w, y0 + h)
            first = first or box
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                return box
    assert first is not None
    return first


def draw(asm: Assembly, results: list[PairResult], *, tolerance_m: float = DEFAULT_TOLERANCE_M,
         width_px: int = 1200, height_px: int = 800, title: str | None = None) -> tuple[Figure, Drawn]:
    """The figure (Agg canvas) and where its panels, labels and legend are."""
    if not (MIN_PX <= width_px <= MAX_PX and MIN_PX <= height_px <= MAX_PX):
        raise ValueError(f"picture size must be {MIN_PX}..{MAX_PX} px (got {width_px}×{height_px})")
    pic = layout(asm, results, tolerance_m)
    r = _Renderer(asm, pic, width_px, height_px)
    rects = r.rects()
    for view, rect in zip(pic.views, rects, strict=False):
        r.panel(view, rect)
    r.legend(rects[len(pic.views)])
    n_int = sum(p.state == "interfering" for p in pic.pairs)
    head = title or (f"{asm.spec.name or 'assembly'}: {len(asm.parts)} parts, {n_int} interfering, "
                     f"{len(pic.pairs) - n_int} touching pair(s)")
    r.fig.text(8 / width_px, 1 - 8 / height_px, head, fontsize=11, va="top", fontweight="bold")
    return r.fig, r.drawn


def render_png(asm: Assembly, results: list[PairResult], *, tolerance_m: float = DEFAULT_TOLERANCE_M,
               width_px: int = 1200, height_px: int = 800, title: str | None = None) -> bytes:
    """PNG bytes of exactly ``width_px`` × ``height_px``; lengths shown in the assembly unit."""
    fig, _ = draw(asm, results, tolerance_m=tolerance_m, width_px=width_px, height_px=height_px, title=title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()

"""Small geometric kernels shared by the physics modules: winding numbers, edges, orientation repair.

Everything here works on plain numpy arrays (vertices ``(V, 3)`` float64,
faces ``(F, 3)`` int) so it can be reused on any mesh without trimesh.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "edge_pairs",
    "edge_stats",
    "face_components",
    "make_winding_consistent",
    "signed_volumes",
    "winding_number",
]


def winding_number(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Generalized winding number of each point w.r.t. a triangle soup (1 inside, 0 outside).

    Van Oosterom–Strackee solid angles; robust for closed meshes and
    graceful (fractional) for open ones. ``triangles`` is ``(F, 3, 3)``.
    """
    pts = np.atleast_2d(np.asarray(points, dtype=float))
    out = np.empty(len(pts))
    for i, p in enumerate(pts):
        a = triangles[:, 0] - p
        b = triangles[:, 1] - p
        c = triangles[:, 2] - p
        la, lb, lc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
        det = np.einsum("ij,ij->i", a, np.cross(b, c))
        den = (
            la * lb * lc
            + np.einsum("ij,ij->i", a, b) * lc
            + np.einsum("ij,ij->i", b, c) * la
            + np.einsum("ij,ij->i", c, a) * lb
        )
        out[i] = np.arctan2(det, den).sum() / (2.0 * np.pi)
    return out


def _edge_keys(half: np.ndarray, n: int) -> np.ndarray:
    """One int64 per (from, to) vertex pair: np.unique on it is far faster than on rows."""
    return half[:, 0].astype(np.int64) * n + half[:, 1]


def edge_stats(faces: np.ndarray) -> tuple[int, int, int]:
    """(boundary edges, non-manifold edges, edges traversed twice in the same direction)."""
    half = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    n = int(faces.max()) + 1 if faces.size else 1
    _, counts = np.unique(_edge_keys(np.sort(half, axis=1), n), return_counts=True)
    _, dcounts = np.unique(_edge_keys(half, n), return_counts=True)
    return int((counts == 1).sum()), int((counts > 2).sum()), int((dcounts > 1).sum())


def edge_pairs(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The half-edges (vertex pairs, three per face in order) and, for each manifold edge (shared by
    exactly two faces), the indices of its two half-edges; half-edge ``h`` belongs to face ``h // 3``."""
    half = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    n = int(faces.max()) + 1 if faces.size else 1
    key = _edge_keys(np.sort(half, axis=1), n)
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    grouped = inverse[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    pair_starts = starts[counts[grouped[starts]] == 2]
    return half, order[pair_starts], order[pair_starts + 1]


def _adjacency(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face pairs sharing a manifold edge and whether they traverse it the same way."""
    half, h1, h2 = edge_pairs(faces)
    return h1 // 3, h2 // 3, half[h1, 0] == half[h2, 0]


def face_components(faces: np.ndarray) -> np.ndarray:
    """Connected component label of each face (through shared manifold edges)."""
    f1, f2, _ = _adjacency(faces)
    n = len(faces)
    graph = coo_matrix((np.ones(len(f1)), (f1, f2)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def make_winding_consistent(faces: np.ndarray) -> tuple[np.ndarray, int, bool]:
    """Flip faces so neighbours agree on orientation. Returns (faces, flipped count, orientable).

    Uses the orientation double cover: face copies (f, kept) and (f, flipped)
    are joined according to each shared edge; a component whose two copies of
    one face meet is not orientable and is left unchanged.
    """
    n = len(faces)
    f1, f2, same = _adjacency(faces)
    # same direction -> one of the two must flip: (f1, 0)-(f2, 1); otherwise (f1, s)-(f2, s)
    rows = np.concatenate([f1, f1 + n])
    cols = np.concatenate([np.where(same, f2 + n, f2), np.where(same, f2, f2 + n)])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(2 * n, 2 * n))
    labels = connected_components(graph, directed=False)[1]
    comp = face_components(faces)
    orientable = not np.any(labels[:n] == labels[n:])
    if not orientable:
        return faces, 0, False
    # root of each component keeps its orientation
    roots = np.full(comp.max() + 1, -1)
    roots[comp[::-1]] = np.arange(n)[::-1]
    root_label = labels[roots[comp]]
    flip = labels[n:] == root_label
    # keep the majority orientation of each component (fewest flips)
    flips_per = np.bincount(comp, weights=flip, minlength=comp.max() + 1)
    sizes = np.bincount(comp, minlength=comp.max() + 1)
    flip = np.where(flips_per[comp] > sizes[comp] / 2, ~flip, flip)
    out = faces.copy()
    out[flip] = out[flip][:, ::-1]
    return out, int(flip.sum()), True


def signed_volumes(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Signed enclosed volume of each labelled group of faces (positive = outward normals)."""
    tri = vertices[faces]
    origin = vertices.mean(axis=0)
    a, b, c = tri[:, 0] - origin, tri[:, 1] - origin, tri[:, 2] - origin
    vol = np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0
    return np.bincount(labels, weights=vol, minlength=labels.max() + 1)

"""Small geometric kernels shared by the physics modules: winding numbers, edges, orientation repair.

Everything here works on plain numpy arrays (vertices ``(V, 3)`` float64,
faces ``(F, 3)`` int) so it can be reused on any mesh without trimesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "Edges",
    "edge_pairs",
    "edges",
    "edge_stats",
    "face_components",
    "make_winding_consistent",
    "signed_volumes",
    "winding_number",
]

CHUNK = 1 << 16  # triangles per block where per-triangle work would otherwise copy a whole large mesh


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


@dataclass(frozen=True)
class Edges:
    """The edges of a triangle mesh. Half-edge ``h`` runs from ``faces[h // 3, h % 3]`` to the next corner
    of face ``h // 3``; ``h1``, ``h2`` (h1 < h2) are the two half-edges of each manifold edge (shared by
    exactly two faces), in order of the edge's vertex pair."""

    boundary: int  # edges of one face
    non_manifold: int  # edges of more than two faces
    same_direction: int  # edges traversed twice in the same direction (inconsistent winding)
    h1: np.ndarray
    h2: np.ndarray


def edges(faces: np.ndarray) -> Edges:
    """Every half-edge sorted once by (edge, direction): the counts and manifold pairs all come from it."""
    faces = np.asarray(faces)
    if not faces.size:
        nothing = np.zeros(0, dtype=np.int64)
        return Edges(0, 0, 0, nothing, nothing)
    n = int(faces.max()) + 1
    start = faces.ravel()
    end = faces[:, [1, 2, 0]].ravel()
    backwards = start > end
    key = np.minimum(start, end).astype(np.int64, copy=False)
    key *= n
    key += np.maximum(start, end, out=end)
    del end
    key <<= 1
    key |= backwards
    del backwards
    count = len(key)
    index_bits = max(count - 1, 1).bit_length()
    if (2 * n * n).bit_length() + index_bits <= 63:
        # the half-edge's index fits beside its key: one sort of plain integers, no index array
        key <<= index_bits
        key |= np.arange(count, dtype=np.int64)
        key.sort()
        order = key & ((1 << index_bits) - 1)
        key >>= index_bits
    else:
        order = np.argsort(key)
        key = key[order]
    new_directed = np.empty(count, dtype=bool)
    new_directed[0] = True
    np.not_equal(key[1:], key[:-1], out=new_directed[1:])
    key >>= 1
    new_edge = np.empty(count, dtype=bool)
    new_edge[0] = True
    np.not_equal(key[1:], key[:-1], out=new_edge[1:])
    del key
    starts = np.flatnonzero(new_edge)
    del new_edge
    counts = np.diff(np.append(starts, count))
    directed = np.diff(np.append(np.flatnonzero(new_directed), count))
    del new_directed
    pairs = starts[counts == 2]
    first, second = order[pairs], order[pairs + 1]
    return Edges(boundary=int((counts == 1).sum()), non_manifold=int((counts > 2).sum()),
                 same_direction=int((directed > 1).sum()),
                 h1=np.minimum(first, second), h2=np.maximum(first, second))


def edge_stats(faces: np.ndarray) -> tuple[int, int, int]:
    """(boundary edges, non-manifold edges, edges traversed twice in the same direction)."""
    e = edges(faces)
    return e.boundary, e.non_manifold, e.same_direction


def edge_pairs(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The half-edges (vertex pairs, three per face in order) and, for each manifold edge (shared by
    exactly two faces), the indices of its two half-edges; half-edge ``h`` belongs to face ``h // 3``."""
    half = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    e = edges(faces)
    return half, e.h1, e.h2


def _adjacency(faces: np.ndarray, found: Edges | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face pairs sharing a manifold edge and whether they traverse it the same way."""
    e = found or edges(faces)
    start = faces.ravel()
    return e.h1 // 3, e.h2 // 3, start[e.h1] == start[e.h2]


def face_components(faces: np.ndarray, found: Edges | None = None) -> np.ndarray:
    """Connected component label of each face (through shared manifold edges); ``found``: its edges, if known
    (flipping faces does not change them)."""
    f1, f2, _ = _adjacency(faces, found)
    n = len(faces)
    graph = coo_matrix((np.ones(len(f1)), (f1, f2)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def make_winding_consistent(faces: np.ndarray, found: Edges | None = None) -> tuple[np.ndarray, int, bool]:
    """Flip faces so neighbours agree on orientation. Returns (faces, flipped count, orientable).

    Uses the orientation double cover: face copies (f, kept) and (f, flipped)
    are joined according to each shared edge; a component whose two copies of
    one face meet is not orientable and is left unchanged.
    """
    n = len(faces)
    found = found or edges(faces)
    f1, f2, same = _adjacency(faces, found)
    # same direction -> one of the two must flip: (f1, 0)-(f2, 1); otherwise (f1, s)-(f2, s)
    rows = np.concatenate([f1, f1 + n])
    cols = np.concatenate([np.where(same, f2 + n, f2), np.where(same, f2, f2 + n)])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(2 * n, 2 * n))
    labels = connected_components(graph, directed=False)[1]
    comp = face_components(faces, found)
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
    origin = vertices.mean(axis=0)
    vol = np.empty(len(faces))
    for at in range(0, len(faces), CHUNK):  # a block at a time: no (F, 3, 3) copy of a large mesh
        tri = vertices[faces[at:at + CHUNK]]
        a, b, c = tri[:, 0] - origin, tri[:, 1] - origin, tri[:, 2] - origin
        vol[at:at + CHUNK] = np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0
    return np.bincount(labels, weights=vol, minlength=labels.max() + 1)

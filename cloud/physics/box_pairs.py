"""Pairs of axis-aligned boxes, one from each of two lists, that come within a distance of each other.

The boxes are binned into a uniform grid (cells about the typical box size, grown
while the boxes would cover too many cells) and only boxes sharing a cell are
compared exactly, so the work grows with the boxes and the pairs found rather than
with the product of the two lists. The contact search pairs triangles this way.
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_pairs"]


def box_pairs(la: np.ndarray, ha: np.ndarray, lb: np.ndarray, hb: np.ndarray, tol: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (ia, ib) of every box of A ((n, 3) corners ``la``, ``ha``) and box of B that come
    within ``tol`` of each other along every axis, sorted by (ia, ib), each pair once."""
    if not len(la) or not len(lb):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    grow = 2.0 * tol + 1e-12 * float(np.max(np.abs(np.concatenate([la, hb]))))  # more than tol after rounding
    ia, ib = _binned_pairs(la - grow, ha + grow, lb, hb)
    for k in range(3):  # the exact test, one axis at a time on the pairs still in
        lak, hak, lbk, hbk = (np.ascontiguousarray(x[:, k]) for x in (la, ha, lb, hb))
        ok = (lak[ia] <= hbk[ib] + tol) & (hak[ia] >= lbk[ib] - tol)
        ia, ib = ia[ok], ib[ok]
    key = np.sort(ia * len(lb) + ib)  # sorted by (ia, ib); a pair sharing several cells once
    key = key[np.concatenate([[True], key[1:] != key[:-1]])]
    return key // len(lb), key % len(lb)


def _binned_pairs(la: np.ndarray, ha: np.ndarray, lb: np.ndarray, hb: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(ia, ib) of every box of A and box of B that share a grid cell (with repeats).

    The cells start at the typical box size and grow until the boxes cover a bounded
    number of cells (a few large triangles among many small ones).
    """
    origin = np.minimum(la.min(axis=0), lb.min(axis=0))
    span = np.maximum(ha.max(axis=0), hb.max(axis=0)) - origin
    # cubes of the typical box's largest side: boxes thin along an axis (faces lying flat)
    # then sit in one cell along it instead of straddling cells as thin as they are
    typical = np.maximum(np.median(ha - la, axis=0), np.median(hb - lb, axis=0)).max()
    size = np.full(3, max(float(typical), float(span.max()) * 2.0**-20 + 1e-300))
    budget = 8 * (len(la) + len(lb)) + 4096
    while True:
        first_a, count_a = _cells(la, ha, origin, size)
        first_b, count_b = _cells(lb, hb, origin, size)
        if count_a.prod(axis=1).sum() + count_b.prod(axis=1).sum() <= budget:
            break
        size = size * 2.0
    dims = np.floor(span / size).astype(np.int64) + 1
    key_a, box_a = _cell_keys(first_a, count_a, dims)
    key_b, box_b = _cell_keys(first_b, count_b, dims)
    order = np.argsort(key_b, kind="stable")
    key_b, box_b = key_b[order], box_b[order]
    start, stop = np.searchsorted(key_b, key_a, "left"), np.searchsorted(key_b, key_a, "right")
    n = stop - start
    ia = np.repeat(box_a, n)
    at = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + np.repeat(start, n)
    return ia, box_b[at]


def _cells(lo: np.ndarray, hi: np.ndarray, origin: np.ndarray, size: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """The first cell each box covers along x, y, z, and how many."""
    first = np.floor((lo - origin) / size).astype(np.int64)
    return first, np.floor((hi - origin) / size).astype(np.int64) - first + 1


def _cell_keys(first: np.ndarray, count: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The key of every cell each box covers, and the box's index for each."""
    per = count.prod(axis=1)
    box = np.repeat(np.arange(len(first)), per)
    k = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
    nx, ny = count[box, 0], count[box, 1]
    ix = first[box, 0] + k % nx
    iy = first[box, 1] + (k // nx) % ny
    iz = first[box, 2] + k // (nx * ny)
    return (ix * dims[1] + iy) * dims[2] + iz, box

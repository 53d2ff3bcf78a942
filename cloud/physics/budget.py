"""The time and memory budget of one physics request.

A request's work runs in a worker thread, and a thread cannot be stopped from
outside, so the time budget is kept cooperatively: the request sets a
deadline (``deadline``) and the long loops (solver iterations and starts, the
conflict search, the pair loops of the interference checks) call
``check_time`` between steps. Past the deadline it raises
``TimeBudgetExceededError`` and the request is answered 422 with what was
being done.

The memory budget is checked before the structures are built: their size is
estimated from the triangle and vertex counts (``structure_bytes``). An
upload is checked before its meshes are even parsed (``check_triangles``):
each inline mesh's triangles are told from its header (binary STL, PLY, GLB:
the count the file states) or bounded by its size (ASCII STL) or counted
(an OBJ's face lines), and a closed mesh has about half as many vertices as
triangles.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from cloud.physics.errors import MemoryBudgetExceededError, Problem, TimeBudgetExceededError

__all__ = ["BYTES_PER_FACE", "BYTES_PER_VERTEX", "check_memory", "check_time", "check_triangles", "deadline",
           "start_deadline", "structure_bytes"]

# The validated mesh, the fcl BVH, the convex description and the overlap solids:
# two overlapping 327,680-triangle spheres (163,842 vertices each) checked for
# interference and clearance grew the process by about 1,000 bytes a triangle.
BYTES_PER_FACE = 800
BYTES_PER_VERTEX = 400


@dataclass(frozen=True)
class _Deadline:
    at: float
    seconds: float


_deadline: ContextVar[_Deadline | None] = ContextVar("physics_deadline", default=None)


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Work in this block (this thread or task) must finish within ``seconds``; None: no limit."""
    token = _deadline.set(None if seconds is None else _Deadline(time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


def start_deadline(seconds: float | None) -> None:
    """Work from now on in this context must finish within ``seconds``.

    For a request's own context (an API dependency): the worker thread that runs
    the route gets a copy of it, deadline included. Not reset: the context ends
    with the request.
    """
    _deadline.set(None if seconds is None else _Deadline(time.monotonic() + seconds, seconds))


def check_time(doing: str) -> None:
    """Raise TimeBudgetExceededError if the deadline of this request has passed."""
    d = _deadline.get()
    if d is not None and time.monotonic() > d.at:
        raise TimeBudgetExceededError(
            f"the request ran past its time budget of {d.seconds:g} s (physics.time_budget_s) while "
            f"{doing}, and was stopped; send a smaller assembly or fewer mates, or ask the operator "
            f"to raise the budget")


def structure_bytes(meshes: Iterable[tuple[int, int]]) -> int:
    """Estimated bytes of the structures of meshes given as (faces, vertices)."""
    return sum(BYTES_PER_FACE * f + BYTES_PER_VERTEX * v for f, v in meshes)


def check_memory(meshes: Iterable[tuple[int, int]], budget_mb: float | None, what: str) -> None:
    """Raise MemoryBudgetExceededError if the structures of ``meshes`` would exceed ``budget_mb``."""
    if budget_mb is None:
        return
    meshes = list(meshes)
    need = structure_bytes(meshes)
    if need > budget_mb * 1024 * 1024:
        faces = sum(f for f, _ in meshes)
        raise MemoryBudgetExceededError(
            f"{what} needs about {need / 1024 / 1024:,.0f} MB for its {faces:,} triangles; the memory "
            f"budget of a request is {budget_mb:g} MB (physics.memory_budget_mb): send coarser meshes "
            f"or fewer parts, or ask the operator to raise the budget")


def check_triangles(parts: Iterable[tuple[str, str, int]], budget_mb: float | None) -> None:
    """Before any mesh is parsed: raise MemoryBudgetExceededError if the structures of ``parts``, given as
    (path, part name, estimated triangles), would exceed ``budget_mb``, each part alone or all together."""
    if budget_mb is None:
        return
    parts = list(parts)
    limit = budget_mb * 1024 * 1024
    hint = ("send a coarser mesh or fewer parts, or ask the operator to raise the budget "
            "(physics.memory_budget_mb)")
    problems = []
    for path, name, faces in parts:
        need = structure_bytes([(faces, faces // 2)])
        if need > limit:
            problems.append(Problem(path, f"part {name}: about {faces:,} triangles would need about "
                                          f"{need / 1024 / 1024:,.0f} MB, over the memory budget of "
                                          f"{budget_mb:g} MB; {hint}"))
    total = sum(f for _, _, f in parts)
    need = structure_bytes([(total, total // 2)])
    if not problems and need > limit:
        problems.append(Problem("parts", f"the parts' meshes, about {total:,} triangles, would need about "
                                         f"{need / 1024 / 1024:,.0f} MB together, over the memory budget of "
                                         f"{budget_mb:g} MB; {hint}"))
    if problems:
        raise MemoryBudgetExceededError(problems)

"""The time and memory budget of one physics request.

A request's work runs in a worker thread, and a thread cannot be stopped from
outside, so the time budget is kept cooperatively: the request sets a
deadline (``deadline``) and the long loops (solver iterations and starts, the
conflict search, the pair loops of the interference checks) call
``check_time`` between steps. Past the deadline it raises
``TimeBudgetExceededError`` and the request is answered 422 with what was
being done.

The memory budget is checked before the structures are built: their size is
estimated from the triangle and vertex counts (``structure_bytes``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from cloud.physics.errors import MemoryBudgetExceededError, TimeBudgetExceededError

__all__ = ["BYTES_PER_FACE", "BYTES_PER_VERTEX", "check_memory", "check_time", "deadline",
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

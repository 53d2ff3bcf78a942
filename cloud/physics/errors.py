"""Errors the physics engine raises on purpose.

Every error carries a list of ``Problem(path, message)`` so an API client or a
CLI user sees every reason at once, e.g. ``parts[2].mesh: STL file is
truncated (expected 1,284 bytes, got 900)``. The cloud's error handler
(``cloud.errors``) decides the HTTP status by class: an unknown format 415, a
file over the limits 413, an unknown assembly 404, anything else 422.
"""

from __future__ import annotations

from shared.errors import InputError, Problem

__all__ = [
    "AssemblyError",
    "AssemblyNotFoundError",
    "BudgetExceededError",
    "MateDefinitionError",
    "MemoryBudgetExceededError",
    "MeshDataError",
    "MeshFormatError",
    "MeshTooLargeError",
    "OpenMeshError",
    "PhysicsError",
    "Problem",
    "TimeBudgetExceededError",
    "UnitMismatchError",
    "UnsupportedInputError",
]


class PhysicsError(InputError):
    """Base of every physics error. ``problems`` lists every reason."""


class MeshFormatError(PhysicsError):
    """The mesh format is unknown or not supported (give STL, OBJ, PLY, GLB/glTF or STEP)."""


class MeshDataError(PhysicsError):
    """Mesh bytes could not be parsed, or the mesh is empty, degenerate or has NaN/inf vertices."""


class MeshTooLargeError(PhysicsError):
    """A mesh file or an upload is over the configured byte or face limit."""


class OpenMeshError(PhysicsError):
    """A result needs a closed (watertight) mesh, e.g. volume, mass or an intersection volume."""


class UnsupportedInputError(PhysicsError):
    """The input is well-formed but needs an optional component that is not installed (e.g. STEP)."""


class AssemblyError(PhysicsError):
    """The assembly description is invalid: bad JSON, unknown part or material, bad pose or path."""


class UnitMismatchError(AssemblyError):
    """A part's ``unit`` contradicts the length unit its file declares (a STEP file states its own)."""


class AssemblyNotFoundError(PhysicsError):
    """No stored assembly has the given id."""


class MateDefinitionError(PhysicsError):
    """A mate references an unknown part or a feature of the wrong kind."""


class BudgetExceededError(PhysicsError):
    """A request needs more time or memory than the configured budget of one request allows.

    422, not 503: the same request does the same work and would fail again, and
    a 503 invites clients and proxies to retry it.
    """


class TimeBudgetExceededError(BudgetExceededError):
    """The request ran past ``physics.time_budget_s`` and was stopped."""


class MemoryBudgetExceededError(BudgetExceededError):
    """The structures a request needs would exceed ``physics.memory_budget_mb``."""

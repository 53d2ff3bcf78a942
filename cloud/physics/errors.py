"""Errors the physics engine raises on purpose, each with the HTTP status the API answers with.

Every error carries a list of ``Problem(path, message)`` so an API client or a
CLI user sees every reason at once, e.g. ``parts[2].mesh: STL file is
truncated (expected 1,284 bytes, got 900)``.
"""

from __future__ import annotations

from shared.errors import Problem, TwinedgeError

__all__ = [
    "AssemblyError",
    "AssemblyNotFoundError",
    "MateDefinitionError",
    "MeshDataError",
    "MeshFormatError",
    "MeshTooLargeError",
    "OpenMeshError",
    "PhysicsError",
    "Problem",
    "UnsupportedInputError",
]


class PhysicsError(TwinedgeError):
    """Base of every physics error. ``problems`` lists every reason; ``status_code`` is the HTTP answer."""

    status_code = 422

    def __init__(self, message: str | list[Problem], path: str = "") -> None:
        if isinstance(message, list):
            self.problems = message
        else:
            self.problems = [Problem(path, message)]
        super().__init__("; ".join(str(p) for p in self.problems) or type(self).__name__)


class MeshFormatError(PhysicsError):
    """The mesh format is unknown or not supported (give STL, OBJ, PLY, GLB/glTF or STEP)."""

    status_code = 415


class MeshDataError(PhysicsError):
    """Mesh bytes could not be parsed, or the mesh is empty, degenerate or has NaN/inf vertices."""


class MeshTooLargeError(PhysicsError):
    """A mesh file or an upload is over the configured byte or face limit."""

    status_code = 413


class OpenMeshError(PhysicsError):
    """A result needs a closed (watertight) mesh, e.g. volume, mass or an intersection volume."""


class UnsupportedInputError(PhysicsError):
    """The input is well-formed but needs an optional component that is not installed (e.g. STEP)."""


class AssemblyError(PhysicsError):
    """The assembly description is invalid: bad JSON, unknown part or material, bad pose or path."""


class AssemblyNotFoundError(PhysicsError):
    """No stored assembly has the given id."""

    status_code = 404


class MateDefinitionError(PhysicsError):
    """A mate references an unknown part or a feature of the wrong kind."""

"""A part's mesh for a web viewer: one compact binary answer, the same triangles the checks use.

``GET /api/v1/physics/assemblies/{id}/parts/{name}/mesh`` answers
``application/octet-stream``, little-endian, laid out so that a browser reads
it with typed arrays and no parsing:

==========  =====================  ==============================================
offset      type                   what
==========  =====================  ==============================================
0           8 ASCII bytes          ``TWMESH01``
8           uint32                 vertex count V
12          uint32                 face (triangle) count F
16          float64 × 16           the part's pose, row-major 4×4 (world from part,
                                   metres), as stored
144         float32 × 3V           vertices, part frame, metres
144 + 12V   uint32 × 3F            faces: vertex indices, counter-clockwise seen
                                   from outside
==========  =====================  ==============================================

Vertices stay in the part's own frame (small numbers, so float32 keeps their
precision wherever the part sits) and the pose comes apart, so a viewer
moves a part by changing its matrix. Face ``k`` is face ``k`` of the stored,
repaired mesh: the indices that ``picture.json`` and the collision check
answer (``faces``, ``faces_a``, ``faces_b``) point into it. A part over
``MAX_VIEW_FACES`` triangles is refused (413): the PNG picture shows it.
"""

from __future__ import annotations

import numpy as np

from cloud.physics.assembly import Part
from cloud.physics.errors import MeshTooLargeError

__all__ = ["HEADER_BYTES", "MAGIC", "MAX_VIEW_FACES", "encode_part", "etag"]

MAGIC = b"TWMESH01"
HEADER_BYTES = 144
MAX_VIEW_FACES = 1_000_000  # 12 MB of faces and at most as much again of vertices


def encode_part(part: Part) -> bytes:
    """The part's mesh and pose in the layout above."""
    faces = np.asarray(part.mesh.faces)
    if len(faces) > MAX_VIEW_FACES:
        raise MeshTooLargeError(f"part {part.name} has {len(faces):,} triangles; the viewer takes at most "
                                f"{MAX_VIEW_FACES:,} (picture.png draws it)")
    vertices = np.ascontiguousarray(part.mesh.vertices, dtype="<f4")
    counts = np.array([len(vertices), len(faces)], dtype="<u4")
    pose = np.ascontiguousarray(part.pose, dtype="<f8")
    return b"".join((MAGIC, counts.tobytes(), pose.tobytes(), vertices.tobytes(),
                     np.ascontiguousarray(faces, dtype="<u4").tobytes()))


def etag(assembly_id: str, part: Part) -> str:
    """Uploads never change, so the geometry's hash names the answer for good."""
    return f'"{assembly_id[:8]}-{part.mesh.digest.hex()}"'

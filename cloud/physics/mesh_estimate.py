"""How many triangles mesh data holds, told before it is parsed: from its header, its face lines or its size.

The memory budget of an upload is checked with these counts before any mesh
is parsed (``cloud.physics.store``). A binary STL, a PLY and a GLB state their
counts; an OBJ's face lines are counted; an ASCII STL is bounded by its size;
STEP and glTF do not tell (their meshes are checked once parsed).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ESTIMATE_HEAD_BYTES", "TriangleEstimate", "estimate_triangles", "is_text", "obj_face_lines"]

_STL_RECORD_BYTES = 50  # a binary STL triangle: normal, three corners (float32) and a 2-byte attribute
_TEXT = bytes(range(32, 127)) + b"\t\n\r\f\v"


def is_text(data: bytes) -> bool:
    """Printable ASCII only: ASCII STL. (A binary STL's header may start with 'solid' too.)"""
    return not data.translate(None, _TEXT)


# The fewest bytes a triangle takes in a text format (an upper bound on the triangles a file can hold):
# ASCII STL "facet normal 0 0 0", "outer loop", three "vertex 0 0 0", "endloop", "endfacet", one a line.
_ASCII_STL_MIN_BYTES = 86
ESTIMATE_HEAD_BYTES = 64 * 1024  # what estimate_triangles needs of the data at most (besides an OBJ's face lines)


@dataclass(frozen=True)
class TriangleEstimate:
    """How many triangles mesh data holds, told before it is parsed: from its header or its size."""

    triangles: int
    exact: bool  # the file states the count (binary STL, PLY, GLB); else an upper bound from the size


def estimate_triangles(head: bytes, size: int, fmt: str, face_lines: int | None = None) -> TriangleEstimate | None:
    """The triangles of ``size`` bytes of mesh data in ``fmt`` that begin with ``head`` (its first 64 KiB
    or more), without parsing them; ``face_lines``: an OBJ's count of lines starting with ``f``. None when
    the data does not tell (STEP, glTF, an OBJ without the count, a header that cannot be read: the
    parser then explains)."""
    fmt = {"stp": "step", "stl_ascii": "stl"}.get(fmt.lower().lstrip("."), fmt.lower().lstrip("."))
    if fmt == "stl":
        if head[:512].lstrip().lower().startswith(b"solid") and (
                b"facet" in head[:4096].lower() or is_text(head[:4096])):
            return TriangleEstimate(size // _ASCII_STL_MIN_BYTES, exact=False)
        if len(head) < 84:
            return None
        (count,) = struct.unpack("<I", head[80:84])
        # a count the size contradicts is the parser's to explain (truncated, or not binary STL)
        return TriangleEstimate(count, exact=True) if size == 84 + _STL_RECORD_BYTES * count else None
    if fmt in ("ply", "glb"):
        found = _ply_faces(head) if fmt == "ply" else _glb_triangles(head)
        # a triangle takes at least 4 bytes (PLY: a count and three 1-byte indices; GLB: three indices):
        # a header declaring more than fits is the parser's to explain
        return found if found is not None and found.triangles <= size // 3 else None
    if fmt == "obj" and face_lines is not None:
        return TriangleEstimate(face_lines, exact=False)
    return None


def obj_face_lines(chunks: Iterable[bytes]) -> int:
    """Lines starting with ``f`` (faces) in OBJ data given in pieces; one face is one or more triangles."""
    count, tail, first = 0, b"", True
    for chunk in chunks:
        if first and chunk[:2] in (b"f ", b"f\t"):
            count += 1
        first = False
        window = tail + chunk
        count += window.count(b"\nf ") + window.count(b"\nf\t")
        tail = window[-2:]
    return count


def _ply_faces(head: bytes) -> TriangleEstimate | None:
    """The face count a PLY header declares (polygons: a triangle mesh's triangles)."""
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        return None
    for line in head[:end].splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == b"element" and words[1] == b"face" and words[2].isdigit():
            return TriangleEstimate(int(words[2]), exact=True)
    return None


def _glb_triangles(head: bytes) -> TriangleEstimate | None:
    """The triangles a GLB's JSON chunk declares: per mesh primitive (triangle lists) its index count (or
    position count) / 3, once for every node that shows the mesh."""
    if len(head) < 20 or head[:4] != b"glTF" or head[16:20] != b"JSON":
        return None
    (length,) = struct.unpack("<I", head[12:16])
    if 20 + length > len(head):
        return None
    try:
        doc = json.loads(head[20:20 + length])
        accessors = doc.get("accessors", [])
        uses = [0] * len(doc.get("meshes", []))
        for node in doc.get("nodes", []):
            if isinstance(node.get("mesh"), int) and 0 <= node["mesh"] < len(uses):
                uses[node["mesh"]] += 1
        total = 0
        for m, mesh in enumerate(doc.get("meshes", [])):
            for prim in mesh.get("primitives", []):
                if prim.get("mode", 4) != 4:
                    continue
                which = prim.get("indices", prim.get("attributes", {}).get("POSITION"))
                total += int(accessors[which]["count"]) // 3 * max(uses[m], 1)
    # A malformed JSON chunk is the parser's to explain; here it only means "no estimate".
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
    return TriangleEstimate(total, exact=True)

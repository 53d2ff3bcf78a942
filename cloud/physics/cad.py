"""STEP input through the optional CAD kernel (cadquery-ocp, the ``cad`` extra).

The B-rep is tessellated with a chord tolerance given by the caller; without
the kernel installed, STEP is answered with a clear "not supported".
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from cloud.physics.errors import MeshDataError, UnsupportedInputError

__all__ = ["tessellate_shape", "tessellate_step"]


def tessellate_step(data: bytes, chord_tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (in the file's unit) and triangles of every solid in a STEP file."""
    try:
        from OCP.IFSelect import IFSelect_RetDone
        from OCP.STEPControl import STEPControl_Reader
    except ImportError:
        raise UnsupportedInputError(
            "STEP input needs the CAD kernel: install twinedge[cad] (cadquery-ocp), "
            "or export the part as STL, OBJ, PLY or GLB") from None
    fd, path = tempfile.mkstemp(suffix=".step")  # the OCCT reader wants a file name
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        reader = STEPControl_Reader()
        if reader.ReadFile(path) != IFSelect_RetDone:
            raise MeshDataError("could not read the STEP data")
        reader.TransferRoots()
        shape = reader.OneShape()
    finally:
        os.unlink(path)
    verts, faces = tessellate_shape(shape, chord_tolerance)
    if not len(faces):
        raise MeshDataError("the STEP data holds no solid faces")
    return verts, faces


def tessellate_shape(shape: Any, chord_tolerance: float, angle: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and outward-wound triangles of an OCCT shape, meshed with the given chord tolerance."""
    from OCP.BRep import BRep_Tool
    from OCP.BRepMesh import BRepMesh_IncrementalMesh
    from OCP.TopAbs import TopAbs_FACE, TopAbs_REVERSED
    from OCP.TopExp import TopExp_Explorer
    from OCP.TopLoc import TopLoc_Location
    from OCP.TopoDS import TopoDS

    BRepMesh_IncrementalMesh(shape, chord_tolerance, False, angle, True)
    verts: list[tuple[float, float, float]] = []
    faces: list[tuple[int, int, int]] = []
    exp = TopExp_Explorer(shape, TopAbs_FACE)
    while exp.More():
        face = TopoDS.Face(exp.Current())
        loc = TopLoc_Location()
        tri = BRep_Tool.Triangulation_s(face, loc)
        if tri is not None:
            base, trsf = len(verts), loc.Transformation()
            for i in range(1, tri.NbNodes() + 1):
                p = tri.Node(i).Transformed(trsf)
                verts.append((p.X(), p.Y(), p.Z()))
            flip = face.Orientation() == TopAbs_REVERSED
            for i in range(1, tri.NbTriangles() + 1):
                a, b, c = tri.Triangle(i).Get()
                faces.append((base + a - 1, base + c - 1, base + b - 1) if flip
                             else (base + a - 1, base + b - 1, base + c - 1))
        exp.Next()
    return np.array(verts, dtype=float).reshape(-1, 3), np.array(faces, dtype=np.int64).reshape(-1, 3)

"""STEP input through the optional CAD kernel (cadquery-ocp, the ``cad`` extra).

A STEP file states its own length unit. The kernel converts the geometry to
millimetres on reading (its working unit, set on every reader so a global
setting cannot change it), and ``read_step`` reports the unit names the file
declares, so the caller can check them against the unit a part claims. The
B-rep is tessellated with a chord tolerance given by the caller; without the
kernel installed, STEP is answered with a clear "not supported".
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from cloud.physics.errors import MeshDataError, UnsupportedInputError

__all__ = ["StepMesh", "read_step", "tessellate_shape"]


@dataclass(frozen=True)
class StepMesh:
    """A tessellated STEP file: vertices in millimetres, triangles, and the length units the file declares."""

    vertices_mm: np.ndarray
    faces: np.ndarray
    length_units: tuple[str, ...]


def read_step(data: bytes, chord_tolerance_mm: float) -> StepMesh:
    """Every solid of a STEP file, tessellated, in millimetres whatever the file's unit."""
    try:
        from OCP.IFSelect import IFSelect_RetDone
        from OCP.OCP.collections import Sequence_TCollection_AsciiString
        from OCP.STEPControl import STEPControl_Reader
    except ImportError:
        raise UnsupportedInputError(
            "STEP input needs the CAD kernel: install twinedge[cad] (cadquery-ocp), "
            "or export the part as STL, OBJ, PLY or GLB") from None
    reader = STEPControl_Reader()
    if reader.ReadStream("part.step", io.BytesIO(data)) != IFSelect_RetDone:
        raise MeshDataError("could not read the STEP data")
    reader.SetSystemLengthUnit(1.0)  # convert to millimetres, whatever xstep.cascade.unit says
    lengths, angles, solid_angles = (Sequence_TCollection_AsciiString() for _ in range(3))
    reader.FileUnits(lengths, angles, solid_angles)
    units = tuple(dict.fromkeys(lengths.Value(i).ToCString().strip().lower()
                                for i in range(1, lengths.Length() + 1)))
    reader.TransferRoots()
    shape = reader.OneShape()
    verts, faces = tessellate_shape(shape, chord_tolerance_mm)
    if not len(faces):
        raise MeshDataError("the STEP data holds no solid faces")
    return StepMesh(verts, faces, units)


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

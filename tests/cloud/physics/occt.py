"""Reference solids from the OCCT CAD kernel (cadquery-ocp): exact mass properties and tessellation."""

from __future__ import annotations

import math

import numpy as np
from OCP.BRepAlgoAPI import BRepAlgoAPI_Cut
from OCP.BRepBuilderAPI import BRepBuilderAPI_MakeFace, BRepBuilderAPI_MakePolygon
from OCP.BRepFilletAPI import BRepFilletAPI_MakeFillet
from OCP.BRepGProp import BRepGProp
from OCP.BRepPrimAPI import BRepPrimAPI_MakeBox, BRepPrimAPI_MakeCylinder, BRepPrimAPI_MakeRevol
from OCP.gp import gp_Ax1, gp_Ax2, gp_Dir, gp_Pnt
from OCP.GProp import GProp_GProps
from OCP.TopAbs import TopAbs_EDGE
from OCP.TopExp import TopExp_Explorer
from OCP.TopoDS import TopoDS

from cloud.physics.cad import tessellate_shape


def plate_with_holes():
    shape = BRepPrimAPI_MakeBox(120.0, 80.0, 15.0).Shape()
    for x, y, r in ((30, 20, 6), (90, 20, 6), (60, 55, 12.5)):
        hole = BRepPrimAPI_MakeCylinder(gp_Ax2(gp_Pnt(x, y, -1), gp_Dir(0, 0, 1)), r, 20).Shape()
        shape = BRepAlgoAPI_Cut(shape, hole).Shape()
    return shape


def filleted_block():
    shape = BRepPrimAPI_MakeBox(60.0, 40.0, 30.0).Shape()
    fillet = BRepFilletAPI_MakeFillet(shape)
    exp = TopExp_Explorer(shape, TopAbs_EDGE)
    while exp.More():
        fillet.Add(5.0, TopoDS.Edge(exp.Current()))
        exp.Next()
    return fillet.Shape()


def threaded_rod(pitch: float = 2.0, turns: int = 12, r_minor: float = 8.0, depth: float = 1.2):
    """A rod with a 60° V-profile (grooves revolved about the axis; not a helix)."""
    pts = [gp_Pnt(0, 0, 0), gp_Pnt(r_minor + depth, 0, 0)]
    for k in range(turns):
        z = k * pitch
        pts += [gp_Pnt(r_minor, 0, z + pitch / 2), gp_Pnt(r_minor + depth, 0, z + pitch)]
    pts.append(gp_Pnt(0, 0, turns * pitch))
    poly = BRepBuilderAPI_MakePolygon()
    for p in pts:
        poly.Add(p)
    poly.Close()
    face = BRepBuilderAPI_MakeFace(poly.Wire()).Face()
    return BRepPrimAPI_MakeRevol(face, gp_Ax1(gp_Pnt(0, 0, 0), gp_Dir(0, 0, 1)), 2 * math.pi).Shape()


def exact_properties(shape) -> tuple[float, np.ndarray, np.ndarray]:
    """(volume, centre of mass, inertia about the CoM per unit density), in the shape's unit."""
    props = GProp_GProps()
    BRepGProp.VolumeProperties_s(shape, props)
    c = props.CentreOfMass()
    m = props.MatrixOfInertia()
    inertia = np.array([[m.Value(i, j) for j in (1, 2, 3)] for i in (1, 2, 3)])
    return props.Mass(), np.array([c.X(), c.Y(), c.Z()]), inertia


def tessellate(shape, deflection: float, angle: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    return tessellate_shape(shape, deflection, angle)

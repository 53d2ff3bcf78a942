"""Regenerate the example meshes (binary STL, millimetres): `python make_meshes.py`."""

from pathlib import Path

import trimesh

HERE = Path(__file__).parent


def main() -> None:
    meshes = {
        "base.stl": trimesh.creation.box((200.0, 200.0, 20.0)),
        "column.stl": trimesh.creation.cylinder(radius=20.0, height=150.0, sections=48),
        "arm.stl": trimesh.creation.box((150.0, 30.0, 20.0)),
        "bracket.stl": trimesh.creation.box((40.0, 40.0, 40.0)),
    }
    for name, mesh in meshes.items():
        (HERE / "meshes").mkdir(exist_ok=True)
        mesh.export(HERE / "meshes" / name, file_type="stl")


if __name__ == "__main__":
    main()

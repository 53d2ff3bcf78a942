"""What is wrong with mesh bytes a parser refused, in plain words: the format, where, and what was expected.

The third-party readers fail on malformed files with their own exceptions (``KeyError: 'y'``,
"not enough values to unpack", "cannot reshape array ..."), which tell an engineer nothing about
the file. ``explain`` looks at the bytes again with the format's rules and names the first thing that
breaks them (a line, a header entry, a chunk); what it cannot place is described by what the format
needs, never by the reader's own text.
"""

from __future__ import annotations

import json
import re
import struct

__all__ = ["explain"]

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _quoted(raw: bytes | str, limit: int = 50) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.strip()
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _numbers(words: list[str]) -> bool:
    return all(_NUMBER.match(w) for w in words)


def explain(data: bytes, fmt: str) -> str:
    """A sentence saying what in ``data`` (in ``fmt``) does not follow the format."""
    text_of = {"stl": _ascii_stl, "obj": _obj, "ply": _ply, "glb": _glb, "gltf": _gltf}
    reason = text_of[fmt](data) if fmt in text_of else None
    return reason or _GENERIC.get(fmt, f"the {fmt.upper()} data could not be read as a triangle mesh")


_GENERIC = {
    "stl": ("the STL data is neither binary STL (an 80-byte header, a triangle count and 50 bytes a "
            "triangle) nor ASCII STL ('solid', then 'facet normal' blocks of three 'vertex x y z' lines)"),
    "obj": "the OBJ data holds no readable triangles ('v x y z' vertex lines and 'f i j k' face lines)",
    "ply": ("the PLY data does not match its header (the 'element vertex' and 'element face' counts "
            "and properties must describe the data that follows 'end_header')"),
    "glb": ("the GLB's JSON chunk does not describe a readable triangle mesh (each mesh primitive needs a "
            "POSITION accessor into the binary chunk)"),
    "gltf": ("the glTF does not describe a readable triangle mesh (each mesh primitive needs a POSITION "
             "accessor into a buffer embedded as a data: URI)"),
}


def _ascii_stl(data: bytes) -> str | None:
    """The first line of an ASCII STL that breaks 'facet normal / outer loop / 3 × vertex / endloop / endfacet'."""
    head = data[:512].lstrip().lower()
    if not head.startswith(b"solid"):
        return None
    corners = 0
    for number, raw in enumerate(data.splitlines(), start=1):
        words = raw.decode("ascii", "replace").split()
        if not words:
            continue
        key = words[0].lower()
        if key == "vertex":
            if len(words) != 4 or not _numbers(words[1:]):
                return (f"ASCII STL line {number}: {_quoted(raw)} must be 'vertex x y z' with three numbers")
            corners += 1
        elif key == "facet":
            if len(words) != 5 or words[1].lower() != "normal" or not _numbers(words[2:]):
                return (f"ASCII STL line {number}: {_quoted(raw)} must be 'facet normal nx ny nz' "
                        "with three numbers")
            corners = 0
        elif key == "endloop" and corners != 3:
            return (f"ASCII STL line {number}: the loop ending here has {corners} 'vertex' lines; "
                    "each facet's loop has exactly three")
        elif key not in ("solid", "endsolid", "outer", "endfacet", "endloop"):
            return f"ASCII STL line {number}: {_quoted(raw)} is not an STL keyword line"
    return None


def _obj(data: bytes) -> str | None:
    """The first 'v' or 'f' line of an OBJ that is malformed or names a vertex the file does not have."""
    vertices = 0
    for number, raw in enumerate(data.splitlines(), start=1):
        words = raw.decode("utf-8", "replace").split()
        if not words:
            continue
        if words[0] == "v":
            if len(words) < 4 or not _numbers(words[1:4]):
                return f"OBJ line {number}: {_quoted(raw)} must be 'v x y z' with three numbers"
            vertices += 1
        elif words[0] == "f":
            if len(words) < 4:
                return f"OBJ line {number}: {_quoted(raw)} must name at least three vertices"
            for word in words[1:]:
                index = word.split("/", 1)[0]
                if not re.fullmatch(r"-?\d+", index):
                    return f"OBJ line {number}: {_quoted(raw)}: {_quoted(word)} is not a vertex number"
                at = int(index)
                if at == 0 or at > vertices or -at > vertices:
                    return (f"OBJ line {number}: {_quoted(raw)} names vertex {at}, but the file has "
                            f"{vertices} vertices before it (numbered from 1)")
    return None


_PLY_FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")


def _ply(data: bytes) -> str | None:
    """What the PLY header lacks or gets wrong, or how the data after it falls short of what it declares."""
    if not data.startswith(b"ply"):
        return "PLY data must start with the line 'ply'"
    end = data.find(b"end_header")
    if end < 0:
        return "the PLY header has no 'end_header' line"
    lines = [ln.split() for ln in data[:end].decode("ascii", "replace").splitlines()[1:]]
    form = next((ln for ln in lines if ln and ln[0] == "format"), None)
    if form is None or len(form) < 2 or form[1] not in _PLY_FORMATS:
        return "the PLY header needs a line 'format ascii 1.0' (or binary_little_endian / binary_big_endian)"
    elements: dict[str, tuple[int, list[str]]] = {}
    current = None
    for ln in lines:
        if ln and ln[0] == "element" and len(ln) == 3 and ln[2].isdigit():
            current = ln[1]
            elements[current] = (int(ln[2]), [])
        elif ln and ln[0] == "element":
            return f"the PLY header line {_quoted(' '.join(ln))} must be 'element NAME COUNT'"
        elif ln and ln[0] == "property" and current is not None:
            elements[current][1].append(ln[-1])
    if "vertex" not in elements:
        return "the PLY header declares no 'element vertex N'"
    missing = [axis for axis in "xyz" if axis not in elements["vertex"][1]]
    if missing:
        return ("the PLY header's vertex element has no " + ", ".join(f"'property float {a}'" for a in missing)
                + " (each vertex needs x, y and z)")
    if "face" not in elements:
        return "the PLY header declares no 'element face N' (a list property of vertex indices)"
    if not {"vertex_indices", "vertex_index"} & set(elements["face"][1]):
        return "the PLY header's face element has no 'property list uchar int vertex_indices'"
    if form[1] == "ascii":
        body = data[end:].split(b"\n", 1)[1] if b"\n" in data[end:] else b""
        rows = [ln for ln in body.splitlines() if ln.strip()]
        declared = elements["vertex"][0] + elements["face"][0]
        if len(rows) < declared:
            return (f"the PLY header declares {elements['vertex'][0]:,} vertices and {elements['face'][0]:,} "
                    f"faces ({declared:,} data lines) but {len(rows):,} lines follow 'end_header'")
    return None


def _glb(data: bytes) -> str | None:
    """What is wrong with a GLB's 12-byte header or its first (JSON) chunk."""
    if len(data) < 12:
        return f"GLB data is {len(data)} bytes, shorter than its 12-byte header"
    magic, version, length = struct.unpack("<4sII", data[:12])
    if magic != b"glTF":
        return f"GLB data must start with the bytes 'glTF' (it starts with {_quoted(magic)})"
    if version != 2:
        return f"GLB version {version} is not supported; give glTF 2.0 (version 2)"
    if length != len(data):
        return f"the GLB header declares {length:,} bytes but the data has {len(data):,}"
    if len(data) < 20:
        return "the GLB holds no chunk after its header; the first chunk must be JSON"
    size, kind = struct.unpack("<I4s", data[12:20])
    if kind != b"JSON":
        return f"the GLB's first chunk is {_quoted(kind)}, not 'JSON'"
    if 20 + size > len(data):
        return f"the GLB's JSON chunk declares {size:,} bytes but only {len(data) - 20:,} follow"
    return _gltf_document(data[20:20 + size], "GLB's JSON chunk")


def _gltf(data: bytes) -> str | None:
    return _gltf_document(data, "glTF")


def _gltf_document(raw: bytes, where: str) -> str | None:
    """The first thing in a glTF JSON document that keeps its meshes from being read."""
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        at = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        return f"the {where} is not valid JSON{at}"
    if not isinstance(doc, dict):
        return f"the {where} must be a JSON object with 'asset', 'meshes', 'accessors' and 'buffers'"
    accessors = doc.get("accessors")
    for m, mesh in enumerate(doc.get("meshes") or []):
        prims = mesh.get("primitives") if isinstance(mesh, dict) else None
        if not isinstance(prims, list) or not prims:
            return f"the {where}'s meshes[{m}] has no 'primitives' list"
        for p, prim in enumerate(prims):
            attrs = prim.get("attributes") if isinstance(prim, dict) else None
            position = attrs.get("POSITION") if isinstance(attrs, dict) else None
            if not isinstance(position, int):
                return f"the {where}'s meshes[{m}].primitives[{p}] has no 'attributes.POSITION' accessor"
            if not isinstance(accessors, list) or not 0 <= position < len(accessors):
                return (f"the {where}'s meshes[{m}].primitives[{p}] names accessor {position}, which "
                        "'accessors' does not have")
    return None

#!/usr/bin/env python3
"""Reference path lengths from LinuxCNC's standalone G-code interpreter ``rs274`` (Debian package
``linuxcnc-uspace``), for the harvester's tests: ``tests/data/rs274/reference.json``.

Runs ``rs274 -g`` on the plain example programs of the package (``/usr/share/linuxcnc/ncfiles``) and on our own
programs with canned cycles and cutter compensation (``tests/data/rs274/*.ngc``), all with the tool table
``tools.tbl`` beside them (diameters, and tool lengths of zero so that G43 moves nothing), reads its
canonical output (STRAIGHT_TRAVERSE, STRAIGHT_FEED, ARC_FEED) and adds up the rapid and
feed path lengths in mm (XYZ only). The example programs themselves are not copied (they are LinuxCNC's): the
JSON records their SHA-256, and the test reads them from the package where it is installed.

    python deploy/scripts/rs274_reference.py            # rewrite tests/data/rs274/reference.json
    python deploy/scripts/rs274_reference.py --print    # only print the figures
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "rs274"
NCFILES = Path("/usr/share/linuxcnc/ncfiles")
# the package's examples with plain G-code: no o-word subroutines or loops, no G10/G92 offsets, no probing
# (hole-circle.ngc and polar.ngc use LinuxCNC's polar coordinates, which the harvester does not read)
EXAMPLES = ("3dtest.ngc", "arcspiral.ngc", "b-index.ngc", "cds.ngc", "tort.ngc", "3D_Chips.ngc", "skeleton.ngc")
# the package's cutter-compensation examples (compared within 1 %)
COMP_EXAMPLES = ("comp.ngc", "comp-g1.ngc", "comp311.ngc", "comp311_2.ngc",
                 "gmoccapy_2_tools_with_cutter_radius_compensation.ngc")
_CALL = re.compile(r"^\s*\d+\s+N\S*\s+([A-Z_]+)\((.*)\)\s*$")
_PLANES = {"CANON_PLANE_XY": (0, 1, 2), "CANON_PLANE_XZ": (2, 0, 1), "CANON_PLANE_YZ": (1, 2, 0)}


def rs274_version() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "linuxcnc-uspace"], capture_output=True,
                         text=True, check=False)
    return out.stdout.strip() or "unknown"


def canon(path: Path, tool_table: Path | None) -> str:
    args = ["rs274", "-g"]
    if tool_table is not None:
        args += ["-t", str(tool_table)]
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([*args, str(path)], capture_output=True, text=True, timeout=120, check=False,
                             cwd=tmp, input="")
    return out.stdout


def lengths(text: str) -> dict[str, float]:
    """Rapid and feed path lengths (mm) of rs274's canonical output."""
    pos = [0.0, 0.0, 0.0]
    plane = _PLANES["CANON_PLANE_XY"]
    scale = 1.0
    rapid = feed = 0.0
    for line in text.splitlines():
        match = _CALL.match(line)
        if match is None:
            continue
        name, args = match.group(1), match.group(2)
        if name == "USE_LENGTH_UNITS":
            scale = 25.4 if "INCHES" in args else 10.0 if "CM" in args else 1.0
        elif name == "SELECT_PLANE":
            plane = _PLANES.get(args.strip(), plane)
        elif name in ("STRAIGHT_TRAVERSE", "STRAIGHT_FEED"):
            values = [float(v) * scale for v in args.split(",")[:3]]
            step = math.dist(pos, values)
            if name == "STRAIGHT_TRAVERSE":
                rapid += step
            else:
                feed += step
            pos = values
        elif name == "ARC_FEED":
            parts = args.split(",")
            e1, e2, c1, c2 = (float(v) * scale for v in parts[:4])
            rotation = int(parts[4])
            en = float(parts[5]) * scale
            a, b, n = plane
            s1, s2 = pos[a], pos[b]
            sa, ea = math.atan2(s2 - c2, s1 - c1), math.atan2(e2 - c2, e1 - c1)
            sweep = ((ea - sa) if rotation > 0 else (sa - ea)) % (2 * math.pi)
            if sweep < 1e-9:
                sweep = 2 * math.pi
            sweep += 2 * math.pi * (abs(rotation) - 1)
            radius = (math.hypot(s1 - c1, s2 - c2) + math.hypot(e1 - c1, e2 - c2)) / 2
            feed += math.hypot(sweep * radius, en - pos[n])
            end = list(pos)
            end[a], end[b], end[n] = e1, e2, en
            pos = end
    return {"rapid_mm": round(rapid, 6), "feed_mm": round(feed, 6)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--print", action="store_true", help="print the figures, write nothing")
    args = parser.parse_args()
    programs: dict[str, dict[str, object]] = {}
    for name in (*EXAMPLES, *COMP_EXAMPLES):
        path = NCFILES / name
        if not path.exists():
            print(f"{path}: not installed", file=sys.stderr)
            continue
        programs[name] = {"origin": "linuxcnc example", "kind": "plain" if name in EXAMPLES else "compensation",
                          "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                          **lengths(canon(path, DATA / "tools.tbl"))}
    for path in sorted(DATA.glob("*.ngc")):
        kind = "compensation" if "comp" in path.name else "cycles"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        programs[path.name] = {"origin": "ours", "kind": kind, "sha256": digest,
                               **lengths(canon(path, DATA / "tools.tbl"))}
    result = {"rs274": rs274_version(), "programs": programs}
    text = json.dumps(result, indent=1, sort_keys=True) + "\n"
    if args.print:
        print(text)
    else:
        (DATA / "reference.json").write_text(text)
        print(f"wrote {DATA / 'reference.json'}: {len(programs)} programs, rs274 {result['rs274']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

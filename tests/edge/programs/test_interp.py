"""The G-code interpreter on hand-written programs: Fanuc/Haas forms, subprograms, bounds and hostile input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.programs import Limits, MachineProfile, analyse
from shared.cnc import ProgramRecord

PROFILE = MachineProfile()


def run(text: str, name: str = "p.nc", **kw: object) -> ProgramRecord:
    return analyse(text.encode(), path=name, folder="f", mtime=0.0, profile=PROFILE, **kw)  # type: ignore[arg-type]


def errors(record: ProgramRecord) -> list[str]:
    return [f"{d.line}: {d.message}" for d in record.diagnostics if d.level == "error"]


def test_fanuc_forms_trailing_decimals_g28_and_header() -> None:
    rec = run("%\nO0012 (BRACKET)\n(MATERIAL 6061)\nG21 G90\nT3 M6 (T3 D=6. DRILL)\nG0 X10. Y.5\nG1 Z-1. F100.\n"
              "G28 G91 Z0.\nG90\nM30\n%\n")
    assert rec.number == "O0012"
    assert rec.header == ["BRACKET", "MATERIAL 6061", "T3 D=6. DRILL"]
    assert rec.tools[0].tool == 3 and rec.tools[0].diameter_mm == 6.0 and rec.tools[0].type == "drill"
    # rapid to (10, .5, 0), feed down 1, G28 G91 Z0: intermediate point is where it is, then Z home (0): 1 mm
    assert rec.rapid_mm == pytest.approx(math.hypot(10, 0.5) + 1.0)
    assert rec.feed_mm == pytest.approx(1.0)
    assert errors(rec) == []


def test_inch_program_is_reported_in_mm() -> None:
    rec = run("G20 G90\nT1 M6\nG1 X1. F10.\nM30\n")
    assert rec.units == "inch"
    assert rec.feed_mm == pytest.approx(25.4)
    assert rec.tools[0].feeds_mm_min == [pytest.approx(254.0)]


def test_arcs_full_circle_helix_and_radius_forms() -> None:
    rec = run("G90 G17\nG0 X10 Y0\nG3 X10 Y0 I-10 J0\nG2 X-10 Y0 R10\nG3 X10 Y0 I10 J0 Z-5\nM30\n")
    full, half = 2 * math.pi * 10, math.pi * 10
    assert rec.feed_mm == pytest.approx(full + half + math.hypot(half, 5))


def test_arc_that_cannot_be_drawn_is_a_line_numbered_error() -> None:
    rec = run("G0 X0 Y0\nG2 X50 Y0 R10\nM30\n")
    assert any(e.startswith("2: ") and "too small" in e for e in errors(rec))


def test_canned_cycle_holes_with_repeats_in_g91_and_offsets() -> None:
    rec = run("G90 G54\nT1 M6\nG0 Z10\nG99 G81 X0 Y0 Z-5 R1 F100\nG91 X10 L4\nG90 G80\nG55\nG54.1 P3\nM30\n")
    assert rec.holes == 5
    assert rec.offsets == ["G54", "G55", "G54.1 P3"]
    assert rec.feed_mm == pytest.approx(5 * 6)


def test_peck_drilling_counts_peck_rapids() -> None:
    rec = run("G90\nG0 Z10\nG98 G83 X0 Y0 Z-10 R0 Q4 F100\nG80\nM30\n")
    # pecks to -4 and -8, each followed by a rapid back to R and down to 0.254 above; then the final feed to -10
    assert rec.feed_mm == pytest.approx(4 + (4 + 0.254) + (2 + 0.254))
    assert rec.holes == 1


def test_subprogram_with_repeats_and_haas_tool_change_form() -> None:
    rec = run("O1\nT2 M06 (1/2 END MILL)\nS3000 M3\nG0 X0 Y0\nM98 P2000 L3\nM30\nO2000\nG91 G1 X10. F200.\nG90\nM99\n")
    assert rec.feed_mm == pytest.approx(30.0)
    assert rec.subprograms == ["O2000"]
    assert rec.tools[0].diameter_mm == pytest.approx(12.7)
    assert rec.tools[0].spindle_rpm == [3000.0]


def test_fanuc_t_before_m6_and_comment_on_the_line_before() -> None:
    rec = run("(T5 D=10. FLAT END MILL)\nT5\nM6\nG0 X1\nT7\nM6\nG0 X2\nM30\n")
    assert [t.tool for t in rec.tools] == [5, 7]
    assert rec.tools[0].comment == "T5 D=10. FLAT END MILL" and rec.tools[0].type == "end mill"
    assert rec.estimate is not None and rec.estimate.tool_changes == 2


@pytest.mark.parametrize("program", [
    "O1\nM98 P1\nM30\n",  # calls itself
    "O1\nM98 P2\nM30\nO2\nM98 P3\nM99\nO3\nM98 P2\nM99\n",  # two call each other
    "O1\nM98 P2 L99999999\nM30\nO2\nG1 X1\nG1 X0\nM99\n",  # repeated a hundred million times
    "O1\nG1 X1 F10\nM99\n",  # M99 in a main program: the program's end
])
def test_loops_and_recursion_end_with_a_diagnostic(program: str) -> None:
    rec = run(program, limits=Limits(max_blocks=20_000))
    assert rec.lines == len(program.splitlines())
    if "L99999999" in program:
        assert any("executed blocks" in e for e in errors(rec))
        assert rec.estimate is None
    elif "M98" in program:
        assert any("levels deep" in e for e in errors(rec))


def test_variables_and_expressions_where_constant() -> None:
    rec = run("#100=10.\n#101=[#100*2+1]\nG1 X#101 Y[#100/2] F100\nG1 X#999\nM30\n")
    assert rec.feed_mm == pytest.approx(math.hypot(21, 5))
    assert any("#999" in e or "vacant" in e for e in errors(rec))


def test_siemens_subset() -> None:
    rec = run("%_N_PLATE_MPF\n; plate with four holes\nT=\"DRILL_8\" ; 8MM DRILL\nM6\nG0 X0 Y0 Z50\n"
              "MCALL CYCLE81(50, 0, 2, -10)\nG0 X10 Y10\nX20\nX30\nMCALL\nG0 X0 Y0\nM30\n", name="plate.mpf")
    assert rec.dialect == "siemens" and rec.number == "PLATE"
    assert rec.holes == 3
    assert rec.tools[0].comment == "DRILL_8"
    assert rec.feed_mm == pytest.approx(3 * 12)


def test_okuma_subset() -> None:
    rec = run("O1000\nG15 H1\nT1 M6\nCALL OSUB Q2\nM02\nOSUB\nG91 G1 X5 F100\nG90\nRTS\n", name="part.min")
    assert rec.dialect == "okuma"
    assert rec.offsets == ["G15 H1"]
    assert rec.feed_mm == pytest.approx(10.0)


def test_malformed_lines_are_diagnosed_and_the_rest_is_read() -> None:
    rec = run("G1 X1 F100\nG1 X$$2\nG1 X3\nG2 X1 Y1\nM30\n")
    assert rec.feed_mm > 0
    lines = {d.line for d in rec.diagnostics}
    assert 2 in lines and 4 in lines


words = st.sampled_from(["G0", "G1", "G2", "G3", "G28", "G91", "G90", "G81", "G83", "G98", "G99", "G80", "G41",
                         "G40", "G43", "G20", "G4", "M98", "M99", "M30", "M6", "L", "P", "Q", "R", "X", "Y", "Z",
                         "I", "J", "K", "F", "S", "T", "H", "D", "O", "N", "#1=", "#", "[", "]", "(", ")", "%", ";",
                         "/", "1", "-2.", ".5", "0", "99999999", "1e400", "\n", " ", "CALL", "RTS", "MCALL",
                         "CYCLE81(", ",", "T=\"", "G54.1", "P1", "G15 H", "X#1", "SIN[", "**"])


@settings(max_examples=300, deadline=None)
@given(st.lists(words, max_size=80), st.sampled_from(["p.nc", "p.mpf", "p.min", "p.ngc"]))
def test_token_soup_never_raises_and_terminates(tokens: list[str], name: str) -> None:
    rec = run("".join(tokens), name, limits=Limits(max_blocks=5_000))
    assert rec.sha256 and len(rec.diagnostics) <= 200


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data: bytes) -> None:
    rec = analyse(data, path="x.nc", folder="f", mtime=0.0, profile=PROFILE, limits=Limits(max_blocks=5_000))
    assert rec.size == len(data)


@pytest.mark.parametrize(("line", "dialect_name", "seconds"), [
    ("G4 P500 (PAUSE)", "p.nc", 0.5),  # Fanuc: P in milliseconds
    ("G04 P1.5", "p.nc", 1.5),  # with a decimal point: seconds (Haas)
    ("G4 X2.", "p.nc", 2.0),  # X: seconds
    ("G4 P2", "p.ngc", 2.0),  # LinuxCNC: P in seconds
])
def test_dwell_units(line: str, dialect_name: str, seconds: float) -> None:
    rec = run(f"G0 X1\n{line}\nM30\n", dialect_name)
    assert rec.estimate is not None and rec.estimate.dwell_s == pytest.approx(seconds)


def test_feed_per_revolution_is_reported_per_minute() -> None:
    rec = run("T1 M6\nS2000 M3\nG95 G1 X10. F0.1\nM30\n")
    assert rec.tools[0].feeds_mm_min == [pytest.approx(200.0)]
    assert rec.estimate is not None and rec.estimate.feed_s > 10 / 200 * 60


def test_estimate_grows_with_acceleration_and_tool_changes() -> None:
    text = "T1 M6\nG0 X100 Y100 Z10\nG1 X0 Y0 F6000\nT2 M6\nG0 X50\nM30\n"
    slow = analyse(text.encode(), path="p.nc", folder="f", mtime=0.0,
                   profile=MachineProfile(accel_x=200, accel_y=200, accel_z=200, tool_change=10))
    fast = run(text)
    assert slow.estimate is not None and fast.estimate is not None
    assert slow.estimate.rapid_s > fast.estimate.rapid_s and slow.estimate.feed_s > fast.estimate.feed_s
    assert slow.estimate.tool_change_s == 20 and fast.estimate.tool_changes == 2
    # at least length / speed: the trapezoid never beats the programmed feed
    assert fast.estimate.feed_s > math.hypot(100, 100) / 100


def test_macro_call_is_warned_once() -> None:
    rec = run("G65 P9000 A1\nG65 P9000 A2\nM30\n")
    assert [d.message for d in rec.diagnostics if "G65" in d.message] == [
        "G65 macro calls are not followed: their moves are not counted"]


def test_hostile_lines_and_expressions_are_bounded() -> None:
    rec = run("G1 X1 F100\nX[" + "A" * 100_000 + "\n#1=" + "[" * 200 + "1" + "]" * 200 + "\nG1 X#1\nM30\n")
    messages = [d.message for d in rec.diagnostics]
    assert any("100,002 characters" in m for m in messages)
    assert any("nested" in m or "longer than" in m for m in messages)
    assert rec.feed_mm == pytest.approx(1.0)


def test_haas_local_subprogram_by_n_label() -> None:
    rec = run("O2 (HAAS)\nG0 X0 Y0\nM97 P100 L2\nM30\nN100 G91 G1 X5. F100.\nG90\nM99\n")
    assert rec.dialect == "haas"
    assert rec.feed_mm == pytest.approx(10.0)
    assert rec.subprograms == ["N100"]


FUSION = """%
O01001 (BRACKET OP1)
(T1 D=12. CR=0. - ZMIN=-5. - FLAT END MILL)
(T2 D=6.8 CR=0. TAPER=118DEG - ZMIN=-20. - DRILL)
(T3 1/2 DRILL)
(T12 10MM ENDMILL)
N10 G90 G94 G17
N20 G28 G91 Z0.
N25 G90
(2D CONTOUR1)
N30 T1 M6
N35 S8000 M3
N45 G0 X-10. Y-10.
(DRILL1)
N125 T2 M6
N140 G0 X10. Y10.
N190 T3 M6
N195 G0 X0 Y0
N200 T12 M6
N205 G0 X5 Y0
M30
%
"""

MASTERCAM = """%
O0100(BLOCK)
(MCX FILE - BLOCK.MCX)
(T1 | 1/2 FLAT ENDMILL | H1 | D1 | WEAR COMP | TOOL DIA. - .5)
(T12 | 1/4 DRILL | H12)
(T3 | 3/8 TAP | H3 | TOOL DIA. - .375)
G20
G0 G17 G40 G49 G80 G90
T1 M6
G0 G90 G54 X0. Y0. S5000 M3
T12 M6
G0 X1.
T3 M6
G0 X0.
M30
%
"""


def test_tools_take_their_comment_from_the_header_tool_list() -> None:
    # CAM posts list every tool in the header and put the operation's name before each tool change
    rec = run(FUSION)
    assert [(t.tool, t.diameter_mm, t.type) for t in rec.tools] == [
        (1, 12.0, "end mill"), (2, 6.8, "drill"), (3, pytest.approx(12.7), "drill"), (12, 10.0, "end mill")]
    assert rec.tools[3].comment == "T12 10MM ENDMILL"


def test_mastercam_tool_list_t1_is_not_t12_and_d1_is_an_offset() -> None:
    rec = run(MASTERCAM)
    assert [(t.tool, t.comment and t.comment.split(" | ")[1], t.type) for t in rec.tools] == [
        (1, "1/2 FLAT ENDMILL", "end mill"), (12, "1/4 DRILL", "drill"), (3, "3/8 TAP", "tap")]
    assert [t.diameter_mm for t in rec.tools] == [pytest.approx(12.7), pytest.approx(6.35), pytest.approx(9.525)]


def test_moves_before_the_first_tool_change_are_no_tool() -> None:
    # positioning before T1 M6 counts in the program's lengths, but there is no "tool 0" in the tool list
    rec = run("G0 G90 G54 X10 Y10 Z50\nT1 M6 (10MM ENDMILL)\nG0 X0 Y0\nG1 X10 F100\nM30\n")
    assert [t.tool for t in rec.tools] == [1]
    assert rec.rapid_mm == pytest.approx(math.sqrt(10**2 + 10**2 + 50**2) + math.hypot(10, 10))
    assert rec.tools[0].rapid_mm == pytest.approx(math.hypot(10, 10))


FANUC_LATHE = """%
O0001 (SHAFT)
G21 G99
G28 U0. W0.
T0101 (OD TURN 80DEG)
G50 S3000
G96 S200 M3
G0 X52. Z2.
G1 Z-50. F0.25
U8.
G0 W52.
G28 U0. W0.
T0202 (DRILL 10MM)
G97 S1000 M3
G0 X0 Z5.
G1 Z-20. F0.1
G0 Z5.
M30
%
"""


def test_fanuc_lathe_turret_diameters_and_feed_per_revolution() -> None:
    # G99 F0.25 is 0.25 mm per revolution, not per minute; T0202 indexes the turret without M6; X is a diameter
    rec = run(FANUC_LATHE)
    assert [(t.tool, t.comment) for t in rec.tools] == [(1, "OD TURN 80DEG"), (2, "DRILL 10MM")]
    turn, drill = rec.tools
    assert turn.feed_mm == pytest.approx(52.0 + 4.0)  # Z2 to Z-50, then U8 (4 mm of radius)
    assert turn.rapid_mm == pytest.approx(math.hypot(26, 2) + 52.0 + math.hypot(30, 2))
    # G96: 200 m/min at 52 mm diameter is 1224 rev/min (under the G50 S3000 limit)
    assert turn.feeds_mm_min == [pytest.approx(0.25 * 200_000 / (math.pi * 52))]
    assert drill.spindle_rpm == [1000.0] and drill.feeds_mm_min == [pytest.approx(100.0)]
    assert drill.feed_mm == pytest.approx(25.0)
    assert rec.estimate is not None and rec.estimate.total_s < 120  # about half a minute, not hours


def test_okuma_lathe_sequence_names_and_turret() -> None:
    rec = run("O1234\nG50 S2500\nNAT01 G0 X200 Z200 T010101\nG96 S180 M3\nG0 X52 Z2\nG95 G1 Z-50 F0.3\n"
              "G0 X200 Z200\nNAT02 T020202\nG97 S800 M3\nG0 X0 Z5\nG95 G1 Z-20 F0.1\nG0 X200 Z200\nM02\n",
              name="SHAFT.MIN")
    assert [t.tool for t in rec.tools] == [1, 2]
    assert rec.diagnostics == []
    assert rec.tools[1].feeds_mm_min == [pytest.approx(80.0)] and rec.tools[1].feed_mm == pytest.approx(25.0)
    assert rec.estimate is not None and rec.estimate.total_s < 120


def test_a_subprogram_kept_in_the_control_is_a_warning_not_an_error() -> None:
    # M98 P9001 calls a tool-change or probing macro stored in the control: the program itself is fine
    rec = run("O1\nT1 M6\nM98 P9001\nG0 X10\nM30\n")
    assert errors(rec) == []
    assert [(d.line, d.level) for d in rec.diagnostics] == [(3, "warning")]
    assert "O9001" in rec.diagnostics[0].message and "not counted" in rec.diagnostics[0].message
    assert rec.subprograms == ["O9001"] and rec.rapid_mm == pytest.approx(10.0)


@pytest.mark.parametrize("program", [
    "T1 M6\nG0 X0 Y0 Z10\nG83 Z-100000 R1 Q0.00001 F100\nM30\n",  # ten billion pecks in one hole
    "T1 M6\nG0 X0 Y0 Z10\nG73 Z-100000 R1 Q0.00001 F100\nM30\n",
    "T1 M6\nG0 X0 Y0 Z10\nG83 Z-1000 R1 Q0.001 F100 L9999\nG91 X1 L9999\nX1 L9999\nM30\n",
    "O1\nT1 M6\nG0 Z10\nM98 P2 L99999\nM30\nO2\nG91 G81 X1 Z-1 R-5 F100 L9999\nG90\nM99\n",  # a billion holes
])
def test_peck_and_hole_repeats_are_bounded_like_blocks(program: str) -> None:
    rec = run(program, limits=Limits(max_blocks=20_000))
    assert rec.estimate is None
    assert any("stopped after" in e for e in errors(rec))


def test_okuma_lathe_with_four_digit_turret_words_and_feed_per_revolution() -> None:
    rec = run("N1 G50 S3000\nG95\nG0 X200. Z100.\nT0101 (OD ROUGHING)\nG97 S1200 M3\nG0 X82. Z2.\nG1 Z-60. F0.3\n"
              "G0 X200. Z100.\nT0303 (DRILL D10MM)\nS800 M3\nG0 X0. Z5.\nG1 Z-30. F0.12\nG0 Z5.\nM30\n", name="P.MIN")
    assert [(t.tool, t.diameter_mm) for t in rec.tools] == [(1, None), (3, 10.0)]
    assert rec.tools[0].feeds_mm_min == [pytest.approx(360.0)] and rec.tools[0].feed_mm == pytest.approx(62.0)
    assert rec.tools[1].feeds_mm_min == [pytest.approx(96.0)] and rec.tools[1].feed_mm == pytest.approx(35.0)

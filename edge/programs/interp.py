"""The modal interpreter: runs a tokenized program as a control would, without moving anything, and adds up
path lengths, holes, tools, offsets and move times. Never raises on a program: what it cannot follow becomes a
line-numbered diagnostic, and every loop is bounded (subprogram depth, executed blocks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edge.programs.calls import CallsMixin, label_key
from edge.programs.compensation import CompensationMixin
from edge.programs.cycles import CycleMixin
from edge.programs.estimate import MoveTimer
from edge.programs.expr import ExprError, evaluate
from edge.programs.geometry import PLANES, ArcError, arc
from edge.programs.lathe import LatheMixin, is_lathe
from edge.programs.profiles import MachineProfile
from edge.programs.tokens import Block
from edge.programs.tools import ToolStats, names_tool, tool_from_comment, tool_list_entry

__all__ = ["Interpreter", "Limits", "Result"]

MAX_DIAGNOSTICS = 200
_CYCLES = frozenset((73.0, 74.0, 76.0, 81.0, 82.0, 83.0, 84.0, 85.0, 86.0, 87.0, 88.0, 89.0))
_QUIET_G = frozenset((15.0, 40.0, 49.0, 50.0, 61.0, 61.1, 64.0, 69.0, 80.0, 90.1, 91.1, 93.0, 94.0, 95.0,
                      98.0, 99.0, 17.0, 18.0, 19.0, 20.0, 21.0, 90.0, 91.0, 43.0, 44.0, 41.0, 42.0, 4.0,
                      49.1, 54.0, 55.0, 56.0, 57.0, 58.0, 59.0, 54.1, 59.1, 59.2, 59.3, 53.0, 10.0, 92.0,
                      92.1, 92.2, 52.0, 28.0, 30.0, 0.0, 1.0, 2.0, 3.0, 5.1, 8.0, 7.0, 97.0, 96.0, 64.1, 187.0,
                      11.0, 51.0, 68.0, 65.0, 5.0, 9.0, 100.0, 103.0, 43.1, 40.1, 41.1, 42.1, 31.0, 38.2, 33.0,
                      76.1, 60.0, 112.0, 113.0))
_NON_MOTION_AXES = frozenset((10.0, 92.0, 52.0, 4.0, 65.0, 92.1, 31.0, 38.2, 11.0, 51.0, 68.0))
_OFFSETS = {54.0: "G54", 55.0: "G55", 56.0: "G56", 57.0: "G57", 58.0: "G58", 59.0: "G59",
            59.1: "G59.1", 59.2: "G59.2", 59.3: "G59.3"}


@dataclass(frozen=True)
class Limits:
    """Bounds that keep a hostile or looping program from holding the harvester."""

    max_blocks: int = 2_000_000  # blocks executed, subprogram repeats included; a cycle hole counts 4, a peck 2
    max_depth: int = 16  # nested subprogram calls


@dataclass
class Result:
    """What the interpreter found; ``edge.programs.record`` turns it into a ``ProgramRecord``."""

    number: str | None = None
    header: list[str] = field(default_factory=list)
    units: str = "mm"
    tools: list[ToolStats] = field(default_factory=list)
    offsets: list[str] = field(default_factory=list)
    subprograms: list[str] = field(default_factory=list)
    holes: int = 0
    feed_mm: float = 0.0
    rapid_mm: float = 0.0
    feed_s: float = 0.0
    rapid_s: float = 0.0
    dwell_s: float = 0.0
    other_s: float = 0.0
    tool_changes: int = 0
    diagnostics: list[tuple[int, str, str]] = field(default_factory=list)
    completed: bool = True


class _Stop(Exception):
    """The program cannot go on (a bound reached)."""


class Interpreter(CycleMixin, CallsMixin, CompensationMixin, LatheMixin):
    """Runs one program's blocks. ``run()`` returns a ``Result`` and never raises on the program's content."""

    def __init__(self, blocks: list[Block], *, dialect: str, profile: MachineProfile,
                 limits: Limits | None = None, tool_diameters: dict[int, float] | None = None) -> None:
        self.blocks, self.dialect, self.profile = blocks, dialect, profile
        self.limits = limits or Limits()
        self.timer = MoveTimer(profile)
        self.tool_diameters = tool_diameters or {}
        self.out = Result()
        self.pos = [0.0, 0.0, 0.0]
        self.scale = 1.0
        self.absolute = True
        self.arc_absolute = False
        self.plane = 17
        self.motion: float | None = 0.0 if dialect != "linuxcnc" else None
        self.feed = 0.0  # mm/min, or mm/rev with per_rev
        self.per_rev = False
        self.rpm = 0.0
        self.spindle_on = False
        self.comp = 0  # +1 G41, -1 G42
        self.comp_radius = 0.0
        self.comp_tangent: float | None = None
        self.comp_entry = False
        self.comp_exit: tuple[float, float] | None = None
        self.tool: ToolStats | None = None
        self.no_tool = ToolStats(tool=0)  # moves before the first tool change: in the totals, not a tool use
        self.tool_list: dict[int, str] = {}  # the header's tool list of CAM posts: T number -> its comment
        self.pending_tool: int | None = None
        self.pending_name: str | None = None
        self.named_tools: dict[str, int] = {}
        self.variables: dict[str, float] = {}
        self.moved = False
        self.recent_comments: list[str] = []
        self.seen_messages: set[str] = set()
        self.labels: dict[str, int] = {}
        self.n_labels: dict[int, int] | None = None
        self.stack: list[tuple[int, int, int]] = []  # (return index, repeats left, start index)
        self.executed = 0  # blocks executed and canned-cycle moves made, against Limits.max_blocks
        self.init_cycles()
        self.init_lathe(is_lathe(blocks, dialect))

    # --- diagnostics -----------------------------------------------------------------------------------

    def diag(self, line: int, level: str, message: str, *, once: str | None = None) -> None:
        if once is not None:
            if once in self.seen_messages:
                return
            self.seen_messages.add(once)
        if len(self.out.diagnostics) < MAX_DIAGNOSTICS:
            self.out.diagnostics.append((line, level, message[:500]))

    # --- the run -----------------------------------------------------------------------------------------

    def run(self) -> Result:
        for index, block in enumerate(self.blocks):
            if block.label is not None:
                if self.out.number is None:
                    self.out.number = block.label
                self.labels.setdefault(label_key(block.label), index)
            for text in block.comments:
                number = tool_list_entry(text)
                if number is not None and len(self.tool_list) < 10_000:
                    self.tool_list.setdefault(number, text)
        try:
            self._execute()
        except _Stop:
            self.out.completed = False
        except RecursionError:  # pragma: no cover - every recursion is bounded; kept as the last guard
            self.diag(0, "error", "the program nests too deeply to follow")
            self.out.completed = False
        return self.out

    def _execute(self) -> None:
        blocks, limit = self.blocks, self.limits.max_blocks
        pc, n = 0, len(blocks)
        while pc < n:
            self.executed += 1
            block = blocks[pc]
            if self.executed > limit:
                self._stop(block)
            pc += 1
            if block.error is not None:
                self.diag(block.line, "error" if not block.words else "warning", block.error)
            jump = self.block(block, pc)
            if self.executed > limit:  # a block's canned-cycle holes and pecks count too
                self._stop(block)
            if jump is not None:
                if jump < 0:
                    return
                pc = jump

    def _stop(self, block: Block) -> None:
        self.diag(block.line, "error", f"stopped after {self.limits.max_blocks:,} executed blocks and cycle moves: "
                  "the program loops or repeats too often to follow (check the M98/M99 calls, L counts and Q pecks)")
        raise _Stop

    # --- one block ----------------------------------------------------------------------------------------

    def block(self, block: Block, pc: int) -> int | None:
        """Execute one block; return where to go next (an index, -1 to end) or None to go on."""
        if block.comments:
            self._comments(block)
        if block.assigns:
            self._assign(block)
        words = block.words
        if not words and not block.extra:
            return None
        g: list[float] = []
        m: list[float] = []
        w: dict[str, float] = {}
        for letter, value in words:
            if value.__class__ is str:
                try:
                    value = evaluate(value, self.variables)
                except ExprError as exc:
                    self.diag(block.line, "error", f"{letter}{value}: {exc}")
                    continue
            if value > 1e9 or value < -1e9:  # type: ignore[operator]
                self.diag(block.line, "error", f"{letter}{value:g}: a value out of any machine's range")
                continue
            if letter == "G":
                g.append(value)  # type: ignore[arg-type]
            elif letter == "M":
                m.append(value)  # type: ignore[arg-type]
            else:
                w[letter] = value  # type: ignore[assignment]
        if g and ("F" in w or "S" in w):  # units and feed mode apply to the F word of their own block
            for code in g:
                if code == 20.0 or code == 21.0:
                    self.scale = 25.4 if code == 20.0 else 1.0
                elif code == 94.0 or code == 95.0:
                    self.per_rev = code == 95.0
        speed = "S" in w
        if self.lathe:
            self.lathe_words(g, w)
            if g and self.lathe_modes(g, w):
                speed = False  # a G50 S limit or a G96 surface speed, not a spindle speed
            if "T" in w:
                self.turret(w["T"], block)
        elif "T" in w and self.dialect != "siemens":
            self.pending_tool = int(w["T"]) if w["T"] >= 0 else None
        if 6.0 in m:  # before S and F: those on the tool-change line are the new tool's
            self.tool_change(block)
        if speed:
            self._set_speed(w["S"])
        if "F" in w:
            self._set_feed(w["F"], block.line)
        for code in m:
            if code in (3.0, 4.0):
                if not self.spindle_on:
                    self.out.other_s += self.profile.spindle_start
                    if self.tool is not None:
                        self.tool.time_s += self.profile.spindle_start
                self.spindle_on = True
            elif code == 5.0:
                self.spindle_on = False
        consumed = self._modal(g, w, block) if g else False
        if not consumed and ("X" in w or "Y" in w or "Z" in w or (
                (self.motion == 2.0 or self.motion == 3.0) and ("I" in w or "J" in w or "K" in w))):
            self._motion(w, block)
        for code in m:
            if code in (30.0, 2.0) or (code == 99.0 and not self.stack):
                return -1
            if code == 17.0 and self.dialect == "siemens":
                return self.subprogram_return()
            if code == 99.0:
                return self._return()
            if code in (98.0, 97.0):
                return self._call(code, w, block, pc)
        if block.extra:
            return self.extra(block, w, pc)
        return None

    def _comments(self, block: Block) -> None:
        for text in block.comments:
            if not text:
                continue
            if not self.moved and len(self.out.header) < 50:
                self.out.header.append(text[:256])
            self.recent_comments.append(text)
            if len(self.recent_comments) > 8:
                del self.recent_comments[0]

    def _assign(self, block: Block) -> None:
        for name, text in block.assigns:
            try:
                self.variables[name.strip("<>").lower() if name.startswith("<") else name] = evaluate(
                    text, self.variables)
            except ExprError as exc:
                self.diag(block.line, "error", f"#{name}: {exc}")

    def _set_feed(self, value: float, line: int) -> None:
        if value < 0:
            self.diag(line, "error", f"negative feed F{value:g}")
            return
        self.feed = value * self.scale
        rate = self.feed * (self.css_rpm() or self.rpm or self.profile.default_rpm) if self.per_rev else self.feed
        if self.tool is not None and (not self.tool.feeds or self.tool.feeds[-1] != rate) and len(
                self.tool.feeds) < 1000:
            self.tool.feeds.append(rate)

    def _set_speed(self, value: float) -> None:
        self.rpm = abs(value)
        target = self.tool
        if target is not None and len(target.rpm) < 1000 and (not target.rpm or target.rpm[-1] != self.rpm):
            target.rpm.append(self.rpm)

    def feed_rate(self) -> float:
        """The current feed in mm/min (G95: per revolution times the spindle speed)."""
        rpm = self.css_rpm() or self.rpm or self.profile.default_rpm
        feed = self.feed
        if feed <= 0.0:
            feed = self.profile.default_feed / (rpm if self.per_rev else 1.0)
        return feed * rpm if self.per_rev else feed

    # --- tools --------------------------------------------------------------------------------------------

    def tool_change(self, block: Block) -> None:
        number = self.pending_tool if self.pending_tool is not None else 0
        comment = next((c for c in block.comments if c), None)
        if comment is None and self.pending_name is not None:
            comment = self.pending_name
        if comment is None:  # CAM output puts the tool's comment on the line before the change
            comment = next((c for c in reversed(self.recent_comments) if names_tool(c, number)), None)
        if comment is None:  # ... or in the tool list of the program's header
            comment = self.tool_list.get(number)
        tool = tool_from_comment(number, comment, self.scale)
        if tool.diameter_mm is None and number in self.tool_diameters:
            tool.diameter_mm = self.tool_diameters[number]
        self.out.tools.append(tool)
        self.out.tool_changes += 1
        tool.time_s += self.profile.tool_change
        self.tool = tool
        self.pending_name = None
        self.recent_comments.clear()
        self.spindle_on = False  # a tool change stops the spindle

    def current_tool(self) -> ToolStats:
        if self.tool is None:  # moves before any tool change: the tool in the spindle, as far as known
            if self.pending_tool is None:  # not known at all: counted in the program's totals only
                return self.no_tool
            self.tool = tool_from_comment(self.pending_tool, self.tool_list.get(self.pending_tool), self.scale)
            if self.rpm:
                self.tool.rpm.append(self.rpm)
            if self.feed > 0:
                rpm = self.rpm or self.profile.default_rpm
                self.tool.feeds.append(self.feed * rpm if self.per_rev else self.feed)
            self.out.tools.append(self.tool)
        return self.tool

    # --- modal G codes ------------------------------------------------------------------------------------

    def _modal(self, g: list[float], w: dict[str, float], block: Block) -> bool:
        """Apply the block's G codes; True when its axis words were used up (G4, G10, G28, G92, ...)."""
        consumed = False
        for code in g:
            if code in _OFFSETS:
                self.offset(_OFFSETS[code] if code != 54.1 else "")
            elif code == 54.1:
                self.offset(f"G54.1 P{int(w.get('P', 1))}")
            elif code in (20.0, 21.0):
                self.scale = 25.4 if code == 20.0 else 1.0
                if not self.moved:
                    self.out.units = "inch" if code == 20.0 else "mm"
            elif code in (90.0, 91.0):
                self.absolute = code == 90.0
            elif code in (90.1, 91.1):
                self.arc_absolute = code == 90.1
            elif code in (17.0, 18.0, 19.0):
                self.plane = int(code)
            elif code in (94.0, 95.0):
                self.per_rev = code == 95.0
            elif code in (0.0, 1.0, 2.0, 3.0):
                self.motion = code
            elif code in _CYCLES:
                self.start_cycle(code)
            elif code == 80.0:
                self.motion = None if self.dialect == "linuxcnc" else self.motion_after_cycle()
            elif code in (98.0, 99.0) and not (self.lathe and self.dialect != "okuma"):
                self.retract_to_initial = code == 98.0
            elif code in (40.0, 41.0, 42.0):
                self._compensation(code, w, block)
            elif code == 43.0 and "H" in w:
                self.current_tool().length_offset = int(w["H"]) if w["H"] >= 0 else None
            elif code == 4.0:
                self._dwell(w, block)
                # Fanuc's G4 X1.5 is a time; on LinuxCNC (P only) axis words in the block still move
                consumed = self.dialect != "linuxcnc" and not any(c in (0.0, 1.0, 2.0, 3.0) for c in g)
            elif code in (28.0, 30.0):
                self._home(w)
                consumed = True
            elif code == 53.0:
                self._machine_move(w, block)
                consumed = True
            elif code == 15.0 and self.dialect == "okuma" and "H" in w:
                self.offset(f"G15 H{int(w['H'])}")
            elif code in _NON_MOTION_AXES:
                consumed = True
                if code == 65.0:
                    self.diag(block.line, "warning", "G65 macro calls are not followed: their moves are not counted",
                              once="G65")
                elif code in (92.0, 52.0):
                    self.diag(block.line, "warning", f"G{code:g} shifts the coordinates: lengths after it are "
                              "taken as programmed", once=f"G{code:g}")
            elif code not in _QUIET_G:
                self.diag(block.line, "warning", f"G{code:g} is not interpreted", once=f"G{code:g}")
        return consumed

    def offset(self, name: str) -> None:
        if name and name not in self.out.offsets and len(self.out.offsets) < 1000:
            self.out.offsets.append(name)

    def _dwell(self, w: dict[str, float], block: Block) -> None:
        seconds = self.dwell_seconds(w, block)
        self.out.dwell_s += seconds
        self.current_tool().time_s += seconds

    def _home(self, w: dict[str, float]) -> None:
        """G28/G30: a rapid through the intermediate point to the home position of the axes named."""
        axes = [i for i, a in enumerate("XYZ") if a in w]
        if not axes:
            axes = [0, 1, 2]
        middle = list(self.pos)
        for i in axes:
            a = "XYZ"[i]
            if a in w:
                middle[i] = w[a] * self.scale + (0.0 if self.absolute else self.pos[i])
        self.rapid_to(middle)
        home = list(self.pos)
        for i in axes:
            home[i] = 0.0
        self.rapid_to(home)

    def _machine_move(self, w: dict[str, float], block: Block) -> None:
        target = [w[a] * self.scale if a in w else self.pos[i] for i, a in enumerate("XYZ")]
        if self.motion == 1.0:
            self.feed_to(target)
        else:
            self.rapid_to(target)

    # --- motion -------------------------------------------------------------------------------------------

    def target(self, w: dict[str, float]) -> list[float]:
        pos, scale = self.pos, self.scale
        if self.absolute:
            return [w["X"] * scale if "X" in w else pos[0], w["Y"] * scale if "Y" in w else pos[1],
                    w["Z"] * scale if "Z" in w else pos[2]]
        return [pos[0] + w.get("X", 0.0) * scale, pos[1] + w.get("Y", 0.0) * scale, pos[2] + w.get("Z", 0.0) * scale]

    def _motion(self, w: dict[str, float], block: Block) -> None:
        motion = self.motion
        if motion is None:
            self.diag(block.line, "error", "axis words with no motion mode in force (after G80)", once="no motion")
            return
        self.moved = True
        if motion == 0.0:
            self.rapid_to(self.target(w))
            if self.modal_call is not None:
                self.modal_call(block)
        elif motion == 1.0:
            self.feed_to(self.target(w))
            if self.modal_call is not None:
                self.modal_call(block)
        elif motion in (2.0, 3.0):
            self._arc(motion == 2.0, w, block)
        else:
            self.cycle(w, block)

    def _line(self, target: list[float]) -> tuple[float, float, float, float]:
        """The move to ``target``: its deltas and its length, the cutter-compensation path included."""
        pos = self.pos
        dx, dy, dz = target[0] - pos[0], target[1] - pos[1], target[2] - pos[2]
        length = math.sqrt(dx * dx + dy * dy + dz * dz)
        if self.comp or self.comp_exit is not None:
            length += self._comp_line(dx, dy, dz, length)
        return dx, dy, dz, length

    def rapid_to(self, target: list[float]) -> None:
        dx, dy, dz, length = self._line(target)
        if length == 0.0:
            return
        seconds = self.timer.rapid_time(dx, dy, dz)
        tool = self.current_tool()
        tool.rapid_mm += length
        tool.time_s += seconds
        out = self.out
        out.rapid_mm += length
        out.rapid_s += seconds
        self.pos = list(target)

    def feed_to(self, target: list[float]) -> None:
        length = self._line(target)[3]
        if length == 0.0:
            return
        self._feed_length(length)
        self.pos = list(target)

    def _feed_length(self, length: float) -> None:
        seconds = self.timer.feed_time(length, self.feed_rate())
        tool = self.current_tool()
        tool.feed_mm += length
        tool.time_s += seconds
        out = self.out
        out.feed_mm += length
        out.feed_s += seconds

    def _arc(self, clockwise: bool, w: dict[str, float], block: Block) -> None:
        target = self.target(w)
        a, b, _ = PLANES[self.plane]
        scale = self.scale
        try:
            if "R" in w:
                length, radius, t0, t1, sweep, dn = arc(tuple(self.pos), tuple(target), self.plane, clockwise,  # type: ignore[arg-type]
                                             radius=w["R"] * scale)
            else:
                letters = ("I", "J", "K")
                first, second = w.get(letters[a], 0.0) * scale, w.get(letters[b], 0.0) * scale
                if self.arc_absolute:
                    first, second = first - self.pos[a], second - self.pos[b]
                if first == 0.0 and second == 0.0:
                    raise ArcError("an arc needs R or I/J/K words for its centre")
                turns = int(w.get("P", 1)) if self.dialect == "linuxcnc" else 1
                length, radius, t0, t1, sweep, dn = arc(tuple(self.pos), tuple(target), self.plane, clockwise,  # type: ignore[arg-type]
                                             centre_offset=(first, second), turns=min(max(turns, 1), 1000))
        except ArcError as exc:
            self.diag(block.line, "error", f"{'G2' if clockwise else 'G3'}: {exc}; taken as a straight move")
            self.feed_to(target)
            return
        if self.comp:
            length = self._comp_arc(length, radius, clockwise, t0, t1, sweep, dn)
        self._feed_length(length)
        self.pos = target

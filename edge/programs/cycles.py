"""Canned drilling cycles (G73, G74, G76, G81-G89 with G98/G99, R plane, Q pecks, L/K repeats), dwells, and
the Siemens (``CYCLE81``-``CYCLE89``, ``MCALL``, ``T="name"``) and Okuma (``CALL O..``, ``RTS``) words.

The moves follow LinuxCNC's interpreter: before the first hole the tool rises to the R plane if below it;
each hole is a rapid to the hole's position, a rapid down to R, the cycle's own moves, and a retract to the
initial level (G98) or to R (G99). Pecks (G83) return to R at rapid and come back at rapid to ``PECK_CLEARANCE``
above the last depth; chip-breaking pecks (G73) back off by ``PECK_CLEARANCE`` at rapid. G87 (back boring)
and G88 are counted as a bore with a rapid return (their spindle-orient moves are not modelled).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.programs.tokens import Block

__all__ = ["PECK_CLEARANCE", "CycleMixin"]

PECK_CLEARANCE = 0.254  # mm: LinuxCNC's G73/G83 clearance (0.010 in)
_SIEMENS_ARGS = re.compile(r"CYCLE(8\d)\(([^)]*)\)")
_CALL = re.compile(r"CALL(O\w+?)(?:Q(\d+))?$")


class CycleMixin:
    """Mixed into the interpreter: uses its position, moves, tools and diagnostics."""

    motion: float | None
    pos: list[float]
    absolute: bool
    scale: float
    plane: int
    dialect: str
    out: Any
    rapid_to: Callable[[list[float]], None]
    feed_to: Callable[[list[float]], None]
    target: Callable[[dict[str, float]], list[float]]
    current_tool: Callable[[], Any]
    diag: Callable[..., None]
    tool_change: Callable[[Any], None]
    enter: Callable[..., int | None]
    subprogram_return: Callable[[], int | None]
    labels: dict[str, int]
    pending_tool: int | None
    pending_name: str | None
    named_tools: dict[str, int]
    executed: int
    limits: Any

    def init_cycles(self) -> None:
        self.retract_to_initial = True
        self.cycle_r: float | None = None
        self.cycle_z: float | None = None
        self.cycle_q: float | None = None
        self.cycle_p = 0.0
        self.initial_z: float | None = None
        self.motion_before_cycle: float | None = 0.0
        self.modal_call: Callable[[Block], None] | None = None
        self.siemens_cycle: tuple[float, list[float]] | None = None

    def start_cycle(self, code: float) -> None:
        if self.motion is None or self.motion < 73.0:
            self.motion_before_cycle = self.motion
            self.initial_z = None
            self.cycle_r = self.cycle_z = self.cycle_q = None
        self.motion = code

    def motion_after_cycle(self) -> float | None:
        self.initial_z = None
        # Fanuc and Haas keep G0/G1 as it was; axis words after G80 then move in that mode
        return self.motion_before_cycle if self.motion is None or self.motion >= 73.0 else self.motion

    def dwell_seconds(self, w: dict[str, float], block: Block) -> float:
        """G4's time: X or U in seconds; P in seconds on LinuxCNC and when written with a decimal point
        (Haas), else in milliseconds (Fanuc)."""
        if "X" in w or "U" in w:
            return max(w.get("X", w.get("U", 0.0)), 0.0)
        p = w.get("P", 0.0)
        if self.dialect == "linuxcnc" or "." in _p_text(block.text):
            return max(p, 0.0)
        return max(p / 1000.0, 0.0)

    # --- G73/G8x ------------------------------------------------------------------------------------------

    def cycle(self, w: dict[str, float], block: Block) -> None:
        code = self.motion
        assert code is not None
        scale = self.scale
        if self.initial_z is None:
            self.initial_z = self.pos[2]
        if "R" in w:
            self.cycle_r = w["R"] * scale + (0.0 if self.absolute else self.initial_z)
        if self.cycle_r is None:
            self.diag(block.line, "error", f"G{code:g} without an R plane: the holes are not counted", once="no R")
            return
        if "Z" in w:
            self.cycle_z = w["Z"] * scale + (0.0 if self.absolute else self.cycle_r)
        if self.cycle_z is None:
            self.diag(block.line, "error", f"G{code:g} without a Z depth: the holes are not counted", once="no Z")
            return
        if "Q" in w:
            self.cycle_q = abs(w["Q"]) * scale
        if "P" in w:
            self.cycle_p = self.dwell_seconds({"P": w["P"]}, block)
        repeats = int(w.get("L", w.get("K", 1)))
        if repeats > 10_000:
            self.diag(block.line, "error", f"a hole repeated {repeats} times: only 10000 are counted")
            repeats = 10_000
        if self.plane != 17:
            self.diag(block.line, "warning", "canned cycles are interpreted in the XY plane (G17) only",
                      once="cycle plane")
        x = w.get("X", 0.0) * scale if "X" in w else None
        y = w.get("Y", 0.0) * scale if "Y" in w else None
        for _ in range(max(repeats, 0)):
            if self.executed > self.limits.max_blocks:
                return  # the interpreter stops with its diagnostic
            if self.absolute:
                hx = self.pos[0] if x is None else x
                hy = self.pos[1] if y is None else y
            else:
                hx, hy = self.pos[0] + (x or 0.0), self.pos[1] + (y or 0.0)
            self._hole(code, hx, hy, self.cycle_r, self.cycle_z)

    def _hole(self, code: float, x: float, y: float, r: float, bottom: float) -> None:
        clear = max(self.initial_z if self.initial_z is not None else r, r) if self.retract_to_initial else r
        if self.pos[2] < r:
            self.rapid_to([self.pos[0], self.pos[1], r])
        self.rapid_to([x, y, max(self.pos[2], clear) if self.retract_to_initial else self.pos[2]])
        self.rapid_to([x, y, r])
        q = self.cycle_q
        self.executed += 4
        if code in (73.0, 83.0) and q and q > 0 and r - bottom > q:
            pecks = (r - bottom) / q
            self.executed += 2 * int(min(pecks, 1e12))
            if self.executed > self.limits.max_blocks:
                return  # the interpreter stops with its diagnostic
            depth = r - q
            while depth > bottom:
                self.feed_to([x, y, depth])
                if code == 83.0:
                    self.rapid_to([x, y, r])
                    self.rapid_to([x, y, depth + PECK_CLEARANCE])
                else:
                    self.rapid_to([x, y, depth + PECK_CLEARANCE])
                depth -= q
        self.feed_to([x, y, bottom])
        if code in (82.0, 88.0, 89.0):
            self._cycle_dwell()
        if code in (84.0, 89.0, 74.0) and self.dialect == "linuxcnc":  # LinuxCNC feeds all the way out
            self.feed_to([x, y, clear])
        elif code in (84.0, 74.0, 85.0, 89.0):
            self.feed_to([x, y, r])
        self.rapid_to([x, y, clear])
        tool = self.current_tool()
        tool.holes += 1
        self.out.holes += 1

    def _cycle_dwell(self) -> None:
        self.out.dwell_s += self.cycle_p
        self.current_tool().time_s += self.cycle_p

    # --- Siemens and Okuma words ----------------------------------------------------------------------------

    def extra(self, block: Block, w: dict[str, float], pc: int) -> int | None:
        for word in block.extra:
            if word.startswith("T="):
                name = word[3:-1]
                number = self.named_tools.setdefault(name, len(self.named_tools) + 1)
                self.pending_tool, self.pending_name = number, name
            elif word == "MCALL":
                if not any(e.startswith("CYCLE") for e in block.extra):
                    self.modal_call = None
            elif word.startswith("CYCLE"):
                self._siemens_cycle(word, block, modal="MCALL" in block.extra)
            elif word == "RTS":
                return self.subprogram_return()
            elif word.startswith("CALL"):
                match = _CALL.match(word)
                if match is None:
                    self.diag(block.line, "error", f"cannot read '{word}'")
                    continue
                name = match.group(1)
                return self.enter(name, self.labels.get(name), int(match.group(2) or 1), block, pc)
        return None

    def _siemens_cycle(self, word: str, block: Block, *, modal: bool) -> None:
        match = _SIEMENS_ARGS.match(word)
        args: list[float | None] = []
        if match is not None:
            for text in match.group(2).split(","):
                try:
                    args.append(float(text) if text.strip() else None)
                except ValueError:
                    args.append(None)
        if match is None or len(args) < 4 or any(a is None for a in args[:3]) or (
                args[3] is None and (len(args) < 5 or args[4] is None)):
            self.diag(block.line, "error", f"{word[:40]}: needs RTP, RFP, SDIS and DP (or DPR)")
            return
        rtp, rfp, sdis = (float(a) * self.scale for a in args[:3])  # type: ignore[arg-type]
        dp = float(args[3]) * self.scale if args[3] is not None else rfp - float(args[4]) * self.scale  # type: ignore[arg-type]
        code = float(match.group(1))
        dwell = float(args[5] or 0.0) if code in (82.0, 89.0) and len(args) > 5 and args[5] else 0.0
        cycle = (code, [rtp, rfp + sdis, dp, dwell])
        if modal:
            self.siemens_cycle = cycle
            self.modal_call = self._siemens_hole
        else:
            self.siemens_cycle = cycle
            self._siemens_hole(block)
            self.siemens_cycle = None

    def _siemens_hole(self, block: Block) -> None:
        """A hole of the Siemens cycle in force at the current position (CYCLE83's pecks are one feed)."""
        if self.siemens_cycle is None:
            return
        code, (rtp, r, bottom, dwell) = self.siemens_cycle
        x, y = self.pos[0], self.pos[1]
        self.rapid_to([x, y, r])
        self.feed_to([x, y, bottom])
        if dwell:
            self.out.dwell_s += dwell
        if code in (84.0, 85.0, 89.0):
            self.feed_to([x, y, r])
        self.rapid_to([x, y, rtp])
        self.current_tool().holes += 1
        self.out.holes += 1


_P_WORD = re.compile(r"P\s*[-+]?[\d.]*")
_COMMENT = re.compile(r"\([^()]*\)?|;.*")


def _p_text(text: str) -> str:
    """The P word of a line as written (comments left out), to see whether it has a decimal point."""
    match = _P_WORD.search(_COMMENT.sub(" ", text.upper()))
    return match.group(0) if match is not None else ""

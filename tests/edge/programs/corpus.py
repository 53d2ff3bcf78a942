"""A generated Fanuc/Haas corpus: random programs whose features are known by construction, with path lengths
computed here (not by the interpreter) and a "true" cycle time from a machine model of our own (blended feed
moves with junction speeds, rapids with simultaneous axes and settling, a slower tool changer, a start-up
overhead, and a run-to-run spread of +-4 %) that shares no code with the estimator. ``generate(seed)`` gives
one program; the same seed gives the same program.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

TYPES = ("DRILL", "FLAT END MILL", "SPOT DRILL", "REAMER", "BALL MILL")


@dataclass
class Program:
    text: str
    tools: list[int] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    diameters: list[float] = field(default_factory=list)
    offsets: list[str] = field(default_factory=list)
    holes: int = 0
    feed_mm: float = 0.0
    rapid_mm: float = 0.0
    true_s: float = 0.0
    lines: int = 0


class _Machine:
    """The "true" machine: acceleration with blending at small corners, independent of edge.programs."""

    rapid = (600.0, 600.0, 500.0)  # mm/s
    accel = 2500.0
    tool_change = 6.3
    overhead = 4.0

    def __init__(self) -> None:
        self.t = self.overhead
        self.last_dir: tuple[float, float, float] | None = None

    def rapid_move(self, a: tuple[float, float, float], b: tuple[float, float, float]) -> None:
        self.last_dir = None
        times = []
        for i in range(3):
            d = abs(b[i] - a[i])
            v = self.rapid[i]
            times.append(d / v + v / self.accel if d > v * v / self.accel else 2 * math.sqrt(d / self.accel))
        self.t += max(times) + 0.05  # settling at the end of a rapid

    def feed_move(self, length: float, direction: tuple[float, float, float], feed: float) -> None:
        v = feed / 60.0
        # blending: the entry speed keeps cos(angle) of the speed of the move before
        entry = 0.0
        if self.last_dir is not None:
            cos = sum(p * q for p, q in zip(self.last_dir, direction, strict=True))
            entry = v * max(cos, 0.0)
        self.last_dir = direction
        ramp = (v * v - entry * entry) / (2 * self.accel) + v * v / (2 * self.accel)
        if length >= ramp:
            self.t += length / v + (v - entry) ** 2 / (2 * self.accel * v) + v / (2 * self.accel)
        else:
            self.t += 2 * math.sqrt(length / self.accel)


def generate(seed: int) -> Program:
    rng = random.Random(seed)
    machine = _Machine()
    out = Program(text="")
    lines = ["%", f"O{1000 + seed % 8000} (PART {seed})", f"(GENERATED SEED {seed})", "G21 G17 G40 G80 G90 G94"]
    pos = (0.0, 0.0, 0.0)

    def rapid(to: tuple[float, float, float]) -> None:
        nonlocal pos
        out.rapid_mm += math.dist(pos, to)
        machine.rapid_move(pos, to)
        pos = to

    def feed(to: tuple[float, float, float], f: float) -> None:
        nonlocal pos
        length = math.dist(pos, to)
        if length > 0:
            out.feed_mm += length
            machine.feed_move(length, tuple((b - a) / length for a, b in zip(pos, to, strict=True)), f)  # type: ignore[arg-type]
        pos = to

    for _ in range(rng.randint(1, 5)):
        tool = rng.randint(1, 40)
        dia = rng.choice((3.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0))
        kind = rng.choice(TYPES)
        comment = f"T{tool} D={dia:g} {kind}"
        out.tools.append(tool)
        out.comments.append(comment)
        out.diameters.append(dia)
        offset = rng.choice(("G54", "G55", "G56", "G54.1 P2"))
        if offset not in out.offsets:
            out.offsets.append(offset)
        form = rng.random()
        if form < 0.5:
            lines += [f"({comment})", f"T{tool} M6"]
        else:
            lines += [f"T{tool} M06 ({comment})"]
        machine.t += machine.tool_change
        machine.last_dir = None
        rpm = rng.randint(8, 120) * 100
        lines.append(f"{offset} G0 G90 X0. Y0. S{rpm} M3")
        rapid((0.0, 0.0, pos[2]))
        machine.t += 1.0  # spindle start
        lines.append(f"G43 H{tool} Z50.")
        rapid((0.0, 0.0, 50.0))
        if "DRILL" in kind or kind == "REAMER":
            f = rng.randint(5, 30) * 10
            r, depth = 2.0, -float(rng.randint(3, 25))
            cyc = rng.choice(("G81", "G81", "G83"))
            q = 4.0
            lines.append("G99 G0 Z5.")
            rapid((pos[0], pos[1], 5.0))
            count = rng.randint(1, 12)
            for i in range(count):
                x, y = float(rng.randint(-100, 100)), float(rng.randint(-80, 80))
                words = f"X{x:g}. Y{y:g}." if rng.random() < 0.5 else f"X{x:.1f} Y{y:.1f}"
                if i == 0:
                    lines.append(f"G99 {cyc} {words} Z{depth:g}. R{r:g}." + (f" Q{q:g}." if cyc == "G83" else "")
                                 + f" F{f}.")
                else:
                    lines.append(words)
                rapid((x, y, pos[2]))
                rapid((x, y, r))
                if cyc == "G83":
                    d = r - q
                    while d > depth:
                        feed((x, y, d), f)
                        rapid((x, y, r))
                        rapid((x, y, d + 0.254))
                        d -= q
                feed((x, y, depth), f)
                rapid((x, y, r))
                out.holes += 1
            lines.append("G80")
        else:
            f = rng.randint(10, 200) * 10
            x0, y0 = float(rng.randint(-50, 50)), float(rng.randint(-50, 50))
            lines.append(f"G0 X{x0:g}. Y{y0:g}.")
            rapid((x0, y0, pos[2]))
            lines.append("Z2.")
            rapid((x0, y0, 2.0))
            z = -float(rng.randint(1, 5))
            lines.append(f"G1 Z{z:g}. F{f // 2}.")
            feed((x0, y0, z), f // 2)
            lines.append(f"F{f}.")
            for _ in range(rng.randint(3, 40)):
                if rng.random() < 0.7:
                    x, y = pos[0] + rng.randint(-40, 40), pos[1] + rng.randint(-40, 40)
                    lines.append(f"G1 X{x:g} Y{y:g}")
                    feed((x, y, z), f)
                else:
                    radius = float(rng.randint(5, 30))
                    ccw = rng.random() < 0.5
                    # a half circle of the given radius along +X: length pi*r, end 2r away
                    x, y = pos[0] + 2 * radius, pos[1]
                    if rng.random() < 0.5:
                        lines.append(f"{'G3' if ccw else 'G2'} X{x:g} Y{y:g} R{radius:g}")
                    else:
                        lines.append(f"{'G3' if ccw else 'G2'} X{x:g} Y{y:g} I{radius:g} J0")
                    out.feed_mm += math.pi * radius
                    machine.feed_move(math.pi * radius, (0.0, 1.0 if not ccw else -1.0, 0.0), f)
                    machine.last_dir = (0.0, -1.0 if not ccw else 1.0, 0.0)
                    pos = (x, y, z)
            lines.append("G0 Z50.")
            rapid((pos[0], pos[1], 50.0))
        lines.append("G91 G28 Z0.")
        rapid((pos[0], pos[1], pos[2] + 0.0))
        rapid((pos[0], pos[1], 0.0))
        lines.append("G90 M5")
    lines += ["M30", "%"]
    out.text = "\n".join(lines) + "\n"
    out.lines = len(lines)
    # run-to-run spread of a real machine (load, operator, coolant): +-4 %
    out.true_s = machine.t * rng.uniform(0.96, 1.04)
    return out

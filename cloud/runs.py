"""Program runs: which program ran on a machine, when, for how long, and whether it completed — read from the
machine's MTConnect EXECUTION and PROGRAM series — linked to the harvested programs.

The rules (pure, no I/O; ``cloud.runsquery`` reads the series):

- A run starts when EXECUTION becomes ``ACTIVE`` while no run is open; its program is the PROGRAM value at that
  moment (a PROGRAM change at the same time counts first).
- ``PROGRAM_COMPLETED`` ends the run as completed.
- ``READY`` or ``STOPPED`` end it as not completed (the operator reset or stopped the program before its end).
- ``INTERRUPTED``, ``FEED_HOLD``, ``OPTIONAL_STOP``, ``PROGRAM_STOPPED``, ``PROGRAM_OPTIONAL_STOP`` and ``WAIT``
  pause it: ``ACTIVE`` again resumes the same run; the paused time is counted apart (``paused_s``).
- EXECUTION becoming UNAVAILABLE (the agent lost the control) ends it as not completed, and so does a PROGRAM
  change while it is open; when EXECUTION is ``ACTIVE`` at that change (a chained program, a schedule), the new
  program's run starts there.
- A run still open at the end of the series read is returned open (``end`` None).
``duration_s`` is from start to end, pauses included. A run already open when a time range begins is read from
its start: ``open_run_from`` says how far back.

Linking a run to a program: the PROGRAM value, trimmed, is compared with the harvested programs by
(1) file name (``IMTS-2022-2-HOB.MIN`` = a program whose path ends in that name, without case), then
(2) program number (``O1234``, ``1234`` and ``:1234`` are one number), then (3) path stem (``IMTS-2022-2-HOB``
matches ``IMTS-2022-2-HOB.nc``). Among the matches the program harvested for the same machine comes first, then
one harvested by the machine's own edge, then any; among versions of it, the newest harvested at or before the
run started, else the first harvested after.

Calibration: each machine's measured durations of completed runs linked to a program with an estimate calibrate
the estimates on that machine (``calibrate``, with ``shared.cycletime.fit_calibration``: a non-negative weight per
part of the estimate and a constant from eight runs of five different programs on, one factor on the total
otherwise).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cloud.storage.documents import number_key
from cloud.storage.programs import LinkCandidate
from shared.cnc import Estimate
from shared.cycletime import Calibration as Fit
from shared.cycletime import apply_calibration, fit_calibration

__all__ = ["Calibration", "Run", "calibrate", "find_runs", "link_runs", "open_run_from", "program_terms"]

_PAUSES = frozenset({"INTERRUPTED", "FEED_HOLD", "OPTIONAL_STOP", "PROGRAM_STOPPED", "PROGRAM_OPTIONAL_STOP", "WAIT"})
_ENDS = frozenset({"READY", "STOPPED"})
UNAVAILABLE = "UNAVAILABLE"
_RUNNING = _PAUSES | {"ACTIVE"}  # the states a run stays open in


@dataclass(frozen=True, slots=True)
class Run:
    device: str
    program: str | None
    start: int  # µs
    end: int | None  # µs; None: still running at the end of the series read
    completed: bool
    end_state: str | None  # PROGRAM_COMPLETED, READY, STOPPED, UNAVAILABLE, PROGRAM_CHANGED; None while open
    paused_s: float = 0.0
    sha256: str | None = None  # the program it is linked to
    edge: str | None = None  # the edge that harvested that program
    path: str | None = None
    estimate: Estimate | None = None

    @property
    def estimate_s(self) -> float | None:
        return None if self.estimate is None else self.estimate.total_s

    @property
    def duration_s(self) -> float | None:
        return None if self.end is None else (self.end - self.start) / 1e6


@dataclass(slots=True)
class _Open:
    program: str | None
    start: int
    paused_at: int | None = None
    paused_us: int = 0


def find_runs(device: str, execution: Sequence[tuple[int, str | None]],
              program: Sequence[tuple[int, str | None]]) -> list[Run]:
    """The runs in an EXECUTION series and a PROGRAM series ((µs, value), value None = UNAVAILABLE), oldest
    first."""
    timeline = sorted([(ts, 0, v) for ts, v in program] + [(ts, 1, v) for ts, v in execution],
                      key=lambda e: (e[0], e[1]))
    runs: list[Run] = []
    current: str | None = None
    run: _Open | None = None
    state = UNAVAILABLE

    def close(at: int, completed: bool, state: str) -> None:
        nonlocal run
        assert run is not None
        paused = run.paused_us + (at - run.paused_at if run.paused_at is not None else 0)
        runs.append(Run(device, run.program, run.start, at, completed, state, paused / 1e6))
        run = None

    for ts, which, value in timeline:
        if which == 0:
            if value is not None:
                current = value.strip() or None
                if run is not None and current != run.program:
                    close(ts, False, "PROGRAM_CHANGED")
                    if state == "ACTIVE":
                        run = _Open(current, ts)
            continue
        state = (value or UNAVAILABLE).strip().upper()
        if state == "ACTIVE":
            if run is None:
                run = _Open(current, ts)
            elif run.paused_at is not None:
                run.paused_us += ts - run.paused_at
                run.paused_at = None
        elif run is None:
            continue
        elif state == "PROGRAM_COMPLETED":
            close(ts, True, state)
        elif state in _ENDS or state == UNAVAILABLE:
            close(ts, False, state)
        elif state in _PAUSES and run.paused_at is None:
            run.paused_at = ts
    if run is not None:
        runs.append(Run(device, run.program, run.start, None, False, None,
                        run.paused_us / 1e6))
    return runs


def open_run_from(before: Sequence[tuple[int, str | None]]) -> tuple[int, bool] | None:
    """Where to read a run from that is open when a time range begins: ``before`` are the EXECUTION points before
    the range, newest first (value None: UNAVAILABLE). None when no run is open then (no point, or the newest one
    is not ACTIVE or a pause); else the instant of the newest point no run is open at (an end state, UNAVAILABLE)
    and True, or, when none of them is one, the oldest point's instant and False (the run began before it)."""
    def running(value: str | None) -> bool:
        return (value or UNAVAILABLE).strip().upper() in _RUNNING

    if not before or not running(before[0][1]):
        return None
    return next(((ts, True) for ts, value in before if not running(value)), (before[-1][0], False))


def program_terms(value: str) -> tuple[str, str, str | None]:
    """A PROGRAM value's file name and stem (lower case) and its program number key."""
    name = posixpath.basename(value.strip().replace("\\", "/")).lower()
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return name, stem, number_key(stem)


def _rank(c: LinkCandidate, device: str, edges: set[str], value: str, start: int) -> tuple[int, ...] | None:
    name, stem, number = program_terms(value)
    if c.name == name:
        how = 0
    elif number is not None and c.number_key == number:
        how = 1
    elif c.stem == stem:
        how = 2
    else:
        return None
    where = 0 if c.device == device else 1 if c.edge in edges else 2
    before = c.first_seen <= start
    return (how, where, 0 if before else 1, -c.first_seen if before else c.first_seen)


def link_runs(runs: Sequence[Run], candidates: Sequence[LinkCandidate], edges: set[str]) -> list[Run]:
    """Each run with the program it ran (``sha256``, ``edge``, ``path``, ``estimate_s``) where one matches."""
    out = []
    for run in runs:
        best: tuple[tuple[int, ...], LinkCandidate] | None = None
        if run.program:
            for c in candidates:
                rank = _rank(c, run.device, edges, run.program, run.start)
                if rank is not None and (best is None or rank < best[0]):
                    best = (rank, c)
        if best is None:
            out.append(run)
        else:
            c = best[1]
            out.append(replace(run, sha256=c.sha256, edge=c.edge, path=c.path, estimate=c.estimate))
    return out


@dataclass(frozen=True, slots=True)
class Calibration:
    """A machine's calibration: ``fit`` (``shared.cycletime``) fitted on its measured runs."""

    device: str
    fit: Fit

    @property
    def runs(self) -> int:
        return self.fit.runs

    def apply(self, estimate: Estimate | None) -> float | None:
        """The calibrated cycle time of an estimate on this machine, in seconds."""
        return None if estimate is None else apply_calibration(self.fit, estimate)


def calibrate(device: str, runs: Sequence[Run]) -> Calibration | None:
    """The calibration of a machine from its completed runs linked to a program with an estimate; None without
    any such run."""
    pairs = [(r.estimate, r.duration_s) for r in runs
             if r.completed and r.sha256 and r.estimate is not None and r.duration_s]
    if not pairs:
        return None
    return Calibration(device, fit_calibration([(e, float(m)) for e, m in pairs if m is not None]))

"""Reading a machine's runs from the store: its EXECUTION and PROGRAM keys from the MTConnect registry, their text
series over a time range, the programs they name, and the machine's calibration (rules: ``cloud.runs``).

Runs are computed when asked, not stored: a run is a reading of the series, and the series are kept. At most
``MAX_POINTS`` points of each series are read; beyond that the answer says it is cut (``truncated``) and every
series is cut at the same instant, the earliest a cut series reached (a PROGRAM series read less far than the
EXECUTION one would link the later runs to a program that was no longer loaded). The PROGRAM value in force at
the start of the range is the last one before it.

A run open when the range begins is read from its start: up to ``LOOKBACK`` EXECUTION points before the range
are read to find it; a run that changed state more often than that before the range starts at the first ACTIVE
among them, and the answer says it is cut. A program's runs are read from every machine of the edges that harvested it,
within one budget of ``MAX_POINTS`` points per series for them all (not for each machine).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cloud.runs import Calibration, Run, calibrate, find_runs, link_runs, open_run_from, program_terms
from cloud.storage.base import BadQuery, SeriesInfo, Storage
from cloud.storage.programs import link_candidates, registry

__all__ = ["DeviceRuns", "LOOKBACK", "MAX_POINTS", "device_runs", "devices_of_edges", "runs_of_program"]

MAX_POINTS = 200_000
LOOKBACK = 1_000  # EXECUTION points read before a range to find the start of a run open when it begins


@dataclass(frozen=True, slots=True)
class DeviceRuns:
    device: str
    execution_key: str
    program_key: str
    runs: list[Run]
    calibration: Calibration | None
    truncated: bool
    points: int = 0  # points read from the three series


def _keys(device: str, models: Sequence[Any]) -> tuple[str, str, set[str]]:
    """The EXECUTION and PROGRAM keys of a device (the first of each type in its newest model), and its edges.

    A PROGRAM without a sub-type or of sub-type MAIN (the program started, the harvested file) is taken before
    one of another sub-type: ACTIVE is the subprogram being run, and would end a run at every call."""
    execution = program = None
    for model in models:
        programs = [i for i in model.items if i.type == "PROGRAM"]
        main = [i for i in programs if (i.sub_type or "MAIN").upper() == "MAIN"]
        if program is None and programs:
            program = (main or programs)[0].key
        if execution is None:
            execution = next((i.key for i in model.items if i.type == "EXECUTION"), None)
        if execution and program:
            break
    if execution is None or program is None:
        raise BadQuery(f"device {device!r} has no MTConnect EXECUTION and PROGRAM items known to the cloud (its edge "
                       "sends them with the device model of an MTConnect source)", "device")
    return execution, program, {m.edge for m in models}


async def _text(storage: Storage, info: SeriesInfo | None, start: int, stop: int,
                max_points: int) -> tuple[list[tuple[int, Any]], int | None]:
    """The text values of [start, stop), at most ``max_points``, and the instant they were cut at (None: all)."""
    if info is None:
        return [], None
    rows = await storage.scan(info.id, start, stop, max_points + 1)
    cut = rows[max_points][0] if len(rows) > max_points else None
    return [(ts, v if isinstance(v, str) else None if v is None else str(v)) for ts, v in rows[:max_points]
            if cut is None or ts < cut], cut


async def _before(storage: Storage, info: SeriesInfo | None, start: int, count: int = 1) -> list[tuple[int, Any]]:
    """The series' last ``count`` text values before ``start``, newest first (with 1: the value in force when the
    range begins)."""
    if info is None:
        return []

    def build(param: Callable[[int], str]) -> tuple[str, list[Any]]:
        return (f"SELECT ts, text FROM samples WHERE series_id = {param(1)} AND ts < {param(2)} "
                f"ORDER BY ts DESC LIMIT {param(3)}", [info.id, start, count])
    return [(int(r[0]), r[1]) for r in await storage.select(build)]


def _execution(values: list[tuple[int, Any]], quality: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """EXECUTION's points with UNAVAILABLE as a point of its own (it comes as a quality flag without a value, the
    frame mapping), oldest first."""
    stamps = {ts for ts, _ in values}
    return sorted(values + [(ts, None) for ts, q in quality if q == "unavailable" and ts not in stamps],
                  key=lambda p: p[0])


async def _run_start(storage: Storage, execution: SeriesInfo | None, quality: SeriesInfo | None, start: int,
                     lookback: int) -> tuple[int, bool]:
    """Where to read from so that a run open at ``start`` is read whole, and whether its start was beyond the
    ``lookback`` points read."""
    values = await _before(storage, execution, start, lookback)
    flags = await _before(storage, quality, start, lookback)
    before = _execution(values, flags)[::-1]
    found = open_run_from(before)
    if found is None:
        return start, False
    since, whole = found
    return since, not whole and lookback in (len(values), len(flags))


async def device_runs(storage: Storage, device: str, start: int, stop: int, max_points: int = MAX_POINTS,
                      lookback: int = LOOKBACK) -> DeviceRuns:
    """The runs of a device with their programs, and its calibration; BadQuery for a device without them."""
    models = await registry(storage, device)
    execution_key, program_key, edges = _keys(device, models)
    found = await storage.lookup(device)
    series = {s.field: s for s in found[1]} if found else {}
    quality_key = f"{execution_key}.quality"
    since, cut_back = await _run_start(storage, series.get(execution_key), series.get(quality_key), start, lookback)
    execution, cut_e = await _text(storage, series.get(execution_key), since, stop, max_points)
    quality, cut_q = await _text(storage, series.get(quality_key), since, stop, max_points)
    program, cut_p = await _text(storage, series.get(program_key), since, stop, max_points)
    cut = min((c for c in (cut_e, cut_q, cut_p) if c is not None), default=None)
    if cut is not None:  # one instant for all: beyond it, one series would be known and the other not
        execution, quality, program = ([p for p in s if p[0] < cut] for s in (execution, quality, program))
    program = await _before(storage, series.get(program_key), since) + program
    runs = [r for r in find_runs(device, _execution(execution, quality), program)
            if r.end is None or r.end >= start]  # the runs before the one open at the start are not asked for
    values = {r.program for r in runs if r.program}
    terms = [program_terms(v) for v in values]
    candidates = await link_candidates(storage, sorted({t[0] for t in terms}), sorted({t[1] for t in terms}),
                                       sorted({t[2] for t in terms if t[2]})) if terms else []
    runs = link_runs(runs, candidates, edges)
    return DeviceRuns(device, execution_key, program_key, runs, calibrate(device, runs), cut is not None or cut_back,
                      len(execution) + len(quality) + len(program))


async def devices_of_edges(storage: Storage, edges: Sequence[str]) -> list[str]:
    """The devices with an MTConnect model sent by one of ``edges``."""
    if not edges:
        return []

    def build(param: Callable[[int], str]) -> tuple[str, list[Any]]:
        marks = ", ".join(param(k + 1) for k in range(len(edges)))
        return (f"SELECT DISTINCT device_id FROM mtconnect_devices WHERE edge IN ({marks}) "  # noqa: S608
                "ORDER BY device_id", list(edges))
    return [r[0] for r in await storage.select(build)]


async def runs_of_program(storage: Storage, sha256: str, edges: Sequence[str], devices: Sequence[str],
                          start: int, stop: int, max_points: int = MAX_POINTS,
                          ) -> tuple[list[Run], dict[str, Calibration], bool]:
    """The runs linked to a program on the machines of the edges that harvested it (and ``devices``), with each
    machine's calibration; at most about ``max_points`` points of each series read for all machines together."""
    runs: list[Run] = []
    calibrations: dict[str, Calibration] = {}
    truncated = False
    left = 3 * max_points  # an edge with many machines must not multiply what one request reads
    for device in sorted(set(await devices_of_edges(storage, edges)) | set(devices)):
        if left <= 0:
            truncated = True
            break
        try:
            found = await device_runs(storage, device, start, stop, min(max_points, left))
        except BadQuery:
            continue
        left -= found.points
        truncated = truncated or found.truncated
        if found.calibration is not None:
            calibrations[device] = found.calibration
        runs += [r for r in found.runs if r.sha256 == sha256]
    runs.sort(key=lambda r: r.start)
    return runs, calibrations, truncated

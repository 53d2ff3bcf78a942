"""Training data: readings of named sensors, with optional times and labels, from a CSV or Parquet file or from a
device's history stored in the cloud; and the input rows a model schema makes of them.

A file has one row per reading time: an optional time column (seconds since the epoch, or ISO 8601 times), the
sensor columns, and an optional label column. A column header may carry its unit as ``name[unit]``
(``temp[degC]``); units given with ``--sensors temp[degC],...`` take precedence. History frames become a sensor
matrix through ``shared.modelschema.sensor_matrix``, the code the edge scores with.

Rows are windowed only within runs of readings at the model's interval: a gap in the data (a device offline, a
file joined from two recordings) starts a new run, so no window spans it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from shared.errors import InputError
from shared.frame import KEY_PATTERN, TelemetryFrame
from shared.modelpackage import DataSource
from shared.modelschema import ModelSchema, Scaling, SensorSpec, raw_inputs, sensor_matrix

if TYPE_CHECKING:
    from cloud.ml.progress import Progress
    from cloud.storage.base import Storage

__all__ = ["MIN_ROWS", "Table", "input_rows", "load_file", "load_history", "parse_sensors"]

MIN_ROWS = 20  # input rows a model is trained and checked on, at the very least
HISTORY_PAGE = 5_000  # frames per storage read
TIME_COLUMNS = ("ts", "timestamp", "time")  # taken as the time column when none is named
_HEADER_UNIT = re.compile(r"^(.+?)\s*\[([^\[\]]{1,32})\]$")
_KEY = re.compile(KEY_PATTERN)


@dataclass
class Table:
    """Readings ``(n, sensors)`` in ``sensors`` order, their times (s) and labels where known, and their source."""

    sensors: list[SensorSpec]
    values: npt.NDArray[np.float64]
    source: DataSource
    ts: npt.NDArray[np.float64] | None = None
    labels: npt.NDArray[np.str_] | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.values.shape[0])


def parse_sensors(text: str | None) -> list[tuple[str, str | None]]:
    """``"temp[degC],vib,current[A]"`` as ``[("temp", "degC"), ("vib", None), ("current", "A")]``."""
    if text is None:
        return []
    out: list[tuple[str, str | None]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise InputError(f"--sensors {text!r}: an empty name; give names separated by commas, e.g. temp[degC],vib")
        name, unit = _split_unit(item)
        _check_name(name, "--sensors")
        out.append((name, unit))
    names = [n for n, _ in out]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"--sensors names {', '.join(repeated)} twice")
    return out


def _split_unit(header: str) -> tuple[str, str | None]:
    match = _HEADER_UNIT.match(header.strip())
    return (match.group(1), match.group(2)) if match else (header.strip(), None)


def _check_name(name: str, where: str) -> None:
    if not _KEY.match(name):
        raise InputError(f"{where}: {name!r} cannot be a sensor name: it must start with a letter or '_' and hold "
                         "letters, digits and _ . : / - (at most 128)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_arrow(path: Path, fmt: Literal["csv", "parquet"]) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    try:
        table = pq.read_table(path) if fmt == "parquet" else pa_csv.read_csv(path)
        table.column_names  # noqa: B018 - the header's names are decoded here: not UTF-8 is not a CSV file
        return table
    except (pa.ArrowException, OSError, ValueError, UnicodeDecodeError) as exc:
        what = "a Parquet file" if fmt == "parquet" else "CSV with a header line"
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not readable as {what} ({first})") from None


def _numeric(column: Any, name: str) -> npt.NDArray[np.float64]:
    import pyarrow as pa

    if column.null_count:
        first = next(i for i, v in enumerate(column.is_null().to_pylist()) if v)
        raise InputError(f"column {name!r}: row {first + 1} has no value; every row needs a reading")
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        sample = column.slice(0, 1).to_pylist()[0]
        raise InputError(f"column {name!r} is not numeric ({kind}, e.g. {str(sample)[:40]!r}); a sensor column "
                         "holds numbers (booleans count as 0 and 1)")
    values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise InputError(f"column {name!r}: row {bad[0] + 1} is {values[bad[0]]!r}; readings must be finite")
    return values


def _times(column: Any, name: str) -> npt.NDArray[np.float64]:
    import pyarrow as pa

    if pa.types.is_timestamp(column.type):
        if column.null_count:
            raise InputError(f"time column {name!r}: a row has no time")
        stamps = column.to_numpy(zero_copy_only=False).astype("datetime64[us]").astype(np.int64)
        return stamps.astype(np.float64) / 1e6
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise InputError(f"time column {name!r} is {column.type}: give seconds since the epoch or ISO 8601 times")
    return _numeric(column, name)


def _labels(column: Any, name: str) -> npt.NDArray[np.str_]:
    if column.null_count:
        first = next(i for i, v in enumerate(column.is_null().to_pylist()) if v)
        raise InputError(f"label column {name!r}: row {first + 1} has no label")
    return np.asarray([_label_text(v) for v in column.to_pylist()], dtype=str)


def _label_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def load_file(path: str | Path, fmt: Literal["csv", "parquet"], sensors: Sequence[tuple[str, str | None]] = (),
              label_column: str | None = None, time_column: str | None = None,
              progress: Progress | None = None) -> Table:
    """The readings of a CSV or Parquet file; ``InputError`` naming the column or row that is wrong."""
    file = Path(path)
    if progress:
        progress.say(f"loading {file.name}")
    table = _read_arrow(file, fmt)
    if table.num_rows == 0:
        raise InputError(f"{file.name}: no data rows (columns {', '.join(table.column_names[:40])})")
    headers = {_split_unit(h)[0]: h for h in table.column_names}
    header_units = {name: _split_unit(h)[1] for name, h in headers.items()}

    def column(name: str, what: str) -> Any:
        if name not in headers:
            raise InputError(f"{file.name}: no {what} column {name!r}; the columns are "
                             f"{', '.join(table.column_names[:40])}")
        return table.column(headers[name])

    if time_column is None:
        time_column = next((c for c in TIME_COLUMNS if c in headers), None)
    ts = _times(column(time_column, "time"), time_column) if time_column else None
    labels = _labels(column(label_column, "label"), label_column) if label_column else None
    chosen = list(sensors) or [(name, None) for name in headers
                               if name not in (time_column, label_column) and _is_number(table.column(headers[name]))]
    if not chosen:
        raise InputError(f"{file.name}: no numeric columns to use as sensors; name them with --sensors")
    specs, columns = [], []
    for name, unit in chosen:
        _check_name(name, file.name)
        if name in (time_column, label_column):
            raise InputError(f"{name!r} is the time or label column; it cannot be a sensor too")
        columns.append(_numeric(column(name, "sensor"), name))
        specs.append(SensorSpec(name=name, unit=unit or header_units.get(name)))
    values = np.column_stack(columns)
    if progress:
        progress.say(f"loaded {len(values):,} rows of {len(specs)} sensors from {file.name}")
    source = DataSource(kind="file", path=file.name, file_sha256=_sha256(file), rows=len(values),
                        label_column=label_column,
                        start=float(ts.min()) if ts is not None and ts.size else None,
                        end=float(ts.max()) if ts is not None and ts.size else None)
    return Table(sensors=specs, values=values, ts=ts, labels=labels, source=source)


def _is_number(column: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
                or pa.types.is_boolean(column.type))


async def load_history(storage: Storage, device: str, start_s: float, end_s: float,
                       sensors: Sequence[tuple[str, str | None]] = (), label: str | None = None,
                       max_rows: int = 1_000_000, progress: Progress | None = None) -> Table:
    """A device's stored frames with ``start_s <= ts <= end_s``, oldest first, at most ``max_rows``.

    Frames that lack a reading of a chosen sensor (or hold text there) are left out and counted in ``notes``;
    ``label`` names a sensor whose value is each frame's label.
    """
    if end_s <= start_s:
        raise InputError(f"--to must be after --from (got {start_s:g} and {end_s:g})")
    frames: list[TelemetryFrame] = []
    after, upto = round(start_s * 1e6) - 1, round(end_s * 1e6)
    while len(frames) < max_rows:
        page = await storage.frames_between(device, after, upto, min(HISTORY_PAGE, max_rows - len(frames)))
        frames.extend(page)
        if progress:
            progress.tick(f"loading {device}: {len(frames):,} frames")
        if len(page) < HISTORY_PAGE:
            break
        after = round(page[-1].ts * 1e6)
    if not frames:
        raise InputError(f"device {device!r} has no stored frames between {start_s:g} and {end_s:g}")
    chosen = list(sensors) or [(n, None) for n, v in sorted(frames[0].sensors.items())
                               if n != label and isinstance(v, bool | int | float)]
    if not chosen:
        raise InputError(f"device {device!r}: its frames hold no numeric sensors; name them with --sensors")
    names = [n for n, _ in chosen]
    kept = [f for f in frames if all(isinstance(f.sensors.get(n), bool | int | float) for n in names)
            and (label is None or label in f.sensors)]
    notes = []
    if len(kept) < len(frames):
        notes.append(f"{len(frames) - len(kept):,} of {len(frames):,} frames lack a numeric reading of "
                     f"{', '.join(names)}{' or the label ' + label if label else ''} and were left out")
        if len(kept) < len(frames) / 2:
            raise InputError(f"device {device!r}: {notes[0]}; check the sensor names")
    specs = [SensorSpec(name=n, unit=u) for n, u in chosen]
    # the provisional frame-mode schema only names the sensors: sensor_matrix is the edge's own reader
    reader = ModelSchema(kind="anomaly", sensors=specs, mode="frame", threshold=0.0,
                         scaling=Scaling(mean=[0.0] * len(specs), scale=[1.0] * len(specs)))
    values = sensor_matrix(reader, kept) if kept else np.empty((0, len(specs)))
    records = {r.name: r for r in await storage.device_records()}
    ts = np.asarray([f.ts for f in kept], dtype=np.float64)
    labels = np.asarray([_label_text(f.sensors[label]) for f in kept], dtype=str) if label else None
    owner = records[device].owner if device in records else None
    source = DataSource(kind="history", device_id=device, edge_id=owner, rows=len(kept), label_column=label,
                        start=float(ts[0]) if ts.size else start_s, end=float(ts[-1]) if ts.size else end_s)
    if progress:
        progress.say(f"loaded {len(kept):,} frames of {len(specs)} sensors from {device}")
    return Table(sensors=specs, values=values, ts=ts, labels=labels, source=source, notes=notes)


def _runs(ts: npt.NDArray[np.float64] | None, n: int, interval: float, tolerance: float) -> list[slice]:
    """Runs of rows whose times rise by the interval (within tolerance): windows never span a gap."""
    if ts is None or n < 2:
        return [slice(0, n)]
    gaps = np.diff(ts)
    breaks = np.flatnonzero((gaps < interval * (1 - tolerance)) | (gaps > interval * (1 + tolerance))) + 1
    edges = [0, *breaks.tolist(), n]
    return [slice(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


def input_rows(schema: ModelSchema, table: Table,
               progress: Progress | None = None) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.str_] | None]:
    """Unscaled input rows (``shared.modelschema.raw_inputs``) and each row's label: a window's is its last frame's."""
    if schema.window is None:
        return raw_inputs(schema, table.values), table.labels
    spec = schema.window
    runs = [r for r in _runs(table.ts, len(table), spec.interval_s, spec.interval_tolerance)
            if r.stop - r.start >= spec.length]
    if not runs:
        raise InputError(f"no run of {spec.length} readings {spec.interval_s:g} s apart: too few rows for a window "
                         f"of {spec.length} (got {len(table):,} rows)")
    rows, labels = [], []
    done, total = 0, sum(r.stop - r.start for r in runs)
    for run in runs:
        rows.append(raw_inputs(schema, table.values[run]))
        if table.labels is not None:
            count = len(rows[-1])
            labels.append(table.labels[run][spec.length - 1::spec.step][:count])
        done += run.stop - run.start
        if progress:
            progress.step("features", done, total, f"{sum(len(r) for r in rows):,} windows")
    skipped = len(table) - total
    if skipped:
        table.notes.append(f"{skipped:,} readings in runs shorter than a window were left out")
    return np.vstack(rows), (np.concatenate(labels) if labels else None)

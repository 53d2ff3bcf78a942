"""The device fields bindings own, and a device's measured values for them, which sync drops.

A derived output is a series of its device like any sensor. A binding is
refused when its output is a field the device sends already (422 naming the
key); a device that starts sending a field of that name later would mix
measured and derived points in one series, which no chart or aggregate could
tell apart. The rule: **the binding owns the field**. While a binding that
derives a field exists (enabled or not), sync drops the device's measured
values for that field, stores the rest of each frame, counts the values
dropped (``twincloud_sync_values_dropped_total{reason="derived_field"}``) and
says so in a WARNING naming the device, the field and the binding (at most
once a minute per edge). The fix is a rename: of the field at the edge, or of
the binding's output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cloud.storage.rows import metric_field
from shared.frame import TelemetryFrame

__all__ = ["Dropped", "drop_owned"]


@dataclass(frozen=True, slots=True)
class Dropped:
    """Measured values of one device field that a binding owns, dropped from a batch."""

    device: str
    field: str
    binding: str
    count: int


def drop_owned(frames: list[tuple[int, TelemetryFrame]], owned: Mapping[str, Mapping[str, str]],
               ) -> tuple[list[tuple[int, TelemetryFrame]], list[Dropped]]:
    """``frames`` without the values of fields a binding owns (``owned``: device -> field -> binding)."""
    if not owned:
        return frames, []
    counts: dict[tuple[str, str], int] = {}
    out: list[tuple[int, TelemetryFrame]] = []
    for seq, frame in frames:
        fields = owned.get(frame.device_id)
        if not fields:
            out.append((seq, frame))
            continue
        sensors = {k: v for k, v in frame.sensors.items() if k not in fields}
        metrics = {k: v for k, v in frame.metrics.items() if metric_field(k) not in fields}
        if len(sensors) == len(frame.sensors) and len(metrics) == len(frame.metrics):
            out.append((seq, frame))
            continue
        for key in frame.sensors.keys() - sensors.keys():
            counts[(frame.device_id, key)] = counts.get((frame.device_id, key), 0) + 1
        for key in frame.metrics.keys() - metrics.keys():
            counts[(frame.device_id, metric_field(key))] = counts.get((frame.device_id, metric_field(key)), 0) + 1
        out.append((seq, frame.model_copy(update={"sensors": sensors, "metrics": metrics})))
    return out, [Dropped(device, field, owned[device][field], n) for (device, field), n in sorted(counts.items())]

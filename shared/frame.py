"""The one canonical record: a TelemetryFrame, validated strictly at every boundary.

A frame is identified by ``(device_id, ts)``: two frames of one device with the
same timestamp are the same reading, which is what lets a retried MQTT publish
or a retried sync batch be stored once.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    field_validator,
)

__all__ = [
    "DEVICE_ID_PATTERN",
    "MAX_METRICS",
    "MAX_SENSORS",
    "MAX_STRING_VALUE",
    "TS_MAX",
    "TS_MIN",
    "FrameStatus",
    "SensorValue",
    "TelemetryFrame",
]

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$"
MAX_SENSORS = 512
MAX_METRICS = 128
MAX_STRING_VALUE = 256
TS_MIN = 946_684_800.0  # 2000-01-01T00:00:00Z
TS_MAX = 4_102_444_800.0  # 2100-01-01T00:00:00Z
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1

DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False, strict=True)]


def _check_sensor_value(value: Any) -> bool | int | float | str:
    """One plain check instead of a pydantic union: one clear message, and faster."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if INT_MIN <= value <= INT_MAX:
            return value
        raise ValueError("integer does not fit in 64 bits")
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise ValueError(f"must be a finite number (got {value!r})")
    if isinstance(value, str):
        if len(value) <= MAX_STRING_VALUE:
            # NUL characters are dropped: PostgreSQL's text holds none (a batch refused for one would come back
            # forever), and no reading means one.
            return value.replace("\x00", "") if "\x00" in value else value
        raise ValueError(f"text longer than {MAX_STRING_VALUE} characters")
    raise ValueError(f"expected a number, a boolean or a short text (got {type(value).__name__})")


SensorValue = Annotated[
    bool | int | float | str,
    PlainValidator(_check_sensor_value, json_schema_input_type=bool | int | float | str),
]
FrameStatus = Literal["ok", "warning", "alarm", "fault"]


def _to_epoch_seconds(value: Any) -> Any:
    """Accept seconds since the epoch, an ISO 8601 string, a datetime or a msgpack Timestamp."""
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds since the epoch, got a boolean")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                "expected seconds since the epoch or an ISO 8601 time such as "
                f"'2026-01-31T12:00:00Z' (got {value[:40]!r})"
            ) from None
        return _to_epoch_seconds(parsed)
    to_unix = getattr(value, "to_unix", None)  # msgpack.Timestamp
    if callable(to_unix):
        return to_unix()
    return value


class TelemetryFrame(BaseModel):
    """One reading of one device at one instant.

    ``ts`` is seconds since the Unix epoch (UTC). ``sensors`` holds raw readings
    (numbers, booleans or short strings), ``metrics`` derived numbers such as an
    anomaly score, ``status`` the device state as the edge judged it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ts: float = Field(description="seconds since the Unix epoch, UTC")
    device_id: DeviceId = Field(description="letters, digits and . _ : - (at most 64)")
    sensors: dict[Key, SensorValue] = Field(default_factory=dict, max_length=MAX_SENSORS)
    metrics: dict[Key, FiniteFloat] = Field(default_factory=dict, max_length=MAX_METRICS)
    status: FrameStatus = "ok"

    @field_validator("ts", mode="before")
    @classmethod
    def _coerce_ts(cls, value: Any) -> Any:
        return _to_epoch_seconds(value)

    @field_validator("ts")
    @classmethod
    def _check_ts(cls, value: float) -> float:
        if not math.isfinite(value) or not TS_MIN <= value < TS_MAX:
            raise ValueError(
                "must be seconds since the epoch between 2000 and 2100 "
                f"(got {value!r}; milliseconds or nanoseconds are not accepted)"
            )
        return value

    def with_metrics(self, metrics: dict[str, float]) -> TelemetryFrame:
        """This frame with ``metrics`` in place of its own, without validation: for trusted derived numbers
        (finite floats, at most MAX_METRICS) on the data path, where ``model_copy(update=...)`` costs three
        times as much per frame."""
        out = object.__new__(TelemetryFrame)
        state = self.__dict__.copy()
        state["metrics"] = metrics
        object.__setattr__(out, "__dict__", state)
        object.__setattr__(out, "__pydantic_fields_set__", self.__pydantic_fields_set__ | {"metrics"})
        object.__setattr__(out, "__pydantic_extra__", None)
        object.__setattr__(out, "__pydantic_private__", None)
        return out

    def to_wire(self) -> dict[str, Any]:
        """The plain dict that the codec writes (empty parts left out)."""
        out: dict[str, Any] = {"ts": self.ts, "device_id": self.device_id}
        if self.sensors:
            out["sensors"] = self.sensors
        if self.metrics:
            out["metrics"] = self.metrics
        if self.status != "ok":
            out["status"] = self.status
        return out

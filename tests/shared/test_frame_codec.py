"""The frame contract and the codec, including the malformed payloads devices really send."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import msgpack
import pytest

from shared.codec import decode_frames, decode_obj, encode_frame, encode_frames
from shared.errors import CodecError
from shared.frame import TelemetryFrame

TS = 1_800_000_000.25


def frame_dict(**over: object) -> dict[str, object]:
    base: dict[str, object] = {"ts": TS, "device_id": "press-3", "sensors": {"temp": 71.5, "on": True, "count": 7}}
    base.update(over)
    return base


def test_msgpack_round_trip_keeps_every_value_and_type() -> None:
    frame = TelemetryFrame.model_validate(frame_dict(metrics={"score": 0.25}, status="alarm"))
    [back], rejected = decode_frames(encode_frame(frame))
    assert rejected == []
    assert back == frame
    assert type(back.sensors["on"]) is bool and type(back.sensors["count"]) is int


def test_json_list_of_frames_is_accepted() -> None:
    payload = json.dumps([frame_dict(), frame_dict(ts=TS + 1)]).encode()
    frames, rejected = decode_frames(payload)
    assert [f.ts for f in frames] == [TS, TS + 1] and rejected == []


def test_iso_timestamp_is_converted_to_epoch_seconds() -> None:
    [frame], _ = decode_frames(json.dumps(frame_dict(ts="2027-01-15T08:00:00+01:00")).encode())
    assert frame.ts == datetime(2027, 1, 15, 7, 0, tzinfo=UTC).timestamp()


def test_msgpack_timestamp_extension_is_accepted() -> None:
    payload = msgpack.packb(frame_dict(ts=msgpack.Timestamp.from_unix(TS)), datetime=False)
    [frame], _ = decode_frames(payload)
    assert frame.ts == pytest.approx(TS)


def test_one_bad_frame_does_not_take_the_good_ones_with_it() -> None:
    payload = encode_frames([TelemetryFrame.model_validate(frame_dict())])
    items = msgpack.unpackb(payload) + [frame_dict(device_id="bad id!"), 42]
    frames, rejected = decode_frames(msgpack.packb(items))
    assert len(frames) == 1
    assert [str(r).split(":")[0] for r in rejected] == ["[1].device_id", "[2]"]


@pytest.mark.parametrize(
    ("frame", "path", "words"),
    [
        (frame_dict(sensors={"t": math.nan}), "sensors.t", "finite"),
        (frame_dict(sensors={"t": math.inf}), "sensors.t", "finite"),
        (frame_dict(metrics={"s": -math.inf}), "metrics.s", "finite"),
        (frame_dict(ts=TS * 1000), "ts", "milliseconds"),
        (frame_dict(ts="yesterday"), "ts", "ISO 8601"),
        (frame_dict(ts=True), "ts", "number"),
        (frame_dict(device_id="pr\u00e9ss"), "device_id", "pattern"),
        (frame_dict(device_id="a\u200bb"), "device_id", "pattern"),
        (frame_dict(device_id="x" * 65), "device_id", "pattern"),
        (frame_dict(sensors={"t": [1, 2]}), "sensors.t", "expected a number"),
        (frame_dict(sensors={"t": "x" * 300}), "sensors.t", "longer than 256"),
        (frame_dict(sensors={"t": 2**70}), "sensors.t", "64 bits"),
        (frame_dict(sensors={f"s{i}": 1 for i in range(600)}), "sensors", "at most 512"),
        (frame_dict(status="broken"), "status", "'ok'"),
        (frame_dict(extra=1), "extra", "unknown key"),
    ],
)
def test_invalid_frames_are_refused_with_path_and_reason(frame: dict[str, object], path: str, words: str) -> None:
    frames, [error] = decode_frames(json.dumps(frame).encode())
    assert frames == []
    assert any(p.path == path and words in p.message for p in error.problems), str(error)


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"", "empty"),
        (msgpack.packb(frame_dict())[:-3], "MessagePack"),
        (b'{"ts": 1', "JSON"),
        (b"\xc1", "MessagePack"),  # a byte MessagePack never uses
        (msgpack.packb(frame_dict()) + b"\x00", "extra bytes"),
        (msgpack.packb("just text"), "expected a frame"),
        (msgpack.packb(msgpack.ExtType(5, b"xx")), "extension type 5"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
        (b"\xa3\xff\xfe\xfd", "MessagePack"),  # invalid UTF-8 string
    ],
)
def test_unreadable_payloads_raise_codec_error(payload: bytes, words: str) -> None:
    with pytest.raises(CodecError, match=words):
        decode_frames(payload)


def test_payload_limits_are_enforced() -> None:
    with pytest.raises(CodecError, match="exceeds the limit"):
        decode_obj(b"x" * 2000, max_bytes=1000)
    many = msgpack.packb([frame_dict(ts=TS + i) for i in range(11)])
    with pytest.raises(CodecError, match="11 frames"):
        decode_frames(many, max_frames=10)


def test_a_huge_map_header_does_not_allocate_gigabytes() -> None:
    # A map header claiming 2**32-1 entries followed by nothing.
    with pytest.raises(CodecError):
        decode_frames(b"\xdf\xff\xff\xff\xff")


def test_a_frame_with_metrics_equals_the_pydantic_copy_and_leaves_the_original_alone() -> None:
    original = TelemetryFrame(ts=1_800_000_000.0, device_id="press-1", sensors={"temp": 20.5}, metrics={"a": 1.0},
                              status="warning")
    scored = original.with_metrics({"a": 1.0, "model.score": 0.25})
    assert scored == original.model_copy(update={"metrics": {"a": 1.0, "model.score": 0.25}})
    assert scored.model_fields_set == original.model_fields_set | {"metrics"}
    assert original.metrics == {"a": 1.0}
    assert scored.to_wire()["metrics"] == {"a": 1.0, "model.score": 0.25}
    [back], rejected = decode_frames(encode_frame(scored))
    assert back == scored and not rejected

"""Wire codec: MessagePack first, JSON accepted where a person or a foreign device sends data.

Decoding never raises for one bad frame in a list: good frames come back with the
reasons the others were refused. Only a payload that cannot be read at all
(truncated, neither format, too large) raises ``CodecError``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import msgpack
from pydantic import TypeAdapter, ValidationError

from shared.errors import CodecError, FrameError, Problem
from shared.frame import TelemetryFrame
from shared.validation import validation_problems

__all__ = [
    "MAX_FRAMES_PER_PAYLOAD",
    "MAX_PAYLOAD_BYTES",
    "decode_frames",
    "decode_obj",
    "encode_frame",
    "encode_frames",
    "encode_obj",
    "validate_frame",
    "validate_frames",
]

MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_FRAMES_PER_PAYLOAD = 10_000
_JSON_START = frozenset(b"{[ \t\r\n")
_FRAME_LIST: TypeAdapter[list[TelemetryFrame]] = TypeAdapter(list[TelemetryFrame])


def encode_obj(obj: Any) -> bytes:
    """MessagePack of plain data (dicts, lists, numbers, strings)."""
    return msgpack.packb(obj, use_bin_type=True)


def encode_frame(frame: TelemetryFrame) -> bytes:
    return msgpack.packb(frame.to_wire(), use_bin_type=True)


def encode_frames(frames: Iterable[TelemetryFrame]) -> bytes:
    return msgpack.packb([f.to_wire() for f in frames], use_bin_type=True)


def _refuse_ext(code: int, data: bytes) -> Any:
    raise CodecError(f"MessagePack extension type {code} is not accepted")


def decode_obj(payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Any:
    """Plain data from MessagePack or JSON (chosen by the first byte)."""
    if len(payload) > max_bytes:
        raise CodecError(f"payload of {len(payload)} bytes exceeds the limit of {max_bytes} bytes")
    if not payload:
        raise CodecError("empty payload")
    if payload[0] in _JSON_START:
        try:
            return json.loads(payload)
        except RecursionError:
            raise CodecError("JSON nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise CodecError(f"not valid JSON: {exc}") from None
    limit = min(len(payload), max_bytes)
    try:
        return msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            timestamp=0,
            ext_hook=_refuse_ext,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=limit,
            max_map_len=limit // 2,
            max_ext_len=64,
        )
    except CodecError:
        raise
    except msgpack.ExtraData:
        raise CodecError("not valid MessagePack: extra bytes after the first object") from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        # ValueError covers truncated data, bad UTF-8 and limits exceeded.
        raise CodecError(f"not valid MessagePack: {exc}") from None


def validate_frame(item: Any, prefix: str = "") -> TelemetryFrame:
    """One frame from plain data; raises FrameError with every reason (paths under ``prefix``, e.g. ``[3]``)."""
    prefix = prefix.rstrip(".")  # "[3]." is accepted as well
    if not isinstance(item, dict):
        raise FrameError([Problem(prefix, f"expected a frame (map), got {type(item).__name__}")])
    try:
        return TelemetryFrame.model_validate(item)
    except ValidationError as exc:
        raise FrameError(validation_problems(exc, TelemetryFrame, prefix=prefix)) from None


def validate_frames(items: list[Any]) -> list[TelemetryFrame | FrameError]:
    """Each item as ``validate_frame`` judges it: the frame, or the FrameError that refuses it.

    A list of good frames (the usual case) is validated in one call, which saves
    the per-call overhead; any bad item sends the list through one at a time.
    """
    if all(type(item) is dict for item in items):
        try:
            return list(_FRAME_LIST.validate_python(items))
        except ValidationError:
            pass
    out: list[TelemetryFrame | FrameError] = []
    for item in items:
        try:
            out.append(validate_frame(item))
        except FrameError as exc:
            out.append(exc)
    return out


def decode_frames(
    payload: bytes,
    *,
    max_bytes: int = MAX_PAYLOAD_BYTES,
    max_frames: int = MAX_FRAMES_PER_PAYLOAD,
) -> tuple[list[TelemetryFrame], list[FrameError]]:
    """Frames from a payload holding one frame (a map) or a list of frames.

    Returns the valid frames and one FrameError per refused frame (its
    problems' paths start with ``[index].`` for a list); raises ``CodecError``
    when the payload as a whole is unreadable.
    """
    obj = decode_obj(payload, max_bytes=max_bytes)
    if isinstance(obj, dict):
        items: list[Any] = [obj]
        single = True
    elif isinstance(obj, list):
        items, single = obj, False
        if len(items) > max_frames:
            raise CodecError(f"{len(items)} frames in one payload exceeds the limit of {max_frames}")
    else:
        raise CodecError(f"expected a frame (map) or a list of frames, got {type(obj).__name__}")
    frames: list[TelemetryFrame] = []
    rejected: list[FrameError] = []
    for index, item in enumerate(items):
        try:
            frames.append(validate_frame(item, "" if single else f"[{index}]"))
        except FrameError as exc:
            rejected.append(exc)
    return frames, rejected

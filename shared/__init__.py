"""Contracts the edge and the cloud both speak: the telemetry frame, the sync batch, the codec."""

from shared.batch import EdgeHealth, Rejection, SequencedFrame, SyncAck, SyncBatch
from shared.codec import decode_frames, decode_obj, encode_frame, encode_frames, encode_obj
from shared.errors import CodecError, FrameError, Problem, TwinedgeError
from shared.frame import TelemetryFrame

__all__ = [
    "CodecError",
    "EdgeHealth",
    "FrameError",
    "Problem",
    "Rejection",
    "SequencedFrame",
    "SyncAck",
    "SyncBatch",
    "TelemetryFrame",
    "TwinedgeError",
    "decode_frames",
    "decode_obj",
    "encode_frame",
    "encode_frames",
    "encode_obj",
]

"""Reading a request body safely: size limits before and after decompression, gzip and zstd.

The limits are checked while reading, so a client cannot make the service
buffer more than ``max_body`` bytes, nor inflate a small gzip or zstd body (a
"zip bomb") past ``max_decoded`` bytes.
"""

from __future__ import annotations

import io
import zlib

import zstandard
from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect

__all__ = ["BodyError", "read_body"]


class BodyError(HTTPException):
    def __init__(self, status: int, path: str, message: str) -> None:
        super().__init__(status, detail=[{"path": path, "message": message}])


async def _read_limited(request: Request, max_body: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BodyError(400, "Content-Length", f"not a number (got {declared[:20]!r})")
        if int(declared) > max_body:
            raise BodyError(413, "body", f"{int(declared):,} bytes; the limit is {max_body:,} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise BodyError(413, "body", f"more than the limit of {max_body:,} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BodyError(400, "body", "the client went away before sending the whole body") from None
    return b"".join(chunks)


def _gunzip(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise BodyError(400, "body", f"not valid gzip: {exc}") from None
    if len(out) > limit:
        raise BodyError(413, "body", f"decompresses to more than the limit of {limit:,} bytes")
    if not inflater.eof:
        raise BodyError(400, "body", "gzip data is truncated")
    return out


def _unzstd(data: bytes, limit: int) -> bytes:
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
            out = reader.read(limit + 1)
    except zstandard.ZstdError as exc:
        raise BodyError(400, "body", f"not valid zstd: {exc}") from None
    if len(out) > limit:
        raise BodyError(413, "body", f"decompresses to more than the limit of {limit:,} bytes")
    if data and not out:
        raise BodyError(400, "body", "zstd data is truncated or empty")
    return out


async def read_body(request: Request, max_body: int, max_decoded: int) -> tuple[bytes, int]:
    """The decoded body and its size on the wire; 413, 415 or 400 (as HTTPException) when refused."""
    raw = await _read_limited(request, max_body)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("identity", ""):
        if len(raw) > max_decoded:
            raise BodyError(413, "body", f"more than the limit of {max_decoded:,} bytes")
        return raw, len(raw)
    if encoding in ("gzip", "x-gzip"):
        return _gunzip(raw, max_decoded), len(raw)
    if encoding == "zstd":
        return _unzstd(raw, max_decoded), len(raw)
    raise BodyError(415, "Content-Encoding", f"{encoding[:40]!r} is not accepted; use gzip, zstd or none")

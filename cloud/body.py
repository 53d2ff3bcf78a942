"""Reading a request body safely: size limits before and after decompression, gzip and zstd.

The limits are checked while reading, so a client cannot make the service
buffer more than ``max_body`` bytes, nor inflate a small gzip or zstd body (a
"zip bomb") past ``max_decoded`` bytes.
"""

from __future__ import annotations

import io
import zlib

import zstandard
from fastapi import Request
from starlette.requests import ClientDisconnect

from shared.errors import InputError

__all__ = ["BodyError", "BodyTimeout", "BodyTooLarge", "EncodingRefused", "check_declared", "read_body", "too_large"]


class BodyError(InputError):
    """The body cannot be read: a broken Content-Length, gzip or zstd, or a client that went away."""


class BodyTooLarge(BodyError):
    """The body, or what it decompresses to, is over a limit."""


class BodyTimeout(BodyError):
    """The body did not arrive in full within ``server.body_timeout``."""


class EncodingRefused(BodyError):
    """The body's Content-Type or Content-Encoding is not one this route takes."""


def too_large(limit: int, declared: int | None = None) -> str:
    """Why a body over ``limit`` bytes is refused (``declared``: its Content-Length, when it has one)."""
    if limit == 0:
        return "this route takes no body"
    if declared is None:
        return f"more than the limit of {limit:,} bytes for this route"
    return f"{declared:,} bytes; the limit for this route is {limit:,} bytes"


def check_declared(declared: str | None, limit: int) -> None:
    """BodyError for a Content-Length that is no number, BodyTooLarge for one over ``limit``."""
    if declared is None:
        return
    text = declared.strip()
    if not (text.isascii() and text.isdigit()):
        raise BodyError(f"not a number (got {declared[:20]!r})", "Content-Length")
    if int(text) > limit:
        raise BodyTooLarge(too_large(limit, int(text)), "body")


async def _read_limited(request: Request, max_body: int) -> bytes:
    check_declared(request.headers.get("content-length"), max_body)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise BodyTooLarge(too_large(max_body), "body")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BodyError("the client went away before sending the whole body", "body") from None
    return b"".join(chunks)


def _gunzip(data: bytes, limit: int) -> bytes:
    """Every member of a gzip body (``cat a.gz b.gz`` is one valid gzip stream), or zlib data."""
    out = bytearray()
    rest = data
    while True:
        inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise BodyError(f"not valid gzip: {exc}", "body") from None
        if len(out) > limit:
            raise BodyTooLarge(f"decompresses to more than the limit of {limit:,} bytes", "body")
        if not inflater.eof:
            raise BodyError("gzip data is truncated", "body")
        rest = inflater.unused_data
        if not rest:
            return bytes(out)


def _unzstd(data: bytes, limit: int) -> bytes:
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
            out = reader.read(limit + 1)
    except zstandard.ZstdError as exc:
        raise BodyError(f"not valid zstd: {exc}", "body") from None
    if len(out) > limit:
        raise BodyTooLarge(f"decompresses to more than the limit of {limit:,} bytes", "body")
    if data and not out:
        raise BodyError("zstd data is truncated or empty", "body")
    return out


async def read_body(request: Request, max_body: int, max_decoded: int) -> tuple[bytes, int]:
    """The decoded body and its size on the wire; BodyTooLarge, EncodingRefused or BodyError when refused."""
    raw = await _read_limited(request, max_body)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("identity", ""):
        if len(raw) > max_decoded:
            raise BodyTooLarge(f"more than the limit of {max_decoded:,} bytes", "body")
        return raw, len(raw)
    if encoding in ("gzip", "x-gzip"):
        return _gunzip(raw, max_decoded), len(raw)
    if encoding == "zstd":
        return _unzstd(raw, max_decoded), len(raw)
    raise EncodingRefused(f"{encoding[:40]!r} is not accepted; use gzip, zstd or none", "Content-Encoding")

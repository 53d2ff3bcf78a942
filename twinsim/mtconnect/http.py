"""Just enough HTTP/1.1 for the test agent, on asyncio streams: GET requests (keep-alive), plain
responses with Content-Length, and chunked ``multipart/x-mixed-replace`` streams.

Requests are bounded (the head at ``MAX_HEAD`` bytes, at most ``MAX_PARAMS`` query parameters), a
request with a body is refused, and an idle keep-alive connection is closed after ``IDLE_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["IDLE_TIMEOUT", "MAX_HEAD", "BadRequest", "Request", "read_request", "response_head"]

MAX_HEAD = 16 * 1024
MAX_PARAMS = 20
IDLE_TIMEOUT = 60.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            413: "Content Too Large", 431: "Request Header Fields Too Large"}


class BadRequest(Exception):
    """A request the agent cannot read; answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # decoded, without the query
    query: dict[str, str]  # the last value of each parameter
    keep_alive: bool


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request on a connection; None when the client closed it or stayed idle too long."""
    try:
        async with asyncio.timeout(IDLE_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest(431, f"the request head exceeds {MAX_HEAD} bytes") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "not an HTTP/1.x request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadRequest(400, f"a malformed header line: {line[:60]!r}")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") or headers.get("content-length", "0") not in ("", "0"):
        raise BadRequest(413, "the agent takes no request body")
    split = urlsplit(target)
    try:
        raw = parse_qs(split.query, keep_blank_values=True, max_num_fields=MAX_PARAMS)
    except ValueError:
        raise BadRequest(400, f"more than {MAX_PARAMS} query parameters") from None
    connection = headers.get("connection", "").lower()
    keep = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return Request(method=method, path=unquote(split.path), query={k: v[-1] for k, v in raw.items()},
                   keep_alive=keep)


def response_head(status: int, content_type: str, *, length: int | None, keep_alive: bool) -> bytes:
    """The status line and headers; ``length`` None means a chunked body."""
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        f"Date: {formatdate(usegmt=True)}",
        "Server: twinsim MTConnect agent",
        "Cache-Control: private, max-age=0",
        "Expires: -1",
        f"Content-Type: {content_type}",
        "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


LAST_CHUNK = b"0\r\n\r\n"

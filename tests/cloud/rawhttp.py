"""HTTP/1.1 over a plain socket, for clients no library would be: stalled, oversized, malformed.

    sock = open_request(port, "POST", "/api/v1/sync/batches", {"Content-Length": "1000"}, b"x")
    status, headers, body = read_response(sock)      # blocks until the server answers (or closes)
    assert closed_by_server(sock)
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

__all__ = ["closed_by_server", "open_request", "read_response", "send_all"]


def open_request(port: int, method: str, path: str, headers: Mapping[str, str], body: bytes = b"",
                 *, raw_head: bytes | None = None) -> socket.socket:
    """Connect, send the request head (``raw_head`` as is, when given) and ``body``; the socket stays open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if raw_head is None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in headers.items())]
        raw_head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    sock.sendall(raw_head + body)
    return sock


def send_all(sock: socket.socket, data: bytes, chunk: int = 1 << 20) -> int:
    """Send as much of ``data`` as the server takes; the bytes sent before it closed or reset the connection."""
    sent = 0
    try:
        while sent < len(data):
            sent += sock.send(data[sent:sent + chunk])
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    return sent


def read_response(sock: socket.socket, timeout: float = 15.0) -> tuple[int, dict[str, str], bytes]:
    """The status, headers (lower-case names) and body of the next response on ``sock``."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole response head: {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(status_line.split()[1]), headers, rest[:length]


def closed_by_server(sock: socket.socket, timeout: float = 10.0) -> bool:
    """Whether the server closes the connection within ``timeout`` (what it still sends is read and dropped)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True

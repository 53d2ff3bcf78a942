"""An incremental reader of ``multipart/x-mixed-replace`` streams, as MTConnect agents send ``/sample``.

Bytes go in as they arrive, in chunks split anywhere (inside a boundary, a header, a CRLF); complete
part bodies come out in order. A part is framed by its ``Content-Length`` header when it has one, by the
next boundary otherwise. Every buffer is bounded: a part longer than ``max_part``, headers longer than
``MAX_HEADERS`` or a preamble that never reaches a boundary raise ``ProtocolError``.
"""

from __future__ import annotations

import re

from edge.sources.mtconnect.protocol import ProtocolError

__all__ = ["MAX_HEADERS", "MultipartReader", "boundary_from_content_type"]

MAX_HEADERS = 16 * 1024
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,./:=?\- ]{0,69}[0-9A-Za-z'()+_,./:=?\-]")  # RFC 2046, 1..70 chars

_SEEK, _HEADERS, _LENGTH, _DELIMITED, _DONE = range(5)


def boundary_from_content_type(value: str) -> bytes:
    """The boundary of a ``multipart/x-mixed-replace; boundary=...`` Content-Type value."""
    media, _, params = value.partition(";")
    if not media.strip().lower().startswith("multipart/"):
        raise ProtocolError(f"the agent did not answer with a multipart stream (Content-Type {value[:80]!r})")
    for param in params.split(";"):
        key, _, raw = param.partition("=")
        if key.strip().lower() != "boundary":
            continue
        text = raw.strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1]
        try:
            boundary = text.encode("ascii")
        except UnicodeEncodeError:
            break
        if _BOUNDARY.fullmatch(boundary):
            return boundary
        break
    raise ProtocolError(f"the multipart Content-Type has no usable boundary ({value[:120]!r})")


class MultipartReader:
    """Feed bytes, get the part bodies each chunk completed."""

    def __init__(self, boundary: bytes, *, max_part: int = 16 * 1024 * 1024) -> None:
        if not _BOUNDARY.fullmatch(boundary):
            raise ProtocolError(f"not a multipart boundary: {boundary[:80]!r}")
        self._dash = b"--" + boundary
        self._delim = b"\n--" + boundary  # a boundary inside a body starts a line
        self._max_part = max_part
        self._buf = bytearray()
        self._state = _SEEK
        self._length = 0
        self._skipped = 0  # bytes dropped while looking for a boundary
        self._scan = 0  # where the next delimiter search starts, so a long body is not rescanned

    @property
    def finished(self) -> bool:
        """The close delimiter (``--boundary--``) was read; later bytes are ignored."""
        return self._state == _DONE

    def feed(self, data: bytes) -> list[bytes]:
        if self._state == _DONE:
            return []
        self._buf += data
        parts: list[bytes] = []
        while self._step(parts):
            pass
        return parts

    def _step(self, parts: list[bytes]) -> bool:
        """Advance one state if the buffer allows; False when more bytes are needed."""
        if self._state == _SEEK:
            return self._seek()
        if self._state == _HEADERS:
            return self._headers()
        if self._state == _LENGTH:
            if len(self._buf) < self._length:
                return False
            parts.append(bytes(self._buf[: self._length]))
            del self._buf[: self._length]
            self._state = _SEEK
            return True
        if self._state == _DELIMITED:
            return self._delimited(parts)
        return False

    def _seek(self) -> bool:
        """Skip to a boundary line (preamble, the CRLF after a body) and past it."""
        at = self._buf.find(self._dash)
        if at < 0:
            keep = len(self._dash) - 1  # the start of a boundary split by the chunking
            if len(self._buf) > keep:
                self._skipped += len(self._buf) - keep
                del self._buf[: len(self._buf) - keep]
            if self._skipped > self._max_part:
                raise ProtocolError(f"no multipart boundary within {self._max_part:,} bytes")
            return False
        end = self._boundary_end(at)
        if end is None:
            return False
        if end < 0:  # "--boundaryX": not ours; skip past this spot
            del self._buf[: at + 1]
            return True
        del self._buf[:end]
        self._skipped = 0
        return True

    def _boundary_end(self, at: int) -> int | None:
        """Where the boundary line starting at ``at`` ends (after its line break); None: need more bytes;
        -1: the text there only starts like the boundary."""
        pos = at + len(self._dash)
        buf = self._buf
        if len(buf) < pos + 2:
            return None
        if buf[pos : pos + 2] == b"--":
            self._state = _DONE
            return pos + 2
        while pos < len(buf) and buf[pos] in b" \t":  # transport padding
            pos += 1
            if pos - at > len(self._dash) + 256:
                return -1
        if pos >= len(buf):
            return None
        if buf[pos] == 0x0A:
            self._state = _HEADERS
            return pos + 1
        if buf[pos] == 0x0D:
            if pos + 1 >= len(buf):
                return None
            if buf[pos + 1] == 0x0A:
                self._state = _HEADERS
                return pos + 2
        return -1

    def _headers(self) -> bool:
        end, skip = self._buf.find(b"\r\n\r\n"), 4
        lf = self._buf.find(b"\n\n")
        if lf >= 0 and (end < 0 or lf < end):
            end, skip = lf, 2
        if self._buf.startswith(b"\r\n") or self._buf.startswith(b"\n"):  # a part without headers
            end, skip = 0, 2 if self._buf.startswith(b"\r\n") else 1
        if end < 0:
            if len(self._buf) > MAX_HEADERS:
                raise ProtocolError(f"the headers of a multipart part exceed {MAX_HEADERS:,} bytes")
            return False
        length: int | None = None
        for line in bytes(self._buf[:end]).splitlines():
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                text = value.strip()
                if not text.isdigit() or len(text) > 18:
                    raise ProtocolError(f"a multipart part has a bad Content-Length ({text[:40]!r})")
                length = int(text)
        del self._buf[: end + skip]
        if length is None:
            self._state, self._scan = _DELIMITED, 0
        elif length > self._max_part:
            raise ProtocolError(f"a multipart part of {length:,} bytes exceeds the limit of {self._max_part:,}")
        else:
            self._state, self._length = _LENGTH, length
        return True

    def _delimited(self, parts: list[bytes]) -> bool:
        while True:
            at = self._buf.find(self._delim, self._scan)
            if at < 0:
                if len(self._buf) > self._max_part + len(self._delim) + 1:
                    raise ProtocolError(f"a multipart part exceeds the limit of {self._max_part:,} bytes")
                self._scan = max(0, len(self._buf) - len(self._delim) + 1)
                return False
            end = self._boundary_end(at + 1)
            state = self._state
            if end is None:
                self._state = _DELIMITED
                self._scan = at
                return False
            if end < 0:
                self._state = _DELIMITED
                self._scan = at + 1
                continue
            body_end = at - 1 if at > 0 and self._buf[at - 1] == 0x0D else at
            if body_end > self._max_part:
                raise ProtocolError(f"a multipart part exceeds the limit of {self._max_part:,} bytes")
            parts.append(bytes(self._buf[:body_end]))
            del self._buf[:end]
            self._state = state
            return True

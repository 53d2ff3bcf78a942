"""How a twinedge command ends: the daemon's own error types and the exit code of each, in one place.

0 ok; 1 a runtime problem (the daemon stopped after an error, the daemon is not
reachable, a device could not be read); 2 usage (argparse); 78 (EX_CONFIG) the
configuration or the environment is wrong, so that systemd does not restart
into the same failure (the unit has ``RestartPreventExitStatus=78``).
"""

from __future__ import annotations

from shared.errors import EX_CONFIG, ConfigFileError, TwinedgeError

__all__ = ["EXIT_CODES", "DaemonFailed", "StartupError", "exit_code"]


class StartupError(TwinedgeError):
    """The daemon cannot start with this configuration or environment (a port in use, an unreadable file)."""

    def __str__(self) -> str:
        return f"cannot start: {super().__str__()}"


class DaemonFailed(TwinedgeError):
    """The running daemon hit an error it cannot go on with (systemd restarts it)."""

    def __str__(self) -> str:
        return f"stopped after an error: {super().__str__()}"


EXIT_CODES: dict[type[BaseException], int] = {
    ConfigFileError: EX_CONFIG,
    StartupError: EX_CONFIG,
    DaemonFailed: 1,
    TwinedgeError: 1,
}


def exit_code(exc: BaseException) -> int:
    """The exit code for an error that ended a command (its closest class in EXIT_CODES)."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1

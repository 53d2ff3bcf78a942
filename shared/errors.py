"""Error types both sides raise: one hierarchy, each error carrying plain-words reasons.

Errors about input (a frame, a request, an assembly) derive from ``InputError``
and list every reason as ``Problem(path, message)``. What an error becomes at a
boundary (an HTTP status, an exit code) is decided there, in one place, by its
class: the errors themselves carry no status codes.
"""

from __future__ import annotations

__all__ = ["EX_CONFIG", "CodecError", "ConfigFileError", "FrameError", "InputError", "Problem", "TwinedgeError"]

EX_CONFIG = 78  # sysexits.h EX_CONFIG: every command exits with it on a bad config (systemd: no restart loop)


class TwinedgeError(Exception):
    """Base of every error twinedge raises on purpose."""


class Problem(tuple[str, str]):
    """One reason a value was refused: ``(path, message)``, e.g. ``("sensors.temp", "...")``."""

    __slots__ = ()

    def __new__(cls, path: str, message: str) -> Problem:
        return super().__new__(cls, (path, message))

    @property
    def path(self) -> str:
        return self[0]

    @property
    def message(self) -> str:
        return self[1]

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InputError(TwinedgeError):
    """Input was refused. ``problems`` lists every reason; ``str()`` joins them.

    Raise it with one message (and the path it is about) or with a list of problems.
    """

    def __init__(self, message: str | list[Problem], path: str = "") -> None:
        self.problems = list(message) if isinstance(message, list) else [Problem(path, message)]
        super().__init__("; ".join(str(p) for p in self.problems) or type(self).__name__)


class FrameError(InputError):
    """A telemetry frame failed validation. ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems or [Problem("", "invalid frame")])


class CodecError(InputError):
    """A payload could not be decoded at all (truncated, not MessagePack/JSON, too large)."""


class ConfigFileError(TwinedgeError):
    """A config file is unreadable or invalid. ``lines`` holds one message per problem."""

    def __init__(self, path: str, lines: list[str]) -> None:
        self.path = path
        self.lines = lines
        super().__init__(f"{path}: " + "; ".join(lines))

    def report(self) -> str:
        """What a CLI prints: the file and count, then one indented line per problem."""
        return "\n".join([f"{self.path}: {len(self.lines)} problem(s)", *(f"  {line}" for line in self.lines)])

"""Config building blocks both services use: strict models, units, and errors a person can read.

Every config error is rendered one per line as ``key.path: what was expected
(got value)``, with the file line where it can be found and a suggestion for
misspelt keys, e.g. ``sources[0].pol_interval: unknown key; did you mean
'poll_interval'?``. The formatter is ``shared.validation``'s, the one HTTP
bodies and wire frames are reported with too.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from shared.errors import EX_CONFIG, ConfigFileError
from shared.validation import validation_report

__all__ = [
    "EX_CONFIG",
    "ByteSize",
    "ConfigFileError",
    "Duration",
    "StrictModel",
    "format_validation_error",
    "load_config",
    "read_toml",
    "parse_bytes",
    "parse_duration",
]

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are refused; a loaded config is read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(us|ms|s|min|m|h)\s*$")
_BYTES_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}
_BYTES_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]+)\s*$", re.IGNORECASE)


def parse_duration(value: Any) -> Any:
    """'250ms', '1.5s', '2m', '1h' -> seconds (float). Bare numbers are refused: units are explicit."""
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not match:
            raise ValueError(f"expected a duration such as '100ms', '1.5s', '2m' or '1h' (got {value!r})")
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"give the unit, e.g. '{value}s' or '{value}ms' (got {value!r})")
    return value


def parse_bytes(value: Any) -> Any:
    """'512MB', '1GiB', '64kB' -> bytes (int). A bare integer is taken as bytes."""
    if isinstance(value, str):
        match = _BYTES_RE.match(value)
        unit = match.group(2).lower() if match else ""
        if not match or unit not in _BYTES_UNITS:
            raise ValueError(f"expected a size such as '64kB', '512MB' or '1GiB' (got {value!r})")
        return int(float(match.group(1)) * _BYTES_UNITS[unit])
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_bytes)]


def format_validation_error(
    exc: ValidationError, model: type[BaseModel], text: str | None = None
) -> list[str]:
    """One line per problem: ``path: message (got value)``, with line and suggestion where known."""
    return validation_report(exc, model, text)


def read_toml(path: str | Path) -> tuple[str, dict[str, Any]]:
    """A TOML file's text and its tables, raising ConfigFileError with a readable line when either fails."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(str(path), ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(str(path), [f"cannot read the file: {exc}"]) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(str(path), [f"not valid TOML: {exc}"]) from None


def load_config(path: str | Path, model: type[M]) -> M:
    """Read and validate a TOML config file, raising ConfigFileError with readable lines."""
    text, data = read_toml(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigFileError(str(path), format_validation_error(exc, model, text)) from None



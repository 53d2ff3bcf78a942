"""Config building blocks both services use: strict models, units, and errors a person can read.

Every config error is rendered one per line as ``key.path: what was expected
(got value)``, with the file line where it can be found and a suggestion for
misspelt keys, e.g. ``sources[0].pol_interval: unknown key; did you mean
'poll_interval'?``.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from shared.errors import EX_CONFIG, ConfigFileError

__all__ = [
    "EX_CONFIG",
    "ByteSize",
    "ConfigFileError",
    "Duration",
    "StrictModel",
    "format_validation_error",
    "load_config",
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


# --- error rendering -------------------------------------------------------------


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _union_members(tp: Any) -> list[Any]:
    tp = _unwrap(tp)
    if get_origin(tp) in (Union, types.UnionType):
        return [_unwrap(a) for a in get_args(tp)]
    return [tp]


def _tag_of(model: Any) -> str | None:
    if isinstance(model, type) and issubclass(model, BaseModel):
        field = model.model_fields.get("kind")
        if field is not None and get_origin(field.annotation) is Literal:
            return str(get_args(field.annotation)[0])
    return None


def _walk(model: Any, loc: tuple[Any, ...]) -> tuple[str, type[BaseModel] | None]:
    """Render a pydantic loc as ``a.b[2].c``, dropping union tags; return the last model seen."""
    out = ""
    current: Any = model
    last_model: type[BaseModel] | None = model if isinstance(model, type) else None
    items = list(loc)
    while items:
        part = items.pop(0)
        members = _union_members(current)
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        if len(models) > 1 and isinstance(part, str):
            tagged = [m for m in models if _tag_of(m) == part]
            if tagged:  # pydantic puts the discriminator value in the loc
                current = tagged[0]
                last_model = current
                continue
        if len(models) == 1:
            current = models[0]
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            last_model = current
            out += ("." if out else "") + part
            field = current.model_fields.get(part)
            current = field.annotation if field is not None else None
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
        origin = get_origin(_unwrap(current))
        args = get_args(_unwrap(current))
        if origin in (list, tuple, set, frozenset) and args:
            current = args[0]
        elif origin is dict and len(args) == 2:
            current = args[1]
        else:
            current = None
    return out, last_model


def _find_line(text: str | None, key: str) -> int | None:
    """The file line of ``key = ...`` when the key occurs exactly once."""
    if not text or not key:
        return None
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=", re.MULTILINE)
    hits = [m.start() for m in pattern.finditer(text)]
    if len(hits) != 1:
        return None
    return text.count("\n", 0, hits[0]) + 1


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def format_validation_error(
    exc: ValidationError, model: type[BaseModel], text: str | None = None
) -> list[str]:
    """One line per problem: ``path: message (got value)``, with line and suggestion where known."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path, owner = _walk(model, loc)
        last = loc[-1] if loc else ""
        message = err["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
            if owner is not None:
                close = difflib.get_close_matches(str(last), list(owner.model_fields), n=1)
                if close:
                    message += f"; did you mean {close[0]!r}?"
        elif err["type"] == "missing":
            message = "required key is missing"
        elif err["type"] == "union_tag_invalid":
            ctx = err.get("ctx", {})
            field_name, tag = ctx.get("discriminator", "kind"), ctx.get("tag")
            message = f"unknown {field_name} {tag!r}; expected one of {ctx.get('expected_tags')}"
        elif err["type"] in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            message = f"{message} (got {_shown(err.get('input'))})"
        elif "input" in err and "(got " not in message and err["type"] != "union_tag_invalid":
            message = f"{message} (got {_shown(err['input'])})"
        findable = isinstance(last, str) and err["type"] != "missing"
        where = _find_line(text, str(last)) if findable else None
        prefix = f"line {where}: " if where else ""
        lines.append(f"{prefix}{path or '(top level)'}: {message}")
    return lines


def load_config(path: str | Path, model: type[M]) -> M:
    """Read and validate a TOML config file, raising ConfigFileError with readable lines."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(str(path), ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(str(path), [f"cannot read the file: {exc}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(str(path), [f"not valid TOML: {exc}"]) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigFileError(str(path), format_validation_error(exc, model, text)) from None



"""The one formatter of pydantic errors: every problem as ``Problem(path, message)``.

Config files, wire frames and HTTP bodies all report their problems through
``validation_problems``, so a person reads the same path syntax everywhere:
keys joined with dots, list positions in brackets, union labels and
discriminator tags left out, e.g. ``sources[2].registers[0].address: Input
should be less than or equal to 65535 (got 70000)``. With the model at hand,
an unknown key gets "did you mean ...?" and, with the file text, its line.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from shared.errors import Problem

__all__ = ["join_path", "shown", "validation_problems", "validation_report"]


@dataclass(frozen=True, slots=True)
class _Rendered:
    problem: Problem
    line: int | None


def shown(value: Any, limit: int = 60) -> str:
    """A value as a person reads it in a message, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def join_path(prefix: str, path: str) -> str:
    """``prefix`` and ``path`` joined the way paths are written: ``[3]`` + ``ts`` -> ``[3].ts``."""
    if not prefix or not path:
        return prefix or path
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _union_members(tp: Any) -> list[Any]:
    """The members of a union (None left out), or ``[tp]`` for any other type."""
    tp = _unwrap(tp)
    if get_origin(tp) in (Union, types.UnionType):
        return [_unwrap(a) for a in get_args(tp) if a is not type(None)]
    return [tp]


def _tag_of(model: Any) -> str | None:
    """The discriminator value of a model in a union tagged on ``kind`` or ``type``."""
    if _is_model(model):
        for name in ("kind", "type"):
            field = model.model_fields.get(name)
            if field is not None and get_origin(field.annotation) is Literal:
                return str(get_args(field.annotation)[0])
    return None


def _item_type(tp: Any) -> Any:
    tp = _unwrap(tp)
    origin, args = get_origin(tp), get_args(tp)
    if origin in (list, tuple, set, frozenset) and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    return None


def _walk(model: Any, loc: Iterable[Any]) -> tuple[str, type[BaseModel] | None]:
    """A pydantic ``loc`` as a path; also the last model it passed through (for suggestions).

    Where a field is a union of several types, pydantic puts the member's label
    (its class name, ``str``, a discriminator tag) into the loc: it is left out.
    """
    out = ""
    current: Any = model
    owner: type[BaseModel] | None = model if _is_model(model) else None
    for part in loc:
        members = _union_members(current) if current is not None else []
        if len(members) > 1 and isinstance(part, str):
            chosen = [m for m in members if _is_model(m) and part in (m.__name__, _tag_of(m))]
            current = chosen[0] if chosen else None
            owner = current if chosen else owner
            continue
        if len(members) == 1:
            current = members[0]
        if _is_model(current) and isinstance(part, str):
            owner = current
            field = current.model_fields.get(part)
            current = field.annotation if field is not None else None
        else:
            current = _item_type(current) if current is not None else None
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out, owner


def _message(err: Mapping[str, Any], owner: type[BaseModel] | None) -> str:
    kind = err.get("type", "")
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        loc = tuple(err.get("loc", ()))
        message = "unknown key"
        if owner is not None and loc:
            close = difflib.get_close_matches(str(loc[-1]), list(owner.model_fields), n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "union_tag_invalid":
        message = (f"unknown {ctx.get('discriminator', 'kind')} {ctx.get('tag')!r}; "
                   f"expected one of {ctx.get('expected_tags')}")
    elif kind == "json_invalid":
        message = f"not valid JSON: {ctx.get('error', message)}"
    elif "input" in err and "(got " not in message and _may_show(err):
        message = f"{message} (got {shown(err['input'])})"
    return message


_SECRET_WORDS = ("password", "token", "secret", "key")


def _may_show(err: Mapping[str, Any]) -> bool:
    """Show the refused value, unless it is a whole section (it may hold a password or token) or a secret."""
    if isinstance(err.get("input"), Mapping | list | tuple):
        return False
    last = str(tuple(err.get("loc", ()) or ("",))[-1]).lower()
    return not any(word in last for word in _SECRET_WORDS)


def _find_line(text: str | None, key: str) -> int | None:
    """The file line of ``key = ...`` when the key occurs exactly once."""
    if not text or not key:
        return None
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=", re.MULTILINE)
    hits = [m.start() for m in pattern.finditer(text)]
    if len(hits) != 1:
        return None
    return text.count("\n", 0, hits[0]) + 1


def _errors(errors: ValidationError | Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    return errors.errors(include_url=False) if isinstance(errors, ValidationError) else errors


def _render(errors: ValidationError | Iterable[Mapping[str, Any]], model: Any, text: str | None,
            prefix: str) -> list[_Rendered]:
    out = []
    for err in _errors(errors):
        loc = () if err.get("type") == "json_invalid" else tuple(err.get("loc", ()))
        path, owner = _walk(model, loc)
        last = loc[-1] if loc else ""
        findable = isinstance(last, str) and err.get("type") != "missing"
        line = _find_line(text, last) if findable and isinstance(last, str) else None
        out.append(_Rendered(Problem(join_path(prefix, path), _message(err, owner)), line))
    return out


def validation_problems(errors: ValidationError | Iterable[Mapping[str, Any]], model: Any = None, *,
                        prefix: str = "") -> list[Problem]:
    """Every problem of a pydantic error (or its ``errors()`` list) as ``Problem(path, message)``.

    ``model`` is the type that was validated: with it, union labels are left
    out of paths and unknown keys get a suggestion. ``prefix`` goes in front
    of every path (``[3]`` for the fourth item of a list).
    """
    return [r.problem for r in _render(errors, model, None, prefix)]


def validation_report(errors: ValidationError, model: Any, text: str | None = None) -> list[str]:
    """One line per problem for a config file: ``line 5: store.disk_budgt: unknown key; did you mean ...``."""
    lines = []
    for r in _render(errors, model, text, ""):
        where = f"line {r.line}: " if r.line else ""
        lines.append(f"{where}{r.problem.path or '(top level)'}: {r.problem.message}")
    return lines

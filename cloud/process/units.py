"""Units at the binding: a sensor's values converted to the unit a model input (or a formula) expects, by pint.

The cloud stores numbers without units (frames carry none, and no register map
reaches the cloud), so a binding states the unit of each sensor it reads. A
conversion pint cannot make (``bar`` into ``degC``) is refused when the binding
is defined, with both units and their dimensions named; it never becomes a
wrong number later.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from tokenize import TokenError

import numpy as np
import pint

from shared.errors import InputError

__all__ = ["UnitsError", "check_unit", "converter"]

_REGISTRY: pint.UnitRegistry = pint.UnitRegistry(autoconvert_offset_to_baseunit=True)


class UnitsError(InputError):
    """A unit pint does not know, or two units that cannot be converted into each other."""


def _unit(text: str, path: str) -> pint.Unit:
    if not text.strip():  # pint reads "" as dimensionless: a unit left blank is a mistake, not a ratio
        raise UnitsError("a unit is empty; give one (e.g. 'degC', 'bar'), or 'dimensionless' for a ratio", path)
    try:
        return _REGISTRY.Unit(text)
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError, AttributeError, TypeError,
            ValueError, AssertionError, TokenError, ArithmeticError, LookupError) as exc:
        # pint's parser lets tokenizer and arithmetic errors of a malformed text through (``(``, ``1/0``)
        raise UnitsError(f"{text!r} is not a unit (e.g. 'degC', 'bar', 'kW', 'm/s'): {exc}", path) from None


def check_unit(text: str, path: str) -> str:
    """``text`` when pint knows it as a unit; UnitsError naming ``path`` otherwise."""
    _unit(text, path)
    return text


def converter(source: str, target: str, path: str) -> Callable[[np.ndarray], np.ndarray]:
    """A function turning values in ``source`` into values in ``target``; UnitsError when they do not convert."""
    a, b = _unit(source, path), _unit(target, path)
    if a == b:
        return lambda values: values
    if not a.is_compatible_with(b):
        raise UnitsError(f"{source!r} ({_dims(a)}) cannot be converted into {target!r} ({_dims(b)})", path)

    def convert(values: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):  # a reading too large for the unit becomes inf: flagged
            return np.asarray(_REGISTRY.Quantity(np.asarray(values, dtype=float), a).to(b).magnitude, dtype=float)

    # The factor is judged now, so that it never becomes an exception or a silent 0 at every reading later.
    try:
        zero, one = convert(np.array([0.0, 1.0]))
    except ArithmeticError as exc:
        raise UnitsError(f"converting {source!r} into {target!r} needs a factor beyond a float: {exc}", path) from None
    if not (math.isfinite(zero) and math.isfinite(one) and one != zero):
        raise UnitsError(f"converting {source!r} into {target!r} needs a factor beyond a float "
                         f"(1 {source} is {one:g} {target})", path)
    return convert


def _dims(unit: pint.Unit) -> str:
    text = str(unit.dimensionality)
    return "dimensionless" if text == "dimensionless" else text.replace("[", "").replace("]", "")

"""Formulas: expressions over a device's sensors, evaluated by simpleeval (never Python ``eval``).

An expression is checked when its binding is defined: at most
``MAX_EXPRESSION_CHARS`` characters, names limited to the binding's inputs,
functions limited to ``FUNCTIONS`` (plus the window functions when the
binding has a window), exponents bounded (``MAX_POWER``), no attribute or item
access, no strings, comprehensions or assignments.

In a formula without a window each name is the input's newest value at the
triggering reading. With a window, each name is still its newest value in
arithmetic, and the window functions (``mean(x)``, ``min``, ``max``, ``sum``,
``count``, ``first``, ``last``, ``rate``) read the values of ``x`` inside the
window. A result that is not a finite number (NaN, infinity, a division by
zero, a missing input) is never stored as a value: the point is flagged.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Sequence
from typing import Any

import simpleeval

from shared.errors import InputError

__all__ = ["FUNCTIONS", "MAX_EXPRESSION_CHARS", "MAX_POWER", "WINDOW_FUNCTIONS", "Formula", "FormulaError",
           "Windowed", "names_of"]

MAX_EXPRESSION_CHARS = 500
MAX_POWER = 64  # the largest exponent ``**`` accepts
_MAX_NODES = 200


class FormulaError(InputError):
    """An expression that is not allowed (a name, a function, a construct, its size)."""


class Windowed(float):
    """An input's newest value that also carries the window's points: arithmetic sees the value."""

    values: tuple[float, ...]
    times: tuple[float, ...]

    def __new__(cls, times: Sequence[float], values: Sequence[float]) -> Windowed:
        obj = super().__new__(cls, values[-1] if values else math.nan)
        obj.values, obj.times = tuple(values), tuple(times)
        return obj


def _window(name: str, fn: Callable[[Windowed], float]) -> Callable[[Any], float]:
    def call(arg: Any) -> float:
        if not isinstance(arg, Windowed):
            raise _EvalProblem(f"{name}() takes an input's name, e.g. {name}(x)")
        if not arg.values:
            return math.nan
        return fn(arg)
    return call


def _rate(w: Windowed) -> float:
    span = w.times[-1] - w.times[0]
    return (w.values[-1] - w.values[0]) / span if span > 0 else math.nan


WINDOW_FUNCTIONS: dict[str, Callable[[Any], float]] = {
    "mean": _window("mean", lambda w: math.fsum(w.values) / len(w.values)),
    "min": _window("min", lambda w: min(w.values)),
    "max": _window("max", lambda w: max(w.values)),
    "sum": _window("sum", lambda w: math.fsum(w.values)),
    "count": _window("count", lambda w: float(len(w.values))),
    "first": _window("first", lambda w: w.values[0]),
    "last": _window("last", lambda w: w.values[-1]),
    "rate": _window("rate", _rate),  # per second, between the window's first and last point
}
FUNCTIONS: dict[str, Callable[..., float]] = {
    "abs": abs, "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log10": math.log10,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "atan2": math.atan2, "hypot": math.hypot,
    "floor": math.floor, "ceil": math.ceil, "round": round,
    "clamp": lambda x, lo, hi: min(max(x, lo), hi),
    "least": min, "greatest": max,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.IfExp, ast.Call, ast.Name,
            ast.Load, ast.Constant, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)


class _EvalProblem(Exception):
    """A value problem while evaluating (flags the point; never a crash)."""


def _pow(a: float, b: float) -> float:
    if abs(b) > MAX_POWER:
        raise _EvalProblem(f"exponent {b:g} is over the limit of {MAX_POWER}")
    result = float(a) ** b
    if isinstance(result, complex):  # Python's answer to a negative base with a fractional exponent
        raise _EvalProblem(f"a negative number ({float(a):g}) to a fractional power ({b:g}) is not a real number")
    return result


def names_of(expression: str) -> set[str]:
    """The names an expression reads (functions and constants left out)."""
    tree = ast.parse(expression, mode="eval")
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - called - _CONSTANTS.keys()


class Formula:
    """A checked expression; ``evaluate(values)`` returns (value, "") or (None, why it is flagged)."""

    def __init__(self, expression: str, inputs: Sequence[str], *, windowed: bool, path: str = "expression") -> None:
        if len(expression) > MAX_EXPRESSION_CHARS:
            raise FormulaError(f"is {len(expression)} characters long; at most {MAX_EXPRESSION_CHARS}", path)
        try:
            tree = ast.parse(expression.strip(), mode="eval")
        except SyntaxError as exc:
            raise FormulaError(f"{expression!r} is not an expression: {exc.msg}", path) from None
        functions = {**FUNCTIONS, **(WINDOW_FUNCTIONS if windowed else {})}
        nodes = list(ast.walk(tree))
        if len(nodes) > _MAX_NODES:
            raise FormulaError(f"has {len(nodes)} parts; at most {_MAX_NODES}", path)
        for node in nodes:
            if not isinstance(node, _ALLOWED):
                raise FormulaError(f"{type(node).__name__.lower()} is not allowed in a formula "
                                   "(numbers, inputs, arithmetic, comparisons and the listed functions only)", path)
            if isinstance(node, ast.Constant) and (isinstance(node.value, str | bytes) or node.value is None):
                raise FormulaError("only numbers may appear as constants", path)
            if isinstance(node, ast.Call):
                if not isinstance(node.func, ast.Name) or node.func.id not in functions:
                    name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
                    extra = "" if windowed or name not in WINDOW_FUNCTIONS else " (window functions need a window)"
                    raise FormulaError(f"function {name!r} is not allowed{extra}; allowed: "
                                       f"{', '.join(sorted(functions))}", path)
                if node.keywords:
                    raise FormulaError("keyword arguments are not allowed", path)
        unknown = sorted(names_of(expression) - set(inputs))
        if unknown:
            raise FormulaError(f"unknown name {unknown[0]!r}; the inputs are: {', '.join(sorted(inputs)) or 'none'}",
                               path)
        self.expression = expression.strip()
        self.names = sorted(names_of(expression))
        operators = dict(simpleeval.DEFAULT_OPERATORS)
        operators[ast.Pow] = _pow
        self._eval = simpleeval.SimpleEval(operators=operators, functions=functions, names={})
        self._tree = self._eval.parse(self.expression)

    def evaluate(self, values: dict[str, float]) -> tuple[float | None, str]:
        missing = [n for n in self.names if n not in values]
        if missing:
            return None, f"no reading of {missing[0]!r} yet"
        bad = [n for n in self.names if not math.isfinite(values[n])]
        if bad:
            return None, f"input {bad[0]!r} is {values[bad[0]]}"
        self._eval.names = {**_CONSTANTS, **values}
        try:
            result = self._eval.eval(self.expression, previously_parsed=self._tree)
        except ZeroDivisionError:
            return None, "division by zero"
        except _EvalProblem as exc:
            return None, str(exc)
        except (ArithmeticError, ValueError, TypeError, simpleeval.InvalidExpression) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        if not isinstance(result, int | float):
            return None, f"the result is {result!r}, not a finite number"
        try:  # an integer (floor, round) can outgrow a float: float() raises on it
            number = float(result)
        except OverflowError:
            return None, "the result is an integer too large for a float, not a finite number"
        if not math.isfinite(number):
            return None, f"the result is {number!r}, not a finite number"
        return number, ""

"""Constant ``#`` variable expressions of Fanuc macro B and LinuxCNC: ``#100``, ``#<depth>``, ``[#1 + 2 * 3]``,
``SIN[30]``, ``#[#1 + 1]``. Evaluated with the variables as the interpreter holds them; what cannot be
evaluated (a vacant variable, a division by zero, an unknown function) raises ``ExprError`` with a plain message.
Recursion is bounded by the expression's length (at most ``MAX_EXPR`` characters).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

__all__ = ["MAX_EXPR", "ExprError", "evaluate"]

MAX_EXPR = 256
MAX_DEPTH = 32  # nested brackets
_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*|\.\d+)|(#)|(<[A-Za-z0-9_]+>)|([A-Z]+)|(\*\*|[-+*/\[\]]))")
_FUNCS: dict[str, Callable[[float], float]] = {
    "SIN": lambda v: math.sin(math.radians(v)), "COS": lambda v: math.cos(math.radians(v)),
    "TAN": lambda v: math.tan(math.radians(v)), "ATAN": lambda v: math.degrees(math.atan(v)),
    "ASIN": lambda v: math.degrees(math.asin(v)), "ACOS": lambda v: math.degrees(math.acos(v)),
    "SQRT": math.sqrt, "ABS": abs, "ROUND": lambda v: float(round(v)), "FIX": lambda v: float(math.floor(v)),
    "FUP": lambda v: float(math.ceil(v)), "LN": math.log, "EXP": math.exp,
}
_BINARY = {"MOD", "AND", "OR", "XOR", "EQ", "NE", "GT", "GE", "LT", "LE"}


class ExprError(ValueError):
    """An expression that cannot be evaluated to a number, in plain words."""


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.upper()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos:].strip() == "":
                break
            raise ExprError(f"cannot read '{text[pos:pos + 20]}' in an expression")
        out.append(match.group(match.lastindex or 0))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, tokens: list[str], variables: dict[str, float]) -> None:
        self.tokens, self.variables, self.pos = tokens, variables, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise ExprError("the expression ends too early")
        self.pos += 1
        return token

    def expression(self) -> float:
        value = self.term()
        while self.peek() in ("+", "-", "OR", "XOR"):
            op, rhs = self.take(), self.term()
            value = value + rhs if op == "+" else value - rhs if op == "-" else float(bool(value) != bool(rhs))
        return value

    def term(self) -> float:
        value = self.power()
        while self.peek() in ("*", "/", "MOD", "AND", "EQ", "NE", "GT", "GE", "LT", "LE"):
            op, rhs = self.take(), self.power()
            if op == "*":
                value *= rhs
            elif op in ("/", "MOD"):
                if rhs == 0:
                    raise ExprError("division by zero in an expression")
                value = value / rhs if op == "/" else math.fmod(value, rhs)
            else:
                value = float({"AND": bool(value) and bool(rhs), "EQ": value == rhs, "NE": value != rhs,
                               "GT": value > rhs, "GE": value >= rhs, "LT": value < rhs, "LE": value <= rhs}[op])
        return value

    def power(self) -> float:
        value = self.unary()
        if self.peek() == "**":
            self.take()
            value = value ** self.unary()
        return value

    def unary(self) -> float:
        token = self.take()
        if token == "-":
            return -self.unary()
        if token == "+":
            return self.unary()
        if token == "[":
            value = self.expression()
            if self.take() != "]":
                raise ExprError("a '[' is not closed")
            return value
        if token == "#":
            nxt = self.peek()
            if nxt is not None and nxt.startswith("<"):
                name = self.take()[1:-1].lower()
            else:
                name = str(int(self.unary()))
            if name not in self.variables:
                raise ExprError(f"variable #{name} is vacant (never set in the program)")
            return self.variables[name]
        if token in _FUNCS:
            if self.peek() != "[":
                raise ExprError(f"{token} needs its argument in [ ]")
            arg = self.unary()
            if token == "ATAN" and self.peek() == "/":  # ATAN[y]/[x]
                self.take()
                return math.degrees(math.atan2(arg, self.unary()))
            return float(_FUNCS[token](arg))
        if token[0].isdigit() or token[0] == ".":
            return float(token)
        raise ExprError(f"'{token}' is not a number, a variable or a known function")


def evaluate(text: str, variables: dict[str, float]) -> float:
    """The value of ``text`` with ``variables`` (names: "100", "depth"); raises ``ExprError``."""
    if len(text) > MAX_EXPR:
        raise ExprError(f"an expression longer than {MAX_EXPR} characters")
    tokens = _tokens(text)
    depth = deepest = 0
    for token in tokens:
        depth += 1 if token == "[" else -1 if token == "]" else 0
        deepest = max(deepest, depth)
    if deepest > MAX_DEPTH:
        raise ExprError(f"brackets nested more than {MAX_DEPTH} deep")
    parser = _Parser(tokens, variables)
    try:
        value = parser.expression()
    except (OverflowError, ValueError, RecursionError) as exc:
        if isinstance(exc, ExprError):
            raise
        raise ExprError(f"the expression cannot be computed ({exc})") from None
    if parser.peek() is not None:
        raise ExprError(f"unexpected '{parser.peek()}' in an expression")
    if not math.isfinite(value):
        raise ExprError("the expression is not a finite number")
    return value

"""Subprograms: Fanuc/Haas ``M98 P.. L..`` (and ``P00031000``), ``M99``, Haas ``M97`` to an N label, Okuma
``CALL O.. Q..``/``RTS``, Siemens ``M17``. Calls nest at most ``Limits.max_depth`` deep; a call beyond that (a
program calling itself, two calling each other) is a diagnostic and is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.programs.tokens import Block

__all__ = ["CallsMixin", "label_key"]


class CallsMixin:
    """Mixed into the interpreter: uses its labels, call stack, limits and diagnostics."""

    blocks: list[Block]
    labels: dict[str, int]
    n_labels: dict[int, int] | None
    stack: list[tuple[int, int, int]]
    limits: Any
    out: Any
    dialect: str
    diag: Callable[..., None]

    def _call(self, code: float, w: dict[str, float], block: Block, pc: int) -> int | None:
        if "P" not in w:
            self.diag(block.line, "error", f"M{code:g} without P: which subprogram?")
            return None
        p = int(w["P"])
        repeats = int(w.get("L", w.get("K", 1)))
        if code == 98.0 and "L" not in w and "K" not in w and p > 9999 and self.dialect == "fanuc":
            repeats, p = p // 10000, p % 10000  # Fanuc M98 P00031000: 3 times O1000
        if code == 97.0:
            name = f"N{p}"
            start = self._n_label(p)
        else:
            name = f"O{p}"
            start = self.labels.get(name)
        return self.enter(name, start, repeats, block, pc)

    def enter(self, name: str, start: int | None, repeats: int, block: Block, pc: int) -> int | None:
        if name not in self.out.subprograms and len(self.out.subprograms) < 1000:
            self.out.subprograms.append(name)
        if start is None:
            # a subprogram kept in the control (a tool-change or probing macro): the program is not wrong
            self.diag(block.line, "warning", f"subprogram {name} is not in this file: its moves are not counted",
                      once=f"missing {name}")
            return None
        if repeats <= 0:
            return None
        if len(self.stack) >= self.limits.max_depth:
            self.diag(block.line, "error", f"subprogram {name} is called {self.limits.max_depth} levels deep: "
                      "it calls itself or nests too deeply; the call is skipped")
            return None
        self.stack.append((pc, repeats - 1, start + 1))
        return start + 1

    def _return(self) -> int:
        back, left, start = self.stack.pop()
        if left > 0:
            self.stack.append((back, left - 1, start))
            return start
        return back

    def _n_label(self, number: int) -> int | None:
        if self.n_labels is None:
            self.n_labels = {}
            for index, block in enumerate(self.blocks):
                if block.words and block.words[0][0] == "N" and isinstance(block.words[0][1], float):
                    self.n_labels.setdefault(int(block.words[0][1]), index - 1)
        return self.n_labels.get(number)

    def subprogram_return(self) -> int | None:
        """RTS (Okuma) and M17 (Siemens): back to the caller, or the program's end at the top level."""
        return self._return() if self.stack else -1



def label_key(label: str) -> str:
    if label[:1] == "O" and label[1:].isdigit():
        return f"O{int(label[1:])}"
    return label.upper()

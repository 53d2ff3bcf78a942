"""The G-code tokenizer: a program's text as blocks of (letter, value) words, dialect-aware and never raising.

One block per line. Comments (``( )`` everywhere, ``;`` to the end of the line for Siemens and LinuxCNC) are
cut out and kept apart; a leading ``/`` marks a block-delete block (executed: block delete is off on a
control by default); ``%`` lines and empty lines carry no words. Numbers are read as controls read them:
``Z0.``, ``.5``, ``-1.``, ``+2``. A word whose value is a ``#`` variable or a ``[...]`` expression keeps its
text: the interpreter evaluates it with the variables as they are at that block (``edge.programs.expr``).
Siemens words such as ``T="name"``, ``CYCLE81(...)`` and ``MCALL`` are kept as ``extra`` text.
"""

from __future__ import annotations

import re

__all__ = ["MAX_LINE", "Block", "tokenize"]

MAX_LINE = 16_384  # characters; real blocks are under 256

Value = float | str  # a number, or an expression's text for the interpreter
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_WORD = re.compile(r"([A-Z])\s*(" + _NUMBER + r")")
_PAREN = re.compile(r"\(([^()]*)\)?")
_BLANKS = re.compile(r"[ \t\r]+")
# a word with a variable or an expression as its value, and `#n = expr` assignments
_EXPR_WORD = re.compile(r"([A-Z])\s*(#\s*(?:\d+|<[^>]*>|\[)|\[|[-+]\s*[#\[])")
_ASSIGN = re.compile(r"#\s*(\d+|<[A-Za-z0-9_]+>)\s*=")
_SIEMENS_EXTRA = re.compile(r"(MCALL|CYCLE8[1-9]\s*\([^)]*\)|T\s*=\s*\"[^\"]*\")")
_OKUMA_EXTRA = re.compile(r"\b(CALL\s+O\w+(?:\s+Q\d+)?|RTS)\b")
_OKUMA_SEQUENCE = re.compile(r"N[A-Z][A-Z0-9]*(?=\s|$)")  # a sequence name: NAT01, NOP2


class Block:
    """One line of a program. ``words`` are in order; ``error`` says what could not be read on the line."""

    __slots__ = ("assigns", "block_delete", "comments", "error", "extra", "label", "line", "text", "words")

    def __init__(self, line: int, text: str) -> None:
        self.line = line
        self.text = text
        # empty tuples until something is found: fewer objects for the garbage collector to track per line
        self.words: tuple[tuple[str, Value], ...] | list[tuple[str, Value]] = ()
        self.comments: list[str] | tuple[()] = ()
        self.assigns: list[tuple[str, str]] | tuple[()] = ()
        self.extra: list[str] | tuple[()] = ()
        self.block_delete = False
        self.label: str | None = None  # an O-number or a named program at the start of the line ("O1000", "OSUB")
        self.error: str | None = None

    def __repr__(self) -> str:
        return f"Block({self.line}, {self.words!r}, comments={self.comments!r}, error={self.error!r})"


def _take_comments(text: str, parens: bool, comments: list[str]) -> str:
    cut = text.find(";")
    if cut >= 0:
        comments.append(text[cut + 1:].strip())
        text = text[:cut]
    if parens and "(" in text:
        for match in _PAREN.finditer(text):
            comments.append(match.group(1).strip())
        text = _PAREN.sub(" ", text)
    return text


def _split_expression_words(code: str, block: Block) -> str:
    """Pull ``#n=expr`` assignments and words with expression values out of ``code``; return the rest."""
    rest: list[str] = []
    assigns: list[tuple[str, str]] = []
    words: list[tuple[str, Value]] = []
    block.assigns, block.words = assigns, words
    pos = 0
    n = len(code)
    while pos < n:
        assign = _ASSIGN.match(code, pos)
        if assign is not None:
            end = _expression_end(code, assign.end())
            assigns.append((assign.group(1), code[assign.end():end].strip()))
            pos = end
            continue
        word = _EXPR_WORD.match(code, pos)
        if word is not None:
            end = _expression_end(code, word.start(2))
            words.append((word.group(1), code[word.start(2):end].strip()))
            pos = end
            continue
        rest.append(code[pos])
        pos += 1
    return "".join(rest)


def _expression_end(code: str, pos: int) -> int:
    """Where an expression starting at ``pos`` ends: brackets balanced, then at the next word letter."""
    depth = 0
    n = len(code)
    start = pos
    while pos < n:
        ch = code[pos]
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth <= 0 and pos > start and code[start] != "#":
                return pos + 1
        elif depth == 0 and ch.isalpha() and ch != "<" and not _inside_name(code, start, pos):
            return pos
        elif depth == 0 and ch == "#" and pos > start and code[pos - 1] not in "+-*/[ ":
            return pos
        pos += 1
    return pos


def _inside_name(code: str, start: int, pos: int) -> bool:
    opened = code.rfind("<", start, pos)
    return opened >= 0 and code.find(">", opened, pos) < 0


def tokenize(text: str, *, dialect: str = "fanuc") -> list[Block]:
    """Every line of ``text`` as a ``Block`` (line numbers 1-based). Never raises on any input."""
    parens = dialect != "siemens"  # Siemens comments start with ';', and '( )' hold a cycle's arguments
    blocks: list[Block] = []
    findall = _WORD.findall
    for number, raw in enumerate(text.split("\n"), 1):
        block = Block(number, raw)
        blocks.append(block)
        if len(raw) > MAX_LINE:
            block.text = raw[:80]
            block.error = f"a line of {len(raw):,} characters (more than {MAX_LINE:,}) is skipped"
            continue
        line = raw.strip()
        if not line or line[0] == "%":
            if line.startswith("%_N_"):  # Siemens file header: %_N_NAME_MPF
                block.label = line[4:].rsplit("_", 1)[0][:64]
            continue
        if "(" in line or ";" in line:
            comments: list[str] = []
            code = _take_comments(line, parens, comments)
            block.comments = comments
        else:
            code = line
        code = code.upper()
        if code[:1] == "/":
            block.block_delete = True
            code = code[1:]
        code = code.lstrip()
        if code[:1] in ("O", ":") and len(code) > 1 and (code[1].isdigit() or code[1] == "<" or dialect == "okuma"):
            label, _, code = code.partition(" ")
            block.label = "O" + label[1:] if label[0] == ":" else label
            if dialect == "linuxcnc" and code.strip():  # an o-word statement (sub, call, while, ...)
                block.error = f"LinuxCNC o-word statement '{line[:40]}' is not interpreted"
                continue
        if dialect == "okuma" and code[:1] == "N":
            code = _OKUMA_SEQUENCE.sub("", code, count=1)
        if dialect == "siemens" or dialect == "okuma":
            extra = _SIEMENS_EXTRA if dialect == "siemens" else _OKUMA_EXTRA
            if extra.search(code):
                block.extra = [_BLANKS.sub("", m) for m in extra.findall(code)]
                code = extra.sub(" ", code)
        if "#" in code or "[" in code:
            code = _split_expression_words(code, block)
        words = findall(code)
        if words:
            # tuples of numbers and letters: the garbage collector stops tracking them after one look
            if block.words:
                block.words = (*block.words, *[(letter, float(value)) for letter, value in words])
            else:
                block.words = tuple([(letter, float(value)) for letter, value in words])
            leftover = _WORD.sub("", code).strip()
        else:
            leftover = code.strip()
        if leftover:
            block.error = f"cannot read '{leftover[:40]}'"
    return blocks

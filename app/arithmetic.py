"""Arithmetic the model asks for and code does.

A 1.5B model reads a table well enough to name the cells a question needs, but its mental arithmetic is wrong often
enough that it would rather refuse ("12 of 15 TAT-QA questions refused with the table retrieved"). So for a question
that asks for a change, sum, average or share, the prompt asks the model to write the calculation over the sources'
numbers inside <calc>...</calc>; code evaluates it (an `ast` walk that admits only numbers, + - * / and brackets: no
names, calls or powers, so nothing the model or a document writes can run), finds which source states each operand,
carries the table's unit ("in thousands") to a sum or difference, and writes the result followed by the calculation, so
that the reader and the citation check both see where every number came from.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.prompts import load_prompt
from retrieval.expand import Passage
from retrieval.text import numbers
from retrieval.types import Chunk

CALC = re.compile(r"<calc>(.*?)</calc>(\s*%)?", re.IGNORECASE | re.DOTALL)
# Constants a calculation may use that no source states: x 100 for a percentage, / 2 for an average of two.
CONSTANTS = frozenset({"100", "1000", *map(str, range(1, 13))})
# An operand as tables write it: 12,345 / 12345.6 / .5 (thousands separators only in groups of three).
_OPERAND = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?![\w])")
# "mean" only as a noun ("the mean of"): "What does fault code E6 mean?" asks for a meaning, not a calculation.
_CUES = re.compile(
    r"\b(change|changes|changed|difference|differ|increase|increased|decrease|decreased|growth|grew|sum|total of|"
    r"combined|altogether|in total|average|mean (?:of|value)|ratio|percentage|percent|proportion|share of|"
    r"how much (?:more|less|higher|lower)|total\b[^?]*\b(?:and|both|across))\b|"
    r"变化|变动|增长|增加|减少|下降|差额|相差|总和|合计|平均|比例|比率|百分比|占比",
    re.IGNORECASE,
)
_SCALE = re.compile(
    r"(?:\bin\s+|\(\s*|\$\s*|€\s*|£\s*)(thousands|millions|billions)\b|(\$?'000)|\b(?:us)?\$\s?(m|bn)\b",
    re.IGNORECASE,
)
_SCALE_NAMES = {"thousands": "thousand", "millions": "million", "billions": "billion", "'000": "thousand",
                "$'000": "thousand", "m": "million", "bn": "billion"}
_OPS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}
MAX_EXPRESSION = 300  # characters: a table calculation is short; anything longer is not one


class CalcError(ValueError):
    """The expression is not plain arithmetic over numbers, or cannot be evaluated (division by zero)."""


@dataclass(frozen=True)
class Operand:
    text: str  # as written in the expression
    value: float
    marker: int | None  # 1-based number of the first source stating it; None when no source does


@dataclass(frozen=True)
class Calculation:
    expression: str  # as the model wrote it
    value: float
    operands: tuple[Operand, ...]
    scale: str | None  # "thousand" / "million" / "billion": the operands' table unit, for a sum or difference
    text: str  # what replaces the <calc> tag in the answer


def needs_arithmetic(question: str) -> bool:
    """Does the question ask for a computed value (a change, sum, average, share)?"""
    return bool(_CUES.search(question))


def prompt_hint(question: str) -> str:
    """The prompt's arithmetic rule, for questions that need one; empty otherwise (it costs every prompt tokens)."""
    return load_prompt("arithmetic") if needs_arithmetic(question) else ""


def _plain(expression: str) -> str:
    """Typographic operators to Python's; a percent sign or currency symbol after/before a number dropped."""
    s = expression.replace("−", "-").replace("–", "-").replace("×", "*").replace("÷", "/")
    s = re.sub(r"[$€£¥%]", "", s)
    return _OPERAND.sub(lambda m: m.group(1).replace(",", ""), s)


def evaluate(expression: str) -> float:
    """The value of an arithmetic expression over numbers: + - * / and brackets only."""
    if len(expression) > MAX_EXPRESSION:
        raise CalcError(f"expression longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(_plain(expression).strip(), mode="eval")
    except SyntaxError as e:
        raise CalcError(f"not an arithmetic expression: {expression!r}") from e
    value = _eval(tree.body)
    if not math.isfinite(value):
        raise CalcError(f"{expression!r} has no finite value")
    return value


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        v = _eval(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise CalcError("division by zero")
        return _OPS[type(node.op)](left, right)
    raise CalcError(f"only numbers, + - * / and brackets are allowed, not {type(node).__name__}")


def _has_product(node: ast.AST) -> bool:
    return any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mult | ast.Div) for n in ast.walk(node))


def table_scale(text: str) -> str | None:
    """The unit a source states for its numbers: "in thousands", "($ in millions)", "$'000", "US$m"."""
    m = _SCALE.search(text)
    if not m:
        return None
    word = next(g for g in m.groups() if g)
    return _SCALE_NAMES.get(word.lower())


def format_number(value: float) -> str:
    """Thousands separators; at most two decimals (TAT-QA and reports round there), none for a whole number."""
    if abs(value - round(value)) < 1e-9:
        return f"{round(value):,}"
    return f"{value:,.2f}"


def calculate(expression: str, passages: Sequence[Passage], percent: bool = False,
              documents: Sequence[Chunk] = ()) -> Calculation:
    """Evaluate one <calc> expression against the sources the model read; `percent`: the model wrote % after it.
    `documents`: other retrieved chunks, where an operand's document may state its unit outside the lines read."""
    value = evaluate(expression)
    stated = [numbers(p.text) for p in passages]
    operands = []
    for m in _OPERAND.finditer(_plain_symbols(expression)):
        key = m.group(1).replace(",", "")
        marker = next((i + 1 for i, nums in enumerate(stated) if key in nums), None)
        operands.append(Operand(m.group(1), float(key), marker))
    scales = {_scale_of(passages[o.marker - 1], documents) for o in operands if o.marker is not None}
    tree = ast.parse(_plain(expression).strip(), mode="eval")
    scale = scales.pop() if len(scales) == 1 and not _has_product(tree) else None
    shown = format_number(value) + ("%" if percent else f" {scale}" if scale else "")
    text = f"{shown} (= {' '.join(expression.split())})"
    return Calculation(expression, value, tuple(operands), scale, text)


def _scale_of(p: Passage, documents: Sequence[Chunk]) -> str | None:
    """The unit the passage states, else the one its document states in another retrieved chunk (a table's caption
    or the paragraph above it is often not among the lines selected for the model)."""
    same_doc = (c.text for c in documents if c.doc_id == p.hit.chunk.doc_id)
    return next((s for s in map(table_scale, (p.text, p.hit.chunk.text, *same_doc)) if s), None)


def _plain_symbols(expression: str) -> str:
    return expression.replace("−", "-").replace("–", "-")


@dataclass(frozen=True)
class Resolved:
    text: str  # the answer with every <calc> replaced
    calculations: tuple[Calculation, ...]
    computed: frozenset[str]  # the results as numbers() normalises them: stated by code, not by a source
    failed: tuple[str, ...]  # expressions that could not be evaluated (left in the text as written)


def resolve(answer: str, passages: Sequence[Passage], documents: Sequence[Chunk] = ()) -> Resolved:
    """Replace each <calc>EXPR</calc> in the answer with its value and calculation, and cite the sources of its
    operands in the sentence (a marker appended where the model did not write one)."""
    calcs: list[Calculation] = []
    failed: list[str] = []

    def sub(m: re.Match[str]) -> str:
        try:
            c = calculate(m.group(1), passages, percent=bool(m.group(2)), documents=documents)
        except CalcError:
            failed.append(m.group(1))
            return m.group(1).strip() + (m.group(2) or "")
        calcs.append(c)
        cited = [o.marker for o in c.operands if o.marker is not None]
        tags = "".join(f" [{k}]" for k in dict.fromkeys(cited) if f"[{k}]" not in answer)
        return c.text + tags

    text = CALC.sub(sub, answer)
    # Checked here, so the citation check need not find them in one source: the result, operands some source states
    # (a change across two tables cites both), and the usual constants. An operand no source states stays checked.
    computed = frozenset(
        {n for c in calcs for n in numbers(format_number(c.value))}
        | {n for c in calcs for o in c.operands if o.marker is not None for n in numbers(o.text)}
        | {o.text for c in calcs for o in c.operands if o.text in CONSTANTS})
    return Resolved(text, tuple(calcs), computed, tuple(failed))

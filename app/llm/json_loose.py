"""Defensive JSON extraction from model output: small models wrap JSON in prose, fences, or Python syntax."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from typing import Any

_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n?(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_MAX_STARTS = 200  # bounds the work on long, brace-heavy text


def parse_json_loose(text: str, schema_keys: Iterable[str] = ()) -> dict[str, Any] | None:
    """The first JSON object in `text` that has every key in `schema_keys`, or None.

    Looks inside ``` fences first, then the whole text; takes the first balanced {...} (braces inside strings
    do not count), ignores whatever follows it, and repairs the usual slips: trailing commas, and
    Python-literal dicts (single quotes, True/None).
    """
    if not isinstance(text, str) or "{" not in text:
        return None
    keys = tuple(schema_keys)
    for region in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        found = _first_object(region, keys)
        if found is not None:
            return found
    return None


def _first_object(text: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
    start = text.find("{")
    tries = 0
    while start != -1 and tries < _MAX_STARTS:
        tries += 1
        end = _balanced_end(text, start)
        if end is not None:
            obj = _load(text[start:end])
            if isinstance(obj, dict) and all(k in obj for k in keys):
                return obj
        start = text.find("{", start + 1)
    return None


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the brace that closes text[start] == "{", or None if it never closes."""
    depth = 0
    quote: str | None = None
    escaped = False
    for i in range(start, len(text)):
        c = text[i]
        if quote is not None:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _load(span: str) -> Any:
    for candidate in (span, _TRAILING_COMMA.sub(r"\1", span)):
        try:
            return json.loads(candidate)
        except ValueError:
            pass
    try:
        # literal_eval evaluates literals only: safe on untrusted text.
        return ast.literal_eval(_TRAILING_COMMA.sub(r"\1", span))
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None

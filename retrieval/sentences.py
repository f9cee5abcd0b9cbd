"""Sentence boundaries for Chinese, English and mixed text, as character spans.

Spans are the packing units of the chunker, so every boundary sits where the WordPiece pre-tokenizer
splits too (after punctuation, at whitespace): the token count of a run of sentences is then the sum of
their counts.
"""

from __future__ import annotations

import re

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CLOSERS = "”’」』）》】〕\"')\\]"
_OPENERS = "“‘「『（《【\"'(\\["

# Chinese terminators end a sentence wherever they are (Chinese puts no space after them); English ones only
# before whitespace and a capital, a digit, an opening quote or a Chinese character; "!" and "?" also directly
# before Chinese. Newlines end list items (and lines of addresses, code, hard-wrapped text).
_BOUNDARY = re.compile(
    r"(?=[。！？；…．.!?\n])(?:"  # lets the scanner skip ordinary characters fast
    rf"[。！？；…．]+[{_CLOSERS}]*"
    rf"|[.!?]+[{_CLOSERS}]*(?=\s+[A-Z0-9{_OPENERS}{_CJK}])"
    rf"|[!?]+[{_CLOSERS}]*(?=[{_CJK}])"
    r"|\n)"
)

# Lower-case words that end in a period without ending the sentence. Dotted forms ("e.g", "u.s") and single
# letters ("J. Smith") are caught by _DOTTED instead.
_ABBREVIATION_WORDS = """
    mr mrs ms dr prof sr jr st mt vs etc al fig figs eq eqs no nos vol vols pp p ch sec approx dept est
    inc ltd co corp jan feb mar apr jun jul aug sep sept oct nov dec gen col lt sgt rev hon ref refs cf ca
"""
_ABBREVIATIONS = frozenset(_ABBREVIATION_WORDS.split())
_DOTTED = re.compile(r"(?:[a-z]\.)*[a-z]")
_WORD_BEFORE = re.compile(r"(\S{1,20})$")


def _is_abbreviation(text: str, dot: int) -> bool:
    m = _WORD_BEFORE.search(text, max(0, dot - 20), dot)
    if m is None:
        return False
    word = m.group(1).lstrip(_OPENERS).lower()
    return word in _ABBREVIATIONS or _DOTTED.fullmatch(word) is not None


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Return (start, end) spans of the sentences of `text`, in order, without surrounding whitespace.

    Every non-whitespace character of `text` lies in exactly one span; empty sentences are left out.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        token = m.group()
        if token[0] == "." and _is_abbreviation(text, m.start()):
            continue
        _add(spans, text, start, m.start() if token == "\n" else m.end())
        start = m.end()
    _add(spans, text, start, len(text))
    return spans


def _add(spans: list[tuple[int, int]], text: str, start: int, end: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        spans.append((start, end))


_SEPARATOR = re.compile(r"[\s|:\-]*-[\s|:\-]*")


def table_lines(markdown: str) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """Split a markdown table into its header span (caption, header row, separator line) and one span per row.

    Without a separator line there is no header to repeat: (None, spans of the non-empty lines).
    """
    lines: list[tuple[int, int]] = []
    pos = 0
    for line in markdown.split("\n"):
        _add(lines, markdown, pos, pos + len(line))
        pos += len(line) + 1
    for i, (a, b) in enumerate(lines):
        if "|" in markdown[a:b] and _SEPARATOR.fullmatch(markdown, a, b):
            return (lines[0][0], b), lines[i + 1 :]
    return None, lines

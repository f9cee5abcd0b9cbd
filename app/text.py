"""Small text helpers for answers: sentences and the numbers in them."""

from __future__ import annotations

import re

# Sentence ends: Chinese full stops anywhere; Latin ones before whitespace. Decimal points and "e.g." stay inside.
_SENT = re.compile(r"(?<=[。！？；])|(?<=[.!?])(?<!\b[A-Za-z]\.)(?<!\be\.g\.)(?<!\bi\.e\.)\s+|\n+")
_NUM = re.compile(r"(?<![A-Za-z])\d+(?:[.,]\d+)*(?:\.\d+)?")
_MARKER = re.compile(r"\s*(?:\[(\d+(?:\s*[,，]\s*\d+)*)\]|【(\d+)】)")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT.split(text) if s and s.strip()]


_ZH_DIGIT = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_ZH_NUM = re.compile(r"([零一二两三四五六七八九十]{1,3})(?=[年个月天日周小时度%％])")


def _zh_value(s: str) -> int:
    if "十" in s:
        tens, _, ones = s.partition("十")
        return _ZH_DIGIT.get(tens, 1) * 10 + _ZH_DIGIT.get(ones, 0)
    return int("".join(str(_ZH_DIGIT[c]) for c in s))


def numbers(text: str) -> set[str]:
    """Numbers written in the text (Arabic, or Chinese numerals before a unit such as 七年), normalised."""
    bare = _MARKER.sub(" ", text)
    out = {n.replace(",", "") for n in _NUM.findall(bare)}
    out.update(str(_zh_value(m)) for m in _ZH_NUM.findall(bare))
    return out


def markers(text: str) -> list[int]:
    out: list[int] = []
    for a, b in _MARKER.findall(text):
        for n in re.split(r"\s*[,，]\s*", a or b):
            if n and int(n) not in out:
                out.append(int(n))
    return out


def strip_markers(text: str) -> str:
    return _MARKER.sub("", text).strip()

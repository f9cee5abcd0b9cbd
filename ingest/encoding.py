"""Decoding text files whose encoding nobody declared.

Order: byte-order marks, strict UTF-8, then charset-normalizer. Short CJK byte strings are ambiguous between
GB18030, Big5, Shift-JIS and CP949 (charset-normalizer often guesses Korean for two Chinese words), so CJK
guesses are re-ranked by how many of the decoded characters are common ones in their script.
"""

from __future__ import annotations

import codecs
import re
import unicodedata

_BOMS = (  # UTF-32 first: its little-endian BOM starts with the UTF-16 one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Supersets win: GBK and GB2312 text decodes the same under GB18030, Shift-JIS under CP932 (which adds the
# NEC/IBM characters such as 髙), EUC-KR under CP949, Big5 under its HKSCS extension.
_SUPERSET = {
    "gbk": "gb18030",
    "gb2312": "gb18030",
    "hz": "gb18030",
    "shift_jis": "cp932",
    "shift_jis_2004": "cp932",
    "shift_jisx0213": "cp932",
    "euc_kr": "cp949",
}
_CJK_CODECS = ("gb18030", "cp932", "big5", "cp949", "euc_jp", "big5hkscs", "johab", "euc_jis_2004")
# Below this many non-ASCII bytes charset-normalizer's own ranking is not much better than a coin toss.
_SHORT = 64
_SPACED_HAN = re.compile(r"[\u4e00-\u9fff] [\u4e00-\u9fff]")


def decode_text(data: bytes) -> tuple[str, str]:
    """Decodes bytes of unknown encoding; returns (text, encoding name). Never raises on bad bytes."""
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"decode_text wants bytes, got {type(data).__name__}")
    for bom, name in _BOMS:
        if data.startswith(bom):
            return bytes(data[len(bom) :]).decode(name, errors="replace"), name
    try:
        return bytes(data).decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    guess = _guess(bytes(data))
    if guess:
        return bytes(data).decode(guess, errors="replace"), codecs.lookup(guess).name
    return bytes(data).decode("utf-8", errors="replace"), "utf-8 (with replacement characters)"


def _guess(data: bytes) -> str | None:
    from charset_normalizer import from_bytes

    results = from_bytes(data)
    ranked = [_SUPERSET.get(r.encoding, r.encoding) for r in results]
    best = ranked[0] if ranked else None
    if best and best.startswith(("utf_16", "utf_32")):
        return best
    if best is not None and best not in _CJK_CODECS and not _looks_cjk(data):
        return best
    # Score every CJK reading; on a tie, prefer GB18030 for short input (the team's documents are mostly
    # simplified Chinese) and charset-normalizer's order for long input, where its coherence check works.
    candidates = list(dict.fromkeys([c for c in ranked if c in _CJK_CODECS] + list(_CJK_CODECS)))
    scored = []
    for order, enc in enumerate(candidates):
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        tie = order if sum(b > 0x7F for b in data) >= _SHORT else (0 if enc == "gb18030" else order + 1)
        scored.append((-_common_share(text) + _spacing_penalty(text), tie, enc))
    if scored:
        scored.sort()
        share, _, enc = scored[0]
        if -share >= 0.6 or best is None:
            return enc
    return best


def _looks_cjk(data: bytes) -> bool:
    """Mostly high bytes that come in pairs: a double-byte encoding rather than a Latin code page."""
    high = sum(b > 0x7F for b in data)
    return high >= 2 and high >= 0.3 * len(data.strip())


def _common_share(text: str) -> float:
    """Share of non-ASCII characters that are frequent in some CJK script (or ordinary punctuation)."""
    chars = [c for c in text if ord(c) > 0x7F and not c.isspace()]
    if not chars:
        return 1.0
    return sum(_is_common(c) for c in chars) / len(chars)


def _spacing_penalty(text: str) -> float:
    """Chinese and Japanese put no spaces between words and Korean does, so spaced Han text is suspect."""
    han = sum(unicodedata.category(c) == "Lo" and not 0xAC00 <= ord(c) <= 0xD7A3 for c in text)
    if han < 8:
        return 0.0
    return 0.2 if len(_SPACED_HAN.findall(text)) >= 0.1 * han else 0.0


def _is_common(c: str) -> bool:
    o = ord(c)
    if 0x3000 <= o <= 0x30FF or 0xFF01 <= o <= 0xFF5E or 0x2010 <= o <= 0x206F:
        return True  # CJK punctuation, kana, full-width forms, general punctuation
    if 0xAC00 <= o <= 0xD7A3:
        return _in_range(c, "euc_kr", 0xB0A1, 0xC8FE)  # the 2,350 Hangul syllables of KS X 1001
    if unicodedata.category(c) != "Lo":
        return False
    return (
        _in_range(c, "gb2312", 0xB0A1, 0xD7F9)  # GB2312 level 1: the 3,755 most used simplified characters
        or _in_range(c, "shift_jis", 0x889F, 0x9872)  # JIS X 0208 level 1 kanji
        or _in_range(c, "big5", 0xA440, 0xC67E)  # Big5 frequently used characters
    )


def _in_range(c: str, enc: str, lo: int, hi: int) -> bool:
    try:
        b = c.encode(enc)
    except UnicodeEncodeError:
        return False
    return len(b) == 2 and lo <= int.from_bytes(b, "big") <= hi

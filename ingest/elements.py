"""What a parser returns: a flat list of typed elements in reading order."""

from __future__ import annotations

from dataclasses import dataclass, field

from retrieval.types import ElementKind


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""

    def to_markdown(self) -> str:
        def cell(s: str) -> str:
            return " ".join(s.split()).replace("|", "\\|")

        width = max([len(self.header)] + [len(r) for r in self.rows]) if (self.header or self.rows) else 0
        head = list(self.header) + [""] * (width - len(self.header))
        lines = ["| " + " | ".join(cell(c) for c in head) + " |", "|" + "---|" * width]
        for r in self.rows:
            r2 = list(r) + [""] * (width - len(r))
            lines.append("| " + " | ".join(cell(c) for c in r2) + " |")
        if self.caption:
            lines.insert(0, self.caption)
        return "\n".join(lines)


@dataclass(frozen=True)
class ImageRef:
    ref: str  # where it sits: "page 3", "word/media/image1.png", an <img src>
    alt: str = ""
    caption: str = ""
    ocr_text: str = ""


@dataclass(frozen=True)
class Element:
    kind: ElementKind
    text: str  # for tables: the markdown rendering, header row included
    heading_path: tuple[str, ...] = ()
    page: int | None = None
    char_start: int | None = None  # offsets into the concatenated document text (see ParsedDocument.text)
    char_end: int | None = None
    table: Table | None = None
    image: ImageRef | None = None


@dataclass(frozen=True)
class ParsedDocument:
    elements: tuple[Element, ...]
    title: str = ""
    # Dates and other facts the file itself declares (core properties, <meta>, PDF info).
    metadata: dict[str, str] = field(default_factory=dict)
    language: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return "\n\n".join(e.text for e in self.elements if e.text)

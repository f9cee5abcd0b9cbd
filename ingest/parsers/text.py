"""Plain text (and JSON or XML read as text), decoded with ingest.encoding: a paragraph per block."""

from __future__ import annotations

import re

from ingest.elements import ParsedDocument
from ingest.encoding import decode_text
from ingest.parsers import detect
from ingest.parsers.builder import DocBuilder, Source

_BLANK_LINE = re.compile(r"\n[ \t\u3000]*\n")


def parse_text(src: Source) -> ParsedDocument:
    text, encoding = decode_text(src.data)
    b = DocBuilder()
    b.metadata["encoding"] = encoding
    if src.mime == detect.XML:
        text = _xml_text(text)
    add_paragraphs(b, text)
    return b.build(src.stem)


def add_paragraphs(b: DocBuilder, text: str, page: int | None = None) -> None:
    for block in _BLANK_LINE.split(text.replace("\r\n", "\n").replace("\r", "\n")):
        b.add("paragraph", block, page=page)


def _xml_text(text: str) -> str:
    """Element text only, one element per line: markup is noise for retrieval."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "xml")
    return "\n\n".join(s.strip() for s in soup.find_all(string=True) if s.strip())

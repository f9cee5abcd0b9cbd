"""HTML, Markdown (rendered to HTML first) and EPUB (a ZIP of XHTML chapters), with BeautifulSoup.

Our own walker rather than unstructured's partition_html: that one drops <figure>/<figcaption>, loses rowspan
and colspan (merged cells), and keeps navigation boilerplate (Wikipedia's 150-language list). The walker reads
only the main content (<main>, role=main, or a lone <article>) when the page marks it, and skips
nav/aside/footer.
"""

from __future__ import annotations

import io
import posixpath
import re
from typing import Any

from ingest.elements import ParsedDocument
from ingest.encoding import decode_text
from ingest.errors import CorruptFile
from ingest.parsers.builder import DocBuilder, Source, readable
from ingest.parsers.htmlwalk import HtmlWalker, make_soup

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-]+)""", re.IGNORECASE)
_DATE_META = {
    "date": "created",
    "dc.date": "created",
    "dc.date.created": "created",
    "dcterms.created": "created",
    "article:published_time": "created",
    "og:published_time": "created",
    "datepublished": "created",
    "pubdate": "created",
    "publish_date": "created",
    "dc.date.modified": "modified",
    "dcterms.modified": "modified",
    "article:modified_time": "modified",
    "last-modified": "modified",
    "datemodified": "modified",
    "author": "author",
    "dc.creator": "author",
    "article:author": "author",
}


def decode_html(data: bytes) -> str:
    """Declared charset first (GBK/GB2312 read as their superset GB18030), else ingest.encoding's guess."""
    m = _META_CHARSET.search(data[:4096])
    if m and not data.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        name = m.group(1).decode("ascii").lower()
        name = {"gbk": "gb18030", "gb2312": "gb18030", "shift_jis": "cp932", "x-sjis": "cp932"}.get(
            name, name
        )
        try:
            return data.decode(name, errors="replace")
        except LookupError:
            pass
    return decode_text(data)[0]


def parse_html(src: Source) -> ParsedDocument:
    soup = make_soup(decode_html(src.data))
    b = DocBuilder()
    b.metadata.update(html_metadata(soup))
    HtmlWalker(b, base_dir=src.path.parent, ocr=src.ocr).walk_document(soup)
    return b.build(src.stem)


def parse_markdown(src: Source) -> ParsedDocument:
    b = DocBuilder()
    add_markdown(b, decode_text(src.data)[0], src)
    return b.build(src.stem)


def add_markdown(b: DocBuilder, text: str, src: Source) -> None:
    import markdown

    html = markdown.markdown(text, extensions=["tables", "fenced_code", "sane_lists"])
    HtmlWalker(b, base_dir=src.path.parent, ocr=src.ocr).walk(make_soup(html))


def parse_notebook(src: Source) -> ParsedDocument:
    """Jupyter notebook: Markdown cells as Markdown, code cells as paragraphs; outputs are left out."""
    import json

    try:
        nb = json.loads(decode_text(src.data)[0])
        cells = nb["cells"]
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptFile(f"not a Jupyter notebook: {type(e).__name__}: {e}"[:200]) from None
    b = DocBuilder()
    for cell in cells:
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        if cell.get("cell_type") == "markdown":
            add_markdown(b, text, src)
        elif cell.get("cell_type") == "code" and text.strip():
            b.add("paragraph", text)
    return b.build(src.stem)


def html_metadata(soup: Any) -> dict[str, str]:
    meta: dict[str, str] = {}
    for tag in soup.find_all("meta"):
        key = (tag.get("name") or tag.get("property") or tag.get("itemprop") or "").strip().lower()
        value = (tag.get("content") or "").strip()
        if key in _DATE_META and value and _DATE_META[key] not in meta:
            meta[_DATE_META[key]] = value
        if key == "og:title" and value:
            meta["title"] = value
    if "title" not in meta and soup.title and soup.title.get_text(strip=True):
        meta["title"] = " ".join(soup.title.get_text().split())
    for t in soup.find_all("time", attrs={"datetime": True}, limit=1):  # a blog's visible publication date
        meta.setdefault("created", t["datetime"].strip())
    return meta


def parse_epub(src: Source) -> ParsedDocument:
    """Spine order from the OPF package file; dc:title / dc:creator / dc:date into metadata."""
    import zipfile

    from bs4 import BeautifulSoup

    try:
        z = zipfile.ZipFile(io.BytesIO(src.data))
    except zipfile.BadZipFile as e:
        raise CorruptFile(f"damaged EPUB: {e}") from None
    b = DocBuilder()
    with z:
        if "META-INF/encryption.xml" in z.namelist():
            b.warnings.append("EPUB declares encrypted resources (font obfuscation or DRM)")
        container = BeautifulSoup(z.read("META-INF/container.xml"), "xml")
        rootfile = container.find("rootfile")
        if rootfile is None or not rootfile.get("full-path"):
            raise CorruptFile("EPUB without a package file (META-INF/container.xml names none)")
        opf_path = str(rootfile["full-path"])
        opf = BeautifulSoup(z.read(opf_path), "xml")
        for field, key in (("title", "title"), ("creator", "author"), ("date", "created")):
            tag = opf.find(field)
            if tag is not None and tag.get_text(strip=True):
                b.metadata[key] = tag.get_text(strip=True)
        description = opf.find("description")
        if description is not None and description.get_text(strip=True):
            b.add(
                "paragraph", description.get_text(" ", strip=True)
            )  # the blurb: real content, often a summary
        manifest = {i.get("id"): i for i in opf.find_all("item")}
        base = posixpath.dirname(opf_path)
        names = set(z.namelist())
        for ref in opf.find_all("itemref"):
            item = manifest.get(ref.get("idref"))
            if item is None or "html" not in (item.get("media-type") or ""):
                continue
            name = posixpath.normpath(posixpath.join(base, str(item.get("href", ""))))
            if name not in names:
                b.warnings.append(f"EPUB spine names a missing chapter: {readable(name)}")
                continue
            chapter = make_soup(z.read(name))
            HtmlWalker(b, base_dir=None, ocr=False).walk_document(chapter)
    return b.build(src.stem)

"""A block-level walk over parsed HTML that feeds a DocBuilder (used for HTML, Markdown, EPUB and e-mail)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ingest.elements import ImageRef
from ingest.parsers.builder import DocBuilder

_SKIP = {
    "script",
    "style",
    "noscript",
    "template",
    "nav",
    "footer",
    "aside",
    "form",
    "button",
    "svg",
    "iframe",
    "select",
    "input",
    "textarea",
    "head",
    "title",
    "meta",
    "link",
    "object",
    "embed",
    "canvas",
    "map",
    "dialog",
}
_SKIP_ROLES = {"navigation", "banner", "contentinfo", "search", "complementary", "menu", "menubar", "dialog"}
# Classes of page furniture that sits inside <main> too (Wikipedia's language menu, edit links, cookie bars).
_SKIP_CLASS = re.compile(
    r"dropdown|navbox|sidebar|cookie|breadcrumb|skip-?link|editsection|noprint|mw-jump|share"
)
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCKS = {
    "p",
    "div",
    "section",
    "article",
    "main",
    "body",
    "html",
    "blockquote",
    "header",
    "address",
    "details",
    "summary",
    "center",
    "dl",
    "dt",
    "dd",
    "hr",
    "caption",
    "figcaption",
    "fieldset",
    "legend",
    "tr",
    "td",
    "th",
    "tbody",
    "thead",
    "tfoot",
    "hgroup",
    "search",
}
_SPACES = re.compile(r"[ \t\r\n\f\u00a0]+")
_MAX_OCR_IMAGES = 20  # a page with hundreds of local pictures should not take minutes


def make_soup(markup: str | bytes) -> Any:
    """lxml's forgiving HTML parser, also for XHTML (EPUB chapters); bs4's XML-as-HTML warning is noise."""
    import warnings

    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        return BeautifulSoup(markup, "lxml")


def skipped(tag: Any) -> bool:
    if tag.name in _SKIP:
        return True
    attrs = tag.attrs or {}
    if attrs.get("role") in _SKIP_ROLES or "hidden" in attrs or attrs.get("aria-hidden") == "true":
        return True
    classes = attrs.get("class")
    if classes and _SKIP_CLASS.search(" ".join(classes) if isinstance(classes, list) else str(classes)):
        return True
    return "display:none" in str(attrs.get("style", "")).replace(" ", "")


def node_text(node: Any, exclude: tuple[Any, ...] = ()) -> str:
    """Visible text of a subtree: whitespace collapsed, <br> kept as a line break, skipped tags left out."""
    from bs4 import Comment, NavigableString, Tag

    parts: list[str] = []

    def visit(n: Any) -> None:
        for child in n.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                if type(child) is NavigableString or child.__class__.__name__ == "CData":
                    parts.append(_SPACES.sub(" ", str(child)))
            elif isinstance(child, Tag) and child not in exclude and not skipped(child):
                if child.name == "br":
                    parts.append("\n")
                elif child.name == "img":
                    continue
                else:
                    block = child.name in _BLOCKS or child.name in _HEADINGS or child.name in ("li", "table")
                    if block:
                        parts.append("\n")
                    visit(child)
                    if block:
                        parts.append("\n")

    visit(node)
    return "\n".join(ln.strip() for ln in "".join(parts).split("\n") if ln.strip())


def html_table_grid(table: Any) -> list[list[str]]:
    """Rows of the table (not of tables nested in it) with rowspan/colspan cells repeated in every slot."""
    rows = [tr for tr in table.find_all("tr") if tr.find_parent("table") is table]
    cells: dict[tuple[int, int], str] = {}
    for r, tr in enumerate(rows):
        c = 0
        for cell in tr.find_all(["td", "th"], recursive=False):
            while (r, c) in cells:
                c += 1
            text = node_text(cell).replace("\n", " ")
            rs, cs = _span(cell.get("rowspan")), _span(cell.get("colspan"))
            for dr in range(min(rs, len(rows) - r)):
                for dc in range(cs):
                    cells[(r + dr, c + dc)] = text
            c += cs
    if not cells:
        return []
    width = max(c for _, c in cells) + 1
    return [[cells.get((r, c), "") for c in range(width)] for r in range(len(rows))]


def _span(value: Any) -> int:
    try:
        return max(1, min(int(str(value).strip()), 1000))
    except (TypeError, ValueError):
        return 1


class HtmlWalker:
    def __init__(self, b: DocBuilder, *, base_dir: Path | None, ocr: bool) -> None:
        self.b = b
        self.base_dir = base_dir
        self.ocr = ocr
        self._buf: list[str] = []
        self._ocr_done = 0

    def walk_document(self, soup: Any) -> None:
        """Only the main content when the page marks it; the whole body otherwise."""
        root = soup.find("main") or soup.find(attrs={"role": "main"})
        if root is None:
            articles = soup.find_all("article")
            root = articles[0] if len(articles) == 1 else (soup.body or soup)
        self.walk(root)

    def walk(self, node: Any) -> None:
        self._walk(node)
        self._flush()

    def _walk(self, node: Any) -> None:
        from bs4 import Comment, NavigableString, Tag

        for child in node.children:
            if isinstance(child, NavigableString):
                if not isinstance(child, Comment) and (
                    type(child) is NavigableString or child.__class__.__name__ == "CData"
                ):
                    self._buf.append(_SPACES.sub(" ", str(child)))
                continue
            if not isinstance(child, Tag) or skipped(child):
                continue
            name = child.name
            if name in _HEADINGS:
                self._flush()
                self.b.heading(node_text(child), _HEADINGS[name])
            elif name == "br":
                self._buf.append("\n")
            elif name == "img":
                self._flush()
                self._image(child)
            elif name in ("ul", "ol"):
                self._flush()
                self._list(child)
            elif name == "table":
                self._flush()
                self._table(child)
            elif name == "figure":
                self._flush()
                self._figure(child)
            elif name == "pre":
                self._flush()
                self.b.add("paragraph", child.get_text())
            elif name in _BLOCKS or name == "li":
                self._flush()
                self._walk(child)
                self._flush()
            else:
                self._walk(child)

    def _flush(self) -> None:
        text = "".join(self._buf)
        self._buf = []
        self.b.add("paragraph", "\n".join(ln.strip() for ln in text.split("\n")))

    def _list(self, lst: Any) -> None:
        for li in lst.find_all("li", recursive=False):
            nested = [x for x in li.find_all(["ul", "ol"]) if x.find_parent("li") is li]
            self.b.add("list_item", node_text(li, exclude=tuple(nested)), keep_lines=False)
            for img in li.find_all("img"):
                self._image(img)
            for sub in nested:
                self._list(sub)

    def _table(self, table: Any) -> None:
        grid = html_table_grid(table)
        if max((sum(1 for c in row if c) for row in grid), default=0) <= 1:
            self._walk(table)  # a layout table (one column): its cells are ordinary blocks
            self._flush()
            return
        cap = table.find("caption")
        self.b.add_table(grid, caption=node_text(cap).replace("\n", " ") if cap else "")

    def _figure(self, fig: Any) -> None:
        cap_tag = fig.find("figcaption")
        caption = node_text(cap_tag).replace("\n", " ") if cap_tag else ""
        table = fig.find("table")
        if table is not None:
            self.b.add_table(html_table_grid(table), caption=caption)
            return
        imgs = fig.find_all("img")
        if not imgs:
            self.b.add("paragraph", node_text(fig))
            return
        for i, img in enumerate(imgs):
            self._image(img, caption=caption if i == 0 else "")

    def _image(self, img: Any, caption: str = "") -> None:
        src = str(img.get("src") or img.get("data-src") or "")
        alt = " ".join(str(img.get("alt") or img.get("title") or "").split())
        ocr_text = ""
        path = local_image(self.base_dir, src) if self.ocr and self._ocr_done < _MAX_OCR_IMAGES else None
        if path is not None:
            from ingest.parsers.ocr import ocr_file

            self._ocr_done += 1
            try:
                ocr_text = ocr_file(path)
            except Exception as e:  # an unreadable picture must not sink the page that links it
                self.b.warnings.append(f"could not OCR {src}: {type(e).__name__}")
        text = "\n".join(t for t in dict.fromkeys([caption, alt, ocr_text]) if t)
        if text:
            self.b.add("image", text, image=image_ref(src, alt, caption, ocr_text))


def image_ref(src: str, alt: str = "", caption: str = "", ocr_text: str = "") -> ImageRef:
    if src.startswith("data:"):
        src = src.split(",", 1)[0] + ",..."  # never store a base64 payload as a reference
    return ImageRef(ref=src, alt=alt, caption=caption, ocr_text=ocr_text)


def local_image(base_dir: Path | None, src: str) -> Path | None:
    """The file an <img src> points to, when it is a relative path inside the document's folder."""
    if base_dir is None or not src or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", src) or src.startswith("//"):
        return None
    from urllib.parse import unquote

    base = base_dir.resolve()
    p = (base / unquote(src.split("#", 1)[0].split("?", 1)[0])).resolve()
    try:
        return p if p.is_file() and base in p.parents else None
    except OSError:
        return None

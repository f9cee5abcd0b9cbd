"""PDF with pdfplumber: pdfminer's layout analysis for text blocks in reading order (it separates columns),
`find_tables()` for ruled tables (their text is not repeated as paragraphs), font size for headings.
Pages without a text layer are rendered with pypdfium2 and OCR'd.
"""

from __future__ import annotations

import io
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ingest.elements import ParsedDocument
from ingest.errors import CorruptFile, EncryptedFile
from ingest.parsers.builder import DocBuilder, Source
from ingest.parsers.tables import (
    PageTable,
    continue_caption,
    is_caption,
    join,
    joinable,
    overlaps,
    prefer_ruled,
    ruled_grid,
    stream_tables,
)

_PDF_DATE = re.compile(r"D?:?(\d{4})(\d\d)?(\d\d)?(\d\d)?(\d\d)?(\d\d)?\s*([Zz+\-])?\s*(\d\d)?'?(\d\d)?")
_PAGE_NUMBER = re.compile(r"^(page\s*)?\d{1,4}(\s*(/|of)\s*\d{1,4})?$", re.IGNORECASE)
_HEADING_RATIO = 1.15  # a block this much larger than the body font is a heading
_MIN_TEXT_CHARS = 8  # fewer characters than this on a page: treat it as scanned
_RUNNING_TEXT = 80  # characters: shorter blocks between a table's two halves are running headers or footers


@dataclass
class _Block:
    top: float
    x0: float
    text: str
    size: float = 0.0
    grid: list[list[str]] | None = None
    caption: str = ""


def pdf_date(value: Any) -> str | None:
    """'D:20230105143000+01'00'' -> '2023-01-05T14:30:00+01:00' (as much as the string gives)."""
    if isinstance(value, bytes):
        value = value.decode("latin-1", errors="replace")
    m = _PDF_DATE.match(str(value).strip())
    if not m:
        return None
    y, mo, d, h, mi, s, tz, tzh, tzm = m.groups()
    out = f"{y}-{mo or '01'}-{d or '01'}"
    if h:
        out += f"T{h}:{mi or '00'}:{s or '00'}"
        if tz in ("Z", "z"):
            out += "+00:00"
        elif tz and tzh:
            out += f"{tz}{tzh}:{tzm or '00'}"
    return out


def parse_pdf(src: Source, *, tables: str = "auto") -> ParsedDocument:
    """`tables`: "auto" (ruled, half-ruled and borderless tables, see ingest/parsers/tables.py) or "ruled"
    (pdfplumber's line-based `find_tables()` only, the behaviour before issue 13, kept for the benchmark)."""
    import pdfplumber

    if b"%%EOF" not in src.data[-2048:]:
        raise CorruptFile("truncated PDF (no %%EOF marker at the end)")
    try:
        pdf = pdfplumber.open(io.BytesIO(src.data), laparams={})
        pages = pdf.pages
    except Exception as e:
        raise _classify(e) from None
    b = DocBuilder()
    with pdf:
        _metadata(b, pdf.metadata or {})
        found = _stream(src, pages, b) if tables != "ruled" else {}
        per_page: list[list[_Block]] = []
        for number, page in enumerate(pages, start=1):
            try:
                per_page.append(_page_blocks(page, tables, found.get(number, [])))
            except Exception as e:
                raise _classify(e, f"page {number}: ") from None
    weights: Counter[float] = Counter()
    for blocks in per_page:
        for blk in blocks:
            if blk.grid is None and blk.size:
                weights[blk.size] += len(blk.text)
    body = weights.most_common(1)[0][0] if weights else 0.0  # the size most of the text is set in
    levels = _heading_levels(per_page, body)
    scanned = [
        i for i, blocks in enumerate(per_page, start=1) if sum(len(x.text) for x in blocks) < _MIN_TEXT_CHARS
    ]
    ocr_text = _ocr_pages(src, scanned, b) if scanned else {}
    if tables != "ruled":
        _join_across_pages(per_page)
    for number, blocks in enumerate(per_page, start=1):
        if number in ocr_text:
            for para in ocr_text[number]:
                b.add("paragraph", para, page=number)
            continue
        for blk in blocks:
            if blk.grid is not None:
                b.add_table(blk.grid, page=number, caption=" ".join(blk.caption.split()))
            elif blk.size in levels:
                b.heading(blk.text, levels[blk.size], page=number)
            else:
                b.add("paragraph", blk.text, page=number)
    return b.build(src.stem)


def _classify(e: Exception, where: str = "") -> Exception:
    chain: list[str] = []
    cur: BaseException | None = e
    while cur is not None and len(chain) < 5:
        chain.append(f"{type(cur).__name__} {cur}")
        cur = cur.__cause__ or cur.__context__
    text = " ".join(chain)
    if "Password" in text or "Encrypt" in text or "decrypt" in text.lower():
        return EncryptedFile("password-protected PDF")
    return CorruptFile(f"damaged PDF: {where}{' '.join(chain[0].split())[:160]}")


def _metadata(b: DocBuilder, info: dict[str, Any]) -> None:
    for key, name in (("CreationDate", "created"), ("ModDate", "modified")):
        if info.get(key) and (iso := pdf_date(info[key])):
            b.metadata[name] = iso
    for key, name in (("Title", "title"), ("Author", "author")):
        value = info.get(key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if (
            isinstance(value, str)
            and value.strip()
            and not value.strip().lower().startswith("microsoft word")
        ):
            b.metadata[name] = " ".join(value.split())


def _page_blocks(page: Any, strategy: str, found: list[PageTable]) -> list[_Block]:
    """Text blocks in pdfminer's reading order, each box split where the font size changes (a heading set
    directly above its paragraph often lands in the same box), with tables inserted by position.

    `found`: the page's tables from camelot's stream mode ("auto"); a ruled table from pdfplumber is added where
    none of those lies, and replaces them where its grid is the fuller one (tables.prefer_ruled). `strategy`
    "ruled": pdfplumber's tables only, as extracted before issue 13."""
    from pdfminer.layout import LTChar, LTTextBox, LTTextLine

    tables = list(found)
    for t in page.find_tables():
        if not _real_table(t):
            continue
        raw = t.extract()
        grid = ruled_grid(t) if strategy != "ruled" else [[c or "" for c in r] for r in raw]
        rivals = [x for x in tables if overlaps(t.bbox, x.bbox)]
        if not rivals or prefer_ruled(raw, [x.grid for x in rivals]):
            tables = [x for x in tables if x not in rivals]
            tables.append(PageTable(page.page_number, t.bbox, tuple(tuple(r) for r in grid)))
    bboxes = [t.bbox for t in tables]
    height = float(page.height or 1)

    def in_table(x0: float, top: float, x1: float, bottom: float) -> bool:
        cx, cy = (x0 + x1) / 2, (top + bottom) / 2
        return any(bx0 <= cx <= bx1 and btop <= cy <= bbottom for bx0, btop, bx1, bbottom in bboxes)

    blocks: list[_Block] = []
    for box in page.layout:
        if not isinstance(box, LTTextBox):
            continue
        runs: list[tuple[float, float, float, list[str]]] = []  # (size, top, x0, lines)
        for line in box:
            if not isinstance(line, LTTextLine):
                continue
            top, bottom = height - line.y1, height - line.y0
            text = line.get_text().strip()
            if not text or in_table(line.x0, top, line.x1, bottom):
                continue
            sizes = [ch.size for ch in line if isinstance(ch, LTChar) and ch.get_text().strip()]
            size = round(statistics.median(sizes) * 2) / 2 if sizes else 0.0
            if runs and runs[-1][0] == size:
                runs[-1][3].append(text)
            else:
                runs.append((size, top, line.x0, [text]))
        for size, top, x0, lines in runs:
            text = _join_lines("\n".join(lines))
            if (top < 0.06 * height or top > 0.92 * height) and _PAGE_NUMBER.match(text):
                continue
            prev = blocks[-1] if blocks else None
            if (
                prev is not None
                and prev.grid is None
                and prev.size == size
                and abs(prev.top - top) < 3
                and len(prev.text) + len(text) < 120
            ):
                prev.text = f"{prev.text} {text}"  # "1" and "Introduction": one heading split into two boxes
                continue
            blocks.append(_Block(top=top, x0=x0, text=text, size=size))
    for t in tables:
        blk = _Block(top=t.bbox[1], x0=t.bbox[0], text="", grid=[list(r) for r in t.grid], caption=t.caption)
        at = next((i for i, x in enumerate(blocks) if x.top > blk.top), len(blocks))
        above = blocks[at - 1] if at else None
        if above is not None and above.grid is None and not blk.caption and is_caption(above.text):
            # "Table 3 ... (in thousands)" travels with the table's every chunk
            blk.caption, blk.grid = continue_caption(above.text, blk.grid or [])
            blocks.pop(at - 1)
            at -= 1
        blocks.insert(at, blk)
    return blocks


def _stream(src: Source, pages: Any, b: DocBuilder) -> dict[int, list[PageTable]]:
    try:
        return stream_tables(src.data, [float(p.height or 0) for p in pages])
    except Exception as e:  # camelot choking on a file pdfplumber reads: keep the ruled tables at least
        b.warnings.append(f"borderless table detection failed ({type(e).__name__}); ruled tables only")
        return {}


def _join_across_pages(per_page: list[list[_Block]]) -> None:
    """A table that ends one page and starts the next with as many columns is one table: the continuation's
    rows move into it (running headers, footers and page numbers in between do not count)."""
    carried: _Block | None = None  # a table joined from the page before that also ends this page
    for n in range(len(per_page) - 1):
        tail = [x for x in per_page[n] if x.grid is not None or len(x.text) > _RUNNING_TEXT]
        head = [x for x in per_page[n + 1] if x.grid is not None or len(x.text) > _RUNNING_TEXT]
        last = carried or (tail[-1] if tail else None)
        carried = None
        if last is None or last.grid is None or not head or head[0].grid is None:
            continue
        if not head[0].caption and joinable(last.grid, head[0].grid):  # a captioned table is a new one
            last.grid = join(last.grid, head[0].grid)
            per_page[n + 1].remove(head[0])
            if len(head) == 1:
                carried = last


def _real_table(t: Any) -> bool:
    rows = t.extract()
    return (
        len(rows) >= 2
        and max((len(r) for r in rows), default=0) >= 2
        and any(any(c for c in r) for r in rows)
    )


def _join_lines(text: str) -> str:
    """pdfminer keeps the line breaks of wrapped text: rejoin them (no space between CJK, no hyphen)."""
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    out = ""
    for ln in lines:
        if not out:
            out = ln
        elif out.endswith("-") and ln[:1].islower():
            out = out[:-1] + ln
        elif _cjk(out[-1]) and _cjk(ln[0]):
            out += ln
        else:
            out += " " + ln
    return out


def _cjk(ch: str) -> bool:
    return "\u3000" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7a3" or "\uff00" <= ch <= "\uffef"


def _heading_levels(per_page: list[list[_Block]], body: float) -> dict[float, int]:
    """Font sizes used by short blocks clearly above the body size, largest first: level 1, 2, 3."""
    if body <= 0:
        return {}
    sizes = {
        blk.size
        for blocks in per_page
        for blk in blocks
        if blk.grid is None and blk.size >= body * _HEADING_RATIO and len(blk.text) <= 150
    }
    return {s: i + 1 for i, s in enumerate(sorted(sizes, reverse=True)[:3])}


def _ocr_pages(src: Source, numbers: list[int], b: DocBuilder) -> dict[int, list[str]]:
    if not src.ocr:
        b.warnings.append(f"pages without a text layer were skipped (OCR is off): {numbers}")
        return {}
    out = ocr_pdf_pages(src.data, numbers)
    b.warnings.append(f"OCR'd {len(numbers)} page(s) without a text layer: {numbers[:20]}")
    return out


def ocr_pdf_pages(data: bytes, numbers: list[int]) -> dict[int, list[str]]:
    """Pages `numbers` (1-based) rendered at the OCR settings' scale and OCR'd: paragraphs per page."""
    import pypdfium2 as pdfium

    from ingest.parsers.ocr import ocr_blocks, settings

    cfg = settings()
    out: dict[int, list[str]] = {}
    doc = pdfium.PdfDocument(data)
    try:
        for n in numbers:
            page = doc[n - 1]
            width, height = page.get_size()
            scale = min(cfg.render_scale, cfg.max_render_side / max(width, height, 1.0))
            image = page.render(scale=scale).to_pil()
            out[n] = ocr_blocks(image)
            page.close()
    finally:
        doc.close()
    return out

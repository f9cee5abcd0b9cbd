"""DOCX (unstructured's partition_docx) and PPTX (python-pptx directly).

PPTX is read natively because unstructured's partition_pptx writes merged table cells as empty cells, drops
pictures unless a plug-in is registered, and drops charts; python-pptx gives spans, alt text and chart data.
"""

from __future__ import annotations

import io
from typing import Any

from ingest.elements import ImageRef, ParsedDocument
from ingest.errors import CorruptFile
from ingest.parsers.builder import DocBuilder, Source
from ingest.parsers.htmlwalk import html_table_grid, make_soup
from ingest.parsers.tables import is_caption

_TEXT_KINDS = {
    "NarrativeText",
    "Text",
    "UncategorizedText",
    "Address",
    "EmailAddress",
    "FigureCaption",
    "Formula",
    "CodeSnippet",
    "Footnote",
}


def _core_properties(b: DocBuilder, props: Any) -> None:
    for key, value in (("created", props.created), ("modified", props.modified)):
        if value:
            b.metadata[key] = value.isoformat()
    if props.title and props.title.strip():
        b.metadata["title"] = props.title.strip()
    if props.author and props.author.strip():
        b.metadata["author"] = props.author.strip()


def parse_docx(src: Source) -> ParsedDocument:
    import docx

    from ingest.parsers import _unstructured

    _unstructured.setup()
    from unstructured.partition.docx import partition_docx

    try:
        document = docx.Document(io.BytesIO(src.data))
    except KeyError as e:  # a ZIP with [Content_Types].xml and word/ but no main document part
        raise CorruptFile(f"DOCX without its main document part: {e}") from None
    b = DocBuilder()
    _core_properties(b, document.core_properties)
    first = next((p for p in document.paragraphs if p.text.strip()), None)
    title_text = (
        first.text.strip()
        if first is not None and first.style is not None and (first.style.name or "").lower() == "title"
        else None
    )
    elements = partition_docx(
        file=io.BytesIO(src.data), include_page_breaks=False, infer_table_structure=True
    )
    caption = ""  # a "Table 2: ... (in thousands)" line right before a table goes with it
    for i, el in enumerate(elements):
        kind = type(el).__name__
        text = el.text or ""
        following = type(elements[i + 1]).__name__ if i + 1 < len(elements) else ""
        if kind in ("Title", *_TEXT_KINDS) and following == "Table" and is_caption(text):
            caption = " ".join(text.split())
            continue
        if kind == "Title":
            if title_text is not None and text.strip() == title_text and b.count == 0:
                b.heading(text, 0, kind="title")
            else:
                b.heading(text, (el.metadata.category_depth or 0) + 1)
        elif kind == "ListItem":
            b.add("list_item", text)
        elif kind == "Table":
            html = el.metadata.text_as_html
            table = make_soup(html).find("table") if html else None
            if table is None or not b.add_table(html_table_grid(table), caption=caption):
                b.add("paragraph", f"{caption}\n{text}" if caption else text)
            caption = ""
        elif kind == "Image":
            b.add("image", text, image=ImageRef(ref="picture", alt=text))
        elif kind in _TEXT_KINDS:
            b.add("paragraph", text)
        # Header, Footer and PageBreak are page furniture, repeated on every page: left out.
    if _unstructured.degraded:
        b.warnings.append("spaCy English model missing: unstyled paragraphs were classified roughly")
    return b.build(src.stem)


def parse_pptx(src: Source) -> ParsedDocument:
    import pptx

    prs = pptx.Presentation(io.BytesIO(src.data))
    b = DocBuilder()
    _core_properties(b, prs.core_properties)
    for number, slide in enumerate(prs.slides, start=1):
        title_shape = slide.shapes.title
        if title_shape is not None and title_shape.has_text_frame and title_shape.text_frame.text.strip():
            b.heading(title_shape.text_frame.text, 1, page=number)
        else:
            b.close_sections(1)  # the previous slide's title does not cover this one
        for shape in sorted(_flatten(slide.shapes), key=lambda s: (s.top or 0, s.left or 0)):
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            _shape(b, shape, number)
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = slide.notes_slide.notes_text_frame.text.strip()
            if notes:
                b.add("paragraph", f"Notes: {notes}", page=number)
    return b.build(src.stem)


def _flatten(shapes: Any) -> list[Any]:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    out = []
    for s in shapes:
        if s.shape_type == MSO_SHAPE_TYPE.GROUP:
            out.extend(_flatten(s.shapes))
        else:
            out.append(s)
    return out


def _shape(b: DocBuilder, shape: Any, page: int) -> None:
    if getattr(shape, "has_table", False) and shape.has_table:
        b.add_table(_pptx_table_grid(shape.table), page=page)
    elif getattr(shape, "has_chart", False) and shape.has_chart:
        _chart(b, shape.chart, page)
    elif shape.has_text_frame:
        para: list[str] = []
        for p in shape.text_frame.paragraphs:
            text = p.text.replace("\v", "\n")
            if not text.strip():
                continue
            if p._p.xpath("./a:pPr/a:buChar|./a:pPr/a:buAutoNum") or p.level > 0:
                b.add("paragraph", "\n".join(para), page=page)
                para = []
                b.add("list_item", text, page=page)
            else:
                para.append(text)
        b.add("paragraph", "\n".join(para), page=page)
    from pptx.shapes.picture import Picture

    if isinstance(shape, Picture):
        c_nv_pr = shape._element.xpath(".//p:cNvPr")
        alt = " ".join((c_nv_pr[0].get("descr") or "").split()) if c_nv_pr else ""
        if alt:
            b.add("image", alt, page=page, image=ImageRef(ref=f"slide {page}: {shape.name}", alt=alt))


def _pptx_table_grid(table: Any) -> list[list[str]]:
    """Cell texts with each merged region's text repeated in every cell it covers."""
    rows = len(table.rows)
    cols = len(table.columns)
    grid = [[table.cell(r, c).text for c in range(cols)] for r in range(rows)]
    for r in range(rows):
        for c in range(cols):
            cell = table.cell(r, c)
            if cell.is_merge_origin:
                for dr in range(cell.span_height):
                    for dc in range(cell.span_width):
                        if r + dr < rows and c + dc < cols:
                            grid[r + dr][c + dc] = cell.text
    return grid


def _chart(b: DocBuilder, chart: Any, page: int) -> None:
    """A chart's data as a table (category, one column per series): its numbers are what people ask about."""
    title = ""
    if chart.has_title and chart.chart_title.has_text_frame:
        title = chart.chart_title.text_frame.text.strip()
    try:
        plot = chart.plots[0]
        categories = [str(c) for c in plot.categories]
        series = list(plot.series)
    except (IndexError, KeyError, ValueError, AttributeError):
        if title:
            b.add("paragraph", f"Chart: {title}", page=page)
        return
    header = ["category"] + [s.name or f"series {i + 1}" for i, s in enumerate(series)]
    columns = [list(s.values) for s in series]
    grid = [header] + [
        [cat] + [_num(col[i]) if i < len(col) else "" for col in columns] for i, cat in enumerate(categories)
    ]
    if not b.add_table(grid, page=page, caption=f"Chart: {title}" if title else "Chart") and title:
        b.add("paragraph", f"Chart: {title}", page=page)


def _num(v: Any) -> str:
    if v is None:
        return ""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)

"""PDF tables beyond full grids (issue 13): horizontal rules only, no rules, a table across three pages, a
merged header cell, a caption with units. Each PDF is drawn by reportlab here; the real parser (pdfplumber and
camelot) reads it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ingest.elements import Element, ParsedDocument
from ingest.parsers import parse_file
from ingest.parsers.builder import MAX_TABLE_ROWS

STATES = [
    ("Connecticut", "3,518", "3,574", "1.6%"),
    ("Delaware", "885", "897", "1.4%"),
    ("Maine", "1,316", "1,328", "0.9%"),
    ("Vermont", "621", "626", "0.8%"),
    ("Wyoming", "544", "563", "3.5%"),
]
HEADER = ("State", "2009", "2010", "Change")
PROSE = (
    "The survey covers every state and is repeated each year. Figures are rounded to the nearest thousand and "
    "revised when the census results come in; the change column compares the two years."
)


def _pdf(tmp_path: Path, story: list[Any], name: str = "t.pdf") -> ParsedDocument:
    from reportlab.platypus import SimpleDocTemplate

    buf = io.BytesIO()
    SimpleDocTemplate(buf).build(story)
    path = tmp_path / name
    path.write_bytes(buf.getvalue())
    return parse_file(path, ocr=False)


def _story(table: Any) -> list[Any]:
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, Spacer

    styles = getSampleStyleSheet()
    return [
        Paragraph("Population by state", styles["Heading2"]),
        Paragraph(PROSE, styles["Normal"]),
        Spacer(1, 12),
        table,
        Spacer(1, 12),
        Paragraph(PROSE, styles["Normal"]),
    ]


def _tables(doc: ParsedDocument) -> list[Element]:
    return [e for e in doc.elements if e.kind == "table" and e.table is not None]


def _assert_rows_kept(doc: ParsedDocument) -> None:
    (el,) = _tables(doc)
    assert el.table is not None
    assert el.table.header == HEADER
    assert el.table.rows == tuple(STATES)
    assert not any("Connecticut" in e.text for e in doc.elements if e.kind == "paragraph")  # not repeated


def test_horizontal_rules_only(tmp_path: Path) -> None:
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    rules = [("LINEABOVE", (0, 0), (-1, 0), 1, colors.black), ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black)]
    rules += [("LINEBELOW", (0, i), (-1, i), 0.5, colors.black) for i in range(1, len(STATES) + 1)]
    table = Table([HEADER, *STATES], colWidths=[120, 70, 70, 70], style=TableStyle(rules))
    _assert_rows_kept(_pdf(tmp_path, _story(table)))


def test_borderless_table(tmp_path: Path) -> None:
    from reportlab.platypus import Table

    _assert_rows_kept(_pdf(tmp_path, _story(Table([HEADER, *STATES], colWidths=[120, 70, 70, 70]))))


def test_table_across_three_pages_is_one_table(tmp_path: Path) -> None:
    from reportlab.lib import colors
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, Table, TableStyle

    body = [(f"Item {i:02d}", f"{100 + i}", f"{200 + 3 * i}", f"{i % 7}.{i % 10}%") for i in range(1, 81)]
    grid = TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)])
    table = Table([HEADER, *body], colWidths=[120, 70, 70, 70], style=grid, repeatRows=1)
    normal = getSampleStyleSheet()["Normal"]
    doc = _pdf(tmp_path, [Paragraph(PROSE, normal)] * 12 + [table])  # starts low on page 1, ends on page 3
    pieces = _tables(doc)
    assert len(pieces) == -(-len(body) // MAX_TABLE_ROWS)  # one logical table, cut only by the row limit
    assert pieces[0].page == 1
    assert all(p.table is not None and p.table.header == HEADER for p in pieces)  # repeated headers dropped
    assert [r for p in pieces if p.table is not None for r in p.table.rows] == body


MERGED_HEADER = [["State", "Population", "", "Change"], ["", "2009", "2010", ""], *[list(r) for r in STATES]]


def test_merged_header_repeats_over_its_columns(tmp_path: Path) -> None:
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    style = TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.5, colors.black),
        ("SPAN", (1, 0), (2, 0)),  # "Population" over both years
        ("SPAN", (0, 0), (0, 1)),  # "State" and "Change" over both header rows
        ("SPAN", (3, 0), (3, 1)),
    ])
    doc = _pdf(tmp_path, _story(Table(MERGED_HEADER, colWidths=[120, 70, 70, 70], style=style)))
    (el,) = _tables(doc)
    assert el.table is not None
    assert el.table.header == ("State", "Population", "Population", "Change")
    assert el.table.rows[0] == ("State", "2009", "2010", "Change")
    assert el.table.rows[1:] == tuple(STATES)


def test_borderless_spanning_header_repeats_over_its_columns(tmp_path: Path) -> None:
    from reportlab.platypus import Table, TableStyle

    style = TableStyle([("SPAN", (1, 0), (2, 0)), ("ALIGN", (1, 0), (2, 0), "CENTER")])
    doc = _pdf(tmp_path, _story(Table(MERGED_HEADER, colWidths=[120, 70, 70, 70], style=style)))
    (el,) = _tables(doc)
    assert el.table is not None
    assert el.table.header[1:3] == ("Population", "Population")
    assert el.table.rows[0][1:3] == ("2009", "2010")
    assert el.table.rows[-len(STATES) :] == tuple(STATES)


def test_caption_and_units_travel_with_the_table(tmp_path: Path) -> None:
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, Table

    normal = getSampleStyleSheet()["Normal"]
    story = _story(Table([HEADER, *STATES], colWidths=[120, 70, 70, 70]))
    story[2] = Paragraph("Table 3. Resident population (in thousands)", normal)
    doc = _pdf(tmp_path, story)
    (el,) = _tables(doc)
    assert el.table is not None and el.table.rows == tuple(STATES)
    assert el.table.caption == "Table 3. Resident population (in thousands)"
    assert el.text.startswith("Table 3. Resident population (in thousands)\n| State |")

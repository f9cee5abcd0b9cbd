"""DOCX, PPTX and XLSX built in the test with python-docx, python-pptx and openpyxl."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest

from ingest.elements import ParsedDocument
from ingest.parsers import parse_file
from ingest.parsers.builder import MAX_TABLE_ROWS


def check_offsets(doc: ParsedDocument) -> None:
    for e in doc.elements:
        assert doc.text[e.char_start : e.char_end] == e.text


def _tiny_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "PNG")
    return buf.getvalue()


# The first DOCX parse in a process imports unstructured and spaCy (several seconds on a busy 2-core box).
@pytest.mark.slow
def test_docx_structure_tables_and_core_properties(tmp_path: Path) -> None:
    import docx

    d = docx.Document()
    d.core_properties.title = "Expense policy"
    d.core_properties.author = "Finance"
    d.core_properties.created = dt.datetime(2023, 4, 5, 10, 0, 0)
    d.add_paragraph("Expense policy", style="Title")
    d.add_heading("Travel", level=1)
    d.add_paragraph("Economy class is the default for flights under six hours.")
    d.add_heading("Hotels", level=2)
    d.add_paragraph("Book through the portal", style="List Bullet")
    d.add_paragraph("Keep every receipt", style="List Bullet")
    t = d.add_table(rows=4, cols=3)
    for r, row in enumerate(
        [["City", "Tier", "Limit"], ["Beijing", "A", "800"], ["Shanghai", "", "900"], ["Other", "B", "500"]]
    ):
        for c, value in enumerate(row):
            t.cell(r, c).text = value
    t.cell(1, 1).merge(t.cell(2, 1))  # "A" spans Beijing and Shanghai
    d.add_picture(io.BytesIO(_tiny_png()))
    d.inline_shapes[0]._inline.docPr.set("descr", "Map of hotel zones")
    d.add_heading("Meals", level=1)
    d.add_paragraph("Meals are reimbursed up to the daily limit.")
    path = tmp_path / "policy.docx"
    d.save(str(path))

    doc = parse_file(path)
    assert doc.title == "Expense policy"
    assert doc.metadata["created"].startswith("2023-04-05") and doc.metadata["author"] == "Finance"
    kinds = [e.kind for e in doc.elements]
    assert kinds[:3] == ["title", "heading", "paragraph"]
    items = [e for e in doc.elements if e.kind == "list_item"]
    assert [e.text for e in items] == ["Book through the portal", "Keep every receipt"]
    assert items[0].heading_path == ("Expense policy", "Travel", "Hotels")
    (table,) = [e for e in doc.elements if e.kind == "table"]
    assert table.table is not None
    assert table.table.header == ("City", "Tier", "Limit")
    assert table.table.rows == (("Beijing", "A", "800"), ("Shanghai", "A", "900"), ("Other", "B", "500"))
    assert table.text == table.table.to_markdown() and table.text.count("Beijing") == 1
    image = next(e for e in doc.elements if e.kind == "image")
    assert image.text == "Map of hotel zones"
    meals = doc.elements[-1]
    assert meals.heading_path == ("Expense policy", "Meals") and meals.page is None
    assert doc.language == "en"
    check_offsets(doc)


def test_pptx_slides_tables_pictures_notes(tmp_path: Path) -> None:
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    prs.core_properties.title = "Q3 review"
    prs.core_properties.modified = dt.datetime(2024, 10, 2, 12, 0, 0)
    s1 = prs.slides.add_slide(prs.slide_layouts[5])  # title only
    s1.shapes.title.text = "Revenue"
    box = s1.shapes.add_textbox(Inches(1), Inches(2), Inches(6), Inches(1))
    box.text_frame.text = "Revenue grew 12% year over year."
    tbl = s1.shapes.add_table(3, 3, Inches(1), Inches(3), Inches(6), Inches(2)).table
    tbl.cell(0, 1).merge(tbl.cell(0, 2))  # one "Sales" header over two columns
    for r, row in enumerate([["Region", "Sales", ""], ["East", "10", "12"], ["West", "8", "9"]]):
        for c, value in enumerate(row):
            if value:
                tbl.cell(r, c).text = value
    s1.notes_slide.notes_text_frame.text = "Mention the new East office."
    s2 = prs.slides.add_slide(prs.slide_layouts[6])  # blank: no title
    pic = s2.shapes.add_picture(io.BytesIO(_tiny_png()), Inches(1), Inches(1))
    pic._element.nvPicPr.cNvPr.set("descr", "Bar chart of revenue by region")
    path = tmp_path / "deck.pptx"
    prs.save(str(path))

    doc = parse_file(path)
    assert doc.title == "Q3 review"
    assert doc.metadata["modified"].startswith("2024-10-02")
    first = doc.elements[0]
    assert (first.kind, first.text, first.page) == ("heading", "Revenue", 1)
    para = doc.elements[1]
    assert para.text == "Revenue grew 12% year over year." and para.heading_path == ("Revenue",)
    table = next(e for e in doc.elements if e.kind == "table")
    assert table.table is not None and table.page == 1
    assert table.table.header == ("Region", "Sales", "Sales")
    assert table.table.rows == (("East", "10", "12"), ("West", "8", "9"))
    notes = next(e for e in doc.elements if e.text.startswith("Notes:"))
    assert "East office" in notes.text and notes.page == 1
    image = doc.elements[-1]
    assert image.kind == "image" and image.page == 2 and image.text == "Bar chart of revenue by region"
    assert image.heading_path == ()  # slide 2 has no title: slide 1's does not carry over
    check_offsets(doc)


def test_xlsx_sheets_merged_cells_values_and_split(tmp_path: Path) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.properties.created = dt.datetime(2022, 1, 31, 8, 0, 0)
    ws = wb.active
    ws.title = "Budget"
    ws.append([])  # a blank first row: the header is the first non-empty one
    ws.append(["Dept", "Item", "Amount", "Share", "Due"])
    ws.append(["R&D", "GPUs", 12000.0, 0.25, dt.datetime(2022, 3, 1)])
    ws.append([None, "Travel", 3000, 0.125, dt.datetime(2022, 4, 1)])
    ws.merge_cells("A3:A4")
    ws["D3"].number_format = "0%"
    ws["D4"].number_format = "0.0%"
    big = wb.create_sheet("Log")
    big.append(["n", "square"])
    for i in range(1, 2 * MAX_TABLE_ROWS + 6):
        big.append([i, i * i])
    wb.create_sheet("Empty")
    path = tmp_path / "budget.xlsx"
    wb.save(path)

    doc = parse_file(path)
    assert doc.metadata["created"].startswith("2022-01-31")
    headings = [e.text for e in doc.elements if e.kind == "heading"]
    assert headings == ["Budget", "Log"]
    budget = doc.elements[1]
    assert budget.table is not None and budget.heading_path == ("Budget",)
    assert budget.table.header == ("Dept", "Item", "Amount", "Share", "Due")
    assert budget.table.rows == (
        ("R&D", "GPUs", "12000", "25%", "2022-03-01"),
        ("R&D", "Travel", "3000", "12.5%", "2022-04-01"),
    )
    logs = [e.table for e in doc.elements if e.heading_path == ("Log",)]
    assert [len(t.rows) for t in logs if t] == [MAX_TABLE_ROWS, MAX_TABLE_ROWS, 5]
    assert all(t is not None and t.header == ("n", "square") for t in logs)
    check_offsets(doc)

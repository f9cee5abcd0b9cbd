"""DOCX tables (issue 13): a merged header repeats over the columns it spans, and the caption line with the units
right before the table travels with it. (Merged cells of PPTX, XLSX and HTML: test_parse_office.py and
test_parsers.py.)"""

from __future__ import annotations

from pathlib import Path

from ingest.parsers import parse_file


def test_docx_merged_header_and_caption(tmp_path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_paragraph("Sales rose in every region this year, the north most of all.")
    d.add_paragraph("Table 2: Revenue by region (in thousands)")
    values = [
        ["Region", "Revenue", "", "Note"],
        ["", "2023", "2024", ""],
        ["North", "1,200", "1,350", "up"],
        ["South", "950", "990", "flat"],
    ]
    t = d.add_table(rows=len(values), cols=4)
    for r, row in enumerate(values):
        for c, v in enumerate(row):
            t.cell(r, c).text = v
    t.cell(0, 1).merge(t.cell(0, 2)).text = "Revenue"  # over both years
    t.cell(0, 0).merge(t.cell(1, 0)).text = "Region"  # over both header rows
    t.cell(0, 3).merge(t.cell(1, 3)).text = "Note"
    path = tmp_path / "report.docx"
    d.save(str(path))

    doc = parse_file(path, ocr=False)
    (el,) = [e for e in doc.elements if e.kind == "table"]
    assert el.table is not None
    assert el.table.caption == "Table 2: Revenue by region (in thousands)"
    assert el.table.header == ("Region", "Revenue", "Revenue", "Note")
    assert el.table.rows == (
        ("Region", "2023", "2024", "Note"),
        ("North", "1,200", "1,350", "up"),
        ("South", "950", "990", "flat"),
    )
    assert el.text.startswith("Table 2: Revenue by region (in thousands)\n| Region |")
    assert not any("in thousands" in e.text for e in doc.elements if e.kind == "paragraph")
    assert any("north most of all" in e.text for e in doc.elements if e.kind == "paragraph")

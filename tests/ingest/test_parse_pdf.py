"""PDF: text, font-size headings, ruled tables, metadata, CJK, and scanned pages (OCR, slow)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ingest.parsers import parse_file
from ingest.parsers.pdf import pdf_date


def _report_pdf() -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Table, TableStyle

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    styles = getSampleStyleSheet()
    zh = styles["Normal"].clone("zh", fontName="STSong-Light")
    body = (
        "The committee met twice this quarter and approved the revised travel budget "
        "for all regional offices."
    )
    story = [
        Paragraph("Annual Report", styles["Title"]),
        Paragraph(body, styles["Normal"]),
        Paragraph("Regional results", styles["Heading2"]),
        Table(
            [["Region", "Revenue", "Growth"], ["North", "1200", "4%"], ["South", "950", "7%"]],
            style=TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]),
        ),
        Paragraph("Sales in the south grew faster than in any other region this year.", styles["Normal"]),
        PageBreak(),
        Paragraph("Outlook", styles["Heading2"]),
        Paragraph("明年公司计划在上海开设新的研发中心，预计招聘两百名工程师。", zh),
    ]
    buf = io.BytesIO()
    SimpleDocTemplate(buf, title="FY2023 Annual Report", author="Finance Office").build(story)
    return buf.getvalue()


def test_pdf_text_headings_tables_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(_report_pdf())
    doc = parse_file(path, ocr=False)
    assert doc.title == "FY2023 Annual Report"
    assert doc.metadata["author"] == "Finance Office"
    assert doc.metadata["created"][:4].isdigit() and doc.metadata["created"][4] == "-"
    kinds = [(e.kind, e.page) for e in doc.elements]
    assert kinds[0] == ("heading", 1) and doc.elements[0].text == "Annual Report"
    (table,) = [e for e in doc.elements if e.kind == "table"]
    assert table.table is not None and table.page == 1
    assert table.table.header == ("Region", "Revenue", "Growth")
    assert table.table.rows == (("North", "1200", "4%"), ("South", "950", "7%"))
    assert table.heading_path == ("Annual Report", "Regional results")
    paragraphs = [e.text for e in doc.elements if e.kind == "paragraph"]
    assert not any("North" in p for p in paragraphs)  # table text is not repeated as paragraphs
    assert any("revised travel budget for all regional offices" in p for p in paragraphs)  # lines rejoined
    zh = next(e for e in doc.elements if "研发中心" in e.text)
    assert zh.page == 2 and zh.heading_path[-1] == "Outlook"
    assert "明年公司计划在上海开设新的研发中心" in zh.text
    for e in doc.elements:
        assert doc.text[e.char_start : e.char_end] == e.text


def test_pdf_dates() -> None:
    assert pdf_date("D:20230105143000+01'00'") == "2023-01-05T14:30:00+01:00"
    assert pdf_date("D:20231005000756Z") == "2023-10-05T00:07:56+00:00"
    assert pdf_date(b"D:2021") == "2021-01-01"
    assert pdf_date("yesterday") is None


def _scanned_pdf(tmp_path: Path) -> Path:
    """An image-only PDF: a picture of text, no text layer."""
    from PIL import Image, ImageDraw, ImageFont
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    img = Image.new("RGB", (1200, 500), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=56)
    draw.text((60, 80), "INVOICE NUMBER 4471", fill="black", font=font)
    draw.text((60, 300), "TOTAL DUE 980 EUR", fill="black", font=font)
    path = tmp_path / "scan.pdf"
    c = canvas.Canvas(str(path), pagesize=(600, 250))
    c.drawImage(ImageReader(img), 0, 0, width=600, height=250)
    c.showPage()
    c.save()
    return path


def test_scanned_pdf_without_ocr_warns(tmp_path: Path) -> None:
    doc = parse_file(_scanned_pdf(tmp_path), ocr=False)
    assert doc.elements == ()
    assert any("OCR is off" in w for w in doc.warnings)


@pytest.mark.slow
def test_scanned_pdf_is_ocrd(tmp_path: Path) -> None:
    doc = parse_file(_scanned_pdf(tmp_path))
    texts = [e.text for e in doc.elements]
    assert len(texts) == 2, texts  # two lines far apart: two paragraphs, top one first
    assert "INVOICE" in texts[0] and "4471" in texts[0]
    assert "TOTAL" in texts[1] and "980" in texts[1]
    assert all(e.page == 1 for e in doc.elements)
    assert any("OCR'd 1 page" in w for w in doc.warnings)

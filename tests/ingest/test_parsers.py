"""parse_file: bad input, type detection, and the text formats (TXT, Markdown, HTML, CSV/TSV, EML, EPUB)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from ingest.elements import ParsedDocument
from ingest.errors import CorruptFile, EmptyFile, EncryptedFile, FileTooLarge, IngestError, UnsupportedFormat
from ingest.parsers import detect_mime, parse_file
from ingest.parsers.builder import MAX_TABLE_ROWS


def check_offsets(doc: ParsedDocument) -> None:
    text = doc.text
    for e in doc.elements:
        assert e.char_start is not None and e.char_end is not None
        assert text[e.char_start : e.char_end] == e.text, e


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


# ---- bad input -------------------------------------------------------------------------------------------


def test_zero_byte_file(tmp_path: Path) -> None:
    with pytest.raises(EmptyFile, match="empty"):
        parse_file(write(tmp_path, "empty.docx", b""))


def test_text_file_named_pdf_is_parsed_as_text(tmp_path: Path) -> None:
    doc = parse_file(write(tmp_path, "notes.pdf", "Meeting notes\n\nThe budget was approved."))
    assert [e.text for e in doc.elements] == ["Meeting notes", "The budget was approved."]
    assert any("text/plain" in w and ".pdf" in w for w in doc.warnings)


def test_binary_named_pdf_is_corrupt(tmp_path: Path) -> None:
    with pytest.raises(CorruptFile, match=r"not a PDF \(starts with"):
        parse_file(write(tmp_path, "x.pdf", bytes(range(256)) * 8))


def _small_pdf() -> bytes:
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    c.drawString(72, 720, "Quarterly report for the finance team")
    c.showPage()
    c.save()
    return buf.getvalue()


def test_truncated_pdf(tmp_path: Path) -> None:
    data = _small_pdf()
    with pytest.raises(CorruptFile, match="truncated"):
        parse_file(write(tmp_path, "cut.pdf", data[: len(data) // 2]))


def test_encrypted_pdf(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(_small_pdf())))
    writer.encrypt(user_password="s3cret", owner_password="owner", algorithm="AES-128")
    buf = io.BytesIO()
    writer.write(buf)
    with pytest.raises(EncryptedFile, match="password"):
        parse_file(write(tmp_path, "locked.pdf", buf.getvalue()))


def test_encrypted_xlsx_is_detected_inside_its_ole_container(tmp_path: Path) -> None:
    import openpyxl
    from msoffcrypto.format.ooxml import OOXMLFile

    wb = openpyxl.Workbook()
    wb.active.append(["secret", 1])
    plain = io.BytesIO()
    wb.save(plain)
    plain.seek(0)
    locked = io.BytesIO()
    OOXMLFile(plain).encrypt("pw", locked)
    path = write(tmp_path, "locked.xlsx", locked.getvalue())
    assert locked.getvalue()[:4] == b"\xd0\xcf\x11\xe0"
    with pytest.raises(EncryptedFile, match="password-protected"):
        parse_file(path)


def test_file_over_max_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, "big.txt", "x" * 1000)
    with pytest.raises(FileTooLarge, match="1,000 bytes is over the 999-byte limit"):
        parse_file(path, max_bytes=999)
    assert parse_file(path, max_bytes=1000).text == "x" * 1000


def test_unknown_binary(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormat, match="unknown binary format"):
        parse_file(write(tmp_path, "blob.xyz", bytes(range(256)) * 16))


def test_vanished_file(tmp_path: Path) -> None:
    path = write(tmp_path, "gone.txt", "soon gone")
    path.unlink()
    with pytest.raises(IngestError, match="file vanished"):
        parse_file(path)


def test_non_utf8_file_name(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9-\xff\xfe.txt"  # Latin-1 bytes: not valid UTF-8
    with open(raw, "wb") as f:
        f.write("你好，世界。这是中文内容。".encode())
    doc = parse_file(Path(os.fsdecode(raw)))
    assert doc.text == "你好，世界。这是中文内容。"
    assert doc.language == "zh"
    assert doc.title == "caf\ufffd-\ufffd\ufffd"  # printable, encodable as UTF-8
    doc.title.encode("utf-8")
    assert parse_file(raw).text == doc.text  # type: ignore[arg-type]  # bytes paths are accepted too


def test_directory_and_bad_limit(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormat, match="not a regular file"):
        parse_file(tmp_path)
    with pytest.raises(ValueError, match="-1"):
        parse_file(write(tmp_path, "a.txt", "a"), max_bytes=-1)


def test_legacy_and_foreign_containers_are_unsupported(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(UnsupportedFormat, match="ZIP archive"):
        parse_file(write(tmp_path, "bundle.zip", buf.getvalue()))
    with pytest.raises(CorruptFile, match="not a valid DOCX"):
        parse_file(write(tmp_path, "fake.docx", buf.getvalue()))


# ---- detection -------------------------------------------------------------------------------------------


def test_detect_mime_by_content(tmp_path: Path) -> None:
    assert detect_mime(tmp_path / "a.bin", b"%PDF-1.7\n...") == "application/pdf"
    assert detect_mime(tmp_path / "a.txt", b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert detect_mime(tmp_path / "page", b"<!DOCTYPE html><html><body>hi</body></html>") == "text/html"
    assert detect_mime(tmp_path / "mail", b"From: a@b.c\nSubject: hi\n\nbody") == "message/rfc822"
    assert detect_mime(tmp_path / "notes.md", b"# Title\n") == "text/markdown"
    assert detect_mime(tmp_path / "u16.csv", "a,b\n1,2\n".encode("utf-16-le")) == "text/csv"
    assert detect_mime(tmp_path / "x.dat", bytes(range(256))) == "application/octet-stream"
    heic = b"\x00\x00\x00\x18ftypheic" + bytes(64)
    with pytest.raises(UnsupportedFormat, match="HEIC"):
        parse_file(write(tmp_path, "photo.heic", heic))


# ---- text formats ----------------------------------------------------------------------------------------


def test_text_paragraphs_offsets_and_language(tmp_path: Path) -> None:
    doc = parse_file(write(tmp_path, "a.txt", "First paragraph\nstill first.\n\n\nSecond one.\r\n\r\nThird."))
    assert [e.text for e in doc.elements] == ["First paragraph\nstill first.", "Second one.", "Third."]
    assert all(e.kind == "paragraph" for e in doc.elements)
    assert doc.language == "en" and doc.title == "a"
    check_offsets(doc)


def test_text_in_gbk(tmp_path: Path) -> None:
    text = "报销制度\n\n员工出差的住宿标准为每晚不超过五百元。"
    doc = parse_file(write(tmp_path, "policy.txt", text.encode("gbk")))
    assert doc.text == text
    assert doc.metadata["encoding"] == "gb18030"
    assert doc.language == "zh"


def test_whitespace_only_text_has_no_elements(tmp_path: Path) -> None:
    doc = parse_file(write(tmp_path, "blank.txt", "  \n\n \t \n"))
    assert doc.elements == () and doc.language is None
    assert "no text could be extracted" in doc.warnings


def test_markdown_headings_and_pipe_table(tmp_path: Path) -> None:
    md = (
        "# Travel policy\n\nIntro text.\n\n## Hotels\n\n| City | Limit |\n|---|---|\n| Beijing | 500 |\n"
        "| Shanghai | 600 |\n\n- book early\n- keep receipts\n\n## Meals\n\nUp to 100 per day.\n"
    )
    doc = parse_file(write(tmp_path, "travel.md", md))
    kinds = [(e.kind, e.text.split("\n")[0]) for e in doc.elements]
    assert kinds[:3] == [("heading", "Travel policy"), ("paragraph", "Intro text."), ("heading", "Hotels")]
    table = next(e for e in doc.elements if e.kind == "table")
    assert table.table is not None
    assert table.table.header == ("City", "Limit")
    assert table.table.rows == (("Beijing", "500"), ("Shanghai", "600"))
    assert table.text == table.table.to_markdown()
    assert table.heading_path == ("Travel policy", "Hotels")
    assert [e.text for e in doc.elements if e.kind == "list_item"] == ["book early", "keep receipts"]
    meals = doc.elements[-1]
    assert meals.text == "Up to 100 per day." and meals.heading_path == ("Travel policy", "Meals")
    assert doc.title == "Travel policy"
    check_offsets(doc)


HTML = """<!DOCTYPE html><html><head><title>Handbook - Intranet</title>
<meta name="date" content="2024-03-01"><meta name="author" content="HR Team">
<script>var tracking = "do not index";</script><style>.x{color:red}</style></head>
<body><nav><a href="/">Home</a> <a href="/jobs">Jobs</a></nav>
<main><h1>Employee handbook</h1><p>Welcome to the <b>company</b>.<br>Second line.</p>
<figure><img src="org.png" alt="Org chart"><figcaption>Figure 1: who reports to whom</figcaption></figure>
<h2>Leave</h2><table><caption>Leave days</caption>
<tr><th>Grade</th><th>Years</th><th>Days</th></tr>
<tr><td rowspan="2">Staff</td><td>0-5</td><td>10</td></tr><tr><td>5+</td><td>15</td></tr>
<tr><td colspan="2">Managers</td><td>20</td></tr></table>
<p><img src="data:image/png;base64,iVBORw0KGgoAAAANSU" alt="Smiley"></p>
<div hidden>secret draft</div></main><footer>Copyright</footer></body></html>"""


def test_html_structure_tables_images_and_metadata(tmp_path: Path) -> None:
    doc = parse_file(write(tmp_path, "handbook.html", HTML), ocr=False)
    text = doc.text
    for junk in ("tracking", "Home", "Jobs", "Copyright", "secret draft", "color:red", "base64,"):
        assert junk not in text
    assert doc.metadata["created"] == "2024-03-01" and doc.metadata["author"] == "HR Team"
    assert doc.title == "Handbook - Intranet"
    assert doc.elements[0].kind == "heading" and doc.elements[0].text == "Employee handbook"
    assert doc.elements[1].text == "Welcome to the company.\nSecond line."
    fig = doc.elements[2]
    assert fig.kind == "image" and fig.image is not None
    assert fig.image.ref == "org.png" and fig.image.alt == "Org chart"
    assert fig.image.caption == "Figure 1: who reports to whom"
    assert "Figure 1: who reports to whom" in fig.text and "Org chart" in fig.text
    table = next(e for e in doc.elements if e.kind == "table")
    assert table.table is not None
    assert table.table.header == ("Grade", "Years", "Days")
    assert table.table.rows == (("Staff", "0-5", "10"), ("Staff", "5+", "15"), ("Managers", "Managers", "20"))
    assert table.table.caption == "Leave days"
    assert table.heading_path == ("Employee handbook", "Leave")
    smiley = doc.elements[-1]
    assert (
        smiley.kind == "image"
        and smiley.image is not None
        and smiley.image.ref == "data:image/png;base64,..."
    )
    check_offsets(doc)


def test_html_published_time_and_gbk_charset(tmp_path: Path) -> None:
    html = (
        '<html><head><meta charset="gb2312"><meta property="article:published_time" '
        'content="2023-05-06T08:00:00Z"></head><body><article><h1>通知</h1><p>下周一放假。</p></article></body></html>'
    )
    doc = parse_file(write(tmp_path, "notice.htm", html.encode("gbk")))
    assert doc.metadata["created"] == "2023-05-06T08:00:00Z"
    assert [e.text for e in doc.elements] == ["通知", "下周一放假。"]
    assert doc.language == "zh"


def _csv_rows(doc: ParsedDocument) -> list[tuple[str, ...]]:
    return [r for e in doc.elements if e.table is not None for r in e.table.rows]


@pytest.mark.parametrize("codec", ["utf-16", "shift_jis", "gbk", "utf-8-sig"])
def test_csv_encodings(tmp_path: Path, codec: str) -> None:
    rows = (
        [["名前", "住所"], ["佐藤", "東京"], ["李雷", "北京"]]
        if codec != "gbk"
        else [["姓名", "城市"], ["李雷", "北京"], ["韩梅梅", "上海"]]
    )
    data = "\r\n".join(",".join(r) for r in rows).encode(codec)
    doc = parse_file(write(tmp_path, f"people-{codec}.csv", data))
    (table,) = doc.elements
    assert table.kind == "table" and table.table is not None
    assert table.table.header == tuple(rows[0])
    assert _csv_rows(doc) == [tuple(r) for r in rows[1:]]


def test_tsv_and_quoted_csv(tmp_path: Path) -> None:
    doc = parse_file(write(tmp_path, "t.tsv", 'a\tb\n1,5\t"x"\n'))
    assert doc.elements[0].table is not None and doc.elements[0].table.rows == (("1,5", "x"),)
    doc = parse_file(write(tmp_path, "q.csv", 'name,note\nAnn,"likes a, b and c"\nBo,"multi\nline"\n'))
    assert _csv_rows(doc) == [("Ann", "likes a, b and c"), ("Bo", "multi line")]


def test_large_csv_is_split_with_header_repeated(tmp_path: Path) -> None:
    lines = ["id,value"] + [f"{i},{i * i}" for i in range(1, 121)]
    doc = parse_file(write(tmp_path, "big.csv", "\n".join(lines)))
    tables = [e.table for e in doc.elements]
    assert [len(t.rows) for t in tables if t] == [MAX_TABLE_ROWS, MAX_TABLE_ROWS, 20]
    assert all(t is not None and t.header == ("id", "value") for t in tables)
    assert all(e.text.startswith("| id | value |") for e in doc.elements)
    check_offsets(doc)


def test_eml_headers_html_body_and_date(tmp_path: Path) -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.com>"
    msg["To"] = "team@example.com"
    msg["Subject"] = "Q3 numbers"
    msg["Date"] = "Tue, 01 Oct 2024 09:30:00 +0800"
    msg.set_content("Plain version")
    msg.add_alternative(
        "<p>Revenue grew.</p><table><tr><th>Q</th><th>Rev</th></tr><tr><td>Q3</td><td>12</td></tr></table>",
        subtype="html",
    )
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="deck.pdf")
    doc = parse_file(write(tmp_path, "q3.eml", msg.as_bytes()))
    assert doc.title == "Q3 numbers"
    assert doc.metadata["created"] == "2024-10-01T09:30:00+08:00"
    assert "alice@example.com" in doc.metadata["author"]
    assert "From: Alice <alice@example.com>" in doc.text and "Revenue grew." in doc.text
    assert "Plain version" not in doc.text  # the HTML alternative is preferred
    table = next(e for e in doc.elements if e.kind == "table")
    assert table.table is not None and table.table.rows == (("Q3", "12"),)
    assert any("deck.pdf" in w for w in doc.warnings)


def test_epub_spine_order_and_metadata(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container xmlns="urn:oasis:names:tc:opendocument'
            ':xmlns:container"><rootfiles><rootfile full-path="OEBPS/content.opf"/></rootfiles></container>',
        )
        z.writestr(
            "OEBPS/content.opf",
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/"><metadata><dc:title>Field Guide</dc:title>'
            "<dc:creator>Jane Roe</dc:creator><dc:date>2021-07-01</dc:date></metadata><manifest>"
            '<item id="c1" href="ch1.xhtml" media-type="application/xhtml+xml"/>'
            '<item id="c2" href="ch2.xhtml" media-type="application/xhtml+xml"/></manifest>'
            '<spine><itemref idref="c2"/><itemref idref="c1"/></spine></package>',
        )
        z.writestr("OEBPS/ch1.xhtml", "<html><body><h1>Birds</h1><p>Robins sing.</p></body></html>")
        z.writestr("OEBPS/ch2.xhtml", "<html><body><h1>Trees</h1><p>Oaks grow.</p></body></html>")
    doc = parse_file(write(tmp_path, "guide.epub", buf.getvalue()))
    assert [e.text for e in doc.elements] == ["Trees", "Oaks grow.", "Birds", "Robins sing."]
    assert doc.elements[3].heading_path == ("Birds",)
    assert doc.title == "Field Guide"
    assert doc.metadata["author"] == "Jane Roe" and doc.metadata["created"] == "2021-07-01"

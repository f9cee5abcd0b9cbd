"""Images: OCR with the bundled RapidOCR models (slow: loading takes seconds), line ordering, HTML <img>."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.errors import CorruptFile
from ingest.parsers import parse_file
from ingest.parsers.ocr import order_rows

_CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")


def _picture(path: Path, lines: list[tuple[int, int, str]], font_path: Path | None = None) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (1400, 700), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(str(font_path), 56) if font_path else ImageFont.load_default(size=56)
    for x, y, text in lines:
        draw.text((x, y), text, fill="black", font=font)
    img.save(path)
    return path


def test_rows_are_read_top_down_then_left_to_right() -> None:
    boxes = [
        (200.0, 240.0, 500.0, "right-low"),
        (10.0, 50.0, 600.0, "right-top"),
        (12.0, 48.0, 20.0, "left-top"),
        (205.0, 238.0, 30.0, "left-low"),
    ]
    assert [t for _, _, t in order_rows(boxes)] == ["left-top right-top", "left-low right-low"]


def test_image_without_ocr_keeps_the_reference(tmp_path: Path) -> None:
    path = _picture(tmp_path / "scan.png", [(50, 50, "HELLO")])
    doc = parse_file(path, ocr=False)
    (el,) = doc.elements
    assert el.kind == "image" and el.image is not None and el.image.ref == "scan.png" and el.text == ""
    assert any("OCR is off" in w for w in doc.warnings)


def test_broken_image(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(CorruptFile, match="unreadable image/png"):
        parse_file(path)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["png", "jpg", "bmp", "tiff", "webp"])
def test_ocr_english_picture(tmp_path: Path, suffix: str) -> None:
    from ingest.parsers.ocr import get_engine

    path = _picture(
        tmp_path / f"notice.{suffix}",
        [(60, 400, "MEETING ROOM B"), (60, 80, "FIRE EXIT 3"), (800, 80, "LEVEL 12")],
    )
    doc = parse_file(path)
    (el,) = doc.elements
    assert el.kind == "image" and el.image is not None and el.image.ref == f"notice.{suffix}"
    assert el.image.ocr_text == el.text
    lines = el.text.split("\n")
    assert len(lines) == 2, lines
    assert "FIRE" in lines[0] and "LEVEL" in lines[0] and lines[0].index("FIRE") < lines[0].index("LEVEL")
    assert "MEETING" in lines[1]
    assert get_engine() is get_engine()  # one engine per process


@pytest.mark.slow
@pytest.mark.skipif(not _CJK_FONT.exists(), reason=f"no CJK font at {_CJK_FONT} to draw Chinese text with")
def test_ocr_chinese_picture(tmp_path: Path) -> None:
    path = _picture(tmp_path / "通知.png", [(60, 80, "会议室在十二楼"), (60, 300, "请准时参加")], _CJK_FONT)
    doc = parse_file(path)
    assert doc.elements[0].text.split("\n") == ["会议室在十二楼", "请准时参加"]
    assert doc.language == "zh" and doc.title == "通知"


@pytest.mark.slow
def test_html_local_image_is_ocrd(tmp_path: Path) -> None:
    _picture(tmp_path / "sign.png", [(60, 80, "NO PARKING")])
    html = tmp_path / "page.html"
    html.write_text(
        '<html><body><p>Notice board</p><img src="sign.png" alt="Sign">'
        '<img src="missing.png" alt="Gone"></body></html>'
    )
    doc = parse_file(html)
    sign, gone = [e for e in doc.elements if e.kind == "image"]
    assert sign.image is not None and "NO PARKING" in sign.image.ocr_text and "Sign" in sign.text
    assert gone.image is not None and gone.image.ocr_text == "" and gone.text == "Gone"
    assert parse_file(html, ocr=False).elements[1].image.ocr_text == ""  # type: ignore[union-attr]

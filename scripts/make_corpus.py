"""Generate the binary files of the sample corpus (examples/corpus/) from the text in examples/corpus_src/.

    python scripts/make_corpus.py [--src DIR] [--out DIR] [--cjk-font PATH] [--no-scans]

The Markdown, TXT and HTML files of the corpus are written by hand straight into examples/corpus/; this
script makes only what cannot be hand-written: two PDFs, a DOCX, two PNGs and a GBK-encoded text file.
Output is deterministic for a given set of library and font versions (fixed dates, no random IDs, seeded
noise), so a re-run over unchanged sources leaves the committed files byte-identical.

The scanned pages need a CJK font: on Debian `apt-get install fonts-wqy-zenhei` (or fonts-noto-cjk).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image, ImageFont

ROOT = Path(__file__).resolve().parent.parent
SRC_DIR = ROOT / "examples" / "corpus_src"
OUT_DIR = ROOT / "examples" / "corpus"

FAULT_PDF = "fault-codes.pdf"
SCHEDULE_DOCX = "maintenance-schedule.docx"
CLEARANCE_PNG = "outdoor_unit_clearance.png"
BULLETIN_PDF = "service-bulletin-SB-2024-07-scan.pdf"
NOTICE_PNG = "warranty-registration-notice-photo.png"
TIPS_GBK = "保养小贴士-gbk.txt"
TEXT_OUTPUTS = (FAULT_PDF, SCHEDULE_DOCX, CLEARANCE_PNG, TIPS_GBK)
SCAN_OUTPUTS = (BULLETIN_PDF, NOTICE_PNG)
GENERATED = TEXT_OUTPUTS + SCAN_OUTPUTS

# Checked in order before asking fontconfig; WenQuanYi first because its glyphs OCR cleanly at small sizes.
CJK_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
)
FONT_HELP = "install one, e.g. `apt-get install fonts-wqy-zenhei` (Debian/Ubuntu), or pass --cjk-font PATH"


class MissingFontError(RuntimeError):
    """No font with Chinese glyphs, so the scanned pages cannot be drawn."""


def find_cjk_font() -> Path | None:
    """The first font file found that has Chinese glyphs, or None."""
    for cand in CJK_FONT_CANDIDATES:
        if Path(cand).is_file():
            return Path(cand)
    if shutil.which("fc-list"):
        res = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, check=False)
        files = sorted(line.split(":")[0].strip() for line in res.stdout.splitlines() if line.strip())
        if files:
            return Path(files[0])
    return None


def build(
    src: Path = SRC_DIR, out: Path = OUT_DIR, *, scans: bool = True, cjk_font: Path | None = None
) -> list[Path]:
    """Write the generated corpus files into `out` and return their paths (scans only if `scans`)."""
    if not src.is_dir():
        raise FileNotFoundError(f"source folder not found: {src}")
    font: Path | None = None
    if scans:
        font = cjk_font or find_cjk_font()
        if font is None or not font.is_file():
            raise MissingFontError(f"no CJK font found (got {font!r}): {FONT_HELP}")
    out.mkdir(parents=True, exist_ok=True)
    make_fault_code_pdf(_load_json(src / "fault_codes.json"), out / FAULT_PDF)
    make_schedule_docx(_load_json(src / "maintenance_schedule.json"), out / SCHEDULE_DOCX)
    make_clearance_png(_load_json(src / "outdoor_unit_clearance.json"), out / CLEARANCE_PNG)
    make_gbk_text((src / "保养小贴士.txt").read_text(encoding="utf-8"), out / TIPS_GBK)
    names = list(TEXT_OUTPUTS)
    if font is not None:
        bulletin = (src / "service_bulletin_scan.txt").read_text(encoding="utf-8").splitlines()
        make_scan_pdf(bulletin, out / BULLETIN_PDF, font, date="2024-07-10")
        notice = (src / "warranty_registration_photo.txt").read_text(encoding="utf-8").splitlines()
        make_photo_png(notice, out / NOTICE_PNG, font)
        names += SCAN_OUTPUTS
    return [out / n for n in names]


def _load_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


@contextmanager
def _pdf_date(iso: str) -> Iterator[None]:
    # reportlab reads its timestamp from SOURCE_DATE_EPOCH (the reproducible-builds convention); without it
    # the PDF would carry today's date, and ingest would take that as the document's effective date.
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()))
    try:
        yield
    finally:
        if old is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old


def make_fault_code_pdf(spec: dict[str, Any], out: Path) -> None:
    """A one-page text PDF: title, intro paragraphs, a ruled table with a header row, closing paragraphs."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    body, cell = styles["BodyText"], styles["BodyText"].clone("cell", fontSize=8.5, leading=10.5)
    story: list[Any] = [Paragraph(spec["title"], styles["Title"])]
    story += [Paragraph(p, body) for p in spec["intro"]] + [Spacer(1, 6)]
    rows = [list(spec["header"])] + [
        [r[0], Paragraph(r[1], cell), Paragraph(r[2], cell)] for r in spec["rows"]
    ]
    table = Table(rows, colWidths=[42, 180, 270], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.6, colors.black),
                ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story += [table, Spacer(1, 8)] + [Paragraph(p, body) for p in spec["outro"]]
    doc = SimpleDocTemplate(
        str(out),
        pagesize=A4,
        leftMargin=50,
        rightMargin=50,
        topMargin=45,
        bottomMargin=45,
        title=spec["title"],
        author=spec["author"],
        subject=spec["subject"],
        creator="make_corpus.py",
        invariant=1,
    )
    with _pdf_date(spec["created"].removesuffix("Z")):
        doc.build(story)


def make_schedule_docx(spec: dict[str, Any], out: Path) -> None:
    """A DOCX with a title, numbered headings, paragraphs and one ruled table; fixed core-property dates."""
    import docx

    document = docx.Document()
    created = datetime.fromisoformat(spec["created"].removesuffix("Z"))
    props = document.core_properties
    props.title, props.author, props.subject = spec["title"], spec["author"], spec["subject"]
    props.created = props.modified = created
    props.last_modified_by, props.revision, props.comments = spec["author"], 1, spec["subject"]
    document.add_heading(spec["title"], level=0)
    for section in spec["sections"]:
        document.add_heading(section["heading"], level=int(section["level"]))
        for para in section["paragraphs"]:
            document.add_paragraph(para)
        if "table" in section:
            header, rows = section["table"]["header"], section["table"]["rows"]
            table = document.add_table(rows=1 + len(rows), cols=len(header))
            table.style = "Table Grid"
            for r, values in enumerate([header, *rows]):
                for c, value in enumerate(values):
                    table.cell(r, c).text = value
    buf = io.BytesIO()
    document.save(buf)
    _rezip(buf.getvalue(), out, created)


def _rezip(data: bytes, out: Path, when: datetime) -> None:
    # python-docx stamps every zip member with the current time; rewrite them with a fixed one.
    stamp = (when.year, when.month, when.day, when.hour, when.minute, when.second)
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=stamp)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o644 << 16
            zout.writestr(member, zin.read(info.filename))


def make_clearance_png(spec: dict[str, Any], out: Path) -> None:
    """A top-view diagram of the outdoor unit with its minimum clearances written as text in the image."""
    from PIL import Image, ImageDraw, ImageFont

    cm = spec["clearances_cm"]
    img = Image.new("RGB", (800, 600), "white")
    d = ImageDraw.Draw(img)
    # Pillow's bundled scalable font: English labels need no system font.
    big, small = ImageFont.load_default(size=24), ImageFont.load_default(size=18)
    d.text((400, 22), spec["title"], font=big, fill="black", anchor="mm")
    d.rectangle((150, 60, 650, 80), fill=(150, 150, 150))
    d.text((210, 70), spec["wall_label"], font=small, fill="white", anchor="mm")
    d.rectangle((300, 140, 500, 240), outline="black", width=3, fill=(220, 232, 245))
    d.text((400, 190), spec["unit_label"], font=small, fill="black", anchor="mm")
    _arrow(d, (400, 80), (400, 140))
    d.text((410, 110), f"min. {cm['rear']} cm", font=small, fill="black", anchor="lm")
    _arrow(d, (170, 190), (300, 190))
    d.text((235, 175), f"min. {cm['left']} cm", font=small, fill="black", anchor="mb")
    _arrow(d, (500, 190), (700, 190))
    d.text((600, 175), f"min. {cm['right']} cm", font=small, fill="black", anchor="mb")
    d.text((600, 205), f"({spec['right_note']})", font=small, fill="black", anchor="mt")
    _arrow(d, (400, 240), (400, 470))
    d.text((415, 345), f"min. {cm['front']} cm", font=big, fill="black", anchor="lm")
    d.text((415, 375), f"({spec['front_note']})", font=small, fill="black", anchor="lm")
    d.text((400, 510), f"Above the unit: min. {cm['above']} cm", font=big, fill="black", anchor="mm")
    d.text((400, 565), spec["footer"], font=small, fill=(80, 80, 80), anchor="mm")
    img.save(out, format="PNG", optimize=True)


def _arrow(d: Any, a: tuple[int, int], b: tuple[int, int], head: int = 9) -> None:
    d.line((a, b), fill="black", width=2)
    for tip, tail in ((a, b), (b, a)):
        if tip[0] == tail[0]:  # vertical: head points up or down
            s = 1 if tail[1] > tip[1] else -1
            pts = [tip, (tip[0] - head // 2, tip[1] + s * head), (tip[0] + head // 2, tip[1] + s * head)]
        else:
            s = 1 if tail[0] > tip[0] else -1
            pts = [tip, (tip[0] + s * head, tip[1] - head // 2), (tip[0] + s * head, tip[1] + head // 2)]
        d.polygon(pts, fill="black")


def make_gbk_text(text: str, out: Path) -> None:
    """The same text encoded as GBK with CRLF line ends, the way older Windows editors save Chinese text."""
    out.write_bytes(text.replace("\n", "\r\n").encode("gbk"))


def _text_page(lines: list[str], font_path: Path, size: tuple[int, int], pt: int, margin: int) -> Image.Image:
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("L", size, 244)
    d = ImageDraw.Draw(page)
    title: ImageFont.FreeTypeFont = ImageFont.truetype(str(font_path), int(pt * 1.35))
    body: ImageFont.FreeTypeFont = ImageFont.truetype(str(font_path), pt)
    y = margin
    for i, line in enumerate(lines):
        font = title if i == 0 else body
        if line.strip():
            d.text((margin, y), line, font=font, fill=28)
        y += int(font.size * (2.0 if i == 0 else 1.7))
    return page


def make_scan_pdf(lines: list[str], out: Path, font_path: Path, *, date: str) -> None:
    """An image-only PDF page, like a flatbed scan: grey paper, slight skew, dust specks, no text layer."""
    from PIL import Image, ImageDraw, ImageFilter
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen.canvas import Canvas

    page = _text_page(lines, font_path, (1240, 1754), pt=34, margin=110)  # A4 at 150 dpi
    rng = random.Random(2407)
    d = ImageDraw.Draw(page)
    for _ in range(120):
        x, y = rng.randrange(1240), rng.randrange(1754)
        d.point((x, y), fill=rng.randrange(60, 160))
    page = page.rotate(0.6, resample=Image.Resampling.BICUBIC, fillcolor=244).filter(
        ImageFilter.GaussianBlur(0.6)
    )
    with _pdf_date(date):
        canvas = Canvas(str(out), pagesize=A4, invariant=1)
        canvas.setTitle("scan0007")
        canvas.setCreator("flatbed scanner")
        canvas.drawImage(ImageReader(page), 0, 0, width=A4[0], height=A4[1])
        canvas.showPage()
        canvas.save()


def make_photo_png(lines: list[str], out: Path, font_path: Path) -> None:
    """A phone photo of a printed notice: paper tilted on a darker desk, soft shadow, uneven light."""
    from PIL import Image, ImageFilter

    paper = _text_page(lines, font_path, (820, 560), pt=34, margin=50).convert("RGB")
    w, h = 1000, 760
    desk = Image.linear_gradient("L").resize((w, h)).point(lambda v: 70 + v // 6)
    photo = Image.merge("RGB", (desk.point(lambda v: v + 25), desk.point(lambda v: v + 12), desk))
    shadow = Image.new("L", (w, h), 0)
    shadow.paste(150, (100, 120, 920, 680))
    photo.paste((40, 35, 30), mask=shadow.filter(ImageFilter.GaussianBlur(12)))
    bicubic = Image.Resampling.BICUBIC
    tilted = paper.rotate(-2.0, resample=bicubic, expand=True, fillcolor=(0, 0, 0))
    mask = Image.new("L", paper.size, 255).rotate(-2.0, resample=bicubic, expand=True, fillcolor=0)
    photo.paste(tilted, (80, 85), mask)
    # Vignette: a phone camera darkens the corners.
    light = Image.radial_gradient("L").resize((w * 2, h * 2)).crop((w // 2, h // 2, w + w // 2, h + h // 2))
    photo = Image.composite(photo, photo.point(lambda v: int(v * 0.8)), light.point(lambda v: 255 - v))
    photo.filter(ImageFilter.GaussianBlur(0.7)).save(out, format="PNG", optimize=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=SRC_DIR, help="folder with the text sources")
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="folder to write the generated files into")
    ap.add_argument("--cjk-font", type=Path, default=None, help="font file with Chinese glyphs for the scans")
    ap.add_argument("--no-scans", action="store_true", help="skip the scanned pages (they need a CJK font)")
    args = ap.parse_args(argv)
    try:
        paths = build(args.src, args.out, scans=not args.no_scans, cjk_font=args.cjk_font)
    except MissingFontError as exc:
        print(f"make_corpus: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(f"{p.stat().st_size:>9,d}  {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

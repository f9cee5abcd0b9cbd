"""Pictures (PNG, JPEG, BMP, TIFF, WEBP, GIF): one "image" element whose text is the OCR'd text."""

from __future__ import annotations

import io

from ingest.elements import ImageRef, ParsedDocument
from ingest.errors import CorruptFile, FileTooLarge
from ingest.parsers.builder import DocBuilder, Source

_MAX_FRAMES = 20  # multi-page TIFF scans


def parse_image(src: Source) -> ParsedDocument:
    from PIL import Image, UnidentifiedImageError

    b = DocBuilder()
    try:
        img = Image.open(io.BytesIO(src.data))
        img.load()
    except Image.DecompressionBombError as e:
        raise FileTooLarge(f"image has too many pixels: {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise CorruptFile(f"unreadable {src.mime} image: {e}") from None
    if not src.ocr:
        b.warnings.append("OCR is off: the image's text was not read")
        b.add("image", "", image=ImageRef(ref=src.name))
        return b.build(src.stem)
    from ingest.parsers.ocr import ocr_lines

    frames = getattr(img, "n_frames", 1) if src.mime == "image/tiff" else 1  # not every frame of a GIF
    texts = []
    for i in range(min(frames, _MAX_FRAMES)):
        img.seek(i)
        texts.append("\n".join(ocr_lines(img)))
    if frames > _MAX_FRAMES:
        b.warnings.append(f"only the first {_MAX_FRAMES} of {frames} frames were OCR'd")
    text = "\n\n".join(t for t in texts if t)
    b.add("image", text, image=ImageRef(ref=src.name, ocr_text=text))
    return b.build(src.stem)

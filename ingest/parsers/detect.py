"""What a file really is, from its first bytes (and, for ZIP and OLE containers, the names inside).

Extensions lie (a text file saved as .pdf, an .xlsx that is really an encrypted OLE container), so the content
decides and the extension only breaks ties between text formats.
"""

from __future__ import annotations

import io
from pathlib import Path

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLS = "application/vnd.ms-excel"
DOC = "application/msword"
PPT = "application/vnd.ms-powerpoint"
MSG = "application/vnd.ms-outlook"
EPUB = "application/epub+zip"
ZIP = "application/zip"
OLE = "application/x-ole-storage"
ENCRYPTED_OOXML = (
    "application/x-encrypted-ooxml"  # an Office file saved with a password: OLE around an AES blob
)
HTML = "text/html"
MARKDOWN = "text/markdown"
CSV = "text/csv"
TSV = "text/tab-separated-values"
EML = "message/rfc822"
JSON = "application/json"
NOTEBOOK = "application/x-ipynb+json"
XML = "application/xml"
TEXT = "text/plain"
ISO_MEDIA = "application/x-iso-media"  # HEIC/AVIF pictures, MP4/MOV video: an 'ftyp' box first
UNKNOWN = "application/octet-stream"

_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"BM", "image/bmp"),
)
_TEXT_BY_EXT = {
    ".html": HTML,
    ".htm": HTML,
    ".xhtml": HTML,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".csv": CSV,
    ".tsv": TSV,
    ".tab": TSV,
    ".eml": EML,
    ".json": JSON,
    ".ipynb": NOTEBOOK,
    ".xml": XML,
    ".txt": TEXT,
    ".text": TEXT,
    ".log": TEXT,
    ".rst": TEXT,
}
# Extensions of binary formats: content that is none of them is a damaged file, not an unknown one.
BINARY_EXTS = {
    ".pdf": PDF,
    ".docx": DOCX,
    ".pptx": PPTX,
    ".xlsx": XLSX,
    ".xlsm": XLSX,
    ".xls": XLS,
    ".doc": DOC,
    ".ppt": PPT,
    ".msg": MSG,
    ".epub": EPUB,
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".webp": "image/webp",
}


def detect_mime(path: Path, head: bytes) -> str:
    """The MIME type of the content. `head` is the file's first bytes or all of it; ZIP and OLE containers are
    looked into, from `head` when it holds the whole file and from `path` otherwise."""
    ext = Path(path).suffix.lower()
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_kind(_whole(path, head))
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return _ole_kind(_whole(path, head))
    if b"%PDF-" in head[:1024]:
        return PDF
    for magic, mime in _IMAGE_MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return ISO_MEDIA
    if not looks_like_text(head):
        return UNKNOWN
    if ext in _TEXT_BY_EXT:
        return _TEXT_BY_EXT[ext]
    return _sniff_text(head)


def looks_like_text(head: bytes) -> bool:
    """No NUL bytes and few control characters, or UTF-16/32 (with a BOM, or NULs in every other byte)."""
    sample = head[:65536]
    if not sample:
        return False
    if sample.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return True
    if b"\x00" in sample:
        even, odd = sample[0::2], sample[1::2]
        zeros_even, zeros_odd = even.count(0) / max(len(even), 1), odd.count(0) / max(len(odd), 1)
        # ASCII-heavy UTF-16 without a BOM: one half of the bytes almost all NUL, the other half almost none.
        return max(zeros_even, zeros_odd) > 0.3 and min(zeros_even, zeros_odd) < 0.05 and _utf16_ok(sample)
    controls = sum(b < 0x20 and b not in b"\t\n\r\f\x1b" for b in sample) + sample.count(0x7F)
    if controls > 0.02 * len(sample):
        return _utf16_ok(sample)  # BOM-less UTF-16 CJK text has stray low bytes but no NULs
    return True


def _utf16_ok(sample: bytes) -> bool:
    for enc in ("utf-16-le", "utf-16-be"):
        try:
            text = sample[: len(sample) // 2 * 2].decode(enc)
        except UnicodeDecodeError:
            continue
        if sum(c.isprintable() or c.isspace() for c in text) > 0.95 * len(text):
            return True
    return False


def _sniff_text(head: bytes) -> str:
    start = head[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if start.startswith((b"<!doctype html", b"<html")) or b"<body" in start:
        return HTML
    if start.startswith((b"from:", b"received:", b"return-path:", b"message-id:", b"mime-version:")):
        return EML
    return TEXT


def _whole(path: Path, head: bytes) -> bytes:
    try:
        size = Path(path).stat().st_size
    except OSError:
        return head
    return head if len(head) >= size else Path(path).read_bytes()


def _zip_kind(data: bytes) -> str:
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = set(z.namelist())
            # Never z.read(): a "mimetype" member can be a zip bomb too (ingest/parsers/archive.py checks later).
            mimetype = b""
            if "mimetype" in names:
                with z.open("mimetype") as f:
                    mimetype = f.read(64)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return ZIP
    if mimetype.startswith(b"application/epub+zip"):
        return EPUB
    prefixes = {n.split("/", 1)[0] for n in names}
    if "[Content_Types].xml" in names:
        for folder, mime in (("word", DOCX), ("ppt", PPTX), ("xl", XLSX)):
            if folder in prefixes:
                return mime
    return ZIP


def _ole_kind(data: bytes) -> str:
    import olefile

    try:
        with olefile.OleFileIO(io.BytesIO(data)) as ole:
            streams = {"/".join(s) for s in ole.listdir(streams=True, storages=True)}
    except (OSError, ValueError, IndexError):
        return OLE
    if "EncryptionInfo" in streams and "EncryptedPackage" in streams:
        return ENCRYPTED_OOXML
    if "Workbook" in streams or "Book" in streams:
        return XLS
    if "WordDocument" in streams:
        return DOC
    if "PowerPoint Document" in streams:
        return PPT
    if any(s.startswith("__substg1.0_") for s in streams):
        return MSG
    return OLE

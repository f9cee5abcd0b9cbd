"""Turn one file into a ParsedDocument: detect what it really is, then hand it to the parser for that family.

A text file that carries a binary format's extension (notes saved as `report.pdf`) is parsed as the text it
is, with a warning, because that is what the user meant to index; a binary file that is not what its extension
says is a CorruptFile. Every failure is an IngestError subclass whose message is one line.
"""

from __future__ import annotations

import importlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from ingest.elements import ParsedDocument
from ingest.errors import CorruptFile, EmptyFile, EncryptedFile, FileTooLarge, IngestError, UnsupportedFormat
from ingest.parsers import detect
from ingest.parsers.archive import ArchiveLimits, check_archive
from ingest.parsers.builder import Source, readable
from ingest.parsers.detect import detect_mime

__all__ = ["parse_file", "detect_mime", "SUPPORTED_MIMES"]

# mime -> "module:function" under ingest.parsers, imported on first use: importing this package stays cheap.
_PARSERS = {
    detect.PDF: "pdf:parse_pdf",
    detect.DOCX: "office:parse_docx",
    detect.PPTX: "office:parse_pptx",
    detect.XLSX: "sheet:parse_xlsx",
    detect.XLS: "sheet:parse_xls",
    detect.CSV: "sheet:parse_csv",
    detect.TSV: "sheet:parse_csv",
    detect.HTML: "html:parse_html",
    detect.MARKDOWN: "html:parse_markdown",
    detect.EPUB: "html:parse_epub",
    detect.NOTEBOOK: "html:parse_notebook",
    detect.EML: "mail:parse_eml",
    detect.TEXT: "text:parse_text",
    detect.JSON: "text:parse_text",
    detect.XML: "text:parse_text",
    "image/png": "image:parse_image",
    "image/jpeg": "image:parse_image",
    "image/gif": "image:parse_image",
    "image/bmp": "image:parse_image",
    "image/tiff": "image:parse_image",
    "image/webp": "image:parse_image",
}
SUPPORTED_MIMES = frozenset(_PARSERS)
_UNSUPPORTED_WHY = {
    detect.DOC: "legacy Word .doc is not supported: save it as .docx",
    detect.PPT: "legacy PowerPoint .ppt is not supported: save it as .pptx",
    detect.MSG: "Outlook .msg is not supported: save the message as .eml",
    detect.OLE: "unknown OLE/CFB container (not XLS, DOC, PPT or an encrypted Office file)",
    detect.ZIP: "ZIP archive that is not DOCX, PPTX, XLSX or EPUB",
    detect.ISO_MEDIA: "HEIC/AVIF picture or MP4/MOV video is not supported: convert pictures to JPEG or PNG",
}
_ZIP_BASED = frozenset({detect.DOCX, detect.PPTX, detect.XLSX, detect.EPUB, detect.ZIP})


def parse_file(
    path: Path, *, max_bytes: int = 100 * 2**20, ocr: bool = True, archive: ArchiveLimits | None = None
) -> ParsedDocument:
    """Parses one file into typed elements in reading order; raises an IngestError subclass when it cannot.

    `archive`: what a zip-based file (DOCX, PPTX, XLSX, EPUB) may unpack to, checked before any parser opens it.
    """
    if isinstance(path, bytes):
        path = Path(os.fsdecode(path))
    path = Path(path)
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes!r}")
    name = readable(path.name)
    data = _read(path, name, max_bytes)
    mime = detect_mime(path, data)
    if mime in _ZIP_BASED:
        check_archive(data, archive or ArchiveLimits())
    src = Source(path=path, data=data, mime=mime, ocr=ocr)
    if mime == detect.ENCRYPTED_OOXML:
        raise EncryptedFile("password-protected Office file (encrypted package inside an OLE container)")
    warnings = []
    ext = path.suffix.lower()
    claimed = detect.BINARY_EXTS.get(ext)
    if claimed and claimed != mime and not _compatible(claimed, mime):
        what = ext.lstrip(".").upper()
        if mime == detect.ZIP:
            raise CorruptFile(f"not a valid {what}: damaged, truncated or foreign ZIP container")
        if mime in (detect.UNKNOWN, detect.OLE, detect.ISO_MEDIA):
            raise CorruptFile(f"not a {what} (starts with {data[:8]!r})")
        warnings.append(f"content is {mime} although the name ends in {ext}; parsed as {mime}")
    if mime in _UNSUPPORTED_WHY:
        raise UnsupportedFormat(_UNSUPPORTED_WHY[mime])
    if mime not in _PARSERS:
        raise UnsupportedFormat(f"unknown binary format (starts with {data[:8]!r})")
    try:
        doc = _parser(mime)(src)
    except IngestError:
        raise
    except MemoryError:
        raise FileTooLarge(f"ran out of memory parsing {name}") from None
    except Exception as e:  # a library choking on a damaged file: report it and let the batch go on
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise CorruptFile(f"could not parse as {mime}: {type(e).__name__}: {reason}") from e
    if warnings:
        doc = ParsedDocument(
            elements=doc.elements,
            title=doc.title,
            metadata=doc.metadata,
            language=doc.language,
            warnings=tuple(warnings) + doc.warnings,
        )
    return doc


def _compatible(claimed: str, mime: str) -> bool:
    return claimed == detect.XLSX and mime == detect.XLS or claimed == detect.XLS and mime == detect.XLSX


def _read(path: Path, name: str, max_bytes: int) -> bytes:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise IngestError(f"file vanished before it could be read: {name}") from None
    except OSError as e:
        raise IngestError(f"cannot stat {name}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsupportedFormat(f"not a regular file: {name}")
    if st.st_size > max_bytes:
        raise FileTooLarge(f"{st.st_size:,} bytes is over the {max_bytes:,}-byte limit")
    if st.st_size == 0:
        raise EmptyFile("the file is empty (0 bytes)")
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise IngestError(f"file vanished before it could be read: {name}") from None
    except OSError as e:
        raise IngestError(f"cannot read {name}: {e.strerror}") from None
    if len(data) > max_bytes:  # it grew after the stat
        raise FileTooLarge(f"over the {max_bytes:,}-byte limit")
    if not data:
        raise EmptyFile("the file is empty (0 bytes)")
    return data


def _parser(mime: str) -> Callable[[Source], ParsedDocument]:
    module, func = _PARSERS[mime].split(":")
    fn: Callable[[Source], ParsedDocument] = getattr(
        importlib.import_module(f"ingest.parsers.{module}"), func
    )
    return fn

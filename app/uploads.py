"""Files uploaded through POST /collections/{name}/documents: checked, named safely, stored for the ingest worker.

Uploads live in `<data_dir>/uploads/<collection>/<name>`. A name is reduced to its last path component and to
characters that are safe on every file system, so no upload can land outside that folder; uploading a name again
replaces the file, and the worker then treats it as a new version of that document.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from app.errors import RagqaError

_UNSAFE = re.compile(r"[^\w.\- ()\[\]+,@&=]", re.UNICODE)
_MAX_NAME_BYTES = 200
_COPY_BLOCK = 1 << 20


class UnsupportedUpload(RagqaError):
    """415: the file's extension is not one the parsers take."""


class UploadTooLarge(RagqaError):
    """413: a file (or the whole request) is over its limit."""


def supported_extensions() -> list[str]:
    """Extensions the parsers take, from their own tables (so a new parser shows up here by itself)."""
    from ingest.parsers import SUPPORTED_MIMES, detect

    table = {**detect.BINARY_EXTS, **detect._TEXT_BY_EXT}
    return sorted(ext for ext, mime in table.items() if mime in SUPPORTED_MIMES)


def safe_name(name: str) -> str:
    """A file name that stays inside its folder: last component only, no leading dots, safe characters, bounded."""
    base = unicodedata.normalize("NFC", str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable())
    base = _UNSAFE.sub("_", base).strip(" .")
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    ext = ext[:16]
    while len((stem + "." + ext).encode()) > _MAX_NAME_BYTES and stem:
        stem = stem[:-1]
    out = f"{stem}.{ext}" if ext else stem
    return out.lstrip(".") or "upload"


def check_extension(name: str, supported: Iterable[str]) -> None:
    ext = Path(name).suffix.lower()
    allowed = list(supported)
    if ext not in allowed:
        raise UnsupportedUpload(
            f"unsupported file type {ext or '(no extension)'!r} for {name!r}; supported: {', '.join(allowed)}"
        )


def save_upload(src: BinaryIO, folder: Path, name: str, max_bytes: int) -> Path:
    """Copy `src` to `folder/safe_name(name)` atomically; UploadTooLarge past `max_bytes` (nothing is left behind)."""
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / safe_name(name)
    if dest.resolve().parent != folder.resolve():
        raise UnsupportedUpload(f"refusing file name {name!r}")  # cannot happen after safe_name; kept as a guard
    fd, tmp_name = tempfile.mkstemp(prefix=".upload-", dir=folder)
    tmp = Path(tmp_name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            while block := src.read(_COPY_BLOCK):
                size += len(block)
                if size > max_bytes:
                    raise UploadTooLarge(f"{name!r} is over the {max_bytes / 2**20:.0f} MiB per-file limit")
                out.write(block)
        if size == 0:
            raise RagqaError(f"{name!r} is empty (0 bytes)")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest

"""Files uploaded through POST /collections/{name}/documents: checked, named safely, stored for the ingest worker.

Uploads live in `<data_dir>/uploads/<collection>/<name>`. A client's name that is already safe (one path component,
characters safe on every file system) is kept as it is. Any other name is reduced to a safe last component and tagged
with a hash of the client's full name (`evil~1a2b3c4d5e6f.txt`), with the client's name kept in a sidecar, so it
becomes the document's `upload_name` metadata. So two different names never share a file (`../x/evil.txt` and
`/etc/evil.txt` used to both become `evil.txt` and overwrite each other), while uploading the same name again replaces
the file and the worker treats it as a new version of that document.

A request is all or nothing: every file is staged and checked first, then all are moved into place and the job is
queued; on any error, what was moved is put back as it was and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from app.errors import RagqaError

_UNSAFE = re.compile(r"[^\w.\- ()\[\]+,@&=]", re.UNICODE)  # no "~": a safe client name never looks like a tagged one
_MAX_NAME_BYTES = 200
_COPY_BLOCK = 1 << 20
_STAGING = ".upload-"
_STALE_STAGING_S = 24 * 3600
SIDECAR_SUFFIX = ".meta.json"  # the ingest pipeline reads `<file>.meta.json` beside a file
# Moving files into place and queueing their job is short; one request at a time keeps a rollback from undoing a
# concurrent upload of the same name.
_COMMIT = threading.Lock()
T = TypeVar("T")


class UnsupportedUpload(RagqaError):
    """415: the file's extension is not one the parsers take."""


class UploadTooLarge(RagqaError):
    """413: a file (or the whole request) is over its limit."""


class UploadConflict(RagqaError):
    """409: two files of one request would be stored under the same name."""


def supported_extensions() -> list[str]:
    """Extensions the parsers take, from their own tables (so a new parser shows up here by itself)."""
    from ingest.parsers import SUPPORTED_MIMES, detect

    table = {**detect.BINARY_EXTS, **detect._TEXT_BY_EXT}
    return sorted(ext for ext, mime in table.items() if mime in SUPPORTED_MIMES)


def _fit(stem: str, ext: str, tag: str = "") -> str:
    while len((stem + tag + "." + ext).encode()) > _MAX_NAME_BYTES and stem:
        stem = stem[:-1]
    return f"{stem}{tag}.{ext}" if ext else stem + tag


def safe_name(name: str) -> str:
    """A file name that stays inside its folder: last component only, no leading dots, safe characters, bounded."""
    base = unicodedata.normalize("NFC", str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable())
    base = _UNSAFE.sub("_", base).strip(" .")
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    return _fit(stem, ext[:16]).lstrip(".") or "upload"


def stored_name(name: str) -> str:
    """Where the client's `name` is stored: itself when safe, else its safe form tagged with a hash of `name`."""
    safe = safe_name(name)
    if safe == name:
        return safe
    tag = "~" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    stem, dot, ext = safe.rpartition(".")
    if not dot:
        stem, ext = safe, ""
    return _fit(stem, ext, tag)


def check_extension(name: str, supported: Iterable[str]) -> None:
    ext = Path(name).suffix.lower()
    allowed = list(supported)
    if ext not in allowed:
        raise UnsupportedUpload(
            f"unsupported file type {ext or '(no extension)'!r} for {_short(name)!r}; supported: {', '.join(allowed)}"
        )


@dataclass(frozen=True)
class Stored:
    name: str  # the client's name
    path: Path  # where it is stored

    @property
    def renamed(self) -> bool:
        return self.path.name != self.name


def store_uploads(
    folder: Path, files: Sequence[tuple[str, BinaryIO]], max_bytes: int, queue: Callable[[list[Path]], T]
) -> tuple[T, list[Stored]]:
    """Store every (client name, stream) under `folder` and call `queue` with their paths, or store nothing.

    UploadConflict if two names would be stored alike, UploadTooLarge past `max_bytes` for a file, RagqaError for an
    empty file; any error (from `queue` too) leaves `folder` as it was.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    planned = [Stored(n, folder / stored_name(n)) for n, _ in files]
    _check_distinct(planned)
    folder.mkdir(parents=True, exist_ok=True)
    _sweep_stale(folder)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=folder))
    try:
        new = staging / "new"
        new.mkdir()
        for s, (_, src) in zip(planned, files, strict=True):
            _copy(src, new / s.path.name, s.name, max_bytes)
            if s.renamed:
                side = new / (s.path.name + SIDECAR_SUFFIX)
                side.write_text(json.dumps({"upload_name": s.name}, ensure_ascii=True), encoding="utf-8")
        with _COMMIT:
            undo = _move_into_place(new, folder, staging / "old")
            try:
                result = queue([s.path for s in planned])
            except BaseException:
                undo()
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result, planned


def _check_distinct(planned: list[Stored]) -> None:
    seen: dict[str, Stored] = {}
    for s in planned:
        other = seen.setdefault(s.path.name, s)
        if other is not s:  # the same client name (the tags make any other clash a 48-bit hash collision)
            raise UploadConflict(
                f"two files in this request are both named {_short(s.name)!r} (stored as {s.path.name!r}): one "
                "would overwrite the other; give them distinct names, or upload one of them"
            )


def _copy(src: BinaryIO, dest: Path, name: str, max_bytes: int) -> None:
    size = 0
    with dest.open("wb") as out:
        while block := src.read(_COPY_BLOCK):
            size += len(block)
            if size > max_bytes:
                raise UploadTooLarge(f"{_short(name)!r} is over the {max_bytes / 2**20:.0f} MiB per-file limit")
            out.write(block)
    if size == 0:
        raise RagqaError(f"{_short(name)!r} is empty (0 bytes)")
    os.chmod(dest, 0o644)


def _move_into_place(new: Path, folder: Path, old: Path) -> Callable[[], None]:
    """Move every file of `new` into `folder`, keeping a link to each file it replaces; return the undo."""
    old.mkdir()
    done: list[tuple[Path, Path | None]] = []  # (destination, the previous file's copy or None)

    def undo() -> None:
        for dest, prev in reversed(done):
            with contextlib.suppress(OSError):
                if prev is None:
                    dest.unlink(missing_ok=True)
                else:
                    os.replace(prev, dest)

    try:
        for f in sorted(new.iterdir()):
            dest = folder / f.name
            prev: Path | None = None
            if dest.exists():
                prev = old / f.name
                try:
                    os.link(dest, prev)  # a link, not a move: `dest` never goes missing for a worker reading it
                except OSError:
                    shutil.copy2(dest, prev)
            os.replace(f, dest)
            done.append((dest, prev))
    except BaseException:
        undo()
        raise
    return undo


def _sweep_stale(folder: Path) -> None:
    """Staging folders left by a process killed mid-upload; a day old, so never one still in use."""
    cutoff = time.time() - _STALE_STAGING_S
    for p in folder.glob(_STAGING + "*"):
        with contextlib.suppress(OSError):
            if p.lstat().st_mtime < cutoff:
                shutil.rmtree(p) if p.is_dir() else p.unlink()


def _short(name: str, limit: int = 120) -> str:
    """A client's name in a message: bounded, since a multipart header can carry a very long one."""
    return name if len(name) <= limit else name[:limit] + "..."

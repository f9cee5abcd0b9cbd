"""`ragqa backup DEST`: a consistent copy of every collection while the server (and workers) keep running.

Per collection, the index snapshot the pointer names is copied first, then the store through SQLite's online backup
API (one consistent read of the database, WAL included; writers are not blocked). That order matters: the copied
snapshot is then never ahead of the copied store, and on restore the indexes replay whatever the store has beyond the
snapshot from its change log, exactly as after a crash. A snapshot removed mid-copy (a newer one was written) is
retried from the new pointer.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

_POINTER = "indexes.json"


class BackupError(RuntimeError):
    pass


@dataclass(frozen=True)
class CollectionBackup:
    name: str
    chunks: int
    store_bytes: int
    index_dir: str | None  # the snapshot copied, or None when the collection had none yet
    index_seq: int
    store_seq: int


@dataclass(frozen=True)
class BackupReport:
    dest: Path
    collections: tuple[CollectionBackup, ...]
    seconds: float


def sqlite_backup(src: Path, dest: Path) -> None:
    """Copy a live SQLite database with the online backup API; the copy is checked with integrity_check."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(src, timeout=60)) as s, closing(sqlite3.connect(dest)) as d:
        s.backup(d)  # all pages in one step: one read transaction, so one consistent state
        d.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no -wal beside it
        ok = d.execute("PRAGMA integrity_check").fetchone()[0]
    if ok != "ok":
        raise BackupError(f"backup of {src} failed its integrity check: {ok}")


def backup(data_dir: Path, dest: Path, *, uploads: bool = False) -> BackupReport:
    """Back up every collection under `data_dir` (and the jobs, feedback and conversations databases, and optionally
    uploads/) into `dest`."""
    from retrieval.collection import list_collections

    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"backup destination {dest} is not empty")
    t0 = time.perf_counter()
    out = []
    for name in list_collections(data_dir):
        out.append(_collection(data_dir / "collections" / name, dest / "collections" / name))
    for db in ("jobs.sqlite", "feedback.sqlite", "conversations.sqlite"):  # feedback: future training pairs
        if (data_dir / db).exists():
            sqlite_backup(data_dir / db, dest / db)
    if uploads and (data_dir / "uploads").is_dir():
        shutil.copytree(data_dir / "uploads", dest / "uploads")
    return BackupReport(dest, tuple(out), time.perf_counter() - t0)


def _collection(src: Path, dst: Path) -> CollectionBackup:
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "manifest.json", dst / "manifest.json")
    pointer: dict[str, object] | None = None
    for _ in range(5):
        pointer = _read_pointer(src)
        if pointer is None:
            break
        snap = str(pointer["dir"])
        shutil.rmtree(dst / snap, ignore_errors=True)
        try:
            shutil.copytree(src / snap, dst / snap)
        except (FileNotFoundError, shutil.Error):
            continue  # superseded and collected while we copied: take the new one
        break
    else:
        raise BackupError(f"the index snapshot of {src.name} kept changing while copying; try again")
    sqlite_backup(src / "store.sqlite", dst / "store.sqlite")
    with closing(sqlite3.connect(dst / "store.sqlite")) as conn:
        store_seq = int(conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0])
        chunks = int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0])
    index_seq = int(pointer["seq"]) if pointer else 0  # type: ignore[call-overload]
    if index_seq > store_seq:
        raise BackupError(f"{src.name}: copied snapshot (seq {index_seq}) is ahead of the store ({store_seq})")
    if pointer is not None:
        (dst / _POINTER).write_text(json.dumps(pointer))
    return CollectionBackup(src.name, chunks, (dst / "store.sqlite").stat().st_size,
                            str(pointer["dir"]) if pointer else None, index_seq, store_seq)


def _read_pointer(root: Path) -> dict[str, object] | None:
    try:
        data: dict[str, object] = json.loads((root / _POINTER).read_text())
    except FileNotFoundError:
        return None
    return data

"""A collection on disk: `<data_dir>/collections/<name>/` with manifest.json, store.sqlite and index snapshots."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from retrieval.indexes import IndexSet, collect_garbage
from retrieval.manifest import Manifest
from retrieval.store import Store

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class CollectionNotFound(Exception):
    pass


class CollectionLocked(Exception):
    pass


def check_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise ValueError(f"invalid collection name {name!r}: use 1-64 letters, digits, '_', '-', '.'")
    return name


def list_collections(data_dir: Path) -> list[str]:
    root = data_dir / "collections"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "manifest.json").exists())


class Collection:
    """Cheap to construct; `open()` reads (or, with `create`, writes) the manifest and loads the indexes."""

    def __init__(self, data_dir: Path, name: str) -> None:
        self.name = check_name(name)
        self.root = data_dir / "collections" / name
        self.manifest: Manifest | None = None
        self.store = Store(self.root / "store.sqlite", name)
        self.indexes: IndexSet | None = None

    def exists(self) -> bool:
        return (self.root / "manifest.json").exists()

    def open(
        self, *, embedder: str | None = None, dim: int | None = None, chunking: dict[str, Any] | None = None,
        create: bool = False,
    ) -> Collection:
        """Open the collection. With `embedder`/`dim`/`chunking` given, refuse a collection built otherwise."""
        path = self.root / "manifest.json"
        if path.exists():
            self.manifest = Manifest.read(path)
            if embedder is not None and dim is not None and chunking is not None:
                self.manifest.check_compatible(
                    Manifest(collection=self.name, embedder=embedder, dim=dim, chunking=chunking)
                )
        elif create:
            if embedder is None or dim is None or chunking is None:
                raise ValueError("creating a collection needs embedder, dim and chunking")
            self.root.mkdir(parents=True, exist_ok=True)
            self.manifest = Manifest(collection=self.name, embedder=embedder, dim=dim, chunking=chunking)
            self.manifest.write(path)
        else:
            raise CollectionNotFound(f"collection {self.name!r} does not exist under {self.root.parent}")
        self.store.open()
        levels = tuple(self.manifest.chunking.get("levels", ()))
        self.indexes = IndexSet(
            self.root, self.store, self.manifest.dim, levels, self.manifest.bm25["k1"], self.manifest.bm25["b"]
        ).load()
        return self

    @contextmanager
    def write_lock(self, wait: bool = True) -> Iterator[None]:
        """One writer per collection at a time, across processes (the OS drops the lock if the holder dies)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "write.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError as e:
                raise CollectionLocked(f"collection {self.name!r} is being written by another process") from e
            collect_garbage(self.root)
            yield
        finally:
            os.close(fd)

    def close(self) -> None:
        self.store.close()

    def drop(self) -> None:
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)

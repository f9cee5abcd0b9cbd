"""A collection: its manifest, store and indexes, on the backend chosen by `BackendConfig` (retrieval/backend.py).

Local (the default): `<data_dir>/collections/<name>/` with manifest.json, store.sqlite and index snapshots.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from retrieval.backend import (
    LOCAL,
    BackendConfig,
    Catalog,
    DocumentStore,
    SearchIndexes,
    index_root,
    make_catalog,
    make_indexes,
    make_store,
)
from retrieval.indexes import collect_garbage
from retrieval.manifest import Manifest

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class CollectionNotFound(Exception):
    pass


class CollectionLocked(Exception):
    pass


def check_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise ValueError(f"invalid collection name {name!r}: use 1-64 letters, digits, '_', '-', '.'")
    return name


def list_collections(data_dir: Path, backend: BackendConfig = LOCAL) -> list[str]:
    return make_catalog(backend, data_dir).names()


class LocalCatalog:
    """Collections as folders: a manifest file each, and an flock as the write lock."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "collections"

    def manifest(self, name: str) -> Manifest | None:
        path = self.root / name / "manifest.json"
        return Manifest.read(path) if path.exists() else None

    def create(self, manifest: Manifest) -> Manifest:
        folder = self.root / manifest.collection
        folder.mkdir(parents=True, exist_ok=True)
        manifest.write(folder / "manifest.json")
        return manifest

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "manifest.json").exists())

    @contextmanager
    def write_lock(self, name: str, wait: bool) -> Iterator[None]:
        """One writer per collection at a time, across processes (the OS drops the lock if the holder dies)."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / "write.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError as e:
                raise CollectionLocked(f"collection {name!r} is being written by another process") from e
            yield
        finally:
            os.close(fd)

    def drop(self, name: str) -> None:
        shutil.rmtree(self.root / name, ignore_errors=True)


class Collection:
    """Cheap to construct; `open()` reads (or, with `create`, writes) the manifest and loads the indexes."""

    def __init__(self, data_dir: Path, name: str, backend: BackendConfig = LOCAL) -> None:
        self.name = check_name(name)
        self.backend = backend
        self.data_dir = data_dir
        self.root = index_root(backend, data_dir, name)  # local files (for `distributed`: the index cache)
        self.catalog: Catalog = make_catalog(backend, data_dir)
        self.manifest: Manifest | None = None
        self.store: DocumentStore = make_store(backend, data_dir, name)
        self.indexes: SearchIndexes | None = None

    def exists(self) -> bool:
        return self.catalog.manifest(self.name) is not None

    def stored_manifest(self) -> Manifest | None:
        """The manifest on record, without opening anything."""
        return self.catalog.manifest(self.name)

    def open(
        self, *, embedder: str | None = None, dim: int | None = None, chunking: dict[str, Any] | None = None,
        create: bool = False,
    ) -> Collection:
        """Open the collection. With `embedder`/`dim`/`chunking` given, refuse a collection built otherwise."""
        found = self.catalog.manifest(self.name)
        if found is None and create:
            if embedder is None or dim is None or chunking is None:
                raise ValueError("creating a collection needs embedder, dim and chunking")
            # Two creators racing: the first manifest stored wins, the other is checked against it below.
            found = self.catalog.create(Manifest(collection=self.name, embedder=embedder, dim=dim, chunking=chunking))
        elif found is None:
            where = "PostgreSQL" if self.backend.distributed else str(self.root.parent)
            raise CollectionNotFound(f"collection {self.name!r} does not exist in {where}")
        if embedder is not None and dim is not None and chunking is not None:
            found.check_compatible(Manifest(collection=self.name, embedder=embedder, dim=dim, chunking=chunking))
        self.manifest = found
        self.store.open()
        self.indexes = make_indexes(self.backend, self.data_dir, self.name, self.store, found)
        return self

    @contextmanager
    def write_lock(self, wait: bool = True) -> Iterator[None]:
        """One writer per collection at a time, across processes (and hosts, for `distributed`)."""
        with self.catalog.write_lock(self.name, wait):
            if self.root.is_dir():
                collect_garbage(self.root)
            yield

    def close(self) -> None:
        self.store.close()

    def drop(self) -> None:
        """Remove the collection everywhere it lives; open it first so a shared index server's copy goes too."""
        if self.indexes is not None:
            self.indexes.drop()
        self.close()
        if self.backend.distributed:
            self.catalog.drop(self.name)
        shutil.rmtree(self.root, ignore_errors=True)

"""Where a collection lives: the interfaces both backends implement, and the factory that picks one.

`local` (the default): SQLite store, FAISS + BM25 snapshots and a manifest file under `<data_dir>/collections/<name>/`,
one host. `distributed`: the store, the manifests and the write locks in PostgreSQL (retrieval/pg_store.py), so that
API replicas and workers on any host share them; the indexes in Milvus (retrieval/milvus_index.py) when a Milvus URI is
given, else a FAISS + BM25 copy in each process, kept current from PostgreSQL's change log like the local one.
The code above this seam (search, the answer pipeline, the ingest pipeline) does not know which one runs.
The job queue has the same split (ingest/pg_jobs.py), on the ingest side because retrieval does not depend on ingest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from retrieval.manifest import Manifest
from retrieval.types import Chunk, Document

if TYPE_CHECKING:
    from retrieval.store import NewChunk, NewSection, SearchFilter, SourceRecord

BackendKind = Literal["local", "distributed"]


class BackendUnavailable(ConnectionError):
    """The distributed backend's server cannot be reached (the message names it, never its password)."""


@dataclass(frozen=True)
class BackendConfig:
    """Plain values read from Settings at the edge (RAGQA_BACKEND, RAGQA_POSTGRES_URL, RAGQA_MILVUS_URI)."""

    kind: BackendKind = "local"
    postgres_url: str | None = None
    milvus_uri: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("local", "distributed"):
            raise ValueError(f"backend must be 'local' or 'distributed', got {self.kind!r}")
        if self.kind == "distributed" and not self.postgres_url:
            raise ValueError("the distributed backend needs RAGQA_POSTGRES_URL (e.g. postgresql://user@host/db)")

    @property
    def distributed(self) -> bool:
        return self.kind == "distributed"


LOCAL = BackendConfig()


class DocumentStore(Protocol):
    """What a collection's store does: retrieval/store.py (SQLite) and retrieval/pg_store.py (PostgreSQL).

    Writes happen inside `transaction()`, passing its connection to the write methods; a committed transaction
    appends its chunk additions and removals to the change log (`changes_since`), in commit order.
    """

    collection: str

    def open(self) -> Any: ...
    def close(self) -> None: ...
    def transaction(self) -> AbstractContextManager[Any]: ...
    def source(self, path: str) -> SourceRecord | None: ...
    def sources_under(self, prefix: str) -> list[SourceRecord]: ...
    def doc_id_for_hash(self, content_hash: str) -> str | None: ...
    def document(self, doc_id: str) -> Document | None: ...
    def documents(self, doc_ids: Sequence[str] | None = None) -> list[Document]: ...
    def add_document(
        self, conn: Any, doc: Document, family: str | None, sections: Sequence[NewSection],
        chunks: Sequence[NewChunk],
    ) -> list[int]: ...
    def delete_document(self, conn: Any, doc_id: str) -> int: ...
    def set_source(self, conn: Any, rec: SourceRecord) -> str | None: ...
    def drop_source(self, conn: Any, path: str) -> str | None: ...
    def delete_if_orphan(self, conn: Any, doc_id: str) -> bool: ...
    def chunks(self, chunk_ids: Iterable[int]) -> list[Chunk]: ...
    def doc_chunks(self, doc_id: str, level: int) -> list[Chunk]: ...
    def section_text(self, section_id: int) -> tuple[str, int] | None: ...
    def vectors_and_tokens(self, chunk_ids: Sequence[int]) -> Iterator[tuple[int, np.ndarray, list[str]]]: ...
    def chunk_ids_at_level(self, level: int) -> list[int]: ...
    def levels(self) -> list[int]: ...
    def allowed_ids(self, level: int, flt: SearchFilter) -> np.ndarray: ...
    def newest_date(self, flt: SearchFilter) -> str | None: ...
    def last_seq(self) -> int: ...
    def changes_since(self, seq: int) -> list[tuple[int, str, int, int]]: ...
    def counts(self) -> dict[str, int]: ...


class DenseView(Protocol):
    def __len__(self) -> int: ...
    def search(self, vec: np.ndarray, top_k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]: ...


class SearchIndexes(Protocol):
    """A collection's loaded indexes: retrieval/indexes.py (FAISS + BM25) and retrieval/milvus_index.py (Milvus).

    Both are caches of the store, kept current from its change log by `refresh()`."""

    @property
    def levels(self) -> tuple[int, ...]: ...
    @property
    def dense(self) -> Mapping[int, DenseView]: ...  # for near-duplicate checks while ingesting
    def refresh(self) -> int: ...
    def snapshot(self) -> None: ...
    def drop(self) -> None: ...  # remove what lives outside the collection's folder (Milvus collections)
    def hits(
        self, level: int, query_vec: np.ndarray | None, query_text: str | None, query_tokens: Sequence[str], n: int,
        flt: SearchFilter, timings: dict[str, float] | None = None,
    ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]: ...


class Catalog(Protocol):
    """The collections of one backend: their manifests, and the one-writer-per-collection lock."""

    def manifest(self, name: str) -> Manifest | None: ...
    def create(self, manifest: Manifest) -> Manifest: ...
    def names(self) -> list[str]: ...
    def write_lock(self, name: str, wait: bool) -> AbstractContextManager[None]: ...
    def drop(self, name: str) -> None: ...


def index_root(backend: BackendConfig, data_dir: Path, name: str) -> Path:
    """The folder of a collection's local files: everything for `local`; a per-host index cache for `distributed`."""
    if backend.distributed:
        return data_dir / "pg-index-cache" / name
    return data_dir / "collections" / name


def make_catalog(backend: BackendConfig, data_dir: Path) -> Catalog:
    if backend.distributed:
        from retrieval.pg_store import PgCatalog, pg_pool

        assert backend.postgres_url is not None
        return PgCatalog(pg_pool(backend.postgres_url), backend.postgres_url)
    from retrieval.collection import LocalCatalog

    return LocalCatalog(data_dir)


def make_store(backend: BackendConfig, data_dir: Path, name: str) -> DocumentStore:
    """The store of collection `name` (cheap: nothing is opened until `open()`)."""
    if backend.distributed:
        from retrieval.pg_store import PgStore, pg_pool

        assert backend.postgres_url is not None
        return PgStore(pg_pool(backend.postgres_url), name)
    from retrieval.store import Store

    return Store(index_root(backend, data_dir, name) / "store.sqlite", name)


def make_indexes(
    backend: BackendConfig, data_dir: Path, name: str, store: DocumentStore, manifest: Manifest
) -> SearchIndexes:
    """The loaded search indexes of a collection: Milvus for `distributed` with a Milvus URI, else FAISS + BM25."""
    levels = tuple(manifest.chunking.get("levels", ()))
    if backend.distributed and backend.milvus_uri:
        from retrieval.milvus_index import MilvusIndexSet

        return MilvusIndexSet(store, name, manifest.dim, levels, backend.milvus_uri).load()
    from retrieval.indexes import IndexSet

    root = index_root(backend, data_dir, name)
    root.mkdir(parents=True, exist_ok=True)
    return IndexSet(root, store, manifest.dim, levels, manifest.bm25["k1"], manifest.bm25["b"]).load()

"""The search service behind the HTTP API: built once at startup, holds the loaded embedders and open collections."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.errors import BadRequest, NotFound, Unavailable
from retrieval.analyzer import Analyzer
from retrieval.backend import LOCAL, BackendConfig, BackendUnavailable
from retrieval.collection import Collection, CollectionNotFound, check_name, list_collections
from retrieval.embedders import Embedder, loaded_embedder
from retrieval.expand import Passage
from retrieval.search import HybridRetriever, SearchParams
from retrieval.store import SearchFilter
from retrieval.types import Chunk, Document, ScoredChunk

log = logging.getLogger("ragqa")


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    embedder: str
    documents: int
    chunks: int


class SearchService:
    def __init__(self, data_dir: Path, backend: BackendConfig = LOCAL) -> None:
        self.data_dir = data_dir
        self.backend = backend  # which backend holds the collections: nothing below depends on it
        self.analyzer = Analyzer()
        self._embedders: dict[str, Embedder] = {}
        self._retrievers: dict[str, HybridRetriever] = {}
        self._lock = threading.Lock()

    def collections(self) -> list[str]:
        try:
            return list_collections(self.data_dir, self.backend)
        except BackendUnavailable as e:
            log.error("%s", e)
            raise Unavailable("the document store is unavailable; try again later") from e

    def retriever(self, name: str) -> HybridRetriever:
        try:
            check_name(name)
        except ValueError as e:
            raise BadRequest(str(e)) from e
        with self._lock:
            r = self._retrievers.get(name)
            if r is None:
                try:
                    col = Collection(self.data_dir, name, self.backend).open()
                except CollectionNotFound as e:
                    raise NotFound(f"collection {name!r} not found") from e
                except BackendUnavailable as e:  # the log has where; the client hears what
                    log.error("%s", e)
                    raise Unavailable("the document store is unavailable; try again later") from e
                assert col.manifest is not None
                r = HybridRetriever(col, loaded_embedder(self._embedders, col.manifest.embedder), self.analyzer)
                self._retrievers[name] = r
            return r

    def embedder(self, spec: str) -> Embedder:
        """The loaded embedder `spec`, one per process (the answer pipeline's sentence scorer is one)."""
        with self._lock:
            return loaded_embedder(self._embedders, spec)


    def warm_up(self, name: str) -> None:
        """Load the collection and its embedder now, so the first request doesn't pay for it."""
        if name in self.collections():
            self.retriever(name).search("warm up", top_k=1)

    def search(self, collection: str, query: str, top_k: int, params: SearchParams) -> list[ScoredChunk]:
        return self.retriever(collection).search(query, top_k=top_k, params=params)

    def chunks_for(self, name: str, passages: Sequence[Passage]) -> list[Chunk]:
        """Every chunk inside the given passages (a section passage spans several)."""
        ids = sorted({cid for p in passages for cid in p.chunk_ids})
        return self.retriever(name).collection.store.chunks(ids)

    def info(self, name: str) -> CollectionInfo:
        r = self.retriever(name)
        counts = r.collection.store.counts()
        assert r.collection.manifest is not None
        return CollectionInfo(name, r.collection.manifest.embedder, counts["documents"], counts["chunks"])

    def documents(self, name: str) -> list[Document]:
        return self.retriever(name).collection.store.documents()

    def delete_document(self, name: str, doc_id: str) -> int:
        col = self.retriever(name).collection
        with col.write_lock():
            if col.store.document(doc_id) is None:
                raise NotFound(f"document {doc_id!r} not found in collection {name!r}")
            with col.store.transaction() as conn:
                n = col.store.delete_document(conn, doc_id)
            assert col.indexes is not None
            col.indexes.refresh()
            col.indexes.snapshot()
        return n


def make_filter(
    doc_ids: list[str] | None = None, source_prefix: str | None = None, date_from: str | None = None,
    date_to: str | None = None, language: str | None = None, kinds: list[str] | None = None,
    metadata: dict[str, str] | None = None,
) -> SearchFilter:
    """The store's filter. Dates are inclusive ISO dates; undated and mtime-dated documents pass (see SearchFilter)."""
    if date_from and date_to and date_from > date_to:
        raise BadRequest(f"date_from ({date_from}) is after date_to ({date_to}): no date is in that range")
    return SearchFilter(
        doc_ids=tuple(doc_ids or ()), source_prefix=source_prefix, date_from=date_from, date_to=date_to,
        language=language, kinds=tuple(kinds or ()), metadata=tuple(sorted((metadata or {}).items())),
    )

"""Hybrid search over one collection: dense (FAISS) and sparse (BM25) candidates, fused, near-duplicates collapsed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from retrieval.analyzer import Analyzer
from retrieval.collection import Collection
from retrieval.embedders import Embedder
from retrieval.fusion import rrf, weighted
from retrieval.store import SearchFilter
from retrieval.types import ScoredChunk


class UnknownLevel(ValueError):
    """A search asked for a chunk level the collection was not built with: the caller's mistake, not ours."""


class Retriever(Protocol):
    def search(self, query: str, top_k: int = 10) -> list[ScoredChunk]: ...


@dataclass(frozen=True)
class SearchParams:
    mode: Literal["hybrid", "dense", "sparse"] = "hybrid"
    level: int | None = None  # chunk granularity to search; None = the collection's smallest
    candidates: int = 100  # per retriever, before fusion
    fusion: Literal["rrf", "weighted"] = "rrf"
    rrf_k: int = 60
    weights: tuple[float, float] = (1.0, 1.0)  # dense, sparse
    filter: SearchFilter = field(default_factory=SearchFilter)
    collapse_duplicates: bool = True

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {self.candidates}")
        if self.rrf_k < 1:
            raise ValueError(f"rrf_k must be >= 1, got {self.rrf_k}")


class HybridRetriever:
    """`search(query, top_k)` for one collection. Sees chunks committed by other processes on the next query."""

    def __init__(
        self, collection: Collection, embedder: Embedder, analyzer: Analyzer | None = None,
        params: SearchParams = SearchParams(),
    ) -> None:
        self.collection = collection
        self.embedder = embedder
        self.analyzer = analyzer or Analyzer()
        self.params = params
        self.last_timings: dict[str, float] = {}

    def search(
        self, query: str, top_k: int = 10, params: SearchParams | None = None, query_vector: np.ndarray | None = None
    ) -> list[ScoredChunk]:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        p = params or self.params
        idx = self.collection.indexes
        assert idx is not None, "collection not opened"
        timings: dict[str, float] = {}
        t = time.perf_counter()
        idx.refresh()
        timings["refresh"] = time.perf_counter() - t
        level = p.level if p.level is not None else min(idx.levels)
        if level not in idx.levels:
            raise UnknownLevel(f"level {level} not in this collection's levels {idx.levels}")
        n = max(p.candidates, top_k)
        qv = None
        if p.mode in ("hybrid", "dense"):
            t = time.perf_counter()
            qv = query_vector if query_vector is not None else self.embedder.embed_query(query)
            timings["embed"] = time.perf_counter() - t
        use_sparse = p.mode in ("hybrid", "sparse")
        tokens = self.analyzer.tokenize(query) if use_sparse else []
        # One call into whichever index set the collection has (local FAISS + BM25, or Milvus): the filter is applied
        # there, before top-k; fusion below is shared.
        dense_hits, sparse_hits = idx.hits(
            level, qv, query if use_sparse else None, tokens, n, p.filter, timings=timings
        )
        lists: list[list[tuple[int, float]]] = []
        weights: list[float] = []
        if qv is not None:
            lists.append(dense_hits)
            weights.append(p.weights[0])
        if use_sparse:
            lists.append(sparse_hits)
            weights.append(p.weights[1])
        t = time.perf_counter()
        if len(lists) == 1:
            fused = lists[0]
        elif p.fusion == "rrf":
            fused = rrf(lists, k=p.rrf_k, weights=weights)
        else:
            fused = weighted(lists, weights)
        dense_s, sparse_s = dict(dense_hits), dict(sparse_hits)
        # Fetch a few extra so that collapsing near-duplicates still leaves top_k.
        want = fused[: top_k * 2 if p.collapse_duplicates else top_k]
        chunks = self.collection.store.chunks([cid for cid, _ in want])
        score_of = dict(want)
        out: list[ScoredChunk] = []
        kept: set[int] = set()
        for c in chunks:
            if p.collapse_duplicates and c.near_dup_of is not None and c.near_dup_of in kept:
                continue
            scores = {"fused": score_of[c.chunk_id]}
            if c.chunk_id in dense_s:
                scores["dense"] = dense_s[c.chunk_id]
            if c.chunk_id in sparse_s:
                scores["sparse"] = sparse_s[c.chunk_id]
            out.append(ScoredChunk(chunk=c, score=score_of[c.chunk_id], scores=scores))
            kept.add(c.chunk_id)
            if len(out) == top_k:
                break
        timings["fuse_fetch"] = time.perf_counter() - t
        self.last_timings = timings
        return out

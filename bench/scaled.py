"""Large collections for the speed benchmarks: real SciFact chunks, replicated and perturbed, stored via the Store API.

Embedding 300k chunks would take days on the 2-core machine, so only the real corpus is embedded, once, by the real
pipeline (bench_retrieval's cached collection, level-128 chunks). Copy 0 of each document is the real chunk; copy j > 0:
- vector: the real vector plus gaussian noise, renormalised, so that its cosine to the original is about `copy_cos`;
- text: ~15% of the words replaced by words drawn from the corpus (half by corpus frequency, half uniformly, as
  bench_engines.synth_docs does for tokens) and ~10% of adjacent word pairs swapped; its BM25 tokens come from the
  real Analyzer (memoised per whitespace word, which gives the same tokens for this English text).
Documents are inserted with Store.add_document in transactions of about 512 chunks, each followed by an index refresh,
as the ingest pipeline commits; a final snapshot() upgrades levels past IndexSet.IVF_THRESHOLD to IVF.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import dir_mb
from ingest.pipeline import _contextualize
from retrieval.analyzer import Analyzer
from retrieval.collection import Collection
from retrieval.store import NewChunk
from retrieval.types import Document

LEVEL = 128


@dataclass(frozen=True)
class SourceChunk:
    doc_key: str
    title: str
    text: str
    tokens: tuple[str, ...]
    vector: np.ndarray


def source_chunks(col: Collection, level: int = LEVEL) -> list[SourceChunk]:
    """The real chunks of one level of a pipeline-built collection, in document order."""
    rows = col.store._conn().execute(
        "SELECT d.source_path, d.title, c.text, c.tokens, c.embedding FROM chunks c JOIN documents d USING (doc_id) "
        "WHERE c.level = ? ORDER BY d.source_path, c.position", (level,)).fetchall()
    return [SourceChunk(k, t, x, tuple(toks.split()), np.frombuffer(e, np.float32)) for k, t, x, toks, e in rows]


class Perturber:
    def __init__(self, chunks: list[SourceChunk], copy_cos: float = 0.9, seed: int = 0) -> None:
        if not 0.0 < copy_cos <= 1.0:
            raise ValueError(f"copy_cos must be in (0, 1], got {copy_cos}")
        self.rng = np.random.default_rng(seed)
        words = [w for c in chunks for w in c.text.split()]
        vocab, counts = np.unique(np.array(words, dtype=object), return_counts=True)
        p = 0.5 * counts / counts.sum() + 0.5 / len(vocab)
        self.vocab, self.cdf = vocab, np.cumsum(p)
        dim = len(chunks[0].vector)
        # |noise|^2 = dim * sigma^2 and cos = 1 / sqrt(1 + |noise|^2) for noise orthogonal to a unit vector.
        self.sigma = float(np.sqrt((1.0 / copy_cos**2 - 1.0) / dim))
        self.analyzer = Analyzer()
        self._tok: dict[str, list[str]] = {}

    def vector(self, v: np.ndarray) -> np.ndarray:
        x = v + self.rng.normal(0.0, self.sigma, v.shape).astype(np.float32)
        return (x / np.linalg.norm(x)).astype(np.float32)

    def text(self, text: str) -> str:
        words = text.split()
        n = len(words)
        if n == 0:
            return text
        for i in np.flatnonzero(self.rng.random(n) < 0.15):
            words[i] = str(self.vocab[min(int(np.searchsorted(self.cdf, self.rng.random() * self.cdf[-1])),
                                          len(self.vocab) - 1)])
        for i in np.flatnonzero(self.rng.random(max(n - 1, 0)) < 0.10):
            words[i], words[i + 1] = words[i + 1], words[i]
        return " ".join(words)

    def tokens(self, text: str) -> list[str]:
        out: list[str] = []
        for w in text.split():
            t = self._tok.get(w)
            if t is None:
                t = self._tok[w] = self.analyzer.tokenize(w)
            out.extend(t)
        return out


def scaled_documents(
    chunks: list[SourceChunk], n_chunks: int, copy_cos: float = 0.9, seed: int = 0
) -> Iterator[tuple[Document, list[NewChunk]]]:
    """Documents until `n_chunks` chunks: all real documents first (copy 0), then perturbed copies."""
    by_doc: dict[str, list[SourceChunk]] = {}
    for c in chunks:
        by_doc.setdefault(c.doc_key, []).append(c)
    pert = Perturber(chunks, copy_cos, seed)
    made, copy = 0, 0
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    while made < n_chunks:
        for key, cs in by_doc.items():
            cs = cs[: n_chunks - made]
            if not cs:
                return
            new = []
            for pos, c in enumerate(cs):
                text = c.text if copy == 0 else pert.text(c.text)
                toks = list(c.tokens) if copy == 0 else pert.tokens(_contextualize(c.title, (c.title,), text))
                vec = c.vector if copy == 0 else pert.vector(c.vector)
                new.append(NewChunk(level=LEVEL, position=pos, section_position=0, heading_path=(c.title,),
                                    kind="text", text=text, token_count=len(toks), tokens=toks, embedding=vec))
            doc_id = f"{key}#{copy}"
            yield Document(doc_id=doc_id, collection="", source_path=doc_id, title=cs[0].title, mime="text/plain",
                           content_hash=doc_id, effective_date=None, date_source="none", ingested_at=now,
                           language="en"), new
            made += len(new)
        copy += 1


def build(
    root: Path, name: str, embedder_name: str, dim: int, docs: Iterator[tuple[Document, list[NewChunk]]],
    batch_chunks: int = 512,
) -> tuple[Collection, dict[str, Any]]:
    """A new collection filled through Store.add_document transactions, refreshed per batch, snapshotted at the end.
    Generating the documents (perturbation, tokenising) is timed apart from storing and indexing them."""
    chunking = {"levels": [LEVEL], "synthetic": "bench/scaled.py"}
    col = Collection(root, name).open(embedder=embedder_name, dim=dim, chunking=chunking, create=True)
    assert col.indexes is not None
    t_gen = t_commit = t_refresh = 0.0
    n = 0
    t = time.perf_counter()
    batch: list[tuple[Document, list[NewChunk]]] = []
    with col.write_lock():
        while True:
            t0 = time.perf_counter()
            item = next(docs, None)
            t_gen += time.perf_counter() - t0
            if item is not None:
                batch.append(item)
                n += len(item[1])
            if batch and (item is None or sum(len(c) for _, c in batch) >= batch_chunks):
                t0 = time.perf_counter()
                with col.store.transaction() as conn:
                    for doc, cs in batch:
                        col.store.add_document(conn, doc, None, [], cs)
                t_commit += time.perf_counter() - t0
                t0 = time.perf_counter()
                col.indexes.refresh()
                t_refresh += time.perf_counter() - t0
                batch = []
            if item is None:
                break
        t0 = time.perf_counter()
        col.indexes.snapshot()
        t_snap = time.perf_counter() - t0
    info = {"chunks": n, "generate_s": round(t_gen, 1), "commit_s": round(t_commit, 1),
            "refresh_s": round(t_refresh, 1), "snapshot_ivf_s": round(t_snap, 1),
            "build_s": round(time.perf_counter() - t - t_gen, 1), "dense_kind": col.indexes.dense[LEVEL].kind,
            "disk_mb": round(dir_mb(col.root), 1)}
    (col.root / "bench_build.json").write_text(json.dumps(info))
    return col, info

"""The in-memory search indexes of a collection (FAISS + BM25 per chunk level), in step with the store's change log.

On disk a snapshot lives in `indexes-<seq>/` and the file `indexes.json` names the current one; the pointer is replaced
atomically, so a crash while writing a snapshot leaves the previous one in force. Whatever the snapshot misses is
replayed from the log, which is how a process also sees chunks another process committed (no restart, no full rebuild).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retrieval.backend import DocumentStore
from retrieval.bm25 import BM25Index
from retrieval.dense import DenseIndex
from retrieval.store import SearchFilter

Hits = list[tuple[int, float]]  # (chunk id, score), best first

POINTER = "indexes.json"


class IndexSet:
    # Exact search costs ~15 ms a query at 100k vectors on one core; past this size the writer switches a level to IVF.
    IVF_THRESHOLD = 50_000

    def __init__(
        self, root: Path, store: DocumentStore, dim: int, levels: Sequence[int], k1: float, b: float,
        ivf_threshold: int = IVF_THRESHOLD,
    ) -> None:
        self.ivf_threshold = ivf_threshold
        self.root = root
        self.store = store
        self.dim = dim
        self.levels = tuple(levels)
        self.k1, self.b = k1, b
        self.seq = 0
        self.dense: dict[int, DenseIndex] = {}
        self.sparse: dict[int, BM25Index] = {}
        self._lock = threading.Lock()

    def load(self) -> IndexSet:
        pointer = self.root / POINTER
        snap = None
        if pointer.exists():
            info = json.loads(pointer.read_text())
            snap = self.root / info["dir"]
            if not snap.is_dir() or set(info["levels"]) != set(self.levels):
                snap = None
        for level in self.levels:
            if snap is not None:
                self.dense[level] = DenseIndex.load(snap / f"L{level}.faiss")
                self.sparse[level] = BM25Index.load(snap / f"L{level}.bm25")
            else:
                self.dense[level] = DenseIndex(self.dim)
                self.sparse[level] = BM25Index(k1=self.k1, b=self.b)
        self.seq = int(json.loads(pointer.read_text())["seq"]) if snap is not None else 0
        self.refresh()
        return self

    def refresh(self) -> int:
        """Apply committed changes not yet in memory; return how many chunks were added or removed."""
        if self.store.last_seq() == self.seq:
            return 0
        with self._lock:
            changes = self.store.changes_since(self.seq)
            if not changes:
                return 0
            added, removed = net_changes(changes)
            for level in self.levels:
                gone = [c for c, lv in removed.items() if lv == level]
                if gone:
                    self.dense[level].remove(gone)
                    self.sparse[level].remove(gone)
                new = [c for c, lv in added.items() if lv == level]
                if new:
                    ids, vecs, toks = [], [], []
                    for cid, vec, tokens in self.store.vectors_and_tokens(new):
                        ids.append(cid)
                        vecs.append(vec)
                        toks.append(tokens)
                    if ids:
                        self.dense[level].add(ids, np.vstack(vecs))
                        self.sparse[level].add(ids, toks)
            self.seq = changes[-1][0]
            return len(added) + len(removed)

    def hits(
        self, level: int, query_vec: np.ndarray | None, query_text: str | None, query_tokens: Sequence[str], n: int,
        flt: SearchFilter, timings: dict[str, float] | None = None,
    ) -> tuple[Hits, Hits]:
        """The top `n` dense and sparse candidates at `level` among the chunks `flt` admits (filtered before top-k).

        The one search seam both index sets implement (retrieval/milvus_index.py is the other): a None `query_vec`
        skips the dense side, a None `query_text` the sparse side. This one ranks `query_tokens` (the Analyzer's
        terms) with its own BM25; Milvus analyses `query_text` itself. `timings` gets "filter", "dense", "sparse".
        """
        t = time.perf_counter()
        allowed = None if flt.is_empty() else self.store.allowed_ids(level, flt)
        if timings is not None:
            timings["filter"] = time.perf_counter() - t
        if allowed is not None and len(allowed) == 0:
            return [], []
        dense: Hits = []
        sparse: Hits = []
        if query_vec is not None:
            t = time.perf_counter()
            dense = self.dense[level].search(query_vec, n, allowed=allowed)
            if timings is not None:
                timings["dense"] = time.perf_counter() - t
        if query_text is not None:
            t = time.perf_counter()
            sparse = self.sparse[level].search(query_tokens, n, allowed=allowed)
            if timings is not None:
                timings["sparse"] = time.perf_counter() - t
        return dense, sparse

    def _upgrade_to_ivf(self) -> None:
        """Rebuild large flat levels as IVF, trained on all their vectors (from the store, the source of truth)."""
        for level in self.levels:
            if self.dense[level].kind != "flat" or len(self.dense[level]) < self.ivf_threshold:
                continue
            ids, vecs = [], []
            for cid, vec, _ in self.store.vectors_and_tokens(self.store.chunk_ids_at_level(level)):
                ids.append(cid)
                vecs.append(vec)
            ivf = DenseIndex(self.dim, kind="ivf")
            ivf.add(ids, np.vstack(vecs))
            self.dense[level] = ivf

    def drop(self) -> None:
        """Nothing outside the collection's folder: its snapshots go with the folder."""

    def snapshot(self) -> None:
        """Write the current state to disk (only the writing process calls this)."""
        with self._lock:
            self._upgrade_to_ivf()
            name = f"indexes-{self.seq}"
            target = self.root / name
            tmp = self.root / f"{name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for level in self.levels:
                self.dense[level].save(tmp / f"L{level}.faiss")
                self.sparse[level].save(tmp / f"L{level}.bm25")
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
            _fsync_dir(self.root)
            pointer_tmp = self.root / (POINTER + ".tmp")
            pointer_tmp.write_text(json.dumps({"dir": name, "seq": self.seq, "levels": list(self.levels)}))
            with open(pointer_tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(pointer_tmp, self.root / POINTER)
            _fsync_dir(self.root)
            collect_garbage(self.root, keep=name)


def net_changes(changes: Sequence[tuple[int, str, int, int]]) -> tuple[dict[int, int], dict[int, int]]:
    """The net effect of a stretch of the change log: {chunk id: level} added, and removed.

    A chunk added then removed within the stretch never needs to touch an index.
    """
    added: dict[int, int] = {}
    removed: dict[int, int] = {}
    for _seq, op, cid, level in changes:
        if op == "add":
            added[cid] = level
        elif cid in added:
            del added[cid]
        else:
            removed[cid] = level
    return added, removed


def collect_garbage(root: Path, keep: str | None = None) -> None:
    """Remove snapshots and temp folders other than `keep` (left behind by crashes or superseded)."""
    if keep is None and (root / POINTER).exists():
        keep = json.loads((root / POINTER).read_text())["dir"]
    for p in root.glob("indexes-*"):
        if p.name != keep and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""FAISS inner-product index over int64 ids, with filters applied inside the search (before the top-k cut).

Vectors are expected L2-normalised, so the score is the cosine similarity. Un-normalised vectors are accepted
and then scored by raw inner product (nothing re-normalises them here: the embedders already do).
"flat" is exact (IndexIDMap2 over IndexFlatIP). "ivf" (IndexIVFFlat, ids stored natively because IndexIDMap's
remove is only correct over a flat index) is trained on the first batch added and is approximate: `nprobe` of
`nlist` lists are scanned; a filtered search that comes back short retries over all lists, so it, too,
returns k results whenever k allowed vectors exist.
"""

from __future__ import annotations

import math
import os
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Measured with bench/bench_engines.py on the 2-core machine, flat 100k x 384: one thread 19 ms a query, two
# threads 68-124 ms (10k: 1.3 vs 48 ms). A single query gains nothing from a second OpenMP thread, which then
# spins against the query embedder and other requests; so FAISS runs single-threaded.
FAISS_THREADS = 1
_init_lock = threading.Lock()
_faiss_mod: Any = None


def _faiss() -> Any:
    global _faiss_mod
    if _faiss_mod is None:
        with _init_lock:
            if _faiss_mod is None:
                import faiss

                faiss.omp_set_num_threads(FAISS_THREADS)
                _faiss_mod = faiss
    return _faiss_mod


class DenseIndex:
    """Thread-safe (calls are serialised). Adding an id twice is an error; removing an absent one is not."""

    def __init__(self, dim: int, kind: str = "flat", nlist: int = 0, nprobe: int = 32) -> None:
        if not (isinstance(dim, int | np.integer) and dim > 0):
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if kind not in ("flat", "ivf"):
            raise ValueError(f"kind must be 'flat' or 'ivf', got {kind!r}")
        if nlist < 0 or nprobe < 1:
            raise ValueError(
                f"need nlist >= 0 (0: chosen from the first batch) and nprobe >= 1, got {nlist}, {nprobe}"
            )
        self.dim = int(dim)
        self.kind = kind
        self.nlist = nlist
        self.nprobe = nprobe
        self._index: Any = None  # built on first use so that constructing one needs no FAISS import
        self._ids: set[int] = set()
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, int | np.integer) and int(doc_id) in self._ids

    def add(self, ids: Sequence[int] | np.ndarray, vecs: np.ndarray) -> None:
        id_arr = _as_ids(ids)
        x = self._check_vecs(vecs, "vecs")
        if len(id_arr) != len(x):
            raise ValueError(f"add() got {len(id_arr)} ids but {len(x)} vectors")
        if len(id_arr) == 0:
            return
        with self._lock:
            new = id_arr.tolist()
            dup = [i for i in new if i in self._ids]
            if dup or len(set(new)) != len(new):
                dup = dup or [i for i, c in Counter(new).items() if c > 1]
                raise ValueError(f"ids already in the index or repeated in the batch: {dup[:10]}")
            index = self._get_index(train_on=x)
            index.add_with_ids(x, id_arr)
            self._ids.update(new)

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Remove these ids; returns how many were in the index."""
        with self._lock:
            present = np.array([i for i in _as_ids(ids).tolist() if i in self._ids], np.int64)
            if len(present) == 0:
                return 0
            removed = int(self._index.remove_ids(_faiss().IDSelectorBatch(present)))
            self._ids.difference_update(present.tolist())
            return removed

    def search(
        self, vec: np.ndarray, top_k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """The top_k ids by inner product with `vec`, best first. `allowed`: ids results must come from."""
        q = self._check_vecs(np.asarray(vec).reshape(1, -1) if np.ndim(vec) == 1 else vec, "vec")
        if len(q) != 1:
            raise ValueError(f"search() takes one query vector, got {len(q)}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k!r}")
        with self._lock:
            if top_k == 0 or not self._ids:
                return []
            sel = None
            if allowed is not None:
                allowed = np.ascontiguousarray(np.asarray(allowed, dtype=np.int64).ravel())
                if len(allowed) == 0:
                    return []
                sel = _faiss().IDSelectorBatch(allowed)
            k = min(top_k, len(self._ids))
            hits = self._search(q, k, sel, self.nprobe)
            if len(hits) < k and self.kind == "ivf" and self.nprobe < self._index.nlist:
                # The probed lists held too few (allowed) vectors: scan them all if more exist.
                exist = len(self._ids) if allowed is None else len(self._ids.intersection(allowed.tolist()))
                if len(hits) < min(k, exist):
                    hits = self._search(q, k, sel, self._index.nlist)
            return hits

    def save(self, path: Path) -> None:
        """Write atomically: a temp file in the same folder, fsynced, then renamed over `path`."""
        path = Path(path)
        with self._lock:
            index = self._index
            if index is None and self.kind == "ivf":
                # Nothing added yet, so nothing to train on: an untrained placeholder keeps nlist and nprobe.
                faiss = _faiss()
                index = faiss.IndexIVFFlat(
                    faiss.IndexFlatIP(self.dim), self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT
                )
                index.nprobe = self.nprobe
            elif index is None:
                index = self._get_index(train_on=None)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            _faiss().write_index(index, str(tmp))
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> DenseIndex:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no FAISS index at {path}")
        faiss = _faiss()
        index = faiss.read_index(str(path))
        if isinstance(index, faiss.IndexIDMap2):
            out = cls(index.d, "flat")
            ids = faiss.vector_to_array(index.id_map)
        elif isinstance(index, faiss.IndexIVFFlat):
            out = cls(index.d, "ivf", nlist=index.nlist, nprobe=index.nprobe)
            if not index.is_trained or index.nlist == 0:
                return out  # the placeholder of an index saved before its first batch
            inv = index.invlists
            lists = [faiss.rev_swig_ptr(inv.get_ids(i), inv.list_size(i)) for i in range(index.nlist)]
            ids = np.concatenate([np.array(x, np.int64) for x in lists]) if lists else np.empty(0, np.int64)
        else:
            raise ValueError(f"{path}: not an index DenseIndex wrote ({type(index).__name__})")
        out._index = index
        out._ids = set(ids.tolist())
        return out

    # ---- internals -----------------------------------------------------------------------------------------

    def _check_vecs(self, vecs: np.ndarray, what: str) -> np.ndarray:
        if not isinstance(vecs, np.ndarray):
            raise TypeError(f"{what} must be a numpy array, got {type(vecs).__name__}")
        if vecs.dtype != np.float32:
            raise TypeError(f"{what} must be float32, got {vecs.dtype}")
        if vecs.ndim != 2 or vecs.shape[1] != self.dim:
            raise ValueError(f"{what} must have shape (n, {self.dim}), got {vecs.shape}")
        if not np.isfinite(vecs).all():
            raise ValueError(f"{what} contains NaN or infinity")
        return np.ascontiguousarray(vecs)

    def _get_index(self, train_on: np.ndarray | None) -> Any:
        if self._index is not None:
            return self._index
        faiss = _faiss()
        if self.kind == "flat":
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            return self._index
        assert train_on is not None, "an ivf index is built from its first batch"
        n = len(train_on)
        # 4 * sqrt(n) lists, but at least 39 training points per list (FAISS's own minimum).
        nlist = self.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
        if n < nlist:
            raise ValueError(
                f"an ivf index with nlist={nlist} needs at least {nlist} vectors in its first batch, got {n}"
            )
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(train_on)
        index.nprobe = self.nprobe
        self.nlist = nlist
        self._index = index
        return index

    def _search(self, q: np.ndarray, k: int, sel: Any, nprobe: int) -> list[tuple[int, float]]:
        faiss = _faiss()
        if self.kind == "ivf":
            params = faiss.SearchParametersIVF(sel=sel, nprobe=min(nprobe, self._index.nlist))
        else:
            params = faiss.SearchParameters(sel=sel) if sel is not None else None
        scores, ids = self._index.search(q, k, params=params)
        return [
            (int(i), float(s)) for i, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True) if i >= 0
        ]


def _as_ids(ids: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"ids must be a 1-D sequence of integers, got dtype {arr.dtype} shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64)

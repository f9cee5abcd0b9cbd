"""In-memory BM25 over integer ids: incremental, exact with current statistics, persistable.

Layout: a main segment (postings in CSR order by term id: rows and term frequencies) plus a small delta
segment of recent adds (term id -> Python lists), merged into the main one once it reaches 1/8 of it, so
adding costs amortised O(postings). Removes are tombstones (`alive` per row), dropped from the postings at the
next merge.

Scoring is Lucene's BM25: idf = log(1 + (N - df + 0.5) / (df + 0.5)) and
tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)), with N, df and avgdl counted over live documents at
query time, so an index after any sequence of adds and removes scores exactly like one built from the
survivors.
A query term repeated in the query counts once per occurrence (as in Lucene's BooleanQuery and rank_bm25).
Only documents matching at least one query term are returned.
"""

from __future__ import annotations

import json
import math
import os
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from itertools import chain
from pathlib import Path

import numpy as np

FORMAT = 1
_MIN_DELTA = 1024  # docs in the delta segment before a merge, at the least
_MAX_TF = np.iinfo(np.uint16).max
_CACHE_POSTINGS = 1 << 23  # cached postings (rows + tf parts): 64 MB at most
_BULK_SLICE = 65536  # docs per vectorised slice of a bulk add (~0.5 GB peak at 200 tokens a doc)


class BM25Index:
    """Thread-safe (calls are serialised). Ids: int64, not necessarily dense; adding one twice is an error."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        if not (math.isfinite(k1) and k1 >= 0):
            raise ValueError(f"k1 must be a finite number >= 0, got {k1!r}")
        if not (0.0 <= b <= 1.0):
            raise ValueError(f"b must be in [0, 1], got {b!r}")
        self.k1 = float(k1)
        self.b = float(b)
        self._vocab: dict[str, int] = {}
        # Main segment: postings of term t are _rows/_tfs[_indptr[t]:_indptr[t + 1]], rows ascending.
        self._indptr = np.zeros(1, np.int64)
        self._rows = np.empty(0, np.int32)
        self._tfs = np.empty(0, np.uint16)
        self._delta: dict[int, tuple[list[int], list[int]]] = {}
        self._delta_docs = 0
        # Per row (main and delta rows share one numbering; arrays grow by doubling).
        self._ids = np.empty(0, np.int64)
        self._lens = np.empty(0, np.int64)
        self._alive = np.empty(0, bool)
        self._n_rows = 0
        self._n_dead = 0
        self._id2row: dict[int, int] = {}
        self._total_len = 0  # exact integer sum over live docs, so avgdl does not depend on history
        # Until the next change: k1 * (1 - b + b * dl / avgdl) per row, and (rows, tf parts) per queried term.
        self._norm: np.ndarray | None = None
        self._weights: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cached_postings = 0
        # id -> live row for `allowed`: (min id, table of rows) if ids are dense, else (sorted ids, rows).
        self._idmap: tuple[int, np.ndarray] | tuple[np.ndarray, np.ndarray] | None = None
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return self._n_rows - self._n_dead

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, int | np.integer) and int(doc_id) in self._id2row

    # ---- changes -------------------------------------------------------------------------------------------

    def add(self, ids: Sequence[int] | np.ndarray, docs: Sequence[Sequence[str]]) -> None:
        id_list = _as_ids(ids)
        if len(id_list) != len(docs):
            raise ValueError(f"add() got {len(id_list)} ids but {len(docs)} docs")
        for d in docs:
            if isinstance(d, str):
                raise TypeError(f"docs must be token lists, got a str: {d[:40]!r}")
        with self._lock:
            dup = [i for i in id_list if i in self._id2row]
            if dup or len(set(id_list)) != len(id_list):
                dup = dup or [i for i, c in Counter(id_list).items() if c > 1]
                raise ValueError(f"ids already in the index or repeated in the batch: {dup[:10]}")
            if not id_list:
                return
            if len(id_list) >= self._merge_threshold():
                # Bulk load: vectorised postings straight into the main segment, in slices to bound memory.
                if self._delta or self._n_dead:
                    self._merge()
                for s in range(0, len(id_list), _BULK_SLICE):
                    part = docs[s : s + _BULK_SLICE]
                    start = self._append_rows(id_list[s : s + _BULK_SLICE], [len(d) for d in part])
                    self._merge(self._postings_of(start, part))
                return
            counts = [Counter(d) for d in docs]
            start = self._append_rows(id_list, [len(d) for d in docs])
            vocab, delta = self._vocab, self._delta
            for k, c in enumerate(counts):
                row = start + k
                for term, tf in c.items():
                    tid = vocab.setdefault(term, len(vocab))
                    entry = delta.get(tid)
                    if entry is None:
                        delta[tid] = ([row], [min(tf, _MAX_TF)])
                    else:
                        entry[0].append(row)
                        entry[1].append(min(tf, _MAX_TF))
            self._delta_docs += len(id_list)
            if self._delta_docs >= self._merge_threshold():
                self._merge()

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Remove these ids; ids not in the index are ignored. Returns how many were removed."""
        id_list = _as_ids(ids)
        with self._lock:
            removed = 0
            for doc_id in id_list:
                row = self._id2row.pop(doc_id, None)
                if row is None:
                    continue
                self._alive[row] = False
                self._total_len -= int(self._lens[row])
                removed += 1
            if removed:
                self._n_dead += removed
                self._changed()
                if self._n_dead >= max(_MIN_DELTA, self._n_rows // 4):
                    self._merge()
            return removed

    # ---- search --------------------------------------------------------------------------------------------

    def search(
        self, query_tokens: Sequence[str], top_k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """The top_k live documents by BM25 score, best first (ties by id). `allowed`: ids the results must
        come from; it filters before the cut, so k results come back whenever k allowed documents match."""
        if isinstance(query_tokens, str):
            raise TypeError(f"query_tokens must be a token list, got a str: {query_tokens[:40]!r}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k!r}")
        with self._lock:
            n_docs = len(self)
            if top_k == 0 or n_docs == 0:
                return []
            scores = np.zeros(self._n_rows, np.float32)
            for term, qtf in Counter(query_tokens).items():
                tid = self._vocab.get(term)
                if tid is None:
                    continue
                rows, weights = self._term_postings(tid)
                df = len(rows)
                if df == 0:
                    continue
                idf = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
                # rows are unique within a term, so fancy-index += is a correct scatter-add
                scores[rows] += weights * np.float32(qtf * idf)
            if allowed is not None:
                ok = np.zeros(self._n_rows, bool)
                ok[self._rows_of(allowed)] = True
                scores *= ok
            return _top(scores, self._ids, top_k)

    # ---- persistence ---------------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write to `directory` (created if missing). The arrays go to a fresh file and meta.json, which names
        it, is replaced last, so a reader sees the old or the new index, never a mix."""
        directory = Path(directory)
        with self._lock:
            if self._delta or self._n_dead:
                self._merge()
            directory.mkdir(parents=True, exist_ok=True)
            terms = [""] * len(self._vocab)
            for term, tid in self._vocab.items():
                terms[tid] = term
            encoded = [t.encode("utf-8") for t in terms]
            offsets = np.zeros(len(encoded) + 1, np.int64)
            np.cumsum([len(e) for e in encoded], out=offsets[1:])
            name = f"bm25-{uuid.uuid4().hex}.npz"
            tmp = directory / (name + ".tmp")
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    indptr=self._indptr,
                    rows=self._rows,
                    tfs=self._tfs,
                    ids=self._ids[: self._n_rows],
                    lens=self._lens[: self._n_rows],
                    vocab=np.frombuffer(b"".join(encoded), np.uint8),
                    vocab_offsets=offsets,
                )
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, directory / name)
            meta = {"format": FORMAT, "k1": self.k1, "b": self.b, "arrays": name, "docs": self._n_rows}
            _write_json_atomic(directory / "meta.json", meta)
            for old in directory.glob("bm25-*.npz*"):
                if old.name != name:
                    old.unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"no BM25 index at {directory} (missing meta.json)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: unsupported BM25 index format {meta.get('format')!r}")
        idx = cls(k1=meta["k1"], b=meta["b"])
        with np.load(directory / meta["arrays"], allow_pickle=False) as z:
            idx._indptr, idx._rows, idx._tfs = z["indptr"], z["rows"], z["tfs"]
            idx._ids, idx._lens = z["ids"], z["lens"]
            blob, offsets = z["vocab"].tobytes(), z["vocab_offsets"].tolist()
        idx._vocab = {blob[offsets[i] : offsets[i + 1]].decode("utf-8"): i for i in range(len(offsets) - 1)}
        idx._n_rows = len(idx._ids)
        idx._alive = np.ones(idx._n_rows, bool)
        idx._id2row = dict(zip(idx._ids.tolist(), range(idx._n_rows), strict=True))
        idx._total_len = int(idx._lens.sum())
        return idx

    # ---- internals -----------------------------------------------------------------------------------------

    def _merge_threshold(self) -> int:
        main_rows = self._n_rows - self._delta_docs
        return max(_MIN_DELTA, main_rows // 8)

    def _changed(self) -> None:
        self._norm = None
        self._weights, self._cached_postings = {}, 0
        self._idmap = None

    def _append_rows(self, ids: list[int], lens: list[int]) -> int:
        """Give new rows to these docs (arrays grow by doubling); returns the first row."""
        start, need = self._n_rows, self._n_rows + len(ids)
        if need > len(self._ids):
            cap = max(need, 2 * len(self._ids), 1024)
            for name in ("_ids", "_lens", "_alive"):
                old = getattr(self, name)
                new = np.zeros(cap, old.dtype)
                new[:start] = old[:start]
                setattr(self, name, new)
        self._ids[start:need] = ids
        self._lens[start:need] = lens
        self._alive[start:need] = True
        self._id2row.update(zip(ids, range(start, need), strict=True))
        self._total_len += sum(lens)
        self._n_rows = need
        self._changed()
        return start

    def _postings_of(self, start: int, docs: Sequence[Sequence[str]]) -> tuple[np.ndarray, ...]:
        """(term ids, rows, tfs) of a batch given rows start.., sorted by (term, row); vectorised."""
        flat = list(chain.from_iterable(docs))
        vocab = self._vocab
        for t in dict.fromkeys(flat):  # first-seen order keeps term ids reproducible
            if t not in vocab:
                vocab[t] = len(vocab)
        tids = np.fromiter(map(vocab.__getitem__, flat), np.int64, len(flat))
        span = start + len(docs)
        rows = np.repeat(np.arange(start, span, dtype=np.int64), [len(d) for d in docs])
        keys, tf = np.unique(tids * span + rows, return_counts=True)
        return keys // span, keys % span, np.minimum(tf, _MAX_TF).astype(np.uint16)

    def _term_postings(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        """Live rows of a term and their tf parts, tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)).

        Cached until the next add or remove (which change avgdl): frequent terms are the costly ones and come
        back query after query, and the delta's Python lists need converting only once."""
        hit = self._weights.get(tid)
        if hit is not None:
            return hit
        if self._norm is None:
            # avgdl is 0 only if every live doc is empty; then nothing matches and any value will do.
            avgdl = self._total_len / len(self) or 1.0
            lens = self._lens[: self._n_rows].astype(np.float64)
            self._norm = (self.k1 * (1.0 - self.b + self.b * lens / avgdl)).astype(np.float32)
        rows: np.ndarray = self._rows[:0]
        tfs: np.ndarray = self._tfs[:0]
        if tid + 1 < len(self._indptr):
            s, e = self._indptr[tid], self._indptr[tid + 1]
            rows, tfs = self._rows[s:e], self._tfs[s:e]
        d = self._delta.get(tid)
        if d is not None:
            rows = np.concatenate([rows, np.asarray(d[0], np.int32)])
            tfs = np.concatenate([tfs, np.asarray(d[1], np.uint16)])
        if self._n_dead:
            live = self._alive[rows]
            if not live.all():
                rows, tfs = rows[live], tfs[live]
        tf = tfs.astype(np.float32)
        hit = rows, tf * np.float32(self.k1 + 1.0) / (tf + self._norm[rows])
        if self._cached_postings + len(rows) > _CACHE_POSTINGS:
            self._weights, self._cached_postings = {}, 0
        self._weights[tid] = hit
        self._cached_postings += len(rows)
        return hit

    def _rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Live rows of these ids (absent ids are skipped)."""
        want = np.asarray(ids, dtype=np.int64).ravel()
        if self._idmap is None and len(want) < max(64, self._n_rows // 16):
            # Few ids and no id map yet: dict look-ups beat building the map.
            got = [self._id2row.get(i, -1) for i in want.tolist()]
            rows = np.asarray(got, np.int64)
            return rows[rows >= 0]
        if self._idmap is None:
            live = np.flatnonzero(self._alive[: self._n_rows])
            lid = self._ids[live]
            lo = int(lid.min()) if len(lid) else 0
            span = int(lid.max()) - lo + 1 if len(lid) else 0
            if span <= 8 * len(lid) + 4096:  # ids dense enough (SQLite rowids are): a direct table
                table = np.full(span, -1, np.int32)
                table[lid - lo] = live
                self._idmap = (lo, table)
            else:
                order = np.argsort(lid)
                self._idmap = (lid[order], live[order])
        key, val = self._idmap
        if isinstance(key, int):
            off = want - key
            off = off[(off >= 0) & (off < len(val))]
            hit = val[off]
            return hit[hit >= 0]
        if len(key) == 0:
            return np.empty(0, np.int64)
        want = np.sort(want)  # sorted probes walk the table in order: several times faster than random ones
        pos = np.minimum(np.searchsorted(key, want), len(key) - 1)
        return val[pos[key[pos] == want]]

    def _merge(self, extra: tuple[np.ndarray, ...] | None = None) -> None:
        """Fold the delta (and `extra` postings) into the main segment and drop removed rows."""
        n_terms = len(self._vocab)
        old_counts = np.diff(self._indptr)
        m_term = np.repeat(np.arange(len(old_counts), dtype=np.int64), old_counts)
        m_row, m_tf = self._rows.astype(np.int64), self._tfs
        if extra is not None:
            assert not self._delta, "merge the delta before adding sorted postings"
            n_term, n_row, n_tf = extra
        else:
            n_term, n_row, n_tf = self._delta_arrays()
        if self._n_dead:
            m_keep, n_keep = self._alive[m_row], self._alive[n_row]
            m_term, m_row, m_tf = m_term[m_keep], m_row[m_keep], m_tf[m_keep]
            n_term, n_row, n_tf = n_term[n_keep], n_row[n_keep], n_tf[n_keep]
            alive = self._alive[: self._n_rows]
            new_row = np.cumsum(alive) - 1
            m_row, n_row = new_row[m_row], new_row[n_row]
            self._ids = self._ids[: self._n_rows][alive].copy()
            self._lens = self._lens[: self._n_rows][alive].copy()
            self._n_rows = len(self._ids)
            self._alive = np.ones(self._n_rows, bool)
            self._id2row = dict(zip(self._ids.tolist(), range(self._n_rows), strict=True))
            self._n_dead = 0
        # New postings all have rows above the main ones, so sorting them by (term, row) and placing each
        # term's new postings after its main postings keeps every term's rows ascending without a global sort.
        if extra is None:
            order = np.argsort(n_term * (self._n_rows + 1) + n_row)
            n_term, n_row, n_tf = n_term[order], n_row[order], n_tf[order]
        m_cnt = np.bincount(m_term, minlength=n_terms)
        n_cnt = np.bincount(n_term, minlength=n_terms)
        indptr = np.zeros(n_terms + 1, np.int64)
        np.cumsum(m_cnt + n_cnt, out=indptr[1:])
        m_pos = indptr[m_term] + (np.arange(len(m_term)) - _starts(m_cnt)[m_term])
        n_pos = indptr[n_term] + m_cnt[n_term] + (np.arange(len(n_term)) - _starts(n_cnt)[n_term])
        rows = np.empty(indptr[-1], np.int32)
        tfs = np.empty(indptr[-1], np.uint16)
        rows[m_pos], rows[n_pos] = m_row, n_row
        tfs[m_pos], tfs[n_pos] = m_tf, n_tf
        self._indptr, self._rows, self._tfs = indptr, rows, tfs
        self._delta = {}
        self._delta_docs = 0
        self._changed()
        empty = int(np.count_nonzero(m_cnt + n_cnt == 0))
        if empty > max(1024, n_terms // 4):
            self._prune_vocab(m_cnt + n_cnt > 0)

    def _delta_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = self._delta
        lens = [len(v[0]) for v in d.values()]
        term = np.repeat(np.fromiter(d.keys(), np.int64, len(d)), lens)
        row = np.fromiter((r for v in d.values() for r in v[0]), np.int64, sum(lens))
        tf = np.fromiter((t for v in d.values() for t in v[1]), np.uint16, sum(lens))
        return term, row, tf

    def _prune_vocab(self, used: np.ndarray) -> None:
        """Drop terms left without postings (removed docs), renumbering the rest."""
        new_id = np.cumsum(used) - 1
        self._vocab = {t: int(new_id[i]) for t, i in self._vocab.items() if used[i]}
        self._indptr = np.concatenate([[0], self._indptr[1:][used]])


def _starts(counts: np.ndarray) -> np.ndarray:
    s = np.zeros(len(counts), np.int64)
    np.cumsum(counts[:-1], out=s[1:])
    return s


def _top(scores: np.ndarray, ids: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Best k rows with a score > 0, ties by id."""
    cand = np.flatnonzero(scores > 0)  # on a bool array: flatnonzero on floats is several times slower
    s = scores[cand]
    if len(cand) > k:
        # Keep every row tied with the k-th score so that the id tie-break decides, not the partition.
        kth = np.partition(s, len(s) - k)[len(s) - k]
        keep = s >= kth
        cand, s = cand[keep], s[keep]
    order = np.lexsort((ids[cand], -s))[:k]
    return [(int(i), float(v)) for i, v in zip(ids[cand[order]].tolist(), s[order].tolist(), strict=True)]


def _as_ids(ids: Sequence[int] | np.ndarray) -> list[int]:
    arr = np.asarray(ids)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"ids must be a 1-D sequence of integers, got dtype {arr.dtype} shape {arr.shape}")
    return arr.astype(np.int64).tolist()


def _write_json_atomic(path: Path, obj: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

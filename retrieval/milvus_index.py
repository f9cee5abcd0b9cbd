"""The search indexes of a collection in Milvus: the distributed counterpart of retrieval/indexes.py's IndexSet.

One Milvus collection per ragqa collection and chunk level, holding per chunk: its vector (inner product, like the
local FAISS index), a text field that Milvus's own BM25 function indexes, and the document fields that `SearchFilter`
filters on, so that filters run inside Milvus's search, before top-k. The store (SQLite or PostgreSQL) stays the
source of truth; Milvus is a cache derived from its change log.

The BM25 text is, by default (`bm25_input="terms"`), the chunk's terms from our own Analyzer as the store keeps them
(jieba for Chinese, Snowball stems and stop words for English), and queries go through the same Analyzer: on a SciFact
subset that ranks as the local BM25 does (nDCG@10 equal), where Milvus analysing the raw text (`"text"`) loses
0.03-0.04 (bench/bench_backends.py, docs/benchmarks.md). Milvus's analyzer then only splits the terms again.

Who writes to Milvus: whoever calls `refresh()`. The ingesting process does so right after its commit (ingest's
pipeline refreshes its collection's indexes), and every searcher does so before each query, which is how a process
catches up with a writer that died between its commit and its refresh. Concurrent refreshers are safe because
- chunks are immutable and their ids never reused, so upserting a chunk keyed by its id is idempotent;
- a refresher that read a chunk just before another deleted it would resurrect it with its upsert, so after upserting
  it asks the store which of those chunks still exist and deletes the rest;
- the cursor (the last change-log seq applied) lives in Milvus itself, in the `ragqa_sync` collection, beside the
  data it describes (restore Milvus from a backup and the cursor comes with it). It is a hint, not a lock: a stale
  cursor only makes the next refresher re-apply changes, which the two rules above make harmless.
This relies on the store's contract that `changes_since` returns changes in commit order.

Milvus Lite (pymilvus + milvus-lite 3.x, pure Python, used by the tests and the benchmark) supports all of this with
differences from a Milvus server, all in BM25: its tokenizers are only `standard` (regex words, lower-cased) and
`jieba`; it ignores token filters other than `stop` (so no stemming); its BM25 statistics are per segment; and it
reports a BM25 score as a negative distance.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from retrieval.analyzer import load_stopwords
from retrieval.indexes import Hits, net_changes
from retrieval.store import SearchFilter
from retrieval.text import contextualize

if TYPE_CHECKING:
    from retrieval.backend import DocumentStore
    from retrieval.types import Chunk

AnalyzerKind = Literal["jieba", "standard"]
Bm25Input = Literal["text", "terms"]
SYNC_COLLECTION = "ragqa_sync"
# VARCHAR limits are in bytes; a longer chunk text is cut (BM25 then ignores its tail; the store keeps it whole).
_MAX_TEXT_BYTES = 65_535
_BATCH = 1000
_MAX_TOPK = 16_384  # Milvus's limit on one search's top-k


class MilvusIndexSet:
    """The index set of one ragqa collection in Milvus. Cheap to construct; `load()` connects and catches up.

    Constructor contract (retrieval/backend.py's factory): `MilvusIndexSet(store, collection_name, dim, levels, uri)`
    then `.load()`. `uri` is a Milvus server address (`http://milvus:19530`) or a Milvus Lite file (`/path/x.db`).
    Keyword options: `bm25_input` ("terms", the default: our Analyzer's terms; "text": the chunk text, analysed by
    Milvus), `analyzer` (Milvus's tokenizer: "jieba", the default, segments Chinese and keeps Latin words whole, so it
    suits Chinese, English and mixed collections; "standard" is Milvus's Unicode word tokenizer, which splits Chinese
    into single characters), `index_type` of the vectors (HNSW by default; FLAT for exact search; HNSW_SQ8 or DISKANN
    for 100M chunks: docs/scale.md), `shards` (write channels, fixed at creation), `replicas` (in-memory copies for
    query throughput and failover, used when this process is the first to load the collection; an operator may
    reload with another number at any time), `token` for a Milvus server with authentication. The BM25 set-up,
    index type and shards are fixed when a level's Milvus collection is first created (a mismatched BM25 set-up is
    refused at `load()`).
    """

    def __init__(
        self, store: DocumentStore, collection_name: str, dim: int, levels: Sequence[int], uri: str, *,
        analyzer: AnalyzerKind = "jieba", bm25_input: Bm25Input = "terms", index_type: str = "HNSW", shards: int = 1,
        replicas: int = 1, token: str = "",
    ) -> None:
        if analyzer not in ("jieba", "standard"):
            raise ValueError(f"analyzer must be 'jieba' or 'standard', got {analyzer!r}")
        if bm25_input not in ("text", "terms"):
            raise ValueError(f"bm25_input must be 'text' or 'terms', got {bm25_input!r}")
        self.bm25_input = bm25_input
        self.store = store
        self.collection_name = collection_name
        self.dim = dim
        self.levels = tuple(levels)
        self.uri = uri
        self.analyzer = analyzer
        self.index_type = index_type
        if shards < 1 or replicas < 1:
            raise ValueError(f"shards and replicas must be >= 1, got {shards} and {replicas}")
        self.shards, self.replicas = shards, replicas
        self.token = token
        self.seq = 0
        self.dense: dict[int, MilvusDenseView] = {}
        self._client: Any = None
        self._lock = threading.Lock()

    # ---- set-up ----------------------------------------------------------------------------------------------------

    def load(self) -> MilvusIndexSet:
        """Connect, create the level collections that are missing, and apply the change log not yet applied."""
        from pymilvus import MilvusClient

        self._client = MilvusClient(uri=self.uri, token=self.token)
        self._ensure_sync_collection()
        if self.shared_seq() > self.store.last_seq():
            # Milvus is ahead of the store's log: it holds a dropped collection's chunks under this name (the store
            # was recreated or restored from an older backup). Start over from the store.
            self.drop()
        for level in self.levels:
            self._ensure_level(level)
            self.dense[level] = MilvusDenseView(self, level)
        self.refresh()
        return self

    def base_name(self) -> str:
        """Milvus names allow only letters, digits and '_': keep the readable part, and a hash so that 'a-b' and
        'a_b' stay apart. Also the key of this collection's cursor."""
        safe = re.sub(r"[^0-9A-Za-z_]", "_", self.collection_name)
        digest = hashlib.sha1(self.collection_name.encode()).hexdigest()[:8]
        return f"ragqa_{safe}_{digest}"

    def milvus_name(self, level: int) -> str:
        return f"{self.base_name()}_l{level}"

    def _ensure_level(self, level: int) -> None:
        from pymilvus.client.types import LoadState

        name = self.milvus_name(level)
        c = self._client
        if not c.has_collection(name):
            try:
                c.create_collection(name, schema=self._schema(), index_params=self._index_params(),
                                    num_shards=self.shards, consistency_level="Strong")
            except Exception:
                # Another process may have created it between the two calls; anything else is re-raised.
                if not c.has_collection(name):
                    raise
        for f in c.describe_collection(name)["fields"]:
            if f["name"] == "vector" and int(f["params"]["dim"]) != self.dim:
                raise ValueError(
                    f"Milvus collection {name!r} holds {f['params']['dim']}-dim vectors, this collection's embedder "
                    f"makes {self.dim}: re-index into a new collection"
                )
            params = f["params"].get("analyzer_params")
            if f["name"] == "text" and params and json.loads(params) != self.analyzer_params():
                # Chunks and queries analysed differently would match silently worse.
                raise ValueError(
                    f"Milvus collection {name!r} was built with BM25 analyzer {params}, not the one asked for "
                    f"(analyzer={self.analyzer!r}, bm25_input={self.bm25_input!r}): open it with its own settings"
                )
        # Loading again with another replica number would fail, or undo an operator's choice: load only if needed.
        if c.get_load_state(name)["state"] != LoadState.Loaded:
            c.load_collection(name, replica_number=self.replicas)

    def _schema(self) -> Any:
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field("chunk_id", DataType.INT64, is_primary=True)
        s.add_field("doc_id", DataType.VARCHAR, max_length=512)
        s.add_field("kind", DataType.VARCHAR, max_length=64)
        s.add_field("language", DataType.VARCHAR, max_length=32)
        s.add_field("effective_date", DataType.VARCHAR, max_length=32)  # "" when undated
        s.add_field("date_source", DataType.VARCHAR, max_length=32)
        s.add_field("metadata", DataType.JSON)
        s.add_field("text", DataType.VARCHAR, max_length=_MAX_TEXT_BYTES, enable_analyzer=True,
                    analyzer_params=self.analyzer_params())
        s.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        s.add_field("bm25", DataType.SPARSE_FLOAT_VECTOR)
        s.add_function(Function(name="text_bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                output_field_names=["bm25"]))
        return s

    def analyzer_params(self) -> dict[str, Any]:
        """Milvus analyzer. For `bm25_input` "text": the tokenizer, then lower-casing, our own stop words, and English
        stemming (which a Milvus server applies and Milvus Lite ignores). For "terms" the text is already our
        Analyzer's terms (stemmed, stop words gone), space-separated: the tokenizer only has to split it again."""
        if self.bm25_input == "terms":
            return {"tokenizer": self.analyzer, "filter": ["lowercase"]}
        stop = sorted(load_stopwords("en") | (load_stopwords("zh") if self.analyzer == "jieba" else frozenset()))
        return {
            "tokenizer": self.analyzer,
            "filter": ["lowercase", {"type": "stop", "stop_words": stop}, {"type": "stemmer", "language": "english"}],
        }

    def _index_params(self) -> Any:
        p = self._client.prepare_index_params()
        params = {"M": 16, "efConstruction": 200} if self.index_type == "HNSW" else {}
        p.add_index("vector", index_type=self.index_type, metric_type="IP", params=params)
        # Same k1 and b as the local BM25 (the manifest's defaults).
        p.add_index("bm25", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                    params={"bm25_k1": 1.2, "bm25_b": 0.75})
        return p

    def _ensure_sync_collection(self) -> None:
        from pymilvus import DataType, MilvusClient

        c = self._client
        if c.has_collection(SYNC_COLLECTION):
            c.load_collection(SYNC_COLLECTION)
            return
        s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field("name", DataType.VARCHAR, is_primary=True, max_length=256)
        s.add_field("seq", DataType.INT64)
        s.add_field("v", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field in every collection
        p = c.prepare_index_params()
        p.add_index("v", index_type="FLAT", metric_type="L2")
        try:
            c.create_collection(SYNC_COLLECTION, schema=s, index_params=p, consistency_level="Strong")
        except Exception:
            if not c.has_collection(SYNC_COLLECTION):
                raise
        c.load_collection(SYNC_COLLECTION)

    def drop(self) -> None:
        """Remove this collection's Milvus collections (every level, also ones an older incarnation had) and its
        cursor. The store is dropped by its owner; call this when dropping a collection, or its name keeps them."""
        prefix = self.base_name() + "_l"
        for name in self._client.list_collections():
            if name.startswith(prefix) and name[len(prefix):].isdigit():
                self._client.drop_collection(name)
        self._client.delete(SYNC_COLLECTION, ids=[self.base_name()])
        self.seq = 0

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # ---- keeping in step with the store ----------------------------------------------------------------------------

    def shared_seq(self) -> int:
        """The last change-log seq some refresher applied to Milvus (0 before any)."""
        rows = self._client.get(SYNC_COLLECTION, ids=[self.base_name()], output_fields=["seq"])
        return int(rows[0]["seq"]) if rows else 0

    def refresh(self) -> int:
        """Apply committed changes Milvus does not hold yet; return how many chunks this call added or removed."""
        if self.store.last_seq() == self.seq:
            return 0
        with self._lock:
            # Someone else may already have applied part of the log: start from the furthest point known.
            self.seq = max(self.seq, self.shared_seq())
            changes = self.store.changes_since(self.seq)
            if not changes:
                return 0
            added, removed = net_changes(changes)
            for level in self.levels:
                gone = [c for c, lv in removed.items() if lv == level]
                if gone:
                    self._client.delete(self.milvus_name(level), ids=gone)
                new = [c for c, lv in added.items() if lv == level]
                for i in range(0, len(new), _BATCH):
                    self._upsert(level, new[i : i + _BATCH])
            last = changes[-1][0]
            if last > self.shared_seq():
                self._client.upsert(SYNC_COLLECTION, [{"name": self.base_name(), "seq": last, "v": [0.0, 0.0]}])
            self.seq = last
            return len(added) + len(removed)

    def _upsert(self, level: int, ids: list[int]) -> None:
        stored = {cid: (vec, tokens) for cid, vec, tokens in self.store.vectors_and_tokens(ids)}
        chunks = [c for c in self.store.chunks(ids) if c.chunk_id in stored]
        if not chunks:
            return
        meta = {d.doc_id: d.metadata for d in self.store.documents(sorted({c.doc_id for c in chunks}))}
        rows = [
            {
                "chunk_id": c.chunk_id, "doc_id": c.doc_id, "kind": c.kind, "language": c.language or "",
                "effective_date": c.effective_date or "", "date_source": c.date_source,
                "metadata": meta.get(c.doc_id, {}),
                "text": _cut_utf8(self._bm25_text(c, stored[c.chunk_id][1]), _MAX_TEXT_BYTES),
                "vector": np.asarray(stored[c.chunk_id][0], dtype=np.float32).tolist(),
            }
            for c in chunks
        ]
        name = self.milvus_name(level)
        self._client.upsert(name, rows)
        # A refresher that deleted these meanwhile has already run: undo what this upsert brought back.
        still = {c.chunk_id for c in self.store.chunks([r["chunk_id"] for r in rows])}
        stale = [r["chunk_id"] for r in rows if r["chunk_id"] not in still]
        if stale:
            self._client.delete(name, ids=stale)

    def _bm25_text(self, chunk: Chunk, terms: list[str]) -> str:
        if self.bm25_input == "terms":
            return " ".join(terms)
        return contextualize(chunk.title, chunk.heading_path, chunk.text)

    def snapshot(self) -> None:
        """What ingest calls at the end of a run: apply the log, then seal what was written (Milvus's flush), so that
        it is indexed. Milvus seals growing segments by itself too; Milvus Lite searches unsealed rows by brute force
        in Python (about 15x slower at 5k rows), so a bulk load should end with this. Not after every small write:
        each flush makes a segment."""
        self.refresh()
        for level in self.levels:
            self._client.flush(self.milvus_name(level))

    # ---- search ----------------------------------------------------------------------------------------------------

    def hits(
        self, level: int, query_vec: np.ndarray | None, query_text: str | None, query_tokens: Sequence[str], n: int,
        flt: SearchFilter, timings: dict[str, float] | None = None,
    ) -> tuple[Hits, Hits]:
        """The top `n` dense and sparse candidates at `level` among the chunks `flt` admits, as IndexSet.hits.

        The filter becomes a Milvus boolean expression evaluated inside each search, before top-k. Milvus analyses
        `query_text` with the collection's analyzer (`bm25_input` "text"), or the local Analyzer's `query_tokens`
        ("terms"), as it analysed the chunks.
        """
        t = time.perf_counter()
        expr = filter_expression(flt, self._doc_ids_under(flt.source_prefix) if flt.source_prefix else None)
        if timings is not None:
            timings["filter"] = time.perf_counter() - t
        if expr is None:
            return [], []
        name = self.milvus_name(level)
        n = min(n, _MAX_TOPK)
        dense: Hits = []
        sparse: Hits = []
        if query_vec is not None:
            t = time.perf_counter()
            vec = np.asarray(query_vec, dtype=np.float32).reshape(-1).tolist()
            res = self._client.search(
                name, data=[vec], anns_field="vector", limit=n, filter=expr, output_fields=[],
                search_params={"metric_type": "IP", "params": {"ef": max(n, 64)}}, consistency_level="Strong",
            )
            dense = [(int(h["chunk_id"]), float(h["distance"])) for h in res[0]]
            if timings is not None:
                timings["dense"] = time.perf_counter() - t
        query = None if query_text is None else " ".join(query_tokens) if self.bm25_input == "terms" else query_text
        if query is not None and query.strip():
            t = time.perf_counter()
            res = self._client.search(
                name, data=[query], anns_field="bm25", limit=n, filter=expr, output_fields=[],
                search_params={"metric_type": "BM25"}, consistency_level="Strong",
            )
            # A Milvus server reports the BM25 score as the distance; Milvus Lite 3.x reports its negative.
            sparse = [(int(h["chunk_id"]), abs(float(h["distance"]))) for h in res[0]]
            if timings is not None:
                timings["sparse"] = time.perf_counter() - t
        return dense, sparse

    def _doc_ids_under(self, prefix: str) -> list[str]:
        """Documents with a source path under `prefix`, resolved in the store: a document's paths change without
        its chunks changing (a duplicate seen under a new name), so they are not copied into Milvus."""
        return sorted({r.doc_id for r in self.store.sources_under(prefix) if r.path.startswith(prefix)})

    def count(self, level: int) -> int:
        res = self._client.query(self.milvus_name(level), filter="", output_fields=["count(*)"],
                                 consistency_level="Strong")
        return int(res[0]["count(*)"])


class MilvusDenseView:
    """The dense side of one level, for callers of the local `IndexSet.dense[level]` (ingest's near-duplicate check)."""

    def __init__(self, owner: MilvusIndexSet, level: int) -> None:
        self.owner = owner
        self.level = level

    def __len__(self) -> int:
        return self.owner.count(self.level)

    def search(self, vec: np.ndarray, top_k: int, allowed: np.ndarray | None = None) -> Hits:
        if allowed is not None:
            raise ValueError("the Milvus dense view does not filter by id lists: use hits() with a SearchFilter")
        return self.owner.hits(self.level, vec, None, (), top_k, SearchFilter())[0]


def literal(value: str) -> str:
    """A Milvus expression string literal: user input stays data (quotes and backslashes escaped)."""
    if not isinstance(value, str):
        raise TypeError(f"filter values are strings, got {type(value).__name__}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def filter_expression(flt: SearchFilter, source_doc_ids: list[str] | None = None) -> str | None:
    """`flt` as a Milvus boolean expression ("" admits everything); None when nothing can pass.

    Same meaning as the store's `allowed_ids`: dates are inclusive ISO strings, and undated documents and those dated
    only by a file's mtime pass every date filter. `source_doc_ids`: the documents under `flt.source_prefix`.
    """
    parts: list[str] = []
    if flt.doc_ids:
        parts.append(f"doc_id in [{', '.join(literal(d) for d in flt.doc_ids)}]")
    if source_doc_ids is not None:
        if not source_doc_ids:
            return None
        parts.append(f"doc_id in [{', '.join(literal(d) for d in source_doc_ids)}]")
    if flt.date_from:
        parts.append(f'(effective_date == "" or date_source == "mtime" or effective_date >= {literal(flt.date_from)})')
    if flt.date_to:
        parts.append(f'(effective_date == "" or date_source == "mtime" or effective_date <= {literal(flt.date_to)})')
    if flt.language:
        parts.append(f"language == {literal(flt.language)}")
    if flt.kinds:
        parts.append(f"kind in [{', '.join(literal(k) for k in flt.kinds)}]")
    for key, value in flt.metadata:
        parts.append(f"metadata[{literal(key)}] == {literal(value)}")
    return " and ".join(parts)


def _cut_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", errors="ignore")


"""The Milvus index set against a real Milvus Lite (in a temp dir) and a real store: the same contract as IndexSet."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from retrieval.collection import Collection
from retrieval.milvus_index import MilvusIndexSet, filter_expression, literal
from retrieval.store import NewChunk, NewSection, SearchFilter, Store
from retrieval.types import Chunk, Document

DIM = 8
LEVEL = 64


def _milvus_uri(tmp_path: Path) -> str:
    """A Milvus Lite database in the test's temp dir; skip (saying why) where Milvus Lite cannot start."""
    uri = str(tmp_path / "milvus.db")
    try:
        from pymilvus import MilvusClient

        MilvusClient(uri=uri).list_collections()
    except Exception as e:  # ImportError, or the embedded server failing to start
        pytest.skip(f"Milvus Lite cannot start here ({type(e).__name__}: {e}); "
                    "install it with: .venv/bin/pip install 'pymilvus>=2.6' 'milvus-lite>=3.2'")
    return uri


def _doc(i: int, **kw: object) -> Document:
    fields: dict = dict(doc_id=f"d{i}", collection="c", source_path=f"/docs/{i}.txt", title=f"t{i}",
                        mime="text/plain", content_hash=f"h{i}", effective_date=None, date_source="none",
                        ingested_at="2024-01-01T00:00:00", language="en")
    fields.update(kw)
    return Document(**fields)


def _vec(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _add(
    col: Collection, doc: Document, texts: Iterable[str], rng: np.random.Generator, kind: str = "text"
) -> list[int]:
    chunks = [NewChunk(level=LEVEL, position=j, section_position=0, heading_path=(), kind=kind, text=t,
                       token_count=len(t.split()), tokens=t.lower().split(), embedding=_vec(rng))
              for j, t in enumerate(texts)]
    with col.store.transaction() as conn:
        ids = col.store.add_document(conn, doc, None, [NewSection(0, (), "s", 1)], chunks)
        col.store.set_source(conn, _source(doc))
    return ids


def _source(doc: Document):  # type: ignore[no-untyped-def]
    from retrieval.store import SourceRecord

    return SourceRecord(doc.source_path, doc.doc_id, 1, 1, doc.content_hash)


def _delete(col: Collection, doc_id: str) -> None:
    with col.store.transaction() as conn:
        col.store.delete_document(conn, doc_id)


@pytest.fixture
def col(tmp_path: Path) -> Collection:
    return Collection(tmp_path, "c").open(embedder="fake", dim=DIM, chunking={"levels": [LEVEL]}, create=True)


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return _milvus_uri(tmp_path)


def _milvus(col: Collection, uri: str, **kw: object) -> MilvusIndexSet:
    return MilvusIndexSet(col.store, col.name, DIM, (LEVEL,), uri, index_type="FLAT", **kw).load()  # type: ignore[arg-type]


EVERYTHING = SearchFilter()


def _all_ids(idx: MilvusIndexSet, flt: SearchFilter = EVERYTHING) -> set[int]:
    return {cid for cid, _ in idx.hits(LEVEL, np.ones(DIM, np.float32), None, (), 1000, flt)[0]}


def test_add_remove_refresh_follow_the_change_log(col: Collection, uri: str) -> None:
    rng = np.random.default_rng(0)
    idx = _milvus(col, uri)
    a = _add(col, _doc(1), ["alpha one", "alpha two", "alpha three"], rng)
    assert idx.refresh() == 3 and idx.count(LEVEL) == 3 and _all_ids(idx) == set(a)
    assert len(idx.dense[LEVEL]) == 3  # the view ingest's near-duplicate check uses
    assert idx.refresh() == 0  # nothing new: no Milvus writes
    b = _add(col, _doc(2), ["beta"], rng)
    _delete(col, "d1")
    assert idx.refresh() == 4 and _all_ids(idx) == set(b)
    # A chunk added and removed between two refreshes never reaches Milvus.
    c = _add(col, _doc(3), ["gamma"], rng)
    _delete(col, "d3")
    assert idx.refresh() == 0 and _all_ids(idx) == set(b) and not set(c) & _all_ids(idx)
    # The nearest neighbour of a stored vector is that chunk, with cosine 1.
    vec = next(v for cid, v, _ in col.store.vectors_and_tokens(b))
    top = idx.hits(LEVEL, vec, None, (), 1, SearchFilter())[0]
    assert top[0][0] == b[0] and top[0][1] == pytest.approx(1.0, abs=1e-5)
    assert idx.dense[LEVEL].search(vec, 1) == top
    idx.snapshot()  # sealed and indexed: the same answers
    assert idx.hits(LEVEL, vec, None, (), 1, SearchFilter())[0] == top and _all_ids(idx) == set(b)


def test_a_second_index_object_sees_the_firsts_writes_and_reopening_resumes(col: Collection, uri: str) -> None:
    rng = np.random.default_rng(1)
    writer, reader = _milvus(col, uri), _milvus(col, uri)
    ids = _add(col, _doc(1), ["shared text"], rng)
    writer.refresh()
    # The reader's own refresh finds the cursor already at the end of the log: no re-application, and it sees the rows.
    assert reader.refresh() == 0 and reader.seq == col.store.last_seq() and _all_ids(reader) == set(ids)
    _delete(col, "d1")
    reader.refresh()
    assert _all_ids(writer) == set()
    assert _milvus(col, uri).seq == col.store.last_seq()  # a new process starts from the shared cursor


def test_a_chunk_deleted_while_being_upserted_does_not_come_back(col: Collection, uri: str) -> None:
    class StoreDeletingMidRefresh(Store):
        """Fake race: another process commits the document's deletion right after this refresher read it."""

        armed = True

        def chunks(self, chunk_ids: Iterable[int]) -> list[Chunk]:
            out = super().chunks(chunk_ids)
            if self.armed:
                self.armed = False
                with self.transaction() as conn:
                    self.delete_document(conn, "d1")
            return out

    rng = np.random.default_rng(2)
    _add(col, _doc(1), ["doomed"], rng)
    racing = StoreDeletingMidRefresh(col.store.path, col.name).open()
    idx = MilvusIndexSet(racing, col.name, DIM, (LEVEL,), uri, index_type="FLAT").load()
    assert idx.count(LEVEL) == 0 and _all_ids(idx) == set()


def test_filters_select_the_same_chunks_as_the_store_before_top_k(col: Collection, uri: str) -> None:
    rng = np.random.default_rng(3)
    docs = [
        _doc(1, effective_date="2023-01-01", date_source="explicit", metadata={"team": "ops"}),
        _doc(2, effective_date="2024-06-01", date_source="explicit", language="zh", metadata={"team": 'a"b'}),
        _doc(3, effective_date="2025-01-01", date_source="mtime", source_path="/other/3.txt"),
        _doc(4),  # undated
    ]
    for d in docs:
        _add(col, d, [f"word {d.doc_id} {j}" for j in range(5)], rng, kind="table" if d.doc_id == "d4" else "text")
    idx = _milvus(col, uri)
    filters = [
        SearchFilter(doc_ids=("d1", "d3")), SearchFilter(source_prefix="/docs/"), SearchFilter(source_prefix="/nope"),
        SearchFilter(date_from="2024-01-01"), SearchFilter(date_to="2023-12-31"),
        SearchFilter(date_from="2023-06-01", date_to="2024-12-31"), SearchFilter(language="zh"),
        SearchFilter(kinds=("table",)), SearchFilter(metadata=(("team", "ops"),)),
        SearchFilter(metadata=(("team", 'a"b'),)), SearchFilter(metadata=(("team", 'x" or doc_id != "'),)),
        SearchFilter(language="en", date_from="2024-01-01", kinds=("text",)),
    ]
    for flt in filters:
        assert _all_ids(idx, flt) == set(col.store.allowed_ids(LEVEL, flt).tolist()), flt
    # Before top-k: the one admitted chunk comes back even when asking for a single hit.
    only = set(col.store.allowed_ids(LEVEL, SearchFilter(language="zh")).tolist())
    far = -np.mean([v for _, v, _ in col.store.vectors_and_tokens(sorted(only))], axis=0)
    top = idx.hits(LEVEL, far, "word", ["word"], 1, SearchFilter(language="zh"))
    assert top[0][0][0] in only and top[1][0][0] in only


def test_filter_values_stay_data() -> None:
    assert literal('a"b\\') == '"a\\"b\\\\"'
    expr = filter_expression(SearchFilter(metadata=(('k"]', 'v" or 1 == 1 or "'),)))
    assert expr == 'metadata["k\\"]"] == "v\\" or 1 == 1 or \\""'
    assert filter_expression(SearchFilter()) == ""
    assert filter_expression(SearchFilter(), source_doc_ids=[]) is None


def test_bm25_ranks_english_and_chinese_text(col: Collection, uri: str) -> None:
    rng = np.random.default_rng(4)
    en = _add(col, _doc(1), ["The filter should be cleaned every month.", "Fault code E4 means the unit overheated.",
                             "The compressor warranty lasts seven years."], rng)
    zh = _add(col, _doc(2, language="zh"), ["过滤网应每月清洗一次。", "故障代码E4表示机组过热。",
                                            "压缩机保修期为七年。"], rng)
    idx = _milvus(col, uri, bm25_input="text")  # Milvus's own jieba analyzer over the chunk text

    def top(q: str) -> int:
        return idx.hits(LEVEL, None, q, (), 3, SearchFilter())[1][0][0]

    assert top("how long is the compressor warranty") == en[2]
    assert top("what does fault code E4 mean") in (en[1], zh[1])  # "e4" is in both
    assert top("过滤网多久清洗") == zh[0]
    assert top("压缩机保修几年") == zh[2]
    assert idx.hits(LEVEL, None, "   ", (), 3, SearchFilter()) == ([], [])
    # Scores are positive and best first, whatever sign the server reports distances with.
    scores = [s for _, s in idx.hits(LEVEL, None, "filter month warranty", (), 3, SearchFilter())[1]]
    assert scores and all(s > 0 for s in scores) and scores == sorted(scores, reverse=True)


def test_hybrid_search_through_the_shared_seam(col: Collection, uri: str) -> None:
    from retrieval.search import HybridRetriever, SearchParams

    rng = np.random.default_rng(5)
    ids = _add(col, _doc(1), ["apples are red", "bananas are yellow", "cherries are dark red"], rng)
    vec = next(v for cid, v, _ in col.store.vectors_and_tokens([ids[1]]))
    local = HybridRetriever(col, embedder=None)  # type: ignore[arg-type]  # the query vector is given
    want = [h.chunk.chunk_id for h in local.search("yellow bananas", 3, query_vector=vec)]
    col.indexes = _milvus(col, uri)
    got = HybridRetriever(col, embedder=None).search("yellow bananas", 3, query_vector=vec)  # type: ignore[arg-type]
    assert got[0].chunk.chunk_id == ids[1] == want[0]
    assert set(got[0].scores) == {"fused", "dense", "sparse"}
    dense_only = HybridRetriever(col, embedder=None, params=SearchParams(mode="dense"))  # type: ignore[arg-type]
    assert [h.chunk.chunk_id for h in dense_only.search("x", 1, query_vector=vec)] == [ids[1]]


def test_a_level_built_for_another_dimension_is_refused(col: Collection, uri: str) -> None:
    _milvus(col, uri)
    with pytest.raises(ValueError, match="8-dim vectors"):
        MilvusIndexSet(col.store, col.name, 16, (LEVEL,), uri).load()


def test_another_process_writing_through_a_milvus_server_is_seen_at_the_next_query(
    col: Collection, tmp_path: Path
) -> None:
    """Production shape: a Milvus server (here `milvus-lite server`) shared by processes; a child ingests, we query."""
    import os
    import shutil
    import socket
    import subprocess
    import sys
    import time

    _milvus_uri(tmp_path)  # skips where Milvus Lite cannot run
    exe = shutil.which("milvus-lite") or str(Path(sys.executable).parent / "milvus-lite")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([exe, "server", "--data-dir", str(tmp_path / "server"), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "milvus-lite server did not start"
                time.sleep(0.2)
        uri = f"http://127.0.0.1:{port}"
        reader = _milvus(col, uri)
        child = f"""
import numpy as np
from pathlib import Path
from retrieval.collection import Collection
from retrieval.milvus_index import MilvusIndexSet
from tests.retrieval.test_milvus_index import _add, _doc
col = Collection(Path({str(tmp_path)!r}), "c").open()
_add(col, _doc(7), ["written by another process"], np.random.default_rng(7))
MilvusIndexSet(col.store, "c", {DIM}, ({LEVEL},), {uri!r}, index_type="FLAT").load()  # load() applies the log
"""
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        proc = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        written = set(col.store.chunk_ids_at_level(LEVEL))
        assert len(written) == 1
        assert reader.refresh() == 0  # the writer already applied it: nothing to redo
        assert _all_ids(reader) == written
        sparse = reader.hits(LEVEL, None, "another process", ["another", "process"], 5, SearchFilter())[1]
        assert sparse[0][0] in written
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_recreated_collection_does_not_inherit_the_dropped_ones_rows(
    col: Collection, uri: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(6)
    _add(col, _doc(1), ["old one", "old two"], rng)
    _add(col, _doc(2), ["old three"], rng)
    assert _milvus(col, uri).count(LEVEL) == 3
    # The store is dropped and created again under the same name (Milvus was not told): its log starts over.
    fresh = Collection(tmp_path / "again", "c").open(embedder="fake", dim=DIM, chunking={"levels": [LEVEL]},
                                                     create=True)
    new = _add(fresh, _doc(3), ["new"], rng)
    idx = _milvus(fresh, uri)
    assert _all_ids(idx) == set(new) and idx.count(LEVEL) == 1
    idx.drop()
    assert not [n for n in idx._client.list_collections() if n.startswith(idx.base_name())]


def test_bm25_over_the_local_analyzers_terms_and_a_mismatched_reopen(col: Collection, uri: str) -> None:
    from retrieval.analyzer import Analyzer

    an = Analyzer()
    rng = np.random.default_rng(7)
    texts = ["The filters were cleaned monthly.", "Fault code E4 means the unit overheated.", "过滤网应每月清洗一次。"]
    chunks = [NewChunk(level=LEVEL, position=j, section_position=0, heading_path=(), kind="text", text=t,
                       token_count=5, tokens=an.tokenize(t), embedding=_vec(rng)) for j, t in enumerate(texts)]
    with col.store.transaction() as conn:
        ids = col.store.add_document(conn, _doc(1), None, [NewSection(0, (), "s", 1)], chunks)
    idx = _milvus(col, uri)  # bm25_input="terms", the default

    def top(q: str) -> int:
        return idx.hits(LEVEL, None, q, an.tokenize(q), 3, SearchFilter())[1][0][0]

    assert top("cleaning the filter") == ids[0]  # stemmed by our Analyzer: "filters" ~ "filter", "cleaned" ~ "cleaning"
    assert top("过滤网多久清洗") == ids[2]
    with pytest.raises(ValueError, match="BM25 analyzer"):
        _milvus(col, uri, bm25_input="text")  # against a collection built from terms

"""Ingest end to end on real files: incremental re-ingest, replacement, removal, duplicates, bad input."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ingest.pipeline import IngestOptions, Ingestor, Record
from retrieval.collection import Collection
from retrieval.manifest import ManifestMismatch
from retrieval.search import HybridRetriever, SearchParams

pytestmark = pytest.mark.slow

DOCS = {
    "pump.md": "# Drain pump\n\nThe drain pump of the Polaris KFR-35GW must be replaced every 4 years.\n",
    "filter.txt": "Clean the air filter every two weeks during the cooling season. Use lukewarm water only.",
    "zh.md": "# 遥控器\n\n按下睡眠键后，空调会在八小时后自动关机。",
}


def _open(tmp: Path, embedder, chunking, name: str = "t") -> Collection:  # type: ignore[no-untyped-def]
    return Collection(tmp / "data", name).open(
        embedder=embedder.name, dim=embedder.dim, chunking=chunking.to_manifest(), create=True
    )


def _write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


def _ids_in_indexes(col: Collection) -> dict[int, tuple[int, int, int]]:
    assert col.indexes is not None
    out = {}
    for level in col.indexes.levels:
        n_db = len(col.store.chunk_ids_at_level(level))
        out[level] = (n_db, len(col.indexes.dense[level]), len(col.indexes.sparse[level]))
    return out


def _consistent(col: Collection) -> None:
    for level, (n_db, n_dense, n_sparse) in _ids_in_indexes(col).items():
        assert n_db == n_dense == n_sparse, f"level {level}: db {n_db}, faiss {n_dense}, bm25 {n_sparse}"
        for cid in col.store.chunk_ids_at_level(level):
            assert cid in col.indexes.sparse[level]  # type: ignore[union-attr]


def test_incremental_lifecycle(tmp_path: Path, embedder, chunking) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "corpus"
    _write(corpus, DOCS)
    col = _open(tmp_path, embedder, chunking)
    ing = Ingestor(col, embedder, chunking, IngestOptions(workers=0))
    rep = ing.ingest_paths([corpus])
    assert rep.summary()["added"] == 3 and not rep.failed
    _consistent(col)
    search = HybridRetriever(col, embedder)
    top = search.search("how often replace the drain pump", top_k=1)[0]
    assert "4 years" in top.chunk.text and top.chunk.source_path.endswith("pump.md")
    zh = search.search("睡眠键 自动关机", top_k=1)[0]
    assert zh.chunk.source_path.endswith("zh.md")

    # Unchanged: nothing is read, parsed or embedded.
    rep2 = Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([corpus])
    assert rep2.summary()["unchanged"] == 3 and rep2.timings["embed"] == 0.0 and rep2.timings["parse"] == 0.0

    # Touched but identical bytes: still unchanged.
    os.utime(corpus / "filter.txt", ns=(time.time_ns(), time.time_ns()))
    touched = Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([corpus])
    assert touched.summary()["unchanged"] == 3

    # Changed: old chunks leave, new ones arrive, in both indexes.
    (corpus / "pump.md").write_text("# Drain pump\n\nReplace the condensate pump every 6 years.\n", encoding="utf-8")
    rep3 = Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([corpus])
    assert rep3.summary()["updated"] == 1
    _consistent(col)
    sparse = SearchParams(mode="sparse")
    assert not [h for h in search.search("KFR-35GW", top_k=5, params=sparse) if "4 years" in h.chunk.text]
    assert "6 years" in search.search("condensate pump", top_k=1)[0].chunk.text

    # Deleted: the document leaves the index.
    (corpus / "filter.txt").unlink()
    rep4 = Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([corpus])
    assert rep4.summary()["removed"] == 1
    assert len(col.store.documents()) == 2
    assert not search.search("lukewarm water air filter", top_k=5, params=sparse)
    _consistent(col)


def test_same_content_twice_is_stored_once(tmp_path: Path, embedder, chunking) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "c"
    _write(corpus, {"a.txt": DOCS["filter.txt"], "copy-of-a.txt": DOCS["filter.txt"]})
    col = _open(tmp_path, embedder, chunking)
    rep = Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([corpus])
    assert sorted(r.status for r in rep.results) == ["added", "duplicate"]
    docs = col.store.documents()
    assert len(docs) == 1 and len(docs[0].sources) == 2


def test_bad_files_are_reported_and_the_rest_goes_in(tmp_path: Path, embedder, chunking) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "c"
    _write(corpus, {"good.md": DOCS["pump.md"]})
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog")
    (corpus / "blob.bin").write_bytes(os.urandom(4096))
    (corpus / "big.txt").write_bytes(b"a" * 3000)
    col = _open(tmp_path, embedder, chunking)
    rep = Ingestor(col, embedder, chunking, IngestOptions(workers=0, max_bytes=2000)).ingest_paths([corpus])
    by_name = {Path(r.path).name: r for r in rep.results}
    assert by_name["good.md"].status == "added"
    for bad in ("empty.txt", "broken.pdf", "blob.bin", "big.txt"):
        assert by_name[bad].status == "failed" and by_name[bad].reason, bad
    assert "limit" in by_name["big.txt"].reason
    assert len(col.store.documents()) == 1


def test_near_duplicates_are_marked_and_collapsed(tmp_path: Path, embedder, chunking) -> None:  # type: ignore[no-untyped-def]
    text = "Clean the outdoor unit's condenser fins with a soft brush once a year, before summer starts."
    corpus = tmp_path / "c"
    _write(corpus, {"a.txt": text, "b.txt": text.replace("once a year", "once every year")})
    col = _open(tmp_path, embedder, chunking)
    Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([corpus])
    level = min(chunking.levels)
    chunks = [c for d in col.store.documents() for c in col.store.doc_chunks(d.doc_id, level)]
    assert sum(1 for c in chunks if c.near_dup_of is not None) == 1
    hits = HybridRetriever(col, embedder).search("condenser fins brush", top_k=5)
    assert len(hits) == 1  # the near-duplicate collapsed into the first
    hits_all = HybridRetriever(col, embedder).search(
        "condenser fins brush", top_k=5, params=SearchParams(collapse_duplicates=False)
    )
    assert len(hits_all) == 2


def test_a_changed_value_is_not_a_near_duplicate(tmp_path: Path, embedder, chunking) -> None:  # type: ignore[no-untyped-def]
    # Two versions of a policy that differ in one number: cosine says duplicate, the value says otherwise, and
    # collapsing one into the other would hide the change.
    text = "The compressor of every Norvane split air conditioner is covered by the warranty for {} years."
    v1, v2 = embedder.embed_documents([text.format(5), text.format(7)])
    assert float(v1 @ v2) >= 0.85  # what the check alone would call a near-duplicate
    corpus = tmp_path / "c"
    _write(corpus, {"a.txt": text.format(5), "b.txt": text.format(7),
                    "c.txt": text.format(5).replace("every", "each")})
    col = _open(tmp_path, embedder, chunking)
    Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([corpus])
    level = min(chunking.levels)
    chunks = [c for d in col.store.documents() for c in col.store.doc_chunks(d.doc_id, level)]
    marked = [c for c in chunks if c.near_dup_of is not None]
    assert len(marked) == 1 and "5 years" in marked[0].text  # only the copy that states the same value
    hits = HybridRetriever(col, embedder).search("compressor warranty years", top_k=5)
    assert sorted("7 years" in h.chunk.text for h in hits) == [False, True]  # both versions, the copy collapsed


def test_records_and_manifest_mismatch(tmp_path: Path, embedder, chunking) -> None:  # type: ignore[no-untyped-def]
    col = _open(tmp_path, embedder, chunking)
    recs = [Record(key=f"ds:{i}", title=f"Doc {i}", text=f"Fact number {i} is {i * 7}.") for i in range(5)]
    rep = Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_records(recs)
    assert rep.summary()["added"] == 5
    assert Ingestor(col, embedder, chunking).ingest_records(recs).summary()["unchanged"] == 5
    with pytest.raises(ManifestMismatch, match="embedder"):
        Collection(tmp_path / "data", "t").open(embedder="e5-small", dim=384, chunking=chunking.to_manifest())

"""The same behaviour on both backends: local (SQLite + FAISS/BM25) and distributed (real PostgreSQL, with its indexes
either in Milvus Lite or, without a Milvus URI, in each process's FAISS/BM25 copy).

Ingest, incremental update, delete, filters before top-k, and a second process's ingest seen at the next query. The
search side goes through SearchService, as the API does; nothing above the backend seam is told which one runs.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.service import SearchService, make_filter
from ingest.cli import open_collection
from ingest.pipeline import IngestOptions, Ingestor, IngestReport
from retrieval.backend import LOCAL, BackendConfig
from retrieval.collection import Collection, CollectionNotFound, list_collections
from retrieval.search import SearchParams

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

DOCS = {
    "pump.md": "# Drain pump\n\nThe drain pump of the Polaris KFR-35GW must be replaced every 4 years.\n",
    "filter.txt": "Clean the air filter every two weeks during the cooling season. Use lukewarm water only.",
    "warranty.md": "# Warranty\n\nThe compressor is covered by the warranty for 7 years from the date of purchase.",
    "zh.md": "# 遥控器\n\n按下睡眠键后，空调会在八小时后自动关机。",
}


@pytest.fixture(params=["local", "distributed", "distributed-milvus"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> BackendConfig:
    if request.param == "local":
        return LOCAL
    url = request.getfixturevalue("pg_url")
    if request.param == "distributed":
        return BackendConfig("distributed", postgres_url=url)
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError:
        pytest.skip("Milvus Lite is not installed: pip install -e '.[distributed]' (make install does)")
    return BackendConfig("distributed", postgres_url=url, milvus_uri=str(tmp_path / "milvus.db"))


@pytest.fixture
def name() -> str:
    """A collection name of its own: the distributed tests share one PostgreSQL database per run."""
    return f"kb{secrets.token_hex(4)}"


def _write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for fname, text in files.items():
        (folder / fname).write_text(text, encoding="utf-8")


def _ingest(data: Path, name: str, backend: BackendConfig, embedder, chunking, folder: Path,  # type: ignore[no-untyped-def]
            **opts) -> IngestReport:
    col = Collection(data, name, backend)
    with col.write_lock():
        col = open_collection(data, name, embedder, chunking, create=True, backend=backend)
        try:
            return Ingestor(col, embedder, chunking, IngestOptions(workers=0, **opts)).ingest_paths([folder])
        finally:
            col.close()


def _titles(svc: SearchService, name: str, query: str, **flt) -> list[str]:  # type: ignore[no-untyped-def]
    # Not collapsing near-duplicates: the two refund policies are near-duplicates, and both must show.
    hits = svc.search(name, query, 3, SearchParams(filter=make_filter(**flt), collapse_duplicates=False))
    return [h.chunk.title for h in hits]


def test_ingest_update_and_delete(backend: BackendConfig, name: str, tmp_path: Path, embedder, chunking) -> None:  # type: ignore[no-untyped-def]
    data, corpus = tmp_path / "data", tmp_path / "corpus"
    _write(corpus, DOCS)
    rep = _ingest(data, name, backend, embedder, chunking, corpus)
    assert rep.summary()["added"] == 4 and not rep.failed
    svc = SearchService(data, backend)
    assert name in svc.collections() and name in list_collections(data, backend)
    assert _titles(svc, name, "how long is the compressor warranty")[0] == "Warranty"
    info = svc.info(name)
    assert info.documents == 4 and info.chunks > 0
    # Nothing changed: nothing re-read.
    assert _ingest(data, name, backend, embedder, chunking, corpus).summary()["unchanged"] == 4

    time.sleep(0.01)  # a new mtime
    _write(corpus, {"warranty.md": "# Warranty\n\nThe compressor warranty now runs for 10 years from purchase."})
    rep = _ingest(data, name, backend, embedder, chunking, corpus)
    assert rep.summary()["updated"] == 1
    hits = svc.search(name, "compressor warranty years", 3, SearchParams())
    texts = [h.chunk.text for h in hits]
    assert any("10 years" in t for t in texts) and not any("7 years" in t for t in texts)
    assert svc.info(name).documents == 4

    (corpus / "filter.txt").unlink()
    assert _ingest(data, name, backend, embedder, chunking, corpus).summary()["removed"] == 1
    assert "filter" not in _titles(svc, name, "clean the air filter")

    pump = next(d for d in svc.documents(name) if d.title == "Drain pump")
    n = svc.delete_document(name, pump.doc_id)
    assert n > 0 and svc.info(name).documents == 2
    assert "Drain pump" not in _titles(svc, name, "drain pump replaced every 4 years")
    col = Collection(data, name, backend).open()  # a fresh opener sees the same state
    assert col.indexes is not None and {d.title for d in col.store.documents()} == {"Warranty", "遥控器"}
    for level in col.indexes.levels:
        assert len(col.store.chunk_ids_at_level(level)) == len(col.indexes.dense[level])
    col.close()


def test_filters_apply_before_top_k(backend: BackendConfig, name: str, tmp_path: Path, embedder, chunking) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    _write(tmp_path / "c" / "old", {"a.md": "# Old policy\n\nRefunds are paid within 30 days of the request."})
    _write(tmp_path / "c" / "new", {"b.md": "# New policy\n\nRefunds are paid within 14 days of the request.",
                                    "b.md.meta.json": '{"effective_date": "2024-06-01", "team": "billing"}'})
    (tmp_path / "c" / "old" / "a.md.meta.json").write_text('{"effective_date": "2021-01-01", "team": "legal"}')
    assert not _ingest(data, name, backend, embedder, chunking, tmp_path / "c").failed
    svc = SearchService(data, backend)
    assert set(_titles(svc, name, "when are refunds paid")) == {"Old policy", "New policy"}
    assert _titles(svc, name, "when are refunds paid", date_from="2023-01-01") == ["New policy"]
    assert _titles(svc, name, "when are refunds paid", date_to="2022-12-31") == ["Old policy"]
    assert _titles(svc, name, "when are refunds paid", metadata={"team": "legal"}) == ["Old policy"]
    prefix = os.path.abspath(tmp_path / "c" / "new")
    assert _titles(svc, name, "when are refunds paid", source_prefix=prefix) == ["New policy"]
    assert _titles(svc, name, "when are refunds paid", metadata={"team": "nobody"}) == []
    new = next(d for d in svc.documents(name) if d.title == "New policy")
    assert _titles(svc, name, "when are refunds paid", doc_ids=[new.doc_id]) == ["New policy"]
    store = svc.retriever(name).collection.store
    assert store.newest_date(make_filter()) == "2024-06-01"
    assert store.newest_date(make_filter(date_to="2023-01-01")) == "2021-01-01"


def test_another_process_ingest_is_seen_at_the_next_query(
    backend: BackendConfig, name: str, tmp_path: Path, embedder, chunking  # type: ignore[no-untyped-def]
) -> None:
    if backend.milvus_uri:
        pytest.skip("a Milvus Lite file belongs to one process: two processes need a Milvus server")
    data = tmp_path / "data"
    _write(tmp_path / "first", {"pump.md": DOCS["pump.md"]})
    _ingest(data, name, backend, embedder, chunking, tmp_path / "first")
    svc = SearchService(data, backend)  # this process: an API replica, already serving
    assert _titles(svc, name, "compressor warranty years") == ["Drain pump"]
    _write(tmp_path / "second", {"warranty.md": DOCS["warranty.md"]})
    env = dict(os.environ, RAGQA_DATA_DIR=str(data), PYTHONPATH=str(REPO), RAGQA_BACKEND=backend.kind,
               RAGQA_EMBEDDER="minilm-int8")
    if backend.postgres_url:
        env["RAGQA_POSTGRES_URL"] = backend.postgres_url
    proc = subprocess.run([sys.executable, "-m", "ragqa.cli", "ingest", str(tmp_path / "second"), "--collection",
                           name, "--workers", "0", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _titles(svc, name, "compressor warranty years")[0] == "Warranty"  # no restart, no reload


def test_a_missing_collection_is_not_found(backend: BackendConfig, name: str, tmp_path: Path) -> None:
    with pytest.raises(CollectionNotFound):
        Collection(tmp_path / "data", name, backend).open()
    assert name not in list_collections(tmp_path / "data", backend)


def test_distributed_needs_a_postgres_url() -> None:
    with pytest.raises(ValueError, match="RAGQA_POSTGRES_URL"):
        BackendConfig("distributed")


def test_settings_give_the_backend_and_hide_the_postgres_password() -> None:
    from app.components import backend_config
    from app.settings import Settings

    s = Settings(backend="distributed", postgres_url="postgresql://ragqa:pw-s3cret@db:5432/ragqa",
                 milvus_uri="http://milvus:19530")
    assert backend_config(s) == BackendConfig("distributed", "postgresql://ragqa:pw-s3cret@db:5432/ragqa",
                                              "http://milvus:19530")
    assert "pw-s3cret" not in str(s.masked())
    assert backend_config(Settings()) == LOCAL
    with pytest.raises(ValueError, match="RAGQA_POSTGRES_URL"):
        Settings(backend="distributed")

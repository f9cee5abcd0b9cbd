"""The HTTP API on a real uvicorn server over a real collection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ingest.pipeline import IngestOptions, Ingestor
from retrieval.collection import Collection
from tests.support import free_port, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, embedder, chunking) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("api")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "codes.md").write_text(
        "# Fault codes\n\n| Code | Meaning |\n|---|---|\n| E4 | Outdoor fan fault |\n| E5 | Low voltage |\n",
        encoding="utf-8",
    )
    (corpus / "care.md").write_text("# Care\n\nWipe the remote control with a dry cloth.\n", encoding="utf-8")
    col = Collection(root / "data", "kb").open(
        embedder=embedder.name, dim=embedder.dim, chunking=chunking.to_manifest(), create=True
    )
    Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([corpus])
    col.close()
    return root / "data"


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[str]:
    port = free_port()
    proc = start_server(data_dir, port, {})
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def test_search_finds_table_row(server: str) -> None:
    r = httpx.post(f"{server}/search", json={"query": "what does E4 mean", "top_k": 3}, timeout=30)
    assert r.status_code == 200, r.text
    top = r.json()["results"][0]
    assert "Outdoor fan fault" in top["text"] and top["kind"] == "table"


def test_bad_input_is_4xx_with_message(server: str) -> None:
    assert httpx.post(f"{server}/search", json={"query": ""}, timeout=10).status_code == 422
    assert httpx.post(f"{server}/search", json={"query": "x", "top_k": 10_000}, timeout=10).status_code == 422
    r = httpx.post(f"{server}/search", json={"query": "x", "collection": "nope"}, timeout=10)
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    r = httpx.post(f"{server}/search", json={"query": "x", "collection": "../etc"}, timeout=10)
    assert r.status_code == 400 and "invalid collection name" in r.json()["detail"]
    r = httpx.post(f"{server}/search", json={"query": "x", "filters": {"date_to": "2024-02-31"}}, timeout=10)
    assert r.status_code == 422
    r = httpx.post(f"{server}/search", content=b"{not json", headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code == 422


def test_filters_and_listing(server: str) -> None:
    docs = httpx.get(f"{server}/collections/kb/documents", timeout=10).json()
    assert len(docs) == 2
    care = next(d for d in docs if d["source_path"].endswith("care.md"))
    r = httpx.post(
        f"{server}/search", json={"query": "fault code", "top_k": 5, "filters": {"doc_ids": [care["doc_id"]]}},
        timeout=30,
    ).json()
    assert r["results"] and all(h["doc_id"] == care["doc_id"] for h in r["results"])


def test_api_keys_guard_every_endpoint(data_dir: Path) -> None:
    port = free_port()
    proc = start_server(data_dir, port, {"RAGQA_API_KEYS": '{"ops": "s3cret-key"}'})
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{base}/search", json={"query": "E4"}, timeout=30).status_code == 401
        bad = {"Authorization": "Bearer wrong"}
        assert httpx.post(f"{base}/search", json={"query": "E4"}, headers=bad, timeout=30).status_code == 401
        good = {"Authorization": "Bearer s3cret-key"}
        assert httpx.post(f"{base}/search", json={"query": "E4"}, headers=good, timeout=30).status_code == 200
        assert httpx.delete(f"{base}/collections/kb/documents/xyz", timeout=30).status_code == 401
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)

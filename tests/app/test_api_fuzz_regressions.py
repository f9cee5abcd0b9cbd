"""Inputs that once made the API answer 500, found by schemathesis (docs/api-fuzz.md), on a real uvicorn server.

Each must now be a 4xx with a JSON body that says what was wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ingest.chunking import ChunkingSettings
from ingest.pipeline import IngestOptions, Ingestor
from retrieval.collection import Collection
from retrieval.embedders import Embedder
from tests.support import free_port, start_server

pytestmark = pytest.mark.slow
# Nothing listens there: no request here needs an answer from the LLM.
FAKE_LLM_URL = "http://127.0.0.1:9/v1"
LONE = r"\ud800"  # a JSON escape for a lone UTF-16 surrogate: valid JSON, not valid Unicode


def _lone(body: dict[str, Any]) -> str:
    """`body` as JSON with each "@" spelled as a lone surrogate, which json.dumps itself cannot write."""
    return json.dumps(body).replace("@", LONE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, chunking: ChunkingSettings) -> Iterator[str]:
    root = tmp_path_factory.mktemp("fuzz")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "care.md").write_text("# Care\n\nWipe the remote control with a dry cloth.\n", encoding="utf-8")
    col = Collection(root / "data", "kb").open(
        embedder=embedder.name, dim=embedder.dim, chunking=chunking.to_manifest(), create=True
    )
    Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([corpus])
    col.close()
    port = free_port()
    proc = start_server(root / "data", port, {"RAGQA_LLM_BASE_URL": FAKE_LLM_URL, "RAGQA_EMBEDDED_WORKER": "false"})
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def _post(server: str, path: str, raw: str) -> httpx.Response:
    # Raw bytes: httpx's own JSON encoder would refuse a lone surrogate before it reached the server.
    return httpx.post(f"{server}{path}", content=raw.encode(), headers={"content-type": "application/json"}, timeout=30)


def test_search_level_the_collection_lacks_is_400(server: str, chunking: ChunkingSettings) -> None:
    missing = 128
    assert missing not in chunking.levels  # the collection is built at the test chunking's levels
    r = httpx.post(f"{server}/search", json={"query": "cloth", "level": missing}, timeout=30)
    assert r.status_code == 400, r.text
    assert f"level {missing} not in this collection's levels" in r.json()["detail"]
    r = httpx.post(f"{server}/search", json={"query": "cloth", "level": chunking.levels[0]}, timeout=30)
    assert r.status_code == 200 and r.json()["results"], r.text


def test_job_id_past_sqlite_integer_is_422(server: str) -> None:
    r = httpx.get(f"{server}/jobs/10185715079488239032309121024", timeout=10)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "job_id"], r.text
    r = httpx.get(f"{server}/jobs/{2**63 - 1}", timeout=10)  # the largest SQLite INTEGER: a lookup, not found
    assert r.status_code == 404, r.text


@pytest.mark.parametrize(("number", "echo"), [("1e400", "inf"), ("NaN", "nan"), ("-Infinity", "-inf")])
def test_non_finite_number_is_422_with_readable_body(server: str, number: str, echo: str) -> None:
    r = _post(server, "/search", '{"query": "x", "top_k": NUMBER}'.replace("NUMBER", number))
    assert r.status_code == 422, r.text
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", "top_k"] and err["type"] == "finite_number" and err["input"] == echo


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/search", {"query": "a@b"}, ["body", "query"]),
        ("/search", {"query": "x", "collection": "@"}, ["body", "collection"]),
        ("/search", {"query": "x", "filters": {"doc_ids": ["@"]}}, ["body", "filters", "doc_ids"]),
        ("/search", {"query": "x", "filters": {"source_prefix": "@"}}, ["body", "filters", "source_prefix"]),
        ("/search", {"query": "x", "filters": {"language": "@"}}, ["body", "filters", "language"]),
        ("/search", {"query": "x", "filters": {"metadata": {"@": "v"}}}, ["body", "filters", "metadata"]),
        ("/search", {"query": "x", "filters": {"metadata": {"k": "@"}}}, ["body", "filters", "metadata"]),
        ("/ask", {"question": "@", "degrade_to_retrieval": True}, ["body", "question"]),
        ("/ask", {"question": "x", "history": [{"role": "user", "content": "@"}]}, ["body", "history", 0, "content"]),
    ],
)
def test_lone_surrogate_is_422_never_500(server: str, path: str, body: dict[str, Any], loc: list[object]) -> None:
    r = _post(server, path, _lone(body))
    assert r.status_code == 422, r.text
    err = r.json()["detail"][0]
    assert err["loc"] == loc, err
    assert "\\ud800" in str(err["input"]) and "unicode" in err["msg"].lower()


def test_same_strings_without_the_surrogate_are_accepted(server: str) -> None:
    """The Unicode check refuses only invalid text: other non-ASCII text, NUL and quotes still get through."""
    r = _post(server, "/search", '{"query": "cloth \\u00e9\\u4e2d\\u0000", "filters": {"metadata": {"k\\"": "v"}}}')
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("authority", ["nan", "inf", "1e400"])
def test_upload_with_non_finite_authority_is_422_and_queues_nothing(server: str, authority: str) -> None:
    files = [("files", ("note.md", b"# Note\n\nHello.\n", "text/markdown"))]
    r = httpx.post(f"{server}/collections/kb/documents", files=files, data={"authority": authority}, timeout=30)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "authority"], r.text
    assert httpx.get(f"{server}/jobs", timeout=10).json() == []

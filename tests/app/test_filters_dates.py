"""Date filters: an empty range is refused, and the rule for documents dated by file time is visible (issue 11, 6).

A real uvicorn server over a collection with one document dated explicitly and one dated only by its file's mtime.
"""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, chunking: ChunkingSettings) -> Iterator[str]:
    root = tmp_path_factory.mktemp("dates")
    dated, undated = root / "dated", root / "undated"
    dated.mkdir()
    undated.mkdir()
    (dated / "pump.md").write_text("# Pump\n\nThe pump filter is cleaned every month.\n", encoding="utf-8")
    (undated / "fan.md").write_text("# Fan\n\nThe fan filter is cleaned every week.\n", encoding="utf-8")
    col = Collection(root / "data", "kb").open(
        embedder=embedder.name, dim=embedder.dim, chunking=chunking.to_manifest(), create=True
    )
    Ingestor(col, embedder, chunking, IngestOptions(workers=0, effective_date="2021-05-01")).ingest_paths([dated])
    Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([undated])
    col.close()
    port = free_port()
    proc = start_server(root / "data", port, {"RAGQA_LLM_BASE_URL": "http://127.0.0.1:9/v1",
                                              "RAGQA_EMBEDDED_WORKER": "false"})
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def _search(server: str, **filters: str) -> httpx.Response:
    return httpx.post(f"{server}/search", json={"query": "filter cleaned", "filters": filters}, timeout=60)


@pytest.mark.parametrize(("path", "body"), [
    ("/search", {"query": "filter cleaned"}),
    ("/ask", {"question": "How often is the filter cleaned?"}),
])
def test_date_from_after_date_to_is_422(server: str, path: str, body: dict[str, Any]) -> None:
    body = {**body, "filters": {"date_from": "2024-06-01", "date_to": "2024-01-01"}}
    r = httpx.post(f"{server}{path}", json=body, timeout=60)
    assert r.status_code == 422, r.text
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", "filters"] and "date_from (2024-06-01) is after date_to (2024-01-01)" in err["msg"]


def test_a_one_day_range_is_accepted(server: str) -> None:
    r = _search(server, date_from="2021-05-01", date_to="2021-05-01")
    assert r.status_code == 200, r.text
    assert {h["date_source"] for h in r.json()["results"]} >= {"explicit"}


def test_hits_say_where_their_date_came_from(server: str) -> None:
    # The range excludes both documents' dates; the mtime-dated one passes, and says why.
    hits = _search(server, date_from="1990-01-01", date_to="1999-12-31").json()["results"]
    assert hits and all(h["date_source"] == "mtime" for h in hits), hits
    assert all(h["source_path"].endswith("fan.md") for h in hits)
    docs = httpx.get(f"{server}/collections/kb/documents", timeout=10).json()
    assert sorted(d["date_source"] for d in docs) == ["explicit", "mtime"]


def test_the_date_rule_is_in_the_api_docs(server: str) -> None:
    spec = httpx.get(f"{server}/openapi.json", timeout=10).json()
    props = spec["components"]["schemas"]["FilterIn"]["properties"]
    for field in ("date_from", "date_to"):
        assert "mtime" in props[field]["description"] and "pass every date filter" in props[field]["description"]
    assert "date_source" in spec["components"]["schemas"]["ChunkOut"]["properties"]

"""Around an answer, on a real uvicorn server with API keys: a chunk with its neighbours, the original file,
server-side conversations and feedback (app/api/browse.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api.browse import locate
from ingest.pipeline import IngestOptions, Ingestor
from retrieval.collection import Collection
from tests.support import free_port, start_server

pytestmark = pytest.mark.slow
# A fake LLM server: nothing listens there. The /ask calls here ask for sources only (degrade_to_retrieval): what is
# tested is how conversations are kept, not an answer.
FAKE_LLM_URL = "http://127.0.0.1:9/v1"
KEYS = '{"admin": "admin-key", "kb-ro": {"key": "kb-read", "collections": ["kb"]}}'
ADMIN = {"Authorization": "Bearer admin-key"}
KB = {"Authorization": "Bearer kb-read"}
FILTERS = " ".join(
    f"Step {i}: take the {name} filter out, rinse it under lukewarm water and let it dry in the shade."
    for i, name in enumerate(["left", "right", "upper", "lower", "front", "rear", "inner", "outer"], 1))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("browse")
    files = {
        "kb/manual.md": f"# Care manual\n\n## Cleaning the filters\n\n{FILTERS}\n\n## Storage\n\nCover the unit.\n",
        "kb/page.html": "<html><head><title>Codes</title></head><body><h1>Codes</h1>"
                        "<p>The E9 code means the drain is blocked.</p><script>alert('x')</script></body></html>",
        "kb/gone.md": "# Gone\n\nThis file is deleted from disk after ingest.\n",
        "other/pumps.md": "# Pumps\n\nThe feed pump needs new seals every 18 months.\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return {rel: root / rel for rel in files}


@pytest.fixture(scope="module")
def base(corpus: dict[str, Path], embedder, chunking) -> Iterator[str]:
    data = corpus["kb/manual.md"].parents[1] / "data"
    for name in ("kb", "other"):
        col = Collection(data, name).open(embedder=embedder.name, dim=embedder.dim,
                                          chunking=chunking.to_manifest(), create=True)
        Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([corpus["kb/manual.md"].parents[1]
                                                                                  / name])
        col.close()
    corpus["kb/gone.md"].unlink()
    port = free_port()
    proc = start_server(data, port, {"RAGQA_API_KEYS": KEYS, "RAGQA_LLM_BASE_URL": FAKE_LLM_URL,
                                     "RAGQA_EMBEDDED_WORKER": "false", "RAGQA_CONVERSATION_MAX_TURNS": "4"})
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def _doc(base: str, collection: str, name: str) -> dict[str, Any]:
    docs = httpx.get(f"{base}/collections/{collection}/documents", headers=ADMIN, timeout=10).json()
    return next(d for d in docs if d["source_path"].endswith(name))


def test_chunk_has_section_document_and_neighbours(base: str) -> None:
    hits = httpx.post(f"{base}/search", json={"query": "rinse the rear filter", "top_k": 1, "level": 64},
                      headers=KB, timeout=30).json()["results"]
    hit = hits[0]
    r = httpx.get(f"{base}/collections/kb/chunks/{hit['chunk_id']}", headers=KB, timeout=10)
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["text"] == hit["text"] and c["doc_id"] == hit["doc_id"] and c["doc_title"] == "Care manual"
    assert c["section_path"] == ["Care manual", "Cleaning the filters"] and c["section_title"] == "Cleaning the filters"
    assert c["mime"] == "text/markdown" and c["date_source"] and c["level"] == 64
    assert c["previous_chunk_id"] or c["next_chunk_id"], "the section spans several 64-token chunks"
    for side, back in (("previous_chunk_id", "next_chunk_id"), ("next_chunk_id", "previous_chunk_id")):
        if c[side]:
            n = httpx.get(f"{base}/collections/kb/chunks/{c[side]}", headers=KB, timeout=10).json()
            assert n[back] == c["chunk_id"] and n["doc_id"] == c["doc_id"] and n["level"] == c["level"]
    quote = "rinse it under lukewarm water"
    h = httpx.get(f"{base}/collections/kb/chunks/{c['chunk_id']}", params={"quote": quote}, headers=KB,
                  timeout=10).json()["highlights"]
    assert h and all(c["text"][a:b] == quote for a, b in h)
    f = httpx.get(base + c["file_url"], headers=KB, timeout=10)
    assert f.status_code == 200 and FILTERS in f.text


def test_quote_is_located_in_the_chunk_text() -> None:
    text = "Intro line.\n\n| Code | Meaning |\n|---|---|\n| E4 | Fan fault |\n| E6 | Low  refrigerant |\nEnd."
    assert locate("Intro\nline.", text) == [(0, 11)]
    (span,) = locate("Code: E6; Meaning: Low refrigerant", text)  # a table row quoted as a record
    assert text[span[0]:span[1]] == "| E6 | Low  refrigerant |"
    assert len(locate("Code: E4; Meaning: Fan fault Code: E6; Meaning: Low refrigerant", text)) == 2
    assert locate("not there", text) == [] and locate("  ", text) == []


def test_chunk_errors_are_4xx_with_a_message(base: str) -> None:
    r = httpx.get(f"{base}/collections/kb/chunks/999999", headers=KB, timeout=10)
    assert r.status_code == 404 and "chunk 999999 not found" in r.json()["detail"]
    assert httpx.get(f"{base}/collections/kb/chunks/0", headers=KB, timeout=10).status_code == 422
    assert httpx.get(f"{base}/collections/kb/chunks/abc", headers=KB, timeout=10).status_code == 422
    assert httpx.get(f"{base}/collections/kb/chunks/{2**70}", headers=KB, timeout=10).status_code == 422
    r = httpx.get(f"{base}/collections/nope/chunks/1", headers=ADMIN, timeout=10)
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    # The same scopes as search: no key 401, another collection's key 403, whether or not the chunk exists.
    assert httpx.get(f"{base}/collections/kb/chunks/1", timeout=10).status_code == 401
    assert httpx.get(f"{base}/collections/other/chunks/1", headers=KB, timeout=10).status_code == 403


def test_original_file_with_its_content_type(base: str, corpus: dict[str, Path]) -> None:
    md = _doc(base, "kb", "manual.md")
    r = httpx.get(f"{base}/collections/kb/documents/{md['doc_id']}/file", headers=KB, timeout=10)
    assert r.status_code == 200 and r.content == corpus["kb/manual.md"].read_bytes()
    assert r.headers["content-type"].startswith("text/markdown") and r.headers["x-content-type-options"] == "nosniff"
    assert "manual.md" in r.headers["content-disposition"]
    # An ingested HTML page is data: served sandboxed, its script can neither run as this origin nor read the key.
    html = _doc(base, "kb", "page.html")
    r = httpx.get(f"{base}/collections/kb/documents/{html['doc_id']}/file", headers=KB, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == "sandbox" and b"alert" in r.content


def test_file_errors(base: str) -> None:
    gone = _doc(base, "kb", "gone.md")
    r = httpx.get(f"{base}/collections/kb/documents/{gone['doc_id']}/file", headers=KB, timeout=10)
    assert r.status_code == 404 and "no longer on disk" in r.json()["detail"]
    r = httpx.get(f"{base}/collections/kb/documents/no-such-doc/file", headers=KB, timeout=10)
    assert r.status_code == 404 and "no-such-doc" in r.json()["detail"]
    pumps = _doc(base, "other", "pumps.md")
    r = httpx.get(f"{base}/collections/other/documents/{pumps['doc_id']}/file", headers=KB, timeout=10)
    assert r.status_code == 403
    assert httpx.get(f"{base}/collections/other/documents/{pumps['doc_id']}/file", headers=ADMIN,
                     timeout=10).status_code == 200


def _ask(base: str, headers: dict[str, str], **body: Any) -> httpx.Response:
    return httpx.post(f"{base}/ask", json={"degrade_to_retrieval": True, "collection": "kb", **body},
                      headers=headers, timeout=120)


def test_conversation_keeps_turns_and_feeds_the_history(base: str) -> None:
    cid = str(uuid.uuid4())
    r = _ask(base, KB, question="How do I clean the filters?", conversation_id=cid)
    assert r.status_code == 200, r.text
    assert r.json()["conversation_id"] == cid and r.json()["status"] == "retrieval_only"
    r = _ask(base, KB, question="And how long do they dry?", conversation_id=cid)
    assert r.status_code == 200, r.text
    # The stored turns reached the pipeline as history: with the model down the standalone question is built in code.
    assert r.json()["trace"]["standalone_question"] == "How do I clean the filters? And how long do they dry?"
    conv = httpx.get(f"{base}/conversations/{cid}", headers=KB, timeout=10).json()
    assert [t["role"] for t in conv["turns"]] == ["user", "assistant"] * 2 and conv["collection"] == "kb"
    assert conv["turns"][2]["content"] == "And how long do they dry?"
    assert conv["turns"][3]["status"] == "retrieval_only"
    # Bounded: RAGQA_CONVERSATION_MAX_TURNS=4 keeps the newest four turns.
    _ask(base, KB, question="Where is the unit stored?", conversation_id=cid)
    turns = httpx.get(f"{base}/conversations/{cid}", headers=KB, timeout=10).json()["turns"]
    assert len(turns) == 4 and turns[0]["content"] == "And how long do they dry?"
    assert httpx.delete(f"{base}/conversations/{cid}", headers=KB, timeout=10).status_code == 200
    r = httpx.get(f"{base}/conversations/{cid}", headers=KB, timeout=10)
    assert r.status_code == 404 and cid in r.json()["detail"]


def test_conversation_errors(base: str) -> None:
    cid = str(uuid.uuid4())
    assert _ask(base, ADMIN, question="How often are pump seals replaced?", collection="other",
                conversation_id=cid).status_code == 200
    # Another collection's conversation: 404 to a key that may not see it (the id tells nothing), 409 to one that may.
    assert httpx.get(f"{base}/conversations/{cid}", headers=KB, timeout=10).status_code == 404
    assert httpx.delete(f"{base}/conversations/{cid}", headers=KB, timeout=10).status_code == 404
    r = _ask(base, KB, question="How do I clean the filters?", conversation_id=cid)
    assert r.status_code == 404
    r = _ask(base, ADMIN, question="How do I clean the filters?", conversation_id=cid)
    assert r.status_code == 409 and "other" in r.json()["detail"]
    r = _ask(base, KB, question="x?", conversation_id=str(uuid.uuid4()),
             history=[{"role": "user", "content": "hello"}])
    assert r.status_code == 400 and "not both" in r.json()["detail"]
    assert _ask(base, KB, question="x?", conversation_id="../../etc").status_code == 422
    assert httpx.get(f"{base}/conversations/bad%20id!", headers=KB, timeout=10).status_code == 400
    assert httpx.get(f"{base}/conversations/{uuid.uuid4()}", timeout=10).status_code == 401


def test_feedback_is_stored_and_listed_by_scope(base: str) -> None:
    body = {"collection": "kb", "question": "How do I clean the filters?", "answer": "Rinse them [1].",
            "rating": "up", "citations": [{"marker": 1, "chunk_id": 3, "quote": "rinse it under lukewarm water"}]}
    r = httpx.post(f"{base}/feedback", json=body, headers=KB, timeout=10)
    assert r.status_code == 201, r.text
    mine = r.json()
    assert mine["key_name"] == "kb-ro" and mine["citations"][0]["chunk_id"] == 3 and mine["feedback_id"] >= 1
    down = {"collection": "other", "question": "Seals?", "answer": "not in the knowledge base", "rating": "down",
            "comment": "it says 18 months"}
    assert httpx.post(f"{base}/feedback", json=down, headers=ADMIN, timeout=10).status_code == 201
    assert httpx.post(f"{base}/feedback", json=down, headers=KB, timeout=10).status_code == 403
    assert httpx.get(f"{base}/feedback", timeout=10).status_code == 401
    kb_view = httpx.get(f"{base}/feedback", headers=KB, timeout=10).json()
    assert {f["collection"] for f in kb_view} == {"kb"}
    every = httpx.get(f"{base}/feedback", headers=ADMIN, timeout=10).json()
    assert {f["collection"] for f in every} == {"kb", "other"}
    downs = httpx.get(f"{base}/feedback", params={"rating": "down"}, headers=ADMIN, timeout=10).json()
    assert [f["comment"] for f in downs] == ["it says 18 months"]
    after = httpx.get(f"{base}/feedback", params={"after_id": mine["feedback_id"]}, headers=ADMIN, timeout=10).json()
    assert all(f["feedback_id"] > mine["feedback_id"] for f in after) and after
    assert httpx.get(f"{base}/feedback", params={"collection": "other"}, headers=KB, timeout=10).status_code == 403
    for bad in ({**body, "rating": "meh"}, {**body, "question": ""}, {**body, "extra": 1},
                {**body, "conversation_id": "no"}):
        r = httpx.post(f"{base}/feedback", json=bad, headers=KB, timeout=10)
        assert r.status_code == 422, bad

"""API keys scoped to collections and to read or write, on a real uvicorn server over two real collections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.settings import Settings
from ingest.pipeline import IngestOptions, Ingestor
from retrieval.collection import Collection
from tests.support import REPO, free_port, start_server

# A fake LLM server: nothing listens there and the client connects lazily. Every /ask here is refused before any
# LLM work, or asks for sources only (degrade_to_retrieval), so no test needs a model.
FAKE_LLM_URL = "http://127.0.0.1:9/v1"
KEYS: dict[str, Any] = {
    "admin": "admin-key",  # the original plain form: read and write on every collection
    "all-ro": {"key": "all-read"},  # object form defaults: every collection, read only
    "kb-ro": {"key": "kb-read", "collections": ["kb"]},
    "other-ro": {"key": "other-read", "collections": ["other"], "write": False},
    "other-rw": {"key": "other-write", "collections": ["other"], "write": True},
}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, embedder, chunking) -> Path:
    root = tmp_path_factory.mktemp("keys")
    texts = {
        "kb": {"codes.md": "# Fault codes\n\n| Code | Meaning |\n|---|---|\n| E4 | Outdoor fan fault |\n",
               "care.md": "# Care\n\nWipe the remote control with a dry cloth.\n"},
        "other": {"pumps.md": "# Pumps\n\nThe feed pump needs new seals every 18 months.\n",
                  "filters.md": "# Filters\n\nClean the air filter every two weeks.\n"},
    }
    for name, files in texts.items():
        corpus = root / f"corpus-{name}"
        corpus.mkdir()
        for fname, text in files.items():
            (corpus / fname).write_text(text, encoding="utf-8")
        col = Collection(root / "data", name).open(
            embedder=embedder.name, dim=embedder.dim, chunking=chunking.to_manifest(), create=True
        )
        Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([corpus])
        col.close()
    return root / "data"


@pytest.fixture(scope="module")
def base(data_dir: Path) -> Iterator[str]:
    """The default collection is "kb"; no worker runs, so uploaded jobs stay queued for the job tests."""
    port = free_port()
    proc = start_server(data_dir, port, {
        "RAGQA_API_KEYS": json.dumps(KEYS), "RAGQA_LLM_BASE_URL": FAKE_LLM_URL, "RAGQA_EMBEDDED_WORKER": "false",
        "RAGQA_LOG_LEVEL": "WARNING",  # stderr is a pipe nobody reads: keep it from filling up
    })
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def _docs(base: str, collection: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{base}/collections/{collection}/documents", headers=_auth("admin-key"), timeout=10)
    assert r.status_code == 200, r.text
    docs: list[dict[str, Any]] = r.json()
    return docs


def _upload(base: str, collection: str, key: str) -> httpx.Response:
    files = [("files", ("valves.md", b"# Valves\n\nCheck the valves yearly.\n", "text/markdown"))]
    return httpx.post(f"{base}/collections/{collection}/documents", files=files, headers=_auth(key), timeout=30)


def _forbidden(r: httpx.Response, *words: str) -> None:
    assert r.status_code == 403, r.text
    detail = r.json()["detail"]
    assert all(w in detail for w in words), detail


@pytest.mark.slow
def test_missing_or_wrong_key_is_401_and_health_and_docs_stay_open(base: str) -> None:
    r = httpx.post(f"{base}/search", json={"query": "E4"}, timeout=10)
    assert r.status_code == 401 and "missing API key" in r.json()["detail"]
    r = httpx.post(f"{base}/search", json={"query": "E4"}, headers=_auth("not-a-key"), timeout=10)
    assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
    for method, path in [("GET", "/collections"), ("GET", "/collections/kb/documents"), ("GET", "/jobs"),
                         ("GET", "/jobs/1"), ("GET", "/metrics"), ("DELETE", "/collections/kb/documents/x")]:
        assert httpx.request(method, f"{base}{path}", timeout=10).status_code == 401, path
    assert httpx.post(f"{base}/ask", json={"question": "E4?"}, timeout=10).status_code == 401
    assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{base}/openapi.json", timeout=10).status_code == 200
    r = httpx.get(f"{base}/readyz", timeout=10)  # no key needed: it fails only because the fake LLM is not there
    assert r.status_code == 503 and "LLM server" in r.json()["detail"]


@pytest.mark.slow
def test_plain_string_key_keeps_full_access(base: str) -> None:
    for name in ("kb", "other"):
        r = httpx.post(f"{base}/search", json={"query": "code", "collection": name}, headers=_auth("admin-key"),
                       timeout=30)
        assert r.status_code == 200 and r.json()["results"], r.text
    r = _upload(base, "kb", "admin-key")
    assert r.status_code == 202, r.text
    assert httpx.get(f"{base}/metrics", headers=_auth("admin-key"), timeout=10).status_code == 200


@pytest.mark.slow
def test_key_for_one_collection_cannot_search_ask_or_list_another(base: str) -> None:
    key = _auth("other-read")
    r = httpx.post(f"{base}/search", json={"query": "pump seals", "collection": "other"}, headers=key, timeout=30)
    assert r.status_code == 200 and "seals" in r.json()["results"][0]["text"]
    _forbidden(httpx.post(f"{base}/search", json={"query": "E4", "collection": "kb"}, headers=key, timeout=10), "'kb'")
    # No collection named: the default one ("kb") is the one checked.
    _forbidden(httpx.post(f"{base}/search", json={"query": "E4"}, headers=key, timeout=10), "'kb'")
    _forbidden(httpx.post(f"{base}/ask", json={"question": "E4?", "collection": "kb"}, headers=key, timeout=10),
               "'kb'")
    _forbidden(httpx.post(f"{base}/ask", json={"question": "E4?", "stream": True}, headers=key, timeout=10), "'kb'")
    _forbidden(httpx.get(f"{base}/collections/kb/documents", headers=key, timeout=10), "'kb'")
    _forbidden(httpx.get(f"{base}/collections/kb", headers=key, timeout=10), "'kb'")
    # 403 whether or not the collection exists: a scoped key learns nothing about the others.
    _forbidden(httpx.get(f"{base}/collections/nope/documents", headers=key, timeout=10), "'nope'")
    assert len(httpx.get(f"{base}/collections/other/documents", headers=key, timeout=10).json()) >= 2


@pytest.mark.slow
def test_ask_with_a_scoped_key_gets_past_the_check_for_its_own_collection(base: str) -> None:
    body = {"question": "How often are pump seals replaced?", "collection": "other", "degrade_to_retrieval": True}
    r = httpx.post(f"{base}/ask", json=body, headers=_auth("other-read"), timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "retrieval_only" and r.json()["retrieved"]


@pytest.mark.slow
def test_collections_list_only_what_the_key_may_see(base: str) -> None:
    def names(key: str) -> list[str]:
        r = httpx.get(f"{base}/collections", headers=_auth(key), timeout=10)
        assert r.status_code == 200, r.text
        return sorted(c["name"] for c in r.json())

    assert names("other-read") == ["other"]
    assert names("kb-read") == ["kb"]
    assert names("all-read") == names("admin-key") == ["kb", "other"]


@pytest.mark.slow
def test_read_only_keys_cannot_change_anything(base: str) -> None:
    doc = _docs(base, "kb")[0]["doc_id"]
    for key in ("all-read", "kb-read"):
        r = httpx.delete(f"{base}/collections/kb/documents/{doc}", headers=_auth(key), timeout=10)
        _forbidden(r, "read-only", "write access")
        _forbidden(_upload(base, "kb", key), "read-only")
    assert doc in {d["doc_id"] for d in _docs(base, "kb")}


@pytest.mark.slow
def test_upload_key_is_checked_before_the_body_is_read(base: str) -> None:
    # Not multipart at all: a route that parsed the body first would answer 400/422 whatever the key.
    url, junk = f"{base}/collections/kb/documents", {"content-type": "multipart/form-data; boundary=x"}
    assert httpx.post(url, content=b"junk", headers=junk, timeout=10).status_code == 401
    _forbidden(httpx.post(url, content=b"junk", headers={**junk, **_auth("kb-read")}, timeout=10), "read-only")
    _forbidden(httpx.post(url, content=b"junk", headers={**junk, **_auth("other-write")}, timeout=10), "'kb'")
    r = httpx.post(url, content=b"junk", headers={**junk, **_auth("admin-key")}, timeout=10)
    assert r.status_code in (400, 422), r.text


@pytest.mark.slow
def test_write_key_writes_its_own_collection_only(base: str) -> None:
    key = _auth("other-write")
    kb_doc = _docs(base, "kb")[0]["doc_id"]
    _forbidden(httpx.delete(f"{base}/collections/kb/documents/{kb_doc}", headers=key, timeout=10), "'kb'")
    _forbidden(_upload(base, "kb", "other-write"), "'kb'")
    assert kb_doc in {d["doc_id"] for d in _docs(base, "kb")}

    filters = next(d for d in _docs(base, "other") if d["source_path"].endswith("filters.md"))["doc_id"]
    r = httpx.delete(f"{base}/collections/other/documents/{filters}", headers=key, timeout=30)
    assert r.status_code == 200 and r.json()["deleted"] == filters, r.text
    assert filters not in {d["doc_id"] for d in _docs(base, "other")}
    r = _upload(base, "other", "other-write")
    assert r.status_code == 202 and r.json()["collection"] == "other", r.text


@pytest.mark.slow
def test_jobs_are_seen_only_by_keys_for_their_collection(base: str) -> None:
    other_job = _upload(base, "other", "other-write").json()["job_id"]
    kb_job = _upload(base, "kb", "admin-key").json()["job_id"]

    def job_ids(key: str) -> set[int]:
        r = httpx.get(f"{base}/jobs", headers=_auth(key), timeout=10)
        assert r.status_code == 200, r.text
        return {j["job_id"] for j in r.json()}

    assert kb_job in job_ids("kb-read") and other_job not in job_ids("kb-read")
    assert other_job in job_ids("other-read") and kb_job not in job_ids("other-read")
    assert {kb_job, other_job} <= job_ids("all-read")
    # Another collection's job reads as missing (tests/app/test_jobs_cancel.py): ids tell a scoped key nothing.
    r = httpx.get(f"{base}/jobs/{other_job}", headers=_auth("kb-read"), timeout=10)
    assert r.status_code == 404 and "'other'" not in r.text, r.text
    assert httpx.get(f"{base}/jobs/{other_job}", headers=_auth("other-read"), timeout=10).status_code == 200


@pytest.mark.slow
def test_metrics_need_a_key_for_every_collection(base: str) -> None:
    _forbidden(httpx.get(f"{base}/metrics", headers=_auth("other-read"), timeout=10), "/metrics", '"*"')
    r = httpx.get(f"{base}/metrics", headers=_auth("all-read"), timeout=10)
    assert r.status_code == 200 and "ragqa_http_requests_total" in r.text


# ---- settings: the two forms, validation, `ragqa config show` ------------------------------------------------------


def test_plain_and_object_forms_and_their_defaults() -> None:
    s = Settings(_env_file=None, api_keys=KEYS)  # type: ignore[call-arg]
    assert s.api_keys["admin"].collections == ("*",) and s.api_keys["admin"].write is True
    assert s.api_keys["all-ro"].collections == ("*",) and s.api_keys["all-ro"].write is False
    assert s.api_keys["other-rw"].collections == ("other",) and s.api_keys["other-rw"].write is True


@pytest.mark.parametrize("keys, message", [
    ({"a": {"key": "k1", "collections": []}}, "at least one collection"),
    ({"a": {"key": "k1", "collections": ["kb", "*"]}}, '"*" already means every collection'),
    ({"a": {"key": "k1", "collections": ["../etc"]}}, "invalid collection name"),
    ({"a": {"key": "k1", "colections": ["kb"]}}, "Extra inputs are not permitted"),
    ({"a": {"key": ""}}, "must not be empty"),
    ({"a": "k1", "b": {"key": "k1"}}, "'a' and 'b' are the same key"),
])
def test_invalid_keys_are_refused_with_a_message_that_hides_the_key(keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as e:
        Settings(_env_file=None, api_keys=keys)  # type: ignore[call-arg]
    assert message in str(e.value) and "k1" not in str(e.value)


def _config_show(keys: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RAGQA_API_KEYS=json.dumps(keys), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "ragqa.cli", "config", "show"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_config_show_masks_keys_and_shows_scopes(tmp_path: Path) -> None:
    proc = _config_show(KEYS, tmp_path)
    assert proc.returncode == 0, proc.stderr
    for secret in ("admin-key", "all-read", "kb-read", "other-read", "other-write"):
        assert secret not in proc.stdout
    shown = json.loads(proc.stdout)["api_keys"]
    assert shown["admin"] == {"key": "****", "collections": ["*"], "write": True}
    assert shown["other-ro"] == {"key": "****", "collections": ["other"], "write": False}

    bad = _config_show({"ops": {"key": "hush-hush", "collections": ["kb"], "write": "sometimes"}}, tmp_path)
    assert bad.returncode == 2 and "api_keys.ops.write" in bad.stderr and "hush-hush" not in bad.stderr

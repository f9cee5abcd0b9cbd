"""Uploads, jobs, metrics, request ids, JSON logs and backups on a real `ragqa serve` with its embedded worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import REPO, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("jobs-api")
    data, log_path, port = root / "data", root / "serve.log", free_port()
    env = dict(
        os.environ, RAGQA_DATA_DIR=str(data), RAGQA_COLLECTION="kb", RAGQA_EMBEDDER="minilm-int8",
        RAGQA_CHUNK_LEVELS="[64, 256]", RAGQA_MAX_FILE_MB="1", RAGQA_JOB_POLL_S="0.2", PYTHONPATH=str(REPO),
        # Nothing listens there: these tests never reach the LLM, and the client connects lazily.
        RAGQA_LLM_BASE_URL="http://127.0.0.1:9/v1",
    )
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "ragqa.cli", "serve", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.time() < deadline, "server did not start"
        time.sleep(0.2)
    yield {"base": base, "data": data, "log": log_path, "env": env, "root": root}
    proc.terminate()
    proc.wait(timeout=60)
    log.close()


def _wait_job(base: str, job_id: int, timeout: float = 120) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = httpx.get(f"{base}/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not finished in {timeout}s")


def _upload(base: str, files: list[tuple[str, bytes]], collection: str = "kb", **data: str) -> httpx.Response:
    return httpx.post(f"{base}/collections/{collection}/documents",
                      files=[("files", (n, b, "application/octet-stream")) for n, b in files], data=data, timeout=60)


def test_upload_creates_a_job_and_the_api_sees_the_chunks(server: dict[str, Any]) -> None:
    base = server["base"]
    r = _upload(base, [("pumps.md", b"# Pumps\n\nThe feed pump needs new seals every 18 months.\n")])
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/jobs/{r.json()['job_id']}"
    job = _wait_job(base, r.json()["job_id"])
    assert job["status"] == "done" and job["report"]["summary"]["added"] == 1
    assert job["attempt_log"][0]["outcome"] == "done" and job["progress"]["files_done"] == 1
    assert httpx.post(f"{base}/search", json={"query": "feed pump seals"}, timeout=60).status_code == 200

    # Freshness: from the 202 until /search in this API process returns the new text.
    secret = "The zircon valve is torqued to 47 newton metres."
    t = time.perf_counter()
    r = _upload(base, [("valves.md", f"# Valves\n\n{secret}\n".encode())], date="2024-03-01")
    assert r.status_code == 202
    while True:
        hits = httpx.post(f"{base}/search", json={"query": "zircon valve torque", "top_k": 3}, timeout=60).json()
        if any("zircon" in h["text"] for h in hits["results"]):
            break
        assert time.perf_counter() - t < 60, "new chunks not visible within 60 s"
        time.sleep(0.05)
    seconds = time.perf_counter() - t
    print(f"\nupload -> searchable in this API process: {seconds:.2f} s")
    job = _wait_job(base, r.json()["job_id"])
    assert job["options"] == {"date": "2024-03-01"}
    docs = httpx.get(f"{base}/collections/kb/documents", timeout=10).json()
    assert any(d["effective_date"] == "2024-03-01" and d["source_path"].endswith("valves.md") for d in docs)


def test_upload_refusals(server: dict[str, Any]) -> None:
    base = server["base"]
    r = _upload(base, [("ok.md", b"# fine\n\ntext\n"), ("tool.exe", b"MZ\x90\x00")])
    assert r.status_code == 415
    assert "'.exe'" in r.json()["detail"] and ".pdf" in r.json()["detail"] and ".md" in r.json()["detail"]
    big = b"# big\n\n" + b"x" * (1_100_000)
    r = _upload(base, [("big.md", big)])
    assert r.status_code == 413 and "1 MiB" in r.json()["detail"]
    assert _upload(base, [("a.md", b"x")], collection="..").status_code in (400, 404)
    assert _upload(base, [("a.md", b"x")], collection="bad name!").status_code == 400
    uploads = server["data"] / "uploads" / "kb"
    assert not (uploads / "ok.md").exists() and not list(uploads.glob(".upload-*"))  # nothing stored or left over


def test_uploaded_names_cannot_escape_the_upload_folder(server: dict[str, Any]) -> None:
    base, data = server["base"], server["data"]
    r = _upload(base, [("../../../escape.md", b"# Escape\n\nnot outside\n"), ("..\\..\\win.txt", b"windows path\n"),
                       (".hidden.md", b"# Hidden\n\nhidden\n")])
    assert r.status_code == 202, r.text
    # Names that had to change are tagged with a hash of the client's name (tests/app/test_uploads_atomic.py).
    assert [f.split("~")[0] for f in sorted(r.json()["files"])] == ["escape", "hidden", "win"]
    assert not (data.parent / "escape.md").exists() and not (data / "escape.md").exists()
    for name in r.json()["files"]:
        assert (data / "uploads" / "kb" / name).is_file()
    assert _wait_job(base, r.json()["job_id"])["status"] == "done"


def test_request_ids_and_json_logs(server: dict[str, Any]) -> None:
    base = server["base"]
    r = httpx.get(f"{base}/collections", headers={"X-Request-ID": "trace-abc.123"}, timeout=10)
    assert r.headers["x-request-id"] == "trace-abc.123"
    r2 = httpx.get(f"{base}/collections", headers={"X-Request-ID": "bad id with spaces"}, timeout=10)
    new_id = r2.headers["x-request-id"]
    assert new_id != "bad id with spaces" and len(new_id) == 32
    time.sleep(0.3)
    lines = [ln for ln in server["log"].read_text().splitlines() if ln.startswith("{")]
    records = [json.loads(ln) for ln in lines]
    mine = [x for x in records if x.get("request_id") == "trace-abc.123"]
    assert mine and mine[0]["path"] == "/collections" and mine[0]["status"] == 200
    assert any(x.get("request_id") == new_id for x in records)
    assert any(x.get("logger") == "ragqa.worker" and "job_id" in x for x in records)  # the worker logs JSON too


def test_metrics(server: dict[str, Any]) -> None:
    base = server["base"]
    httpx.post(f"{base}/search", json={"query": ""}, timeout=10)  # a 422, counted as an error
    body = httpx.get(f"{base}/metrics", timeout=10).text
    assert 'ragqa_http_requests_total{method="POST",route="/search",status="200"}' in body
    assert 'ragqa_errors_total{kind="validation"}' in body
    chunks = [ln for ln in body.splitlines() if ln.startswith('ragqa_index_chunks{collection="kb"}')]
    assert chunks and float(chunks[0].split()[-1]) > 0
    assert 'ragqa_jobs{status="queued"}' in body and 'ragqa_jobs{status="done"}' in body
    assert "ragqa_http_request_seconds_bucket" in body


def test_backup_while_serving(server: dict[str, Any]) -> None:
    from retrieval.collection import Collection

    dest = server["root"] / "backup"
    r = subprocess.run([sys.executable, "-m", "ragqa.cli", "backup", str(dest)], env=server["env"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    live = Collection(server["data"], "kb").open()
    copy = Collection(dest, "kb").open()
    assert live.indexes is not None and copy.indexes is not None
    assert copy.store.counts() == live.store.counts()
    assert (dest / "collections" / "kb" / "indexes.json").exists() and (dest / "jobs.sqlite").exists()
    for lv in copy.indexes.levels:
        assert len(copy.indexes.dense[lv]) == len(copy.store.chunk_ids_at_level(lv)) > 0
    live.close()
    copy.close()
    again = subprocess.run([sys.executable, "-m", "ragqa.cli", "backup", str(dest)], env=server["env"],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "not empty" in again.stderr

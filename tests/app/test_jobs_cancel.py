"""Jobs over HTTP with scoped keys on a real `ragqa serve`: cancelling, ids that leak nothing, a /readyz that names
what is down but not where it is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.eval.fake_llm import FakeLLMServer
from tests.support import REPO, free_port, start_server

pytestmark = pytest.mark.slow
KEYS = {
    "admin": "admin-key",
    "kb-ro": {"key": "kb-read", "collections": ["kb"]},
    "kb-rw": {"key": "kb-write", "collections": ["kb"], "write": True},
}
ENV = {"RAGQA_EMBEDDER": "minilm-int8", "RAGQA_CHUNK_LEVELS": "[64, 256]", "RAGQA_JOB_POLL_S": "0.2"}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """No embedded worker: jobs stay queued until a test starts a `ragqa worker` of its own."""
    root = tmp_path_factory.mktemp("cancel")
    fake = FakeLLMServer().start()  # a stand-in LLM for /readyz; nothing here asks it anything
    port = free_port()
    proc = start_server(root / "data", port, {
        "RAGQA_API_KEYS": json.dumps(KEYS), "RAGQA_LLM_BASE_URL": fake.base_url, "RAGQA_LLM_MODEL": "fake",
        "RAGQA_EMBEDDED_WORKER": "false", **ENV,
    })
    yield {"base": f"http://127.0.0.1:{port}", "data": root / "data", "fake": fake}
    proc.terminate()
    proc.wait(timeout=60)
    fake.stop()


def _upload(base: str, collection: str, files: list[tuple[str, bytes]], key: str = "admin-key") -> int:
    r = httpx.post(f"{base}/collections/{collection}/documents", headers=_auth(key), timeout=60,
                   files=[("files", (n, b, "text/markdown")) for n, b in files])
    assert r.status_code == 202, r.text
    return int(r.json()["job_id"])


def _wait(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if got := pred():
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_a_job_of_another_collection_reads_exactly_like_a_missing_one(server: dict[str, Any]) -> None:
    base = server["base"]
    theirs = _upload(base, "secret", [("vault.md", b"# Vault\n\nThe code is in the safe.\n")])
    missing = theirs + 1000
    for method, key in [("GET", "kb-read"), ("DELETE", "kb-write")]:
        seen = httpx.request(method, f"{base}/jobs/{theirs}", headers=_auth(key), timeout=10)
        absent = httpx.request(method, f"{base}/jobs/{missing}", headers=_auth(key), timeout=10)
        assert (seen.status_code, absent.status_code) == (404, 404), (seen.text, absent.text)
        assert seen.json() == {"detail": f"job {theirs} not found"}, seen.text
        assert absent.json() == {"detail": f"job {missing} not found"}
        assert "secret" not in seen.text
    assert httpx.get(f"{base}/jobs/{theirs}", headers=_auth("admin-key"), timeout=10).status_code == 200


def test_cancel_a_queued_job(server: dict[str, Any]) -> None:
    base = server["base"]
    job_id = _upload(base, "kb", [("a.md", b"# A\n\nalpha\n")], key="kb-write")
    r = httpx.delete(f"{base}/jobs/{job_id}", headers=_auth("kb-read"), timeout=10)
    assert r.status_code == 403 and "read-only" in r.json()["detail"], r.text
    assert httpx.delete(f"{base}/jobs/{job_id}", timeout=10).status_code == 401
    r = httpx.delete(f"{base}/jobs/{job_id}", headers=_auth("kb-write"), timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"], r.text
    again = httpx.delete(f"{base}/jobs/{job_id}", headers=_auth("kb-write"), timeout=10)
    assert again.status_code == 409, again.text
    assert again.json()["detail"] == f"job {job_id} is already cancelled: nothing to cancel"
    listed = httpx.get(f"{base}/jobs", params={"status": "cancelled"}, headers=_auth("kb-read"), timeout=10).json()
    assert [j["job_id"] for j in listed] == [job_id]
    assert httpx.delete(f"{base}/jobs/0", headers=_auth("kb-write"), timeout=10).status_code == 422


def test_cancel_a_running_job_over_http(server: dict[str, Any]) -> None:
    base = server["base"]
    manuals = [(f"m{i:02}.md", "\n\n".join(f"Unit {i} part {j}: check valve {i}-{j} every {j} days."
                                            for j in range(12)).encode()) for i in range(40)]
    job_id = _upload(base, "kb", manuals)
    env = dict(os.environ, RAGQA_DATA_DIR=str(server["data"]), PYTHONPATH=str(REPO), **ENV)
    worker = subprocess.Popen([sys.executable, "-m", "ragqa.cli", "worker"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        def job() -> dict[str, Any]:
            out: dict[str, Any] = httpx.get(f"{base}/jobs/{job_id}", headers=_auth("kb-read"), timeout=10).json()
            return out

        _wait(lambda: job()["progress"]["files_done"] >= 2, 180, "the worker to be mid-job")
        r = httpx.delete(f"{base}/jobs/{job_id}", headers=_auth("kb-write"), timeout=10)
        assert r.status_code in (200, 202), r.text
        if r.status_code == 202:  # the usual case: the worker stops after the file in progress
            assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True
        done = _wait(lambda: (j := job())["status"] != "running" and j, 60, "the cancel to land")
        assert done["status"] == "cancelled" and done["attempt_log"][-1]["outcome"] == "cancelled", done
        added = done["report"]["summary"]["added"]
        docs = httpx.get(f"{base}/collections/kb/documents", headers=_auth("kb-read"), timeout=10).json()
        assert 2 <= added < 40 and len(docs) == added
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)


def test_readyz_names_what_is_down_and_not_where_it_is(server: dict[str, Any]) -> None:
    base, fake = server["base"], server["fake"]
    port = fake.base_url.split(":")[-1].split("/")[0]
    r = httpx.get(f"{base}/readyz", timeout=30)
    assert r.status_code == 200 and r.json()["llm"] == {"model": "fake"}, r.text
    assert port not in r.text and "127.0.0.1" not in r.text
    assert r.json()["worker"] == {"state": "not embedded"}
    admin = httpx.get(f"{base}/readyz", headers=_auth("admin-key"), timeout=30)
    assert admin.json()["llm"]["base_url"] == fake.base_url  # an operator's key still sees it
    scoped = httpx.get(f"{base}/readyz", headers=_auth("kb-read"), timeout=30)
    assert "base_url" not in scoped.json()["llm"]
    fake.stop()
    r = httpx.get(f"{base}/readyz", timeout=60)
    assert r.status_code == 503 and "LLM server is not reachable" in r.json()["detail"], r.text
    assert port not in r.text and "127.0.0.1" not in r.text

"""The embedded ingest worker of a real `ragqa serve`, killed with SIGKILL: restarted, logged, reported, jobs finish."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.eval.fake_llm import FakeLLMServer
from tests.support import free_port, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("supervision")
    fake = FakeLLMServer().start()  # a stand-in LLM so that /readyz can say "ready"; no test here asks anything
    port = free_port()
    proc = start_server(root / "data", port, {
        "RAGQA_LLM_BASE_URL": fake.base_url, "RAGQA_LLM_MODEL": "fake", "RAGQA_EMBEDDER": "minilm-int8",
        "RAGQA_CHUNK_LEVELS": "[64, 256]", "RAGQA_JOB_POLL_S": "0.2", "RAGQA_LOG_FORMAT": "json",
        "RAGQA_WORKER_MAX_RESTARTS_PER_MINUTE": "2",
    })
    yield {"base": f"http://127.0.0.1:{port}", "log": root / f"server-{port}.log", "proc": proc}
    proc.terminate()
    proc.wait(timeout=60)
    fake.stop()


def _records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in log.read_text(errors="replace").splitlines() if ln.startswith("{")]


def _wait(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _worker_pids(log: Path) -> list[int]:
    """Pids of the embedded workers started so far, in order (the supervisor logs each start)."""
    found = (re.match(r"embedded ingest worker started \(pid (\d+)\)", r.get("msg", "")) for r in _records(log))
    return [int(m.group(1)) for m in found if m]


def _upload(base: str, files: list[tuple[str, bytes]]) -> int:
    r = httpx.post(f"{base}/collections/kb/documents", timeout=60,
                   files=[("files", (n, b, "application/octet-stream")) for n, b in files])
    assert r.status_code == 202, r.text
    return int(r.json()["job_id"])


def _job(base: str, job_id: int) -> dict[str, Any]:
    job: dict[str, Any] = httpx.get(f"{base}/jobs/{job_id}", timeout=10).json()
    return job


def _finished(base: str, job_id: int, timeout: float = 180) -> dict[str, Any]:
    job: dict[str, Any] = _wait(lambda: (j := _job(base, job_id))["status"] not in ("queued", "running") and j,
                                timeout, f"job {job_id}")
    return job


def _metric(base: str, name: str) -> float:
    body = httpx.get(f"{base}/metrics", timeout=10).text
    return float(next(ln.split()[-1] for ln in body.splitlines() if ln.startswith(f"{name} ")))


def _manuals(n: int) -> list[tuple[str, bytes]]:
    return [(f"manual{i:02}.md", "\n\n".join([f"# Manual {i}"] + [
        f"Unit {i} part {j}: check valve {i}-{j} every {i + j} days." for j in range(12)]).encode()) for i in range(n)]


def test_a_killed_worker_is_restarted_and_its_job_and_new_uploads_finish(server: dict[str, Any]) -> None:
    base, log = server["base"], server["log"]
    first = _wait(lambda: _worker_pids(log), 60, "the worker to start")[0]
    ready = httpx.get(f"{base}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    assert ready.json()["worker"] == {"state": "running", "restarts": 0, "deaths": 0, "last_death": None}
    assert _metric(base, "ragqa_worker_up") == 1.0

    old = _upload(base, _manuals(30))
    _wait(lambda: _job(base, old)["progress"]["files_done"] >= 2, 180, "the worker to be mid-job")
    os.kill(first, signal.SIGKILL)

    second = _wait(lambda: len(p := _worker_pids(log)) > 1 and p[1], 60, "a new worker")
    deaths = [r for r in _records(log) if "killed by signal SIGKILL" in r.get("msg", "")]
    assert deaths and f"pid {first}" in deaths[0]["msg"] and deaths[0]["level"] == "ERROR", deaths
    assert f"[{old}]" in deaths[0]["msg"]  # its job was handed back at once, not after the lease
    assert any(f"restarted (pid {second}, restart #1)" in r.get("msg", "") for r in _records(log))
    assert not Path(f"/proc/{first}").exists()  # reaped, not left a zombie

    ready = httpx.get(f"{base}/readyz", timeout=30)
    assert ready.status_code == 200 and ready.json()["worker"]["restarts"] == 1, ready.text
    assert ready.json()["worker"]["last_death"] == f"pid {first} killed by signal SIGKILL (killed)"
    assert _metric(base, "ragqa_worker_restarts_total") == 1.0 and _metric(base, "ragqa_worker_deaths_total") == 1.0
    assert _metric(base, "ragqa_worker_up") == 1.0

    new = _upload(base, [("valves.md", b"# Valves\n\nThe zircon valve is torqued to 47 newton metres.\n")])
    assert _finished(base, new)["status"] == "done"
    hits = httpx.post(f"{base}/search", json={"query": "zircon valve torque", "top_k": 3}, timeout=60).json()
    assert any("zircon" in h["text"] for h in hits["results"])
    job = _finished(base, old)
    summary = job["report"]["summary"]
    # A file the killed worker committed after its last progress report reads "unchanged" to the next attempt.
    assert job["status"] == "done" and summary["added"] + summary["unchanged"] == 30 and not summary["failed"], summary
    assert len(httpx.get(f"{base}/collections/kb/documents", timeout=10).json()) == 31
    assert [a["outcome"] for a in job["attempt_log"]] == ["worker died", "done"]
    assert job["attempt_log"][0]["ended_at"] is not None


def test_a_job_whose_only_file_failed_is_failed_with_the_reason(server: dict[str, Any]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", b" " * 8 * 2**20)  # inflates some 1000x
    job = _finished(server["base"], _upload(server["base"], [("bomb.docx", buf.getvalue())]))
    assert job["status"] == "failed" and job["files_failed"] == 1, job
    assert "every file failed" in job["error"] and "RAGQA_ARCHIVE_MAX_RATIO" in job["error"]


def test_a_worker_that_keeps_dying_is_given_up_and_readyz_says_why(server: dict[str, Any]) -> None:
    base, log = server["base"], server["log"]

    def given_up() -> bool:
        return any(r.get("level") == "ERROR" and "not restarting it" in r.get("msg", "") for r in _records(log))

    for _ in range(4):  # at most 2 restarts a minute here: the third death within a minute is the last
        pids = _worker_pids(log)
        os.kill(pids[-1], signal.SIGKILL)
        _wait(lambda: len(_worker_pids(log)) > len(pids) or given_up(), 60, "a restart or the give-up")  # noqa: B023
        if given_up():
            break
    r = httpx.get(f"{base}/readyz", timeout=30)
    assert r.status_code == 503, r.text
    assert "ingest worker died 3 times within a minute" in r.json()["detail"], r.text
    assert _metric(base, "ragqa_worker_up") == 0.0

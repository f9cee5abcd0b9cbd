"""`ragqa worker` as real processes: two workers share a queue without doubling work; kill -9 and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.jobs import JobQueue
from retrieval.collection import Collection
from tests.support import committed_sources

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _env(data: Path, **extra: str) -> dict[str, str]:
    return dict(
        os.environ, RAGQA_DATA_DIR=str(data), RAGQA_EMBEDDER="minilm-int8", RAGQA_CHUNK_LEVELS="[64, 256]",
        RAGQA_JOB_POLL_S="0.1", RAGQA_LOG_FORMAT="json", PYTHONPATH=str(REPO), **extra,
    )


def _corpus(folder: Path, n: int, tag: str) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        body = "\n\n".join(f"{tag} unit {i} part {j}: check valve {i}-{j} every {i + j} days." for j in range(10))
        (folder / f"{tag}{i:03}.md").write_text(f"# {tag} manual {i}\n\n{body}\n", encoding="utf-8")
    return folder


def _worker(data: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ragqa.cli", "worker", *args], env=_env(data, **env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not pred():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def _sources(data: Path, name: str) -> int:
    return committed_sources(data / "collections" / name / "store.sqlite")


def _state(data: Path, name: str) -> tuple[list[str], dict[int, tuple[int, int, int]]]:
    col = Collection(data, name).open()
    assert col.indexes is not None
    docs = sorted(Path(d.source_path).name for d in col.store.documents())
    sizes = {lv: (len(col.store.chunk_ids_at_level(lv)), len(col.indexes.dense[lv]), len(col.indexes.sparse[lv]))
             for lv in col.indexes.levels}
    col.close()
    return docs, sizes


def test_two_workers_run_every_job_exactly_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    q = JobQueue.for_data_dir(data).open()
    jobs = {}
    for k in range(6):  # three collections, so both workers really work at the same time
        folder = _corpus(tmp_path / f"c{k}", 4, f"j{k}x")
        jobs[q.enqueue(f"col{k % 3}", [str(folder)])] = f"col{k % 3}"
    workers = [_worker(data, "--exit-when-idle") for _ in range(2)]
    for w in workers:
        assert w.wait(timeout=300) == 0, w.stderr.read().decode()[-3000:] if w.stderr else ""
    names = set()
    for job_id in jobs:
        job = q.get(job_id)
        assert job is not None and job.status == "done", job
        log = q.attempts(job_id)
        assert [a.outcome for a in log] == ["done"], log  # one attempt, by one worker, finished
        assert job.report is not None and job.report["summary"]["added"] == 4
        names.add(log[0].worker)
    assert len(names) == 2, f"one worker did everything: {names}"
    for k in range(3):
        docs, sizes = _state(data, f"col{k}")
        assert len(docs) == 8
        assert all(n_db == n_dense == n_sparse > 0 for n_db, n_dense, n_sparse in sizes.values())


def test_kill_9_mid_job_is_retried_after_the_lease_and_equals_one_run(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus", 30, "k")
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    subprocess.run([sys.executable, "-m", "ragqa.cli", "ingest", str(corpus), "--collection", "kb", "--workers", "0"],
                   env=_env(clean), check=True, capture_output=True, timeout=300)
    q = JobQueue.for_data_dir(crashed).open()
    job_id = q.enqueue("kb", [str(corpus)])
    first = _worker(crashed, RAGQA_JOB_LEASE_S="2")
    _wait(lambda: _sources(crashed, "kb") >= 3 or first.poll() is not None, 120, "the first commits")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    job = q.get(job_id)
    assert job is not None and job.status == "running" and 3 <= _sources(crashed, "kb") < 30
    t = time.time()
    second = _worker(crashed, "--exit-when-idle", RAGQA_JOB_LEASE_S="2")
    assert second.wait(timeout=300) == 0, second.stderr.read().decode()[-3000:] if second.stderr else ""
    job = q.get(job_id)
    assert job is not None and job.status == "done" and job.attempts == 2
    log = q.attempts(job_id)
    assert [a.outcome for a in log] == ["lease expired", "done"]  # the first worker died holding it
    assert log[1].started_at >= log[0].started_at + 2.0  # not before the lease ran out
    assert _state(crashed, "kb") == _state(clean, "kb")
    assert time.time() - t < 120


def test_sigterm_finishes_the_current_file_and_gives_the_job_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    corpus = _corpus(tmp_path / "corpus", 30, "t")
    q = JobQueue.for_data_dir(data).open()
    job_id = q.enqueue("kb", [str(corpus)])
    w = _worker(data)
    _wait(lambda: _sources(data, "kb") >= 2 or w.poll() is not None, 120, "the first commits")
    w.send_signal(signal.SIGTERM)
    assert w.wait(timeout=60) == 0
    committed = _sources(data, "kb")
    assert 2 <= committed < 30
    job = q.get(job_id)
    assert job is not None and job.status == "queued" and job.attempts == 0
    assert [a.outcome for a in q.attempts(job_id)] == ["released"]
    # The store is consistent as left: every committed document is whole and indexed.
    docs, sizes = _state(data, "kb")
    assert len(docs) == committed and all(a == b == c for a, b, c in sizes.values())
    w2 = _worker(data, "--exit-when-idle")
    assert w2.wait(timeout=300) == 0
    job = q.get(job_id)
    assert job is not None and job.status == "done" and job.report is not None
    # Files the first attempt committed count as added, not unchanged: the report reads as one run.
    assert job.report["summary"]["added"] == 30, job.report["summary"]

"""The job queue on both backends (SQLite file, real PostgreSQL): one API, the same behaviour.

Queue semantics (claims exclusive under concurrency, leases, retries, cancel, abandon_worker), then real `ragqa worker`
processes: two workers on one queue, and a worker killed with kill -9 mid-job whose job the other one finishes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest.jobs import JobQueue, LeaseLost
from ingest.pg_jobs import PgJobQueue, Queue, open_job_queue
from retrieval.backend import LOCAL, BackendConfig
from retrieval.collection import Collection
from tests.support import committed_sources

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["local", "distributed"])
def backend(request: pytest.FixtureRequest) -> BackendConfig:
    if request.param == "local":
        return LOCAL
    return BackendConfig("distributed", postgres_url=request.getfixturevalue("pg_url"))


@pytest.fixture
def queue_factory(backend: BackendConfig, tmp_path: Path) -> Iterator[Callable[..., Queue]]:
    """Queues over one store (as separate processes would open them); an empty queue for each test."""

    def make(max_attempts: int = 3) -> Queue:
        return open_job_queue(backend, tmp_path / "data", max_attempts).open()

    first = make()
    if isinstance(first, PgJobQueue):
        with first.pool.connection() as conn:
            conn.execute("TRUNCATE ragqa.attempts, ragqa.jobs")
    yield make


def test_lifecycle_is_the_same_on_both_backends(queue_factory: Callable[..., Queue]) -> None:
    q = queue_factory()
    jid = q.enqueue("kb", ["/x/a.md", Path("/x/b.md")], {"date": "2024-03-01"})
    job = q.get(jid)
    assert job is not None and job.status == "queued" and job.paths == ("/x/a.md", "/x/b.md")
    assert job.options == {"date": "2024-03-01"}
    claim = q.claim("w1", lease_s=30)
    assert claim is not None and claim.job.job_id == jid and claim.job.status == "running"
    assert q.claim("w2") is None
    assert q.progress(claim, 1, 2, "/x/a.md", [{"path": "/x/a.md", "status": "added"}]) is False
    assert q.finish(claim, {"files": [{"path": "/x/b.md", "status": "failed", "reason": "bad"}]}) == "done"
    done = q.get(jid)
    assert done is not None and done.status == "done" and done.files_failed == 1
    assert done.report is not None and done.report["summary"] == {
        "added": 1, "updated": 0, "unchanged": 0, "duplicate": 0, "removed": 0, "failed": 1}
    assert [a.outcome for a in q.attempts(jid)] == ["done"]
    assert q.counts() == {"queued": 0, "running": 0, "done": 1, "failed": 0, "cancelled": 0}
    assert [j.job_id for j in q.list_jobs(collections=["other"])] == []
    assert [j.job_id for j in q.list_jobs(status="done", collections=["kb"])] == [jid]


def test_concurrent_claims_never_share_a_job(queue_factory: Callable[..., Queue]) -> None:
    q = queue_factory()
    ids = {q.enqueue("kb", [f"/f{i}"]) for i in range(40)}
    got: list[int] = []
    lock = threading.Lock()

    def grab(name: str) -> None:
        mine = queue_factory()
        while (c := mine.claim(name, lease_s=60)) is not None:
            with lock:
                got.append(c.job.job_id)

    threads = [threading.Thread(target=grab, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ids)  # each once: no job twice, none missed


def test_expired_lease_is_retried_then_failed_and_the_old_holder_is_locked_out(
    queue_factory: Callable[..., Queue],
) -> None:
    q = queue_factory(max_attempts=2)
    jid = q.enqueue("kb", ["/a"])
    first = q.claim("w1", lease_s=0.2)
    assert first is not None
    time.sleep(0.3)
    second = q.claim("w2", lease_s=0.2)
    assert second is not None and second.job.job_id == jid and second.job.attempts == 2
    with pytest.raises(LeaseLost):
        q.heartbeat(first)
    with pytest.raises(LeaseLost):
        q.finish(first, {"files": []})
    time.sleep(0.3)
    assert q.claim("w3") is None  # its last attempt ran out: failed, not handed out a third time
    job = q.get(jid)
    assert job is not None and job.status == "failed" and "gave up after 2 attempt(s)" in (job.error or "")
    assert [a.outcome for a in q.attempts(jid)] == ["lease expired", "lease expired"]


def test_cancel_release_and_abandon_worker(queue_factory: Callable[..., Queue]) -> None:
    q = queue_factory()
    queued = q.enqueue("kb", ["/q"])
    cancelled = q.cancel(queued)
    assert cancelled is not None and cancelled.status == "cancelled"
    running = q.enqueue("kb", ["/r"])
    claim = q.claim("host:1:1", lease_s=60)
    assert claim is not None and claim.job.job_id == running
    after = q.cancel(running)
    assert after is not None and after.status == "running" and after.cancel_requested
    assert q.heartbeat(claim) is True  # the worker hears of it with its next beat
    q.release(claim)
    job = q.get(running)
    assert job is not None and job.status == "cancelled"
    # A dead worker's job is claimable at once, not after its 60 s lease.
    third = q.enqueue("kb", ["/t"])
    held = q.claim("host:42:7", lease_s=60)
    assert held is not None and held.job.job_id == third
    assert q.abandon_worker("host:42:") == [third]
    again = q.claim("host:43:1", lease_s=60)
    assert again is not None and again.job.job_id == third and again.job.attempts == 2
    assert [a.outcome for a in q.attempts(third)] == ["worker died", None]
    with pytest.raises(ValueError):
        q.enqueue("", ["/x"])


# ---- real worker processes ------------------------------------------------------------------------------------------


def _env(data: Path, backend: BackendConfig, **extra: str) -> dict[str, str]:
    env = dict(os.environ, RAGQA_DATA_DIR=str(data), RAGQA_EMBEDDER="minilm-int8", RAGQA_CHUNK_LEVELS="[64]",
               RAGQA_JOB_POLL_S="0.1", RAGQA_LOG_FORMAT="json", PYTHONPATH=str(REPO), RAGQA_BACKEND=backend.kind,
               **extra)
    if backend.postgres_url:
        env["RAGQA_POSTGRES_URL"] = backend.postgres_url
    return env


def _corpus(folder: Path, n: int, tag: str) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        body = "\n\n".join(f"{tag} unit {i} part {j}: check valve {i}-{j} every {i + j} days." for j in range(6))
        (folder / f"{tag}{i:03}.md").write_text(f"# {tag} manual {i}\n\n{body}\n", encoding="utf-8")
    return folder


def _worker(data: Path, backend: BackendConfig, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ragqa.cli", "worker", *args], env=_env(data, backend, **env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _committed(data: Path, backend: BackendConfig, name: str) -> int:
    """Sources committed so far, read while a worker writes."""
    if not backend.distributed:
        return committed_sources(data / "collections" / name / "store.sqlite")
    col = Collection(data, name, backend)
    return col.store.open().counts()["sources"] if col.exists() else 0


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not pred():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def _consistent(data: Path, backend: BackendConfig, name: str) -> list[str]:
    col = Collection(data, name, backend).open()
    docs = sorted(Path(d.source_path).name for d in col.store.documents())
    for level in col.indexes.levels:
        n = len(col.store.chunk_ids_at_level(level))
        assert n == len(col.indexes.dense[level]) == len(col.indexes.sparse[level]) > 0
    col.close()
    return docs


@pytest.mark.slow
def test_two_workers_on_one_queue_run_every_job_once(
    backend: BackendConfig, queue_factory: Callable[..., Queue], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    q = queue_factory()
    tag = f"w{os.getpid()}{backend.kind[0]}"  # collections are shared by the whole PostgreSQL test run
    jobs = {q.enqueue(f"{tag}c{k % 2}", [str(_corpus(tmp_path / f"c{k}", 3, f"j{k}x"))]): k for k in range(4)}
    workers = [_worker(data, backend, "--exit-when-idle") for _ in range(2)]
    for w in workers:
        assert w.wait(timeout=300) == 0, w.stderr.read().decode()[-3000:] if w.stderr else ""
    for job_id in jobs:
        job = q.get(job_id)
        assert job is not None and job.status == "done", job
        assert [a.outcome for a in q.attempts(job_id)] == ["done"]
    for k in range(2):
        assert len(_consistent(data, backend, f"{tag}c{k}")) == 6


@pytest.mark.slow
def test_worker_killed_mid_job_and_the_other_finishes_it(
    backend: BackendConfig, queue_factory: Callable[..., Queue], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    q = queue_factory()
    name = f"k{os.getpid()}{backend.kind[0]}"
    corpus = _corpus(tmp_path / "corpus", 24, "k")
    job_id = q.enqueue(name, [str(corpus)])
    first = _worker(data, backend, RAGQA_JOB_LEASE_S="2")
    _wait(lambda: _committed(data, backend, name) >= 3 or first.poll() is not None, 120, "the first commits")
    second = _worker(data, backend, "--exit-when-idle", RAGQA_JOB_LEASE_S="2")  # idle: the job is held
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert 3 <= _committed(data, backend, name) < 24
    assert second.wait(timeout=300) == 0, second.stderr.read().decode()[-3000:] if second.stderr else ""
    job = q.get(job_id)
    assert job is not None and job.status == "done" and job.attempts == 2
    log = q.attempts(job_id)
    assert [a.outcome for a in log] == ["lease expired", "done"]
    assert log[0].worker.split(":")[1] == str(first.pid) and log[1].worker.split(":")[1] == str(second.pid)
    # Files the dead worker committed after its last progress save read "unchanged" to the second: both count.
    assert job.report is not None
    summary = job.report["summary"]
    assert summary["added"] + summary["unchanged"] == 24 and summary["failed"] == 0, summary
    assert len(_consistent(data, backend, name)) == 24


def test_open_job_queue_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_job_queue(LOCAL, tmp_path), JobQueue)

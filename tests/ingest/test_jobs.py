"""The job queue on a real SQLite file: claims are exclusive, leases expire, stale holders cannot write."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ingest.jobs import JobQueue, LeaseLost


def _queue(tmp_path: Path, **kw: int) -> JobQueue:
    return JobQueue(tmp_path / "jobs.sqlite", **kw).open()


def test_lifecycle_and_counts(tmp_path: Path) -> None:
    q = _queue(tmp_path)
    jid = q.enqueue("kb", ["/x/a.md", Path("/x/b.md")], {"date": "2024-03-01"})
    job = q.get(jid)
    assert job is not None and job.status == "queued" and job.paths == ("/x/a.md", "/x/b.md")
    assert job.options == {"date": "2024-03-01"} and q.counts()["queued"] == 1
    claim = q.claim("w1", lease_s=30)
    assert claim is not None and claim.job.job_id == jid and claim.job.status == "running"
    assert q.claim("w2") is None  # nothing else to take
    q.progress(claim, 1, 2, "/x/a.md", [{"path": "/x/a.md", "status": "added"}])
    assert q.get(jid).files_done == 1  # type: ignore[union-attr]
    q.finish(claim, {"files": [{"path": "/x/b.md", "status": "added"}], "timings": {}})
    done = q.get(jid)
    assert done is not None and done.status == "done" and done.finished_at is not None
    assert done.report is not None and done.report["summary"]["added"] == 2
    assert [a.outcome for a in q.attempts(jid)] == ["done"]
    assert q.counts() == {"queued": 0, "running": 0, "done": 1, "failed": 0, "cancelled": 0}
    assert done.to_json()["progress"]["files_done"] == 2


def test_concurrent_claims_never_share_a_job(tmp_path: Path) -> None:
    q = _queue(tmp_path)
    ids = {q.enqueue("kb", [f"/f{i}"]) for i in range(40)}
    got: list[int] = []
    lock = threading.Lock()

    def grab(name: str) -> None:
        mine = JobQueue(q.path)  # its own connections, as another process would have
        while (c := mine.claim(name, lease_s=60)) is not None:
            with lock:
                got.append(c.job.job_id)

    threads = [threading.Thread(target=grab, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ids)  # each once: no job twice, none missed


def test_expired_lease_is_reclaimed_and_the_old_holder_is_locked_out(tmp_path: Path) -> None:
    q = _queue(tmp_path)
    jid = q.enqueue("kb", ["/a"])
    first = q.claim("dead-worker", lease_s=0.2)
    assert first is not None
    assert q.claim("w2", lease_s=30) is None  # still leased
    time.sleep(0.3)
    second = q.claim("w2", lease_s=30)
    assert second is not None and second.job.job_id == jid and second.job.attempts == 2
    with pytest.raises(LeaseLost, match="no longer held"):
        q.finish(first, {"files": []})
    q.finish(second, {"files": []})
    log = q.attempts(jid)
    assert [(a.worker, a.outcome) for a in log] == [("dead-worker", "lease expired"), ("w2", "done")]


def test_gives_up_after_max_attempts(tmp_path: Path) -> None:
    q = _queue(tmp_path, max_attempts=2)
    jid = q.enqueue("kb", ["/poison.pdf"])
    for _ in range(2):
        assert q.claim("w", lease_s=0.05) is not None
        time.sleep(0.1)
    assert q.claim("w") is None
    job = q.get(jid)
    assert job is not None and job.status == "failed" and "gave up after 2 attempt(s)" in (job.error or "")


def test_release_requeues_without_counting_and_keeps_partial_results(tmp_path: Path) -> None:
    q = _queue(tmp_path)
    jid = q.enqueue("kb", ["/d"])
    c = q.claim("w1")
    assert c is not None
    q.progress(c, 1, 2, "/d/a.md", [{"path": "/d/a.md", "status": "added", "chunks": 3}])
    q.release(c)
    job = q.get(jid)
    assert job is not None and job.status == "queued" and job.attempts == 0
    c2 = q.claim("w2")
    assert c2 is not None
    # The second attempt finds a.md already committed ("unchanged"); the report keeps what really happened.
    q.finish(c2, {"files": [{"path": "/d/a.md", "status": "unchanged"}, {"path": "/d/b.md", "status": "added"}]})
    report = q.get(jid).report  # type: ignore[union-attr]
    assert report is not None and report["summary"]["added"] == 2 and report["summary"]["unchanged"] == 0
    assert [a.outcome for a in q.attempts(jid)] == ["released", "done"]


def test_bad_arguments_name_the_value(tmp_path: Path) -> None:
    q = _queue(tmp_path)
    with pytest.raises(ValueError, match="''"):
        q.enqueue("", ["/a"])
    with pytest.raises(ValueError, match=r"\[\]"):
        q.enqueue("kb", [])
    with pytest.raises(ValueError, match="-1"):
        q.claim("w", lease_s=-1)
    with pytest.raises(ValueError, match="'bogus'"):
        q.list_jobs("bogus")  # type: ignore[arg-type]

"""Job end states on a real SQLite queue: every attempt gets an outcome, all-failed is failed, jobs can be cancelled."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from ingest.jobs import JobQueue, LeaseLost, worker_prefix


def _queue(tmp_path: Path, **kw: int) -> JobQueue:
    return JobQueue(tmp_path / "jobs.sqlite", **kw).open()


def test_an_attempt_reclaimed_after_its_lease_is_closed_as_lease_expired(tmp_path: Path) -> None:
    q = _queue(tmp_path)
    jid = q.enqueue("kb", ["/a"])
    assert q.claim("killed-worker", lease_s=0.1) is not None
    time.sleep(0.2)
    second = q.claim("w2", lease_s=30)
    assert second is not None
    # Read before the second attempt ends: the dead holder's attempt is already closed, with a reason.
    first = q.attempts(jid)[0]
    assert (first.outcome, first.ended_at is not None) == ("lease expired", True)
    q.finish(second, {"files": [{"path": "/a", "status": "added"}]})
    assert [a.outcome for a in q.attempts(jid)] == ["lease expired", "done"]


def test_a_dead_workers_jobs_are_claimable_at_once_and_its_attempt_says_it_died(tmp_path: Path) -> None:
    q = _queue(tmp_path)
    jid = q.enqueue("kb", ["/a"])
    other = q.enqueue("kb", ["/b"])
    dead = q.claim(f"{worker_prefix(4242)}17", lease_s=600)
    alive = q.claim(f"{worker_prefix(42)}17", lease_s=600)  # a prefix of the dead one's pid: must stay untouched
    assert dead is not None and alive is not None and dead.job.job_id == jid
    assert q.abandon_worker(worker_prefix(4242)) == [jid]
    again = q.claim("w2", lease_s=30)  # no waiting for the 600 s lease
    assert again is not None and again.job.job_id == jid and again.job.attempts == 2
    assert [a.outcome for a in q.attempts(jid)] == ["worker died", None]
    assert [a.outcome for a in q.attempts(other)] == [None]
    with pytest.raises(LeaseLost):
        q.finish(dead, {"files": []})


def test_a_job_whose_every_file_failed_is_failed_and_a_mix_is_done_with_a_count(tmp_path: Path) -> None:
    q = _queue(tmp_path)
    bad = q.enqueue("kb", ["/x/a.docx", "/x/b.txt"])
    c = q.claim("w")
    assert c is not None
    q.finish(c, {"files": [{"path": "/x/a.docx", "status": "failed", "reason": "zip bomb"},
                           {"path": "/x/b.txt", "status": "failed", "reason": "empty file (0 bytes)"}]})
    job = q.get(bad)
    assert job is not None and job.status == "failed", job
    assert "every file failed (2)" in (job.error or "") and "zip bomb" in (job.error or "")
    assert job.to_json()["files_failed"] == 2 and job.report is not None and job.report["summary"]["failed"] == 2
    assert [a.outcome for a in q.attempts(bad)] == ["failed"]

    mixed = q.enqueue("kb", ["/y"])
    c = q.claim("w")
    assert c is not None
    q.finish(c, {"files": [{"path": "/y/a.md", "status": "added"}, {"path": "/y/b.md", "status": "failed"}]})
    job = q.get(mixed)
    assert job is not None and job.status == "done" and job.to_json()["files_failed"] == 1 and job.error is None


def test_cancel_a_queued_job_at_once_and_a_running_one_through_its_worker(tmp_path: Path) -> None:
    q = _queue(tmp_path)
    queued = q.enqueue("kb", ["/a"])
    running = q.enqueue("kb", ["/b"])
    cancelled = q.cancel(queued)
    assert cancelled is not None and cancelled.status == "cancelled" and cancelled.finished_at is not None
    c = q.claim("w")
    assert c is not None and c.job.job_id == running  # the cancelled job is never handed out
    assert q.progress(c, 1, 3, "/b/1.md") is False
    job = q.cancel(running)
    assert job is not None and job.status == "running" and job.to_json()["cancel_requested"] is True
    assert q.heartbeat(c) is True and q.progress(c, 2, 3, "/b/2.md") is True  # how the worker hears of it
    q.finish(c, {"files": [{"path": "/b/1.md", "status": "added"}, {"path": "/b/2.md", "status": "added"}]},
             cancelled=True)
    job = q.get(running)
    assert job is not None and job.status == "cancelled" and job.report is not None
    assert job.report["summary"]["added"] == 2 and [a.outcome for a in q.attempts(running)] == ["cancelled"]
    done = q.cancel(running)  # finished: nothing changes
    assert done is not None and done.status == "cancelled" and q.cancel(999) is None
    assert q.counts()["cancelled"] == 2 and [j.job_id for j in q.list_jobs("cancelled")] == [running, queued]


def test_a_cancel_is_not_lost_when_the_worker_stops_or_dies(tmp_path: Path) -> None:
    q = _queue(tmp_path)
    released = q.enqueue("kb", ["/a"])
    c = q.claim("w", lease_s=30)
    assert c is not None
    q.cancel(released)
    q.release(c)  # a SIGTERM'd worker gives the job back: it must not run again
    assert q.get(released).status == "cancelled"  # type: ignore[union-attr]

    died = q.enqueue("kb", ["/b"])
    c = q.claim("w", lease_s=0.1)
    assert c is not None
    q.cancel(died)
    time.sleep(0.2)
    assert q.claim("w2") is None  # not run again after its lease: cancelled
    job = q.get(died)
    assert job is not None and job.status == "cancelled" and [a.outcome for a in q.attempts(died)] == ["lease expired"]


def test_a_queue_from_before_cancellation_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as conn:  # the table as the first release created it
        conn.executescript("""
            CREATE TABLE jobs (job_id INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL, paths TEXT NOT NULL,
                options TEXT NOT NULL DEFAULT '{}',
                status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
                attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL, token TEXT, worker TEXT,
                lease_until REAL, files_done INTEGER NOT NULL DEFAULT 0, files_total INTEGER, current TEXT,
                results TEXT NOT NULL DEFAULT '[]', report TEXT, error TEXT, created_at REAL NOT NULL,
                started_at REAL, updated_at REAL NOT NULL, finished_at REAL);
            INSERT INTO jobs (collection, paths, status, max_attempts, created_at, updated_at)
                VALUES ('kb', '["/old"]', 'queued', 3, 1.0, 1.0);
        """)
    conn.close()
    q = JobQueue(path).open()
    old = q.get(1)
    assert old is not None and old.paths == ("/old",) and old.status == "queued"
    assert q.cancel(1).status == "cancelled"  # type: ignore[union-attr]
    assert q.enqueue("kb", ["/new"]) == 2
    JobQueue(path).open()  # opening again is a no-op
    assert q.get(2).status == "queued"  # type: ignore[union-attr]

"""A durable ingest job queue: one SQLite table (`<data_dir>/jobs.sqlite`, WAL) shared by the API and the workers.

A worker claims a job with a lease (one atomic UPDATE ... RETURNING inside BEGIN IMMEDIATE, so two workers can never
claim the same job) and keeps extending it while it works. A worker that dies (kill -9, power loss) stops extending;
once the lease runs out the job is claimable again, and since the ingest itself is idempotent the second run leaves the
store as if the job had run once. Every claim gets a fresh token: a worker that lost its lease cannot finish, fail or
report progress for a job that someone else now holds. Each claim is also written to `attempts`, the per-job log
that shows who ran what, when, and how it ended.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from retrieval.sqlite import ThreadConnections

JobStatus = Literal["queued", "running", "done", "failed"]
STATUSES: tuple[JobStatus, ...] = ("queued", "running", "done", "failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    paths TEXT NOT NULL,                 -- JSON list of files and folders
    options TEXT NOT NULL DEFAULT '{}',  -- JSON: date, authority, meta, ocr
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    token TEXT,                          -- the current claim's token; NULL when nobody holds the job
    worker TEXT,
    lease_until REAL,
    files_done INTEGER NOT NULL DEFAULT 0,
    files_total INTEGER,
    current TEXT,
    results TEXT NOT NULL DEFAULT '[]',  -- per-file results so far (JSON list of objects)
    report TEXT,                         -- the final report (JSON) once done
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    updated_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs(status, job_id);
CREATE TABLE IF NOT EXISTS attempts (
    job_id INTEGER NOT NULL REFERENCES jobs(job_id),
    attempt INTEGER NOT NULL,
    token TEXT NOT NULL,
    worker TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    outcome TEXT,                        -- done | failed | released | lost; NULL: the worker died
    PRIMARY KEY (job_id, attempt)        -- attempt: 1, 2, ... per job, every claim (released ones too)
);
"""

_COLUMNS = (
    "job_id, collection, paths, options, status, attempts, max_attempts, token, worker, lease_until, files_done, "
    "files_total, current, results, report, error, created_at, started_at, updated_at, finished_at"
)


class JobError(Exception):
    pass


class LeaseLost(JobError):
    """This worker's claim on the job ended (its lease ran out and another worker took the job)."""


@dataclass(frozen=True)
class Job:
    job_id: int
    collection: str
    paths: tuple[str, ...]
    options: dict[str, Any]
    status: JobStatus
    attempts: int
    max_attempts: int
    token: str | None
    worker: str | None
    lease_until: float | None
    files_done: int
    files_total: int | None
    current: str | None
    results: tuple[dict[str, Any], ...]
    report: dict[str, Any] | None
    error: str | None
    created_at: float
    started_at: float | None
    updated_at: float
    finished_at: float | None

    def to_json(self) -> dict[str, Any]:
        """The job as the API and `ragqa jobs` show it (no token, ISO timestamps)."""
        return {
            "job_id": self.job_id, "collection": self.collection, "paths": list(self.paths),
            "options": self.options, "status": self.status, "attempts": self.attempts,
            "progress": {"files_done": self.files_done, "files_total": self.files_total, "current": self.current},
            "worker": self.worker, "lease_until": _iso(self.lease_until), "report": self.report, "error": self.error,
            "created_at": _iso(self.created_at), "started_at": _iso(self.started_at),
            "updated_at": _iso(self.updated_at), "finished_at": _iso(self.finished_at),
        }


@dataclass(frozen=True)
class Attempt:
    job_id: int
    attempt: int
    worker: str
    started_at: float
    ended_at: float | None
    outcome: str | None


@dataclass(frozen=True)
class Claim:
    """What a worker holds while it works on a job: pass it back to every later call."""

    job: Job
    token: str
    worker: str
    lease_s: float = field(default=60.0)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 10_000}"


class JobQueue:
    """Cheap to construct; `open()` creates the database. Safe across threads and processes."""

    def __init__(self, path: Path, max_attempts: int = 3) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.path = Path(path)
        self.max_attempts = max_attempts
        self._db = ThreadConnections(self.path, timeout=30)

    @classmethod
    def for_data_dir(cls, data_dir: Path, max_attempts: int = 3) -> JobQueue:
        return cls(Path(data_dir) / "jobs.sqlite", max_attempts)

    def open(self) -> JobQueue:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn().executescript(SCHEMA)
        return self

    def close(self) -> None:
        self._db.close()

    def _conn(self) -> sqlite3.Connection:
        return self._db.get()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        # IMMEDIATE takes the write lock before reading, so the row a claim picks cannot be picked by another.
        return self._db.immediate()

    # ---- producers -------------------------------------------------------------------------------------------------

    def enqueue(self, collection: str, paths: Sequence[str | Path], options: dict[str, Any] | None = None) -> int:
        """Add a job; return its id. `options`: JSON-able ingest options (date, authority, meta, ocr)."""
        if not collection:
            raise ValueError(f"collection must be a non-empty name, got {collection!r}")
        if not paths:
            raise ValueError(f"a job needs at least one path, got {paths!r}")
        now = time.time()
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO jobs (collection, paths, options, status, max_attempts, created_at, updated_at) "
                "VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                (collection, json.dumps([str(p) for p in paths], ensure_ascii=False),
                 json.dumps(options or {}, ensure_ascii=False, sort_keys=True), self.max_attempts, now, now),
            )
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    def get(self, job_id: int) -> Job | None:
        row = self._conn().execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def list_jobs(
        self, status: JobStatus | None = None, limit: int = 50, collections: Sequence[str] | None = None
    ) -> list[Job]:
        """The newest jobs first; only those of `collections` when given (an API key's scope)."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        conds: list[str] = []
        params: list[Any] = []
        if status:
            conds.append("status = ?")
            params.append(status)
        if collections is not None:
            conds.append(f"collection IN ({', '.join('?' * len(collections))})")
            params.extend(collections)
        where = f"WHERE {' AND '.join(conds)}" if conds else ""
        rows = self._conn().execute(
            f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY job_id DESC LIMIT ?", [*params, limit]
        ).fetchall()
        return [_job(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Jobs per status (every status present, zeros included): the queue depth for metrics."""
        out: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for status, n in self._conn().execute("SELECT status, count(*) FROM jobs GROUP BY status"):
            out[status] = int(n)
        return out

    def attempts(self, job_id: int) -> list[Attempt]:
        rows = self._conn().execute(
            "SELECT job_id, attempt, worker, started_at, ended_at, outcome FROM attempts WHERE job_id = ? "
            "ORDER BY attempt", (job_id,),
        ).fetchall()
        return [Attempt(*r) for r in rows]

    # ---- workers ---------------------------------------------------------------------------------------------------

    def claim(self, worker: str, lease_s: float = 60.0) -> Claim | None:
        """The oldest queued job, or a running one whose lease ran out, now held by `worker`; None if there is none.

        A job whose lease ran out after its last allowed attempt is failed instead: a file that kills the worker
        every time must not take the queue down with it.
        """
        if lease_s <= 0:
            raise ValueError(f"lease_s must be > 0, got {lease_s}")
        token = secrets.token_hex(8)
        now = time.time()
        with self._write() as conn:
            dead = conn.execute(
                "UPDATE jobs SET status = 'failed', token = NULL, lease_until = NULL, finished_at = ?, updated_at = ?, "
                "error = 'gave up after ' || attempts || ' attempt(s): the worker stopped without finishing each time' "
                "WHERE status = 'running' AND lease_until < ? AND attempts >= max_attempts RETURNING job_id",
                (now, now, now),
            ).fetchall()
            for (job_id,) in dead:
                conn.execute("UPDATE attempts SET ended_at = ?, outcome = 'lost' WHERE job_id = ? AND ended_at IS NULL "
                             "AND outcome IS NULL", (now, job_id))
            row = conn.execute(
                f"UPDATE jobs SET status = 'running', token = ?, worker = ?, lease_until = ?, attempts = attempts + 1, "
                f"started_at = coalesce(started_at, ?), updated_at = ?, error = NULL "
                f"WHERE job_id = (SELECT job_id FROM jobs WHERE status = 'queued' "
                f"OR (status = 'running' AND lease_until < ?) ORDER BY job_id LIMIT 1) RETURNING {_COLUMNS}",
                (token, worker, now + lease_s, now, now, now),
            ).fetchone()
            if row is None:
                return None
            job = _job(row)
            conn.execute(
                "INSERT INTO attempts (job_id, attempt, token, worker, started_at) "
                "VALUES (?, (SELECT count(*) + 1 FROM attempts WHERE job_id = ?), ?, ?, ?)",
                (job.job_id, job.job_id, token, worker, now),
            )
        return Claim(job, token, worker, lease_s)

    def heartbeat(self, claim: Claim) -> None:
        """Extend the lease; LeaseLost if the job is no longer ours."""
        self._update(claim, "lease_until = ?", (time.time() + claim.lease_s,))

    def progress(
        self, claim: Claim, files_done: int, files_total: int | None, current: str | None,
        results: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Record progress (and extend the lease). `results`: the per-file results of this attempt so far."""
        sets = "files_done = ?, files_total = ?, current = ?, lease_until = ?"
        params: list[Any] = [files_done, files_total, current, time.time() + claim.lease_s]
        if results is not None:
            sets += ", results = ?"
            params.append(json.dumps(_merge_results(claim.job.results, results), ensure_ascii=False))
        self._update(claim, sets, params)

    def finish(self, claim: Claim, report: dict[str, Any]) -> None:
        """Mark the job done with its report. Files an earlier, interrupted attempt committed keep that status."""
        now = time.time()
        current = self.get(claim.job.job_id)  # only the holder writes results: no race with another writer
        files = _merge_results(current.results if current else claim.job.results, report.get("files", []))
        report = {**report, "files": files, "summary": _summary(files) if files else report.get("summary", {})}
        self._update(
            claim, "status = 'done', token = NULL, lease_until = NULL, finished_at = ?, report = ?, results = '[]', "
            "current = NULL, files_done = max(files_done, ?)",
            (now, json.dumps(report, ensure_ascii=False), len(files)), outcome="done",
        )

    def fail(self, claim: Claim, error: str) -> None:
        """Mark the job failed for good (a bad request: unknown collection, incompatible embedder)."""
        self._update(claim, "status = 'failed', token = NULL, lease_until = NULL, finished_at = ?, error = ?",
                     (time.time(), error[:2000]), outcome="failed")

    def release(self, claim: Claim) -> None:
        """Give the job back unfinished (a worker asked to stop): queued again, this attempt not counted."""
        self._update(claim, "status = 'queued', token = NULL, worker = NULL, lease_until = NULL, current = NULL, "
                     "attempts = attempts - 1", (), outcome="released")

    def _update(self, claim: Claim, sets: str, params: Sequence[Any], outcome: str | None = None) -> None:
        now = time.time()
        with self._write() as conn:
            cur = conn.execute(
                f"UPDATE jobs SET {sets}, updated_at = ? WHERE job_id = ? AND token = ? AND status = 'running'",
                (*params, now, claim.job.job_id, claim.token),
            )
            if cur.rowcount == 0:
                # Committed with the transaction; the caller hears of it just after.
                conn.execute("UPDATE attempts SET ended_at = ?, outcome = 'lost' WHERE token = ? AND ended_at IS NULL",
                             (now, claim.token))
            elif outcome is not None:
                conn.execute("UPDATE attempts SET ended_at = ?, outcome = ? WHERE token = ?",
                             (now, outcome, claim.token))
        if cur.rowcount == 0:
            raise LeaseLost(f"job {claim.job.job_id} is no longer held by {claim.worker} (its lease ran out)")


def _merge_results(earlier: Sequence[dict[str, Any]], later: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-file results across attempts: a file an earlier attempt committed reads 'unchanged' now; keep the earlier."""
    by_path: dict[str, dict[str, Any]] = {r["path"]: dict(r) for r in earlier}
    for r in later:
        prev = by_path.get(r["path"])
        if prev is not None and r.get("status") == "unchanged" and prev.get("status") != "unchanged":
            continue
        by_path[r["path"]] = dict(r)
    return list(by_path.values())


def _summary(files: Sequence[dict[str, Any]]) -> dict[str, int]:
    out = dict.fromkeys(("added", "updated", "unchanged", "duplicate", "removed", "failed"), 0)
    for r in files:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def _job(r: tuple[Any, ...]) -> Job:
    return Job(
        job_id=r[0], collection=r[1], paths=tuple(json.loads(r[2])), options=json.loads(r[3]), status=r[4],
        attempts=r[5], max_attempts=r[6], token=r[7], worker=r[8], lease_until=r[9], files_done=r[10],
        files_total=r[11], current=r[12], results=tuple(json.loads(r[13])), report=json.loads(r[14]) if r[14] else None,
        error=r[15], created_at=r[16], started_at=r[17], updated_at=r[18], finished_at=r[19],
    )


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")

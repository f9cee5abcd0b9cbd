"""A durable ingest job queue: one SQLite table (`<data_dir>/jobs.sqlite`, WAL) shared by the API and the workers.

A worker claims a job with a lease (one atomic UPDATE ... RETURNING inside BEGIN IMMEDIATE, so two workers can never
claim the same job) and keeps extending it while it works. A worker that dies (kill -9, power loss) stops extending;
once the lease runs out the job is claimable again, and since the ingest itself is idempotent the second run leaves the
store as if the job had run once. Every claim gets a fresh token: a worker that lost its lease cannot finish, fail or
report progress for a job that someone else now holds. Each claim is also written to `attempts`, the per-job log
that shows who ran what, when, and how it ended.

A queued job is cancelled at once; a running one gets `cancel_requested`, which its worker reads back with every
progress report and heartbeat and acts on between files, so the store only ever holds whole files.
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

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
STATUSES: tuple[JobStatus, ...] = ("queued", "running", "done", "failed", "cancelled")
FINISHED: tuple[JobStatus, ...] = ("done", "failed", "cancelled")

_JOBS_TABLE = """(
    job_id INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    paths TEXT NOT NULL,                 -- JSON list of files and folders
    options TEXT NOT NULL DEFAULT '{}',  -- JSON: date, authority, meta, ocr
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
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
    cancel_requested INTEGER NOT NULL DEFAULT 0,  -- set on a running job: its worker stops after the current file
    created_at REAL NOT NULL,
    started_at REAL,
    updated_at REAL NOT NULL,
    finished_at REAL
)"""
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs {_JOBS_TABLE};
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs(status, job_id);
CREATE TABLE IF NOT EXISTS attempts (
    job_id INTEGER NOT NULL REFERENCES jobs(job_id),
    attempt INTEGER NOT NULL,
    token TEXT NOT NULL,
    worker TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    outcome TEXT,                        -- done | failed | cancelled | released | lost | lease expired |
                                         -- worker died; NULL: still running
    PRIMARY KEY (job_id, attempt)        -- attempt: 1, 2, ... per job, every claim (released ones too)
);
"""

_COLUMNS = (
    "job_id, collection, paths, options, status, attempts, max_attempts, token, worker, lease_until, files_done, "
    "files_total, current, results, report, error, created_at, started_at, updated_at, finished_at, cancel_requested"
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
    cancel_requested: bool = False

    @property
    def files_failed(self) -> int:
        files = self.report.get("files", []) if self.report else self.results
        return sum(1 for r in files if r.get("status") == "failed")

    def to_json(self) -> dict[str, Any]:
        """The job as the API and `ragqa jobs` show it (no token, ISO timestamps)."""
        return {
            "job_id": self.job_id, "collection": self.collection, "paths": list(self.paths),
            "options": self.options, "status": self.status, "attempts": self.attempts,
            "progress": {"files_done": self.files_done, "files_total": self.files_total, "current": self.current},
            "files_failed": self.files_failed, "cancel_requested": self.cancel_requested,
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
    return f"{worker_prefix(os.getpid())}{threading.get_ident() % 10_000}"


def worker_prefix(pid: int) -> str:
    """The start of every worker name process `pid` on this host uses: what a supervisor frees when it dies."""
    return f"{socket.gethostname()}:{pid}:"


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
        if "cancel_requested" not in self._jobs_sql():
            self._migrate()
        return self

    def _jobs_sql(self) -> str:
        row = self._conn().execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").fetchone()
        return str(row[0]) if row else ""

    def _migrate(self) -> None:
        """A queue from before cancellation: its CHECK on status cannot be altered in place, so copy the table."""
        old = _COLUMNS.replace(", cancel_requested", "")
        with self._write() as conn:
            if "cancel_requested" in self._jobs_sql():  # another process did it first
                return
            conn.execute("DROP TABLE IF EXISTS jobs_new")
            conn.execute(f"CREATE TABLE jobs_new {_JOBS_TABLE}")
            conn.execute(f"INSERT INTO jobs_new ({old}) SELECT {old} FROM jobs")
            conn.execute("DROP TABLE jobs")
            conn.execute("ALTER TABLE jobs_new RENAME TO jobs")
            conn.execute("CREATE INDEX IF NOT EXISTS jobs_claim ON jobs(status, job_id)")

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
        every time must not take the queue down with it. One whose cancellation was asked is cancelled instead.
        """
        if lease_s <= 0:
            raise ValueError(f"lease_s must be > 0, got {lease_s}")
        token = secrets.token_hex(8)
        now = time.time()
        with self._write() as conn:
            dead = conn.execute(
                "UPDATE jobs SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END, token = NULL, "
                "lease_until = NULL, finished_at = ?, updated_at = ?, error = CASE WHEN cancel_requested "
                "THEN 'cancelled on request; its worker stopped before it could stop the job' "
                "ELSE 'gave up after ' || attempts || ' attempt(s): the worker stopped without finishing each time' "
                "END "
                "WHERE status = 'running' AND lease_until < ? AND (attempts >= max_attempts OR cancel_requested) "
                "RETURNING job_id",
                (now, now, now),
            ).fetchall()
            for (job_id,) in dead:
                _close_attempts(conn, job_id, now, "lease expired")
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
            # A reclaimed job's previous holder never said how its attempt ended: its lease ran out.
            _close_attempts(conn, job.job_id, now, "lease expired")
            conn.execute(
                "INSERT INTO attempts (job_id, attempt, token, worker, started_at) "
                "VALUES (?, (SELECT count(*) + 1 FROM attempts WHERE job_id = ?), ?, ?, ?)",
                (job.job_id, job.job_id, token, worker, now),
            )
        return Claim(job, token, worker, lease_s)

    def abandon_worker(self, worker_prefix: str, why: str = "worker died") -> list[int]:
        """Jobs held by a worker known to be dead (its supervisor saw it exit): claimable now, not after the lease.

        `worker_prefix`: the start of its worker names, e.g. "host:1234:" (see worker_name()). Returns the job ids.
        """
        if not worker_prefix:
            raise ValueError("worker_prefix must be non-empty")
        now = time.time()
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE jobs SET lease_until = ?, updated_at = ? WHERE status = 'running' AND substr(worker, 1, ?) = ? "
                "RETURNING job_id", (now - 1e-3, now, len(worker_prefix), worker_prefix),
            ).fetchall()
            for (job_id,) in rows:
                _close_attempts(conn, job_id, now, why)
        return [int(r[0]) for r in rows]

    def cancel(self, job_id: int) -> Job | None:
        """Cancel a queued job now, or ask the worker of a running one to stop after its current file.

        Returns the job as it is afterwards (None if there is none); a finished job is returned unchanged.
        """
        now = time.time()
        with self._write() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, updated_at = ?, error = 'cancelled on request' "
                "WHERE job_id = ? AND status = 'queued'", (now, now, job_id),
            )
            conn.execute("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE job_id = ? AND status = 'running'",
                         (now, job_id))
        return self.get(job_id)

    def heartbeat(self, claim: Claim) -> bool:
        """Extend the lease; LeaseLost if the job is no longer ours. True when cancellation was asked."""
        return self._update(claim, "lease_until = ?", (time.time() + claim.lease_s,))

    def progress(
        self, claim: Claim, files_done: int, files_total: int | None, current: str | None,
        results: Sequence[dict[str, Any]] | None = None,
    ) -> bool:
        """Record progress (and extend the lease); True when cancellation was asked.

        `results`: the per-file results of this attempt so far.
        """
        sets = "files_done = ?, files_total = ?, current = ?, lease_until = ?"
        params: list[Any] = [files_done, files_total, current, time.time() + claim.lease_s]
        if results is not None:
            sets += ", results = ?"
            params.append(json.dumps(_merge_results(claim.job.results, results), ensure_ascii=False))
        return self._update(claim, sets, params)

    def finish(self, claim: Claim, report: dict[str, Any], *, cancelled: bool = False) -> JobStatus:
        """End the job with its report: done; failed when every file in it failed; cancelled when asked to stop.

        Files an earlier, interrupted attempt committed keep that status. Returns the status given.
        """
        now = time.time()
        current = self.get(claim.job.job_id)  # only the holder writes results: no race with another writer
        files = _merge_results(current.results if current else claim.job.results, report.get("files", []))
        summary = _summary(files) if files else report.get("summary", {})
        report = {**report, "files": files, "summary": summary}
        status: JobStatus = "done"
        error = None
        ok = sum(summary.get(k, 0) for k in ("added", "updated", "unchanged", "duplicate"))
        if cancelled:
            status, error = "cancelled", f"cancelled on request after {len(files)} file(s)"
        elif summary.get("failed", 0) and not ok:
            first = next(r for r in files if r.get("status") == "failed")
            status = "failed"
            error = f"every file failed ({summary['failed']}); the first, {first['path']}: {first.get('reason', '')}"
        self._update(
            claim, "status = ?, error = ?, token = NULL, lease_until = NULL, finished_at = ?, report = ?, "
            "results = '[]', current = NULL, files_done = max(files_done, ?)",
            (status, error and error[:2000], now, json.dumps(report, ensure_ascii=False), len(files)),
            outcome=status,
        )
        return status

    def fail(self, claim: Claim, error: str) -> None:
        """Mark the job failed for good (a bad request: unknown collection, incompatible embedder)."""
        self._update(claim, "status = 'failed', token = NULL, lease_until = NULL, finished_at = ?, error = ?",
                     (time.time(), error[:2000]), outcome="failed")

    def release(self, claim: Claim) -> None:
        """Give the job back unfinished (a worker asked to stop): queued again, this attempt not counted.

        A job whose cancellation was asked meanwhile is cancelled instead of queued again.
        """
        self._update(claim, "status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, token = NULL, "
                     "worker = NULL, lease_until = NULL, current = NULL, attempts = attempts - 1, "
                     "finished_at = CASE WHEN cancel_requested THEN ? END", (time.time(),), outcome="released")

    def _update(self, claim: Claim, sets: str, params: Sequence[Any], outcome: str | None = None) -> bool:
        """Apply `sets` if the claim still holds the job (else LeaseLost); return its cancel_requested flag."""
        now = time.time()
        with self._write() as conn:
            row = conn.execute(
                f"UPDATE jobs SET {sets}, updated_at = ? WHERE job_id = ? AND token = ? AND status = 'running' "
                f"RETURNING cancel_requested",
                (*params, now, claim.job.job_id, claim.token),
            ).fetchone()
            if row is None:
                # Committed with the transaction; the caller hears of it just after.
                conn.execute("UPDATE attempts SET ended_at = ?, outcome = 'lost' WHERE token = ? AND ended_at IS NULL",
                             (now, claim.token))
            elif outcome is not None:
                conn.execute("UPDATE attempts SET ended_at = ?, outcome = ? WHERE token = ?",
                             (now, outcome, claim.token))
        if row is None:
            raise LeaseLost(f"job {claim.job.job_id} is no longer held by {claim.worker} (its lease ran out)")
        return bool(row[0])


def _close_attempts(conn: sqlite3.Connection, job_id: int, now: float, outcome: str) -> None:
    conn.execute("UPDATE attempts SET ended_at = ?, outcome = ? WHERE job_id = ? AND ended_at IS NULL",
                 (now, outcome, job_id))


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
        cancel_requested=bool(r[20]),
    )


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")

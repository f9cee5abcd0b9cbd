"""The distributed backend's ingest job queue: ingest/jobs.py's JobQueue on PostgreSQL, for workers on many hosts.

Same API, same states, leases, tokens, attempt log and cancellation (see ingest/jobs.py for the semantics); the values
(Job, Claim, Attempt) and the result merging are that module's. What differs is how a claim is made safe: the row is
picked with `SELECT ... FOR UPDATE SKIP LOCKED`, so concurrent workers each take a different job without waiting on
one another, and every other write checks the claim's token in the same statement that applies it.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ingest.jobs import (
    _COLUMNS,
    STATUSES,
    Attempt,
    Claim,
    Job,
    JobQueue,
    JobStatus,
    LeaseLost,
    _job,
    _merge_results,
    _summary,
)
from retrieval.backend import BackendConfig

if TYPE_CHECKING:  # psycopg is needed only when the distributed backend is chosen
    import psycopg
    from psycopg_pool import ConnectionPool

_LOCK_DDL = 0x52510001  # retrieval/pg_store.py's: schema changes take turns

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS ragqa;
CREATE TABLE IF NOT EXISTS ragqa.jobs (
    job_id BIGSERIAL PRIMARY KEY,
    collection TEXT NOT NULL,
    paths TEXT NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    token TEXT,
    worker TEXT,
    lease_until DOUBLE PRECISION,
    files_done INTEGER NOT NULL DEFAULT 0,
    files_total INTEGER,
    current TEXT,
    results TEXT NOT NULL DEFAULT '[]',
    report TEXT,
    error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    cancel_requested BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS jobs_claim ON ragqa.jobs(status, job_id);
CREATE TABLE IF NOT EXISTS ragqa.attempts (
    job_id BIGINT NOT NULL REFERENCES ragqa.jobs(job_id),
    attempt INTEGER NOT NULL,
    token TEXT NOT NULL,
    worker TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    outcome TEXT,
    PRIMARY KEY (job_id, attempt)
);
"""


class Queue(Protocol):
    """What the API, the CLI and the workers use of a job queue: ingest/jobs.py's JobQueue or PgJobQueue."""

    max_attempts: int

    def open(self) -> Any: ...
    def close(self) -> None: ...
    def enqueue(self, collection: str, paths: Sequence[str | Path], options: dict[str, Any] | None = None) -> int: ...
    def get(self, job_id: int) -> Job | None: ...
    def list_jobs(self, status: JobStatus | None = None, limit: int = 50,
                  collections: Sequence[str] | None = None) -> list[Job]: ...
    def counts(self) -> dict[str, int]: ...
    def attempts(self, job_id: int) -> list[Attempt]: ...
    def claim(self, worker: str, lease_s: float = 60.0) -> Claim | None: ...
    def abandon_worker(self, worker_prefix: str, why: str = "worker died") -> list[int]: ...
    def cancel(self, job_id: int) -> Job | None: ...
    def heartbeat(self, claim: Claim) -> bool: ...
    def progress(self, claim: Claim, files_done: int, files_total: int | None, current: str | None,
                 results: Sequence[dict[str, Any]] | None = None) -> bool: ...
    def finish(self, claim: Claim, report: dict[str, Any], *, cancelled: bool = False) -> JobStatus: ...
    def fail(self, claim: Claim, error: str) -> None: ...
    def release(self, claim: Claim) -> None: ...


def open_job_queue(backend: BackendConfig, data_dir: Path, max_attempts: int = 3) -> Queue:
    """The backend's job queue, not yet opened: SQLite under `data_dir`, or PostgreSQL."""
    if backend.distributed:
        from retrieval.pg_store import pg_pool

        assert backend.postgres_url is not None
        return PgJobQueue(pg_pool(backend.postgres_url), max_attempts)
    return JobQueue.for_data_dir(data_dir, max_attempts)


class PgJobQueue:
    """Cheap to construct; `open()` creates the tables. Safe across threads, processes and hosts."""

    def __init__(self, pool: ConnectionPool, max_attempts: int = 3) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.pool = pool
        self.max_attempts = max_attempts

    def open(self) -> PgJobQueue:
        with self._write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK_DDL,))
            conn.execute(SCHEMA)
        return self

    def close(self) -> None:
        """Nothing to release: the pool is the process's."""

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        with self.pool.connection() as conn, conn.transaction():
            yield conn

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.pool.connection() as conn:
            return conn.execute(query, params).fetchall()

    # ---- producers -------------------------------------------------------------------------------------------------

    def enqueue(self, collection: str, paths: Sequence[str | Path], options: dict[str, Any] | None = None) -> int:
        """Add a job; return its id. `options`: JSON-able ingest options (date, authority, meta, ocr)."""
        if not collection:
            raise ValueError(f"collection must be a non-empty name, got {collection!r}")
        if not paths:
            raise ValueError(f"a job needs at least one path, got {paths!r}")
        now = time.time()
        rows = self._rows(
            "INSERT INTO ragqa.jobs (collection, paths, options, status, max_attempts, created_at, updated_at) "
            "VALUES (%s, %s, %s, 'queued', %s, %s, %s) RETURNING job_id",
            (collection, json.dumps([str(p) for p in paths], ensure_ascii=False),
             json.dumps(options or {}, ensure_ascii=False, sort_keys=True), self.max_attempts, now, now),
        )
        return int(rows[0][0])

    def get(self, job_id: int) -> Job | None:
        rows = self._rows(f"SELECT {_COLUMNS} FROM ragqa.jobs WHERE job_id = %s", (job_id,))
        return _job(rows[0]) if rows else None

    def list_jobs(
        self, status: JobStatus | None = None, limit: int = 50, collections: Sequence[str] | None = None
    ) -> list[Job]:
        """The newest jobs first; only those of `collections` when given (an API key's scope)."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        conds: list[str] = []
        params: list[Any] = []
        if status:
            conds.append("status = %s")
            params.append(status)
        if collections is not None:
            conds.append("collection = ANY(%s)")
            params.append(list(collections))
        where = f"WHERE {' AND '.join(conds)}" if conds else ""
        rows = self._rows(f"SELECT {_COLUMNS} FROM ragqa.jobs {where} ORDER BY job_id DESC LIMIT %s",
                          [*params, limit])
        return [_job(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Jobs per status (every status present, zeros included): the queue depth for metrics."""
        out: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for status, n in self._rows("SELECT status, count(*) FROM ragqa.jobs GROUP BY status"):
            out[status] = int(n)
        return out

    def attempts(self, job_id: int) -> list[Attempt]:
        rows = self._rows("SELECT job_id, attempt, worker, started_at, ended_at, outcome FROM ragqa.attempts "
                          "WHERE job_id = %s ORDER BY attempt", (job_id,))
        return [Attempt(*r) for r in rows]

    # ---- workers ---------------------------------------------------------------------------------------------------

    def claim(self, worker: str, lease_s: float = 60.0) -> Claim | None:
        """The oldest queued job, or a running one whose lease ran out, now held by `worker`; None if there is none.

        A job whose lease ran out after its last allowed attempt is failed instead (one whose cancellation was asked
        is cancelled), as in ingest/jobs.py.
        """
        if lease_s <= 0:
            raise ValueError(f"lease_s must be > 0, got {lease_s}")
        token = secrets.token_hex(8)
        now = time.time()
        with self._write() as conn:
            dead = conn.execute(
                "UPDATE ragqa.jobs SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END, "
                "token = NULL, lease_until = NULL, finished_at = %s, updated_at = %s, error = CASE WHEN "
                "cancel_requested THEN 'cancelled on request; its worker stopped before it could stop the job' "
                "ELSE 'gave up after ' || attempts || ' attempt(s): the worker stopped without finishing each time' "
                "END WHERE job_id IN (SELECT job_id FROM ragqa.jobs WHERE status = 'running' AND lease_until < %s "
                "AND (attempts >= max_attempts OR cancel_requested) FOR UPDATE SKIP LOCKED) RETURNING job_id",
                (now, now, now),
            ).fetchall()
            for (job_id,) in dead:
                _close_attempts(conn, job_id, now, "lease expired")
            # SKIP LOCKED: a job another worker is claiming right now is passed over, not waited for.
            row = conn.execute(
                f"UPDATE ragqa.jobs SET status = 'running', token = %s, worker = %s, lease_until = %s, "
                f"attempts = attempts + 1, started_at = coalesce(started_at, %s), updated_at = %s, error = NULL "
                f"WHERE job_id = (SELECT job_id FROM ragqa.jobs WHERE status = 'queued' "
                f"OR (status = 'running' AND lease_until < %s) ORDER BY job_id LIMIT 1 FOR UPDATE SKIP LOCKED) "
                f"RETURNING {_COLUMNS}",
                (token, worker, now + lease_s, now, now, now),
            ).fetchone()
            if row is None:
                return None
            job = _job(row)
            # A reclaimed job's previous holder never said how its attempt ended: its lease ran out.
            _close_attempts(conn, job.job_id, now, "lease expired")
            conn.execute(
                "INSERT INTO ragqa.attempts (job_id, attempt, token, worker, started_at) "
                "VALUES (%s, (SELECT count(*) + 1 FROM ragqa.attempts WHERE job_id = %s), %s, %s, %s)",
                (job.job_id, job.job_id, token, worker, now),
            )
        return Claim(job, token, worker, lease_s)

    def abandon_worker(self, worker_prefix: str, why: str = "worker died") -> list[int]:
        """Jobs held by a worker known to be dead: claimable now, not after the lease (see ingest/jobs.py)."""
        if not worker_prefix:
            raise ValueError("worker_prefix must be non-empty")
        now = time.time()
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE ragqa.jobs SET lease_until = %s, updated_at = %s WHERE status = 'running' "
                "AND starts_with(worker, %s) RETURNING job_id", (now - 1e-3, now, worker_prefix),
            ).fetchall()
            for (job_id,) in rows:
                _close_attempts(conn, job_id, now, why)
        return [int(r[0]) for r in rows]

    def cancel(self, job_id: int) -> Job | None:
        """Cancel a queued job now, or ask the worker of a running one to stop after its current file."""
        now = time.time()
        with self._write() as conn:
            conn.execute(
                "UPDATE ragqa.jobs SET status = 'cancelled', finished_at = %s, updated_at = %s, "
                "error = 'cancelled on request' WHERE job_id = %s AND status = 'queued'", (now, now, job_id),
            )
            conn.execute("UPDATE ragqa.jobs SET cancel_requested = true, updated_at = %s "
                         "WHERE job_id = %s AND status = 'running'", (now, job_id))
        return self.get(job_id)

    def heartbeat(self, claim: Claim) -> bool:
        """Extend the lease; LeaseLost if the job is no longer ours. True when cancellation was asked."""
        return self._update(claim, "lease_until = %s", (time.time() + claim.lease_s,))

    def progress(
        self, claim: Claim, files_done: int, files_total: int | None, current: str | None,
        results: Sequence[dict[str, Any]] | None = None,
    ) -> bool:
        """Record progress (and extend the lease); True when cancellation was asked."""
        sets = "files_done = %s, files_total = %s, current = %s, lease_until = %s"
        params: list[Any] = [files_done, files_total, current, time.time() + claim.lease_s]
        if results is not None:
            sets += ", results = %s"
            params.append(json.dumps(_merge_results(claim.job.results, results), ensure_ascii=False))
        return self._update(claim, sets, params)

    def finish(self, claim: Claim, report: dict[str, Any], *, cancelled: bool = False) -> JobStatus:
        """End the job with its report: done; failed when every file in it failed; cancelled when asked to stop."""
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
            claim, "status = %s, error = %s, token = NULL, lease_until = NULL, finished_at = %s, report = %s, "
            "results = '[]', current = NULL, files_done = greatest(files_done, %s)",
            (status, error and error[:2000], now, json.dumps(report, ensure_ascii=False), len(files)),
            outcome=status,
        )
        return status

    def fail(self, claim: Claim, error: str) -> None:
        """Mark the job failed for good (a bad request: unknown collection, incompatible embedder)."""
        self._update(claim, "status = 'failed', token = NULL, lease_until = NULL, finished_at = %s, error = %s",
                     (time.time(), error[:2000]), outcome="failed")

    def release(self, claim: Claim) -> None:
        """Give the job back unfinished: queued again, this attempt not counted (cancelled if that was asked)."""
        self._update(claim, "status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, token = NULL, "
                     "worker = NULL, lease_until = NULL, current = NULL, attempts = attempts - 1, "
                     "finished_at = CASE WHEN cancel_requested THEN %s::double precision END", (time.time(),),
                     outcome="released")

    def _update(self, claim: Claim, sets: str, params: Sequence[Any], outcome: str | None = None) -> bool:
        """Apply `sets` if the claim still holds the job (else LeaseLost); return its cancel_requested flag."""
        now = time.time()
        with self._write() as conn:
            row = conn.execute(
                f"UPDATE ragqa.jobs SET {sets}, updated_at = %s WHERE job_id = %s AND token = %s "
                f"AND status = 'running' RETURNING cancel_requested",
                (*params, now, claim.job.job_id, claim.token),
            ).fetchone()
            if row is None:
                conn.execute("UPDATE ragqa.attempts SET ended_at = %s, outcome = 'lost' WHERE token = %s "
                             "AND ended_at IS NULL", (now, claim.token))
            elif outcome is not None:
                conn.execute("UPDATE ragqa.attempts SET ended_at = %s, outcome = %s WHERE token = %s",
                             (now, outcome, claim.token))
        if row is None:
            raise LeaseLost(f"job {claim.job.job_id} is no longer held by {claim.worker} (its lease ran out)")
        return bool(row[0])


def _close_attempts(conn: psycopg.Connection[Any], job_id: int, now: float, outcome: str) -> None:
    conn.execute("UPDATE ragqa.attempts SET ended_at = %s, outcome = %s WHERE job_id = %s AND ended_at IS NULL",
                 (now, outcome, job_id))

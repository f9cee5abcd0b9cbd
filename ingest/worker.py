"""`ragqa worker`: claim ingest jobs from the queue and run the real Ingestor on them, one job at a time.

Each file is committed in its own transaction (batch_chunks=1), so a stop request (SIGTERM) lets the file in
progress finish and commit, then gives the job back to the queue; the next worker skips what is already
committed. A cancelled job ends the same way, at the next file boundary, as `cancelled` with the files done so
far. A worker that is killed outright simply stops extending its lease (see ingest/jobs.py). Parsing
happens in this process: run more workers for parallelism across jobs; one collection is written by one of
them at a time (its write lock).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.chunking import ChunkingSettings
from ingest.jobs import Claim, LeaseLost, worker_name
from ingest.parsers.archive import ArchiveLimits
from ingest.pipeline import FileResult, IngestOptions, Ingestor
from retrieval.backend import LOCAL, BackendConfig
from retrieval.collection import Collection, CollectionLocked
from retrieval.embedders import Embedder, loaded_embedder

if TYPE_CHECKING:
    from ingest.pg_jobs import Queue

log = logging.getLogger("ragqa.worker")


@dataclass(frozen=True)
class WorkerConfig:
    data_dir: Path
    embedder_spec: str  # for collections a job creates; an existing collection keeps its own
    chunking: ChunkingSettings
    max_bytes: int = 100 * 2**20
    near_dup_threshold: float = 0.85
    lease_s: float = 60.0
    poll_s: float = 0.5
    max_file_tokens: int = 0  # a longer file fails, so that one file cannot hold the worker for long (0: no limit)
    archive: ArchiveLimits = ArchiveLimits()
    backend: BackendConfig = LOCAL  # where the collections live (retrieval/backend.py)

    def __post_init__(self) -> None:
        if self.lease_s < 1.0:
            raise ValueError(f"lease_s must be >= 1 s (heartbeats go every lease_s/3), got {self.lease_s}")
        if self.poll_s <= 0:
            raise ValueError(f"poll_s must be > 0, got {self.poll_s}")


class _Stop(Exception):
    """Raised from the progress callback, right after a file was committed, when a stop was requested."""


class _Cancel(Exception):
    """Raised like _Stop when the job's cancellation was asked (through the queue)."""


class Worker:
    def __init__(self, queue: Queue, config: WorkerConfig, name: str | None = None) -> None:
        self.queue = queue
        self.config = config
        self.name = name or worker_name()
        self._stop = threading.Event()
        self._embedders: dict[str, Embedder] = {}

    def stop(self) -> None:
        """Finish the file in progress, give the job back, return from run(). Safe from a signal handler."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, exit_when_idle: bool = False, max_jobs: int | None = None) -> int:
        """Claim and process jobs until stopped, idle (none queued or running) or `max_jobs` done; return how many."""
        n = 0
        while not self._stop.is_set() and (max_jobs is None or n < max_jobs):
            claim = self.queue.claim(self.name, self.config.lease_s)
            if claim is None:
                # Idle means nothing left that could become ours: a running job may belong to a dead worker whose
                # lease has not run out yet, so wait for it rather than leave it behind.
                if exit_when_idle and self.queue.counts()["running"] == 0:
                    break
                self._stop.wait(self.config.poll_s)
                continue
            self.process(claim)
            n += 1
        return n

    def process(self, claim: Claim) -> None:
        """Run one claimed job to its end: done, failed, or released back to the queue on a stop request."""
        job = claim.job
        log.info("job %d: attempt %d on %s: %s", job.job_id, job.attempts, job.collection, list(job.paths),
                 extra={"job_id": job.job_id})
        lost, cancel = threading.Event(), threading.Event()
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(claim, beat_stop, lost, cancel), daemon=True,
                                name=f"lease-{job.job_id}")
        beat.start()
        results: list[FileResult] = []
        try:
            report = self._ingest(claim, lost, cancel, results)
        except _Cancel:
            files = [asdict(r) for r in results]
            self._settle(lambda: self.queue.finish(claim, {"files": files}, cancelled=True))
            log.info("job %d: cancelled after %d file(s)", job.job_id, len(files), extra={"job_id": job.job_id})
        except _Stop:
            self._settle(lambda: self.queue.release(claim))
            log.info("job %d: stop requested; released after the current file", job.job_id)
        except LeaseLost as e:
            log.warning("job %d: %s; abandoning it", job.job_id, e)
        except Exception as e:  # the job's fault (bad collection, other embedder) or the disk's: recorded
            log.exception("job %d failed", job.job_id)
            why = f"{type(e).__name__}: {e}"
            self._settle(lambda: self.queue.fail(claim, why))
        else:
            status = self._settle(lambda: self.queue.finish(claim, report))
            log.info("job %d: %s: %s", job.job_id, status or "lost", report["summary"], extra={"job_id": job.job_id})
        finally:
            beat_stop.set()
            beat.join()

    # ---- internals -------------------------------------------------------------------------------------------

    def _ingest(
        self, claim: Claim, lost: threading.Event, cancel: threading.Event, results: list[FileResult]
    ) -> dict[str, Any]:
        from ingest.cli import open_collection, resolve_chunking, resolve_spec
        from ingest.walk import walk_paths

        job = claim.job
        opts = job.options
        paths = [Path(p) for p in job.paths]
        total = sum(1 for _ in walk_paths(paths))

        last_saved = [0.0]

        def progress(r: FileResult) -> None:
            results.append(r)
            if lost.is_set():
                raise LeaseLost(f"job {job.job_id}: lease lost while working")
            # The per-file list grows with the job: rewrite it every few seconds (and when stopping), not per file.
            stopping = self._stop.is_set()
            save = stopping or time.monotonic() - last_saved[0] >= 2.0
            if self.queue.progress(claim, len(results), total, r.path, [asdict(x) for x in results] if save else None):
                cancel.set()
            if save:
                last_saved[0] = time.monotonic()
            if cancel.is_set():
                raise _Cancel()
            if stopping:
                raise _Stop()

        cfg = self.config
        col = Collection(cfg.data_dir, job.collection, cfg.backend)
        with self._write_lock(col, cancel):
            spec = resolve_spec(cfg.data_dir, job.collection, cfg.embedder_spec, [Path(x) for x in job.paths],
                                cfg.backend)
            embedder = loaded_embedder(self._embedders, spec)  # loaded once per worker, not once per job
            chunking = resolve_chunking(cfg.data_dir, job.collection, cfg.chunking, cfg.backend)
            col = open_collection(cfg.data_dir, job.collection, embedder, chunking, create=True, backend=cfg.backend)
            try:
                options = IngestOptions(
                    effective_date=opts.get("date"), authority=opts.get("authority"),
                    metadata=opts.get("meta") or {},
                    max_bytes=self.config.max_bytes, workers=0, ocr=bool(opts.get("ocr", True)),
                    near_dup_threshold=self.config.near_dup_threshold, batch_chunks=1,
                    max_file_tokens=self.config.max_file_tokens, archive=self.config.archive,
                )
                t = time.perf_counter()
                self.queue.progress(claim, 0, total, None)
                ingestor = Ingestor(col, embedder, chunking, options)
                report = ingestor.ingest_paths(paths, progress=progress)
            finally:
                col.close()
        return {
            "summary": report.summary(),
            "timings": {k: round(v, 3) for k, v in report.timings.items()}
            | {"wall": round(time.perf_counter() - t, 3)},
            "files": [asdict(r) for r in report.results],
        }

    def _write_lock(self, col: Collection, cancel: threading.Event) -> ExitStack:
        """The collection's write lock, waited for without blocking a stop or cancel request."""
        while True:
            held = ExitStack()
            try:
                held.enter_context(col.write_lock(wait=False))
            except CollectionLocked:
                if cancel.is_set():
                    raise _Cancel() from None
                if self._stop.wait(0.2):
                    raise _Stop() from None
                continue
            return held


    def _heartbeat(
        self, claim: Claim, done: threading.Event, lost: threading.Event, cancel: threading.Event
    ) -> None:
        # A file can take minutes (OCR of a scanned PDF): the lease must not depend on per-file progress.
        while not done.wait(claim.lease_s / 3):
            try:
                if self.queue.heartbeat(claim):
                    cancel.set()
            except LeaseLost:
                lost.set()
                return
            except Exception:  # a locked database for a moment: the next beat retries
                log.warning("job %d: heartbeat failed", claim.job.job_id, exc_info=True)

    def _settle(self, fn: Any) -> Any:
        try:
            return fn()
        except LeaseLost as e:
            log.warning("%s", e)
            return None

"""The operations commands of `ragqa`: worker, jobs, backup, and `ingest --async`. Registered by ragqa/cli.py."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from app.settings import Settings


def add_parsers(sub: Any) -> None:
    pw = sub.add_parser("worker", help="run ingest jobs from the queue (SIGTERM: finish the current file, exit)")
    pw.add_argument("--once", action="store_true", help="process at most one job")
    pw.add_argument("--exit-when-idle", action="store_true", help="exit when no job is queued or running")
    pw.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)  # set by `ragqa serve`'s embedded worker
    pw.set_defaults(func=cmd_worker)

    pj = sub.add_parser("jobs", help="list ingest jobs, show one (`jobs ID`), or cancel one (`jobs cancel ID`)")
    pj.add_argument("target", nargs="*", metavar="ID | cancel ID",
                    help="a job id to show it; `cancel ID` to cancel it (a running job stops after its current file)")
    pj.add_argument("--status", choices=["queued", "running", "done", "failed", "cancelled"])
    pj.add_argument("--limit", type=int, default=20)
    pj.add_argument("--json", action="store_true")
    pj.set_defaults(func=cmd_jobs)

    pb = sub.add_parser("backup", help="consistent copy of every collection (and the job queue) while serving")
    pb.add_argument("dest", type=Path, help="a folder that does not exist yet, or an empty one")
    pb.add_argument("--uploads", action="store_true", help="also copy the uploaded files")
    pb.set_defaults(func=cmd_backup)


def _queue(s: Settings) -> Any:
    """The job queue of the configured backend, opened."""
    from app.components import backend_config
    from ingest.pg_jobs import open_job_queue

    return open_job_queue(backend_config(s), s.data_dir, s.job_max_attempts).open()


def _worker_config(s: Settings) -> Any:
    from app.components import backend_config
    from ingest.chunking import ChunkingSettings
    from ingest.parsers.archive import ArchiveLimits
    from ingest.worker import WorkerConfig

    return WorkerConfig(
        data_dir=s.data_dir, embedder_spec=s.embedder,
        chunking=ChunkingSettings(levels=s.chunk_levels, overlap=s.chunk_overlap), max_bytes=s.max_file_mb * 2**20,
        near_dup_threshold=s.near_dup_threshold, lease_s=s.job_lease_s, poll_s=s.job_poll_s,
        max_file_tokens=s.ingest_max_file_tokens,
        archive=ArchiveLimits(max_unpacked_bytes=s.archive_max_unpacked_mb * 2**20, max_ratio=s.archive_max_ratio),
        backend=backend_config(s),
    )


def cmd_worker(args: argparse.Namespace, s: Settings) -> int:
    from app.logs import configure_logging
    from ingest.worker import Worker

    configure_logging(s.log_format, s.log_level)
    worker = Worker(_queue(s), _worker_config(s))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    if args.parent_pid:
        def watch() -> None:  # the server died without stopping us (kill -9): stop too
            while os.getppid() == args.parent_pid and not worker.stopping:
                time.sleep(1.0)
            worker.stop()

        threading.Thread(target=watch, daemon=True, name="parent-watch").start()
    worker.run(exit_when_idle=args.exit_when_idle, max_jobs=1 if args.once else None)
    return 0


def enqueue_ingest(args: argparse.Namespace, s: Settings) -> int:
    """`ragqa ingest --async PATH...`: queue the job with absolute paths (the worker may run elsewhere) and options."""
    from ingest.dates import parse_user_date
    from retrieval.collection import check_name

    name = check_name(args.collection or s.collection)
    missing = [str(p) for p in args.paths if not os.path.lexists(p)]
    if missing:
        print(f"error: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    meta = {}
    for kv in args.meta:
        if "=" not in kv:
            print(f"error: --meta expects KEY=VALUE, got {kv!r}", file=sys.stderr)
            return 2
        k, v = kv.split("=", 1)
        meta[k] = v
    options: dict[str, Any] = {"ocr": not args.no_ocr}
    if args.date:
        options["date"] = parse_user_date(args.date)
    if args.authority is not None:
        options["authority"] = args.authority
    if meta:
        options["meta"] = meta
    queue = _queue(s)
    job_id = queue.enqueue(name, [os.path.abspath(p) for p in args.paths], options)
    if args.json:
        print(json.dumps({"job_id": job_id, "status": "queued"}))
    else:
        print(job_id)
        print(f"queued job {job_id} for collection {name!r}; follow it with: ragqa jobs {job_id}", file=sys.stderr)
    return 0


def cmd_jobs(args: argparse.Namespace, s: Settings) -> int:
    target = list(args.target)
    cancel = bool(target) and target[0] == "cancel"
    if cancel:
        target.pop(0)
    if len(target) > 1 or (cancel and not target) or (target and not target[0].isdigit()):
        print("error: usage: ragqa jobs [ID | cancel ID]", file=sys.stderr)
        return 2
    job_id = int(target[0]) if target else None
    queue = _queue(s)
    if cancel:
        assert job_id is not None
        return _cancel(queue, job_id)
    if job_id is not None:
        job = queue.get(job_id)
        if job is None:
            print(f"error: job {job_id} not found", file=sys.stderr)
            return 1
        out = job.to_json()
        out["attempt_log"] = [a.__dict__ for a in queue.attempts(job.job_id)]
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    jobs = queue.list_jobs(args.status, args.limit)
    if args.json:
        print(json.dumps([j.to_json() for j in jobs], ensure_ascii=False, indent=2))
        return 0
    for j in jobs:
        total = "?" if j.files_total is None else str(j.files_total)
        first = j.paths[0] + (f" (+{len(j.paths) - 1})" if len(j.paths) > 1 else "")
        print(f"{j.job_id:>6}  {j.status:<9} {j.collection:<16} {j.files_done:>5}/{total:<5} "
              f"try {j.attempts}  {j.to_json()['created_at']}  {first}")
    counts = queue.counts()
    print(", ".join(f"{n} {k}" for k, n in counts.items()))
    return 0


def _cancel(queue: Any, job_id: int) -> int:
    from ingest.jobs import FINISHED

    job = queue.get(job_id)
    if job is None:
        print(f"error: job {job_id} not found", file=sys.stderr)
        return 1
    if job.status in FINISHED:
        print(f"error: job {job_id} is already {job.status}: nothing to cancel", file=sys.stderr)
        return 1
    job = queue.cancel(job_id)
    if job.status == "running":
        print(f"job {job_id}: cancel requested; its worker stops after the file in progress "
              f"(follow it with: ragqa jobs {job_id})")
    else:
        print(f"job {job_id}: {job.status}")
    return 0


def cmd_backup(args: argparse.Namespace, s: Settings) -> int:
    from app.backup import BackupError, backup

    if s.backend == "distributed":  # its data is in PostgreSQL and Milvus, not in the data folder
        print("error: `ragqa backup` copies the local backend's data folder; with RAGQA_BACKEND=distributed back up "
              "PostgreSQL (pg_dump) and Milvus (its own backup tool) instead", file=sys.stderr)
        return 2
    try:
        report = backup(s.data_dir, args.dest, uploads=args.uploads)
    except BackupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for c in report.collections:
        print(f"{c.name:<24} {c.chunks:>9} chunks  store {c.store_bytes / 2**20:8.1f} MiB  index {c.index_dir}")
    print(f"backup of {len(report.collections)} collection(s) in {args.dest} ({report.seconds:.1f}s)")
    return 0

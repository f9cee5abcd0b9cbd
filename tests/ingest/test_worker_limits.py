"""`ragqa worker` as real processes: one file cannot hold the worker for minutes, and a running job can be cancelled."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.jobs import JobQueue
from retrieval.collection import Collection
from tests.ingest.test_worker import _corpus, _env, _sources, _wait, _worker

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_a_900_kb_base64_file_fails_in_seconds_and_the_queue_moves_on(tmp_path: Path) -> None:
    """The probe's file: ~600k tokens, some 7 minutes of embedding on 2 cores. Default settings bound it."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "noise.txt").write_bytes(base64.encodebytes(os.urandom(675_000)))  # ~900 KB
    (folder / "pumps.md").write_text("# Pumps\n\nThe feed pump needs new seals every 18 months.\n", encoding="utf-8")
    tiny = tmp_path / "tiny.md"
    tiny.write_text("# Valves\n\nCheck the valves yearly.\n", encoding="utf-8")
    data = tmp_path / "data"
    q = JobQueue.for_data_dir(data).open()
    big, small = q.enqueue("kb", [str(folder)]), q.enqueue("kb", [str(tiny)])
    t = time.time()
    w = _worker(data, "--exit-when-idle")
    try:
        assert w.wait(timeout=240) == 0, w.stderr.read().decode()[-3000:] if w.stderr else ""
    finally:
        w.kill()
    seconds = time.time() - t
    job = q.get(big)
    assert job is not None and job.status == "done" and job.report is not None, job
    files = {Path(f["path"]).name: f for f in job.report["files"]}
    assert files["pumps.md"]["status"] == "added"
    assert files["noise.txt"]["status"] == "failed" and "RAGQA_INGEST_MAX_FILE_TOKENS" in files["noise.txt"]["reason"]
    assert job.to_json()["files_failed"] == 1
    assert q.get(small).status == "done"  # type: ignore[union-attr]
    assert seconds < 120, f"took {seconds:.0f}s"


def test_cancel_stops_a_running_job_between_files_and_the_worker_goes_on(tmp_path: Path) -> None:
    data = tmp_path / "data"
    corpus = _corpus(tmp_path / "corpus", 40, "c")
    q = JobQueue.for_data_dir(data).open()
    job_id = q.enqueue("kb", [str(corpus)])
    w = _worker(data)
    try:
        _wait(lambda: _sources(data, "kb") >= 2 or w.poll() is not None, 120, "the first commits")
        out = subprocess.run([sys.executable, "-m", "ragqa.cli", "jobs", "cancel", str(job_id)], env=_env(data),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "cancel requested" in out.stdout, out.stdout + out.stderr
        _wait(lambda: q.get(job_id).status != "running", 60, "the cancel to land")  # type: ignore[union-attr]
        job = q.get(job_id)
        assert job is not None and job.status == "cancelled" and job.report is not None, job
        committed = _sources(data, "kb")
        assert 2 <= committed < 40 and job.report["summary"]["added"] == committed
        assert [a.outcome for a in q.attempts(job_id)] == ["cancelled"]
        # The store holds whole files only, and the same worker takes the next job.
        later = q.enqueue("kb", [str(_corpus(tmp_path / "later", 2, "l"))])
        _wait(lambda: q.get(later).status == "done", 120, "the next job")  # type: ignore[union-attr]
        col = Collection(data, "kb").open()
        assert col.indexes is not None
        assert len(col.store.documents()) == committed + 2
        assert all(len(col.store.chunk_ids_at_level(lv)) == len(col.indexes.dense[lv]) for lv in col.indexes.levels)
        col.close()
        again = subprocess.run([sys.executable, "-m", "ragqa.cli", "jobs", "cancel", str(job_id)], env=_env(data),
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and "already cancelled" in again.stderr
    finally:
        w.send_signal(signal.SIGTERM)
        w.wait(timeout=60)

"""kill -9 the ingest at several points, re-run it, and the store must be exactly as if it had run once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrieval.collection import Collection
from tests.support import committed_sources

pytestmark = pytest.mark.slow

N_FILES = 40


def _corpus(folder: Path) -> None:
    folder.mkdir()
    for i in range(N_FILES):
        body = "\n\n".join(
            f"Unit {i} paragraph {j}: the fan motor {i}-{j} needs inspection every {i + j} months." for j in range(12)
        )
        (folder / f"doc{i:03}.md").write_text(f"# Manual {i}\n\n{body}\n", encoding="utf-8")


def _ingest_cmd(data: Path, corpus: Path) -> list[str]:
    return [sys.executable, "-m", "ragqa.cli", "ingest", str(corpus), "--collection", "crash", "--workers", "0"]


def _env(data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RAGQA_DATA_DIR=str(data), RAGQA_EMBEDDER="minilm-int8", RAGQA_CHUNK_LEVELS="[64, 256]",
        RAGQA_INGEST_BATCH_CHUNKS="24",
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    return env


def _state(data: Path) -> tuple[list[tuple[str, str]], dict[int, tuple[int, int, int]]]:
    col = Collection(data, "crash").open()
    assert col.indexes is not None
    docs = sorted((d.source_path.rsplit("/", 1)[-1], d.content_hash) for d in col.store.documents())
    sizes = {}
    for level in col.indexes.levels:
        ids = col.store.chunk_ids_at_level(level)
        assert all(i in col.indexes.sparse[level] for i in ids)
        sizes[level] = (len(ids), len(col.indexes.dense[level]), len(col.indexes.sparse[level]))
    # Every chunk belongs to a document that has a source; nothing is orphaned.
    conn = col.store._conn()
    orphan_chunks = "SELECT count(*) FROM chunks WHERE doc_id NOT IN (SELECT doc_id FROM documents)"
    orphan_docs = "SELECT count(*) FROM documents WHERE doc_id NOT IN (SELECT doc_id FROM sources)"
    assert conn.execute(orphan_chunks).fetchone()[0] == 0
    assert conn.execute(orphan_docs).fetchone()[0] == 0
    col.close()
    return docs, sizes


def test_kill_9_at_any_point_then_rerun_equals_one_clean_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    _corpus(corpus)
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    subprocess.run(_ingest_cmd(clean, corpus), env=_env(clean), check=True, capture_output=True, timeout=600)
    db = crashed / "collections" / "crash" / "store.sqlite"
    # Kill while models load, right after the first commit, and in the middle of the batch.
    for wait_for_sources in (0, 1, N_FILES // 2):
        proc = subprocess.Popen(
            _ingest_cmd(crashed, corpus), env=_env(crashed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.time() + 300
        while committed_sources(db) < wait_for_sources and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        if wait_for_sources == 0:
            time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    final = subprocess.run(_ingest_cmd(crashed, corpus), env=_env(crashed), capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-2000:]
    docs_clean, sizes_clean = _state(clean)
    docs_crashed, sizes_crashed = _state(crashed)
    assert docs_crashed == docs_clean and len(docs_clean) == N_FILES
    assert sizes_crashed == sizes_clean
    for n_db, n_dense, n_sparse in sizes_crashed.values():
        assert n_db == n_dense == n_sparse > 0

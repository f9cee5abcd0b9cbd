"""A real `ragqa serve` on the distributed backend (real PostgreSQL) whose database connections are cut mid-run:
the request that meets a dead connection answers 503 with a message, never a 500, and the next one recovers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ingest.cli import open_collection
from ingest.pipeline import IngestOptions, Ingestor
from retrieval.backend import BackendConfig
from retrieval.collection import Collection
from tests.support import free_port, start_server

pytestmark = pytest.mark.slow


APP = "ragqa-database-down-test"


def _cut_connections(url: str) -> int:
    """Terminate the server's connections only (tagged by application_name): other tests share the database."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (APP,)
        ).fetchall()
    return len(rows)


def test_lost_database_is_503_then_recovers(pg_url: str, tmp_path: Path, embedder, chunking) -> None:  # type: ignore[no-untyped-def]
    backend = BackendConfig(kind="distributed", postgres_url=pg_url)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "care.md").write_text("# Care\n\nWipe the remote control with a dry cloth.\n", encoding="utf-8")
    data = tmp_path / "data"
    with Collection(data, "kb", backend).write_lock():
        col = open_collection(data, "kb", embedder, chunking, create=True, backend=backend)
        try:
            Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([corpus])
        finally:
            col.close()

    port = free_port()
    import psycopg

    served = psycopg.conninfo.make_conninfo(pg_url, application_name=APP)
    env = {"RAGQA_BACKEND": "distributed", "RAGQA_POSTGRES_URL": served, "RAGQA_EMBEDDER": embedder.name}
    proc = start_server(data, port, env)
    base = f"http://127.0.0.1:{port}"
    try:
        ask = {"query": "how to clean the remote", "top_k": 3}
        assert httpx.post(f"{base}/search", json=ask, timeout=60).status_code == 200
        assert _cut_connections(pg_url) >= 1
        codes = []
        for _ in range(12):  # the pool hands out each dead connection once, then replaces it
            r = httpx.post(f"{base}/search", json=ask, timeout=60)
            codes.append(r.status_code)
            assert r.status_code in (200, 503), r.text
            if r.status_code == 503:
                assert "database" in r.json()["detail"] and "127.0.0.1" not in r.json()["detail"]
            elif codes.count(503) and r.status_code == 200:
                break
        assert 503 in codes and codes[-1] == 200, codes
    finally:
        proc.terminate()
        proc.wait(timeout=30)

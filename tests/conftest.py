"""Shared fixtures: real models, loaded once per test session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    """The int8 MiniLM: real, and the quickest of the bundled models to load."""
    from retrieval.embedders import get_embedder

    e = get_embedder("minilm-int8")
    e.load()
    return e


@pytest.fixture(scope="session")
def chunking():  # type: ignore[no-untyped-def]
    from ingest.chunking import ChunkingSettings

    return ChunkingSettings(levels=(64, 256), overlap=0.15)


@pytest.fixture(scope="session")
def sample_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample corpus ingested once per session with the default settings, as `make run` does."""
    import shutil
    import subprocess
    import sys

    data = tmp_path_factory.mktemp("sample") / "data"
    env = dict(os.environ, RAGQA_DATA_DIR=str(data), PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "ragqa.cli", "ingest", str(REPO / "examples" / "corpus"), "--collection", "default",
           "--json"]
    # With the network cut off (a new network namespace), as the product promises: nothing is fetched at run time.
    offline = shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    if offline:
        cmd = ["unshare", "-n", *cmd]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["summary"]["failed"] == 0 and report["summary"]["added"] >= 15, report["summary"]
    (data / "ingested-offline").write_text("yes" if offline else "no")
    return data


@pytest.fixture(scope="session")
def pg_url():  # type: ignore[no-untyped-def]
    """A fresh PostgreSQL database for this test run (dropped afterwards), for the distributed backend's tests.

    The server: RAGQA_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test (trust auth). Without one
    (or without psycopg) the tests that need it skip, saying so."""
    import secrets

    admin = os.environ.get("RAGQA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        pytest.skip("psycopg is not installed: pip install -e '.[distributed]' (make install does)")
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        pytest.skip(f"no PostgreSQL at {admin} ({str(e).strip().splitlines()[0]}): start one, e.g. "
                    "`sudo service postgresql start` or `docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust "
                    "postgres:15`, or point RAGQA_TEST_POSTGRES_URL at one")
    name = f"ragqa_test_{os.getpid()}_{secrets.token_hex(4)}"
    with conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(admin, dbname=name)
    try:
        yield url
    finally:
        from retrieval.pg_store import close_pools

        close_pools()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

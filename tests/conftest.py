"""Shared fixtures: real models, loaded once per test session."""

from __future__ import annotations

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
    import subprocess
    import sys

    data = tmp_path_factory.mktemp("sample") / "data"
    env = dict(os.environ, RAGQA_DATA_DIR=str(data), PYTHONPATH=str(REPO))
    subprocess.run(
        [sys.executable, "-m", "app.cli", "ingest", str(REPO / "examples" / "corpus"), "--collection", "default"],
        env=env, check=True, capture_output=True, timeout=1800,
    )
    return data

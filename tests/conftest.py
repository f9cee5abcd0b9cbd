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

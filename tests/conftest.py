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

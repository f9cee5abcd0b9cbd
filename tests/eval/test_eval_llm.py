"""`ragqa eval qa` for real: the sample questions over the sample corpus, answered by the embedded llama.cpp model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.llm, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def test_eval_qa_sample_questions_with_the_embedded_model(sample_data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="the embedded LLM needs the [llm] extra")
    out = tmp_path / "run"
    env = dict(os.environ, RAGQA_DATA_DIR=str(sample_data_dir), PYTHONPATH=str(REPO), RAGQA_LLM_TIMEOUT_S="900")
    env.pop("RAGQA_LLM_BASE_URL", None)
    # --collection default: the session's ingested sample corpus; ingesting examples/corpus again finds it unchanged.
    cmd = [sys.executable, "-m", "ragqa.cli", "eval", "qa", "--dataset", "jsonl:examples/questions.jsonl",
           "--corpus", "examples/corpus", "--limit", "3", "--collection", "default", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines() if x.strip()]
    assert len(items) == 3 and all(i["scored"] for i in items), [i["errors"] for i in items]
    assert all(i["status"] in ("answered", "partial", "no_answer") for i in items)
    agg = json.loads((out / "aggregate.json").read_text())
    assert agg["meta"]["model"].startswith("embedded") and agg["meta"]["ingest"]["added"] == 0
    assert agg["items"] == {"total": 3, "scored": 3} and "accuracy" in agg["metrics"]
    answerable = [i for i in items if not i["gold"]["unanswerable"]]
    # Retrieval, at least, must find the documents that hold the answers.
    assert all(i["metrics"]["evidence_recall"] > 0 for i in answerable if "evidence_recall" in i["metrics"])
    assert (out / "report.html").exists() and "accuracy" in proc.stdout

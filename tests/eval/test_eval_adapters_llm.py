"""Every data-set adapter end to end with the embedded model: `ragqa eval qa` on its tiny fixture, as a user runs it.

Each run builds its collection through the real ingest pipeline (TAT-QA's tables as HTML through our parser), starts
llama.cpp with the bundled model, asks every item through the real answer pipeline and scores it. The fixtures hold
1-3 questions each, so the whole module asks 12 (2.5 min here); a `--limit 20` per adapter on the real data sets,
140 questions of full-size passages at about 30 s each, would add more than an hour to `make test` on the 2-core
machine (docs/evaluation.md). A small model's wording is not asserted: that
every item was asked and scored, that the adapter's own metrics are there, and that retrieval found the gold passage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.eval import tiny_datasets as tiny

pytestmark = [pytest.mark.llm, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]

CASES: dict[str, tuple[str, Callable[[Path], Path], list[str], int, set[str]]] = {
    # name: (kind, fixture, extra arguments, items asked, metrics the aggregate must hold)
    "squad2": ("squad2", tiny.squad2, [], 3, {"em", "f1", "refused", "accuracy", "hallucination_rate"}),
    "cmrc": ("cmrc", tiny.cmrc, [], 1, {"em", "f1", "rouge_l", "bleu"}),
    "rgb-zh-noise-and-rejection": ("rgb", lambda p: tiny.rgb_zh(p, lines=1), ["--noise-ratio", "0.4", "1"], 2,
                                   {"rgb_correct", "rejection_rate"}),
    "rgb-en-counterfactual": ("rgb", tiny.rgb_fact, ["--noise-ratio", "0.4"], 1,
                              {"rgb_correct", "error_detection_rate", "misled_rate"}),
    "tatqa": ("tatqa", tiny.tatqa, ["--limit", "2"], 2, {"em", "f1", "accuracy"}),
    "freshqa": ("freshqa", tiny.freshqa, ["--as-of", "2024-01-01"], 2, {"accuracy", "truthfulness"}),
    "hotpotqa": ("hotpotqa", tiny.hotpotqa, [], 1, {"em", "f1", "evidence_recall"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_adapter_end_to_end_with_the_embedded_model(case: str, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="the embedded LLM needs the [llm] extra")
    kind, fixture, extra, asked, wanted = CASES[case]
    data = tmp_path / "dataset"
    data.mkdir()
    out = tmp_path / "run"
    env = dict(os.environ, RAGQA_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO), RAGQA_LLM_TIMEOUT_S="900")
    env.pop("RAGQA_LLM_BASE_URL", None)
    cmd = [sys.executable, "-m", "ragqa.cli", "eval", "qa", "--dataset", f"{kind}:{fixture(data)}", *extra,
           "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines() if x.strip()]
    assert len(items) == asked and all(i["scored"] for i in items), [i["errors"] for i in items]
    assert all(i["status"] in ("answered", "partial", "no_answer") and i["answer"] for i in items)
    agg = json.loads((out / "aggregate.json").read_text())
    assert agg["meta"]["model"].startswith("embedded") and agg["items"] == {"total": asked, "scored": asked}
    assert wanted <= set(agg["metrics"]), sorted(agg["metrics"])
    # The passages that hold each answer are in the collection and retrieval must reach them.
    assert all(i["metrics"]["evidence_recall"] > 0 for i in items if "evidence_recall" in i["metrics"])
    assert (out / "report.html").exists()

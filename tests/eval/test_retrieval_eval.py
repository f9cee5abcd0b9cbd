"""`ragqa eval retrieval` on a tiny BEIR folder written here, with the real minilm-int8 embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragqa.cli import main

pytestmark = pytest.mark.slow

DOCS = {
    "d1": ("Drain pump cleaning", "The drain pump of the indoor unit must be cleaned every three months."),
    "d2": ("Compressor warranty", "The compressor carries a seven year warranty from the date of purchase."),
    "d3": ("Remote control batteries", "The remote control runs on two AAA batteries; replace them yearly."),
    "d4": ("Refrigerant handling", " ".join(f"Step {i}: recover the R32 refrigerant into a rated cylinder, "
                                            "never vent it, and log the weight." for i in range(30))),
    "d5": ("Winter operation", "Heating stays reliable down to minus fifteen degrees outdoors."),
}
QUERIES = {"q1": "how often to clean the drain pump", "q2": "how long is the compressor warranty",
           "q3": "venting R32 refrigerant into a cylinder", "q4": "a question about a missing document"}
QRELS = [("q1", "d1", 1), ("q2", "d2", 2), ("q2", "d5", 0), ("q3", "d4", 1), ("q4", "d999", 1)]


def _beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": k, "title": t, "text": x})
                                                 for k, (t, x) in DOCS.items()))
    (root / "queries.jsonl").write_text("\n".join(json.dumps({"_id": k, "text": v}) for k, v in QUERIES.items()))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{s}\n" for q, d, s in QRELS))
    return root


def test_retrieval_eval_scores_documents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    folder = _beir(tmp_path / "tiny")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"embedder": "minilm-int8", "mode": "hybrid", "rrf_k": 60}))
    monkeypatch.setenv("RAGQA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAGQA_CHUNK_LEVELS", "[64, 256]")
    out = tmp_path / "run"
    args = ["eval", "retrieval", "--dataset", f"beir:{folder}", "--config", str(cfg), "--out", str(out)]
    assert main(args) == 0
    agg = json.loads((out / "aggregate.json").read_text())
    m = {k: v["value"] for k, v in agg["metrics"].items()}
    # q1-q3 find their document first; q4's relevant document is not in the corpus: every score 0.
    assert m["ndcg@10"] == pytest.approx(0.75) and m["mrr@10"] == pytest.approx(0.75)
    assert m["recall@1"] == pytest.approx(0.75) and m["recall@100"] == pytest.approx(0.75)
    assert m["map"] == pytest.approx(0.75)
    assert agg["meta"]["collection"] == "eval-tiny-minilm-int8" and agg["meta"]["embedder"] == "minilm-int8"
    items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    q3 = next(i for i in items if i["id"] == "q3")
    # d4 has many chunks; the ranking is over documents, each once.
    assert q3["ranking"][0] == "d4" and len(q3["ranking"]) == len(set(q3["ranking"])) == 5
    assert "ndcg@10" in capsys.readouterr().out
    # Unchanged corpus: the collection is reused, nothing is embedded again.
    assert main(args + ["--limit", "2", "--fail-under", "ndcg@10=1.01"]) == 1
    again = json.loads((out / "aggregate.json").read_text())
    assert again["meta"]["ingest"]["unchanged"] == 5 and again["meta"]["ingest"]["added"] == 0
    assert again["meta"]["questions"] == 2

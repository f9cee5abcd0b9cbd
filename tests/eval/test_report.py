"""Aggregates, reports and comparisons from hand-made item records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval import report


def _rec(i: int, correct: bool, refused: bool, unanswerable: bool, cat: str, faith: float | None = None
         ) -> dict[str, object]:
    m = {"accuracy": float(correct), "refused": float(refused), "latency_s": 1.0 + i}
    if faith is not None:
        m["faithfulness_approx"] = faith
    return {"id": str(i), "question": f"q{i}", "categories": {"answer_from": cat}, "metrics": m, "scored": True,
            "gold": {"answers": ["a"], "unanswerable": unanswerable}, "answer": "x", "status": "answered",
            "verdicts": {"rule": {"label": "correct" if correct else "wrong", "rationale": "r"}},
            "latency_s": 1.0 + i, "errors": {}}


RECORDS = [
    _rec(0, True, False, False, "table", 1.0),
    _rec(1, False, False, False, "table", 0.5),
    _rec(2, True, True, True, "text"),
    _rec(3, False, True, False, "text"),
    {"id": "4", "question": "q4", "categories": {}, "metrics": {}, "scored": False,
     "errors": {"ask": "LLMUnavailable: down"}, "gold": {"answers": [], "unanswerable": False}},
]


def test_aggregate_means_cis_refusals_categories_and_errors() -> None:
    agg = report.aggregate(RECORDS, {"name": "t"}, seed=1)
    m = agg["metrics"]
    assert m["accuracy"]["value"] == 0.5 and m["accuracy"]["n"] == 4
    assert m["accuracy"]["low"] <= 0.5 <= m["accuracy"]["high"]
    assert m["faithfulness_approx"]["value"] == 0.75 and m["faithfulness_approx"]["approximate"] is True
    assert "(approximate" in m["faithfulness_approx"]["description"]
    # Refused items 2 and 3; only 2 is unanswerable: precision 1/2, recall 1/1.
    assert m["refusal_precision"]["value"] == 0.5 and m["refusal_recall"]["value"] == 1.0
    assert agg["categories"]["answer_from"]["table"] == {
        "n": 2, "accuracy": 0.5, "refused": 0.0, "faithfulness_approx": 0.75}
    assert agg["errors"]["count"] == 1 and agg["errors"]["examples"][0]["ask"].startswith("LLMUnavailable")
    assert agg["latency"]["p50"] == 2.5 and agg["items"] == {"total": 5, "scored": 4}
    text = report.summary_text(agg)
    assert "faithfulness (approximate)" in text and "accuracy" in text
    # Published anchors sit beside the metric they orient, named by source, and beside no other.
    acc_line = next(x for x in text.splitlines() if x.strip().startswith("accuracy"))
    assert "published: CRAG" in acc_line and "44 %" in acc_line
    assert not any("published" in x for x in text.splitlines() if x.strip().startswith(("refused", "faith")))
    assert "45 %" in report.published("rejection_rate") and report.published("refused") == ""


@pytest.mark.slow  # matplotlib
def test_write_run_makes_reports_with_plots(tmp_path: Path) -> None:
    agg = report.aggregate(RECORDS, {"name": "t", "collection": "c", "dataset": "jsonl:x"}, seed=1)
    report.write_run(tmp_path, agg, RECORDS)
    md = (tmp_path / "report.md").read_text()
    page = (tmp_path / "report.html").read_text()
    assert "| faithfulness (approximate) | 0.750 |" in md and "## By answer_from" in md
    assert "| published, for orientation |" in md and "straightforward RAG at most 44 % |" in md
    assert "## Correctness rule" in md and "F1 >= 0.5" in md
    for png in ("metrics.png", "latency.png", "by_answer_from.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG" and f'src="{png}"' in page
    assert json.loads((tmp_path / "aggregate.json").read_text())["metrics"]["accuracy"]["value"] == 0.5


def _run_dir(path: Path, accuracies: list[float]) -> Path:
    path.mkdir()
    recs = [{"id": str(i), "metrics": {"accuracy": a}, "scored": True, "gold": {}} for i, a in enumerate(accuracies)]
    (path / "items.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    (path / "aggregate.json").write_text(json.dumps(report.aggregate(recs, {"name": path.name})))
    return path


@pytest.mark.slow  # matplotlib
def test_compare_runs_pairs_items_and_marks_significance(tmp_path: Path) -> None:
    a = _run_dir(tmp_path / "a", [0.0, 1.0, 0.0, 0.0] * 10)
    b = _run_dir(tmp_path / "b", [1.0, 1.0, 1.0, 0.0] * 10)
    cmp = report.compare_runs(a, b)
    row = cmp["metrics"]["accuracy"]
    assert cmp["paired_items"] == 40 and row["a"] == 0.25 and row["b"] == 0.75
    assert row["delta"] == pytest.approx(0.5) and row["significant"] is True
    assert "+0.500" in report.compare_text(cmp) and " *" in report.compare_text(cmp)
    same = report.compare_runs(a, a)["metrics"]["accuracy"]
    assert same["delta"] == 0.0 and same["significant"] is False
    report.write_comparison(tmp_path / "cmp", cmp)
    assert (tmp_path / "cmp" / "compare.png").exists() and "accuracy" in (tmp_path / "cmp" / "compare.md").read_text()
    with pytest.raises(ValueError, match="not a finished run folder"):
        report.compare_runs(a, tmp_path / "missing")

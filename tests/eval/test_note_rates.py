"""The false-note and true-note rates the runner keeps per item (eval/judge.py), and their aggregate."""

from __future__ import annotations

from app.notes import cutoff_sentence
from eval.datasets import QAItem
from eval.judge import expected_note, rule_verdict
from eval.report import aggregate

CONFLICT = "The warranty is 7 years [1]. Note: the sources disagree: [1] (2024-03-01) and [2] (2023-01-01) differ."
PLAIN = "The warranty is 7 years [1]."


def _item(**kw: object) -> QAItem:
    base: dict[str, object] = {"id": "1", "question": "How long is the warranty?", "answers": ("7 years",)}
    return QAItem(**(base | kw))  # type: ignore[arg-type]


def test_what_note_is_due() -> None:
    assert expected_note(_item(categories={"answerable": "yes"})) == "none"  # SQuAD
    assert expected_note(_item(rule="rgb", categories={"set": "integration"})) == "none"
    assert expected_note(_item(rule="rgb", categories={"set": "rejection"})) is None  # noise only: cut-off may be true
    assert expected_note(_item(rule="rgb", categories={"set": "counterfactual"})) == "conflict"
    assert expected_note(_item(categories={"kind": "conflict"})) == "conflict"  # the sample corpus's policies
    assert expected_note(_item(categories={"kind": "later_year"})) == "cutoff"
    assert expected_note(_item(categories={"fact_type": "fast-changing"}, as_of="2024-01-01")) is None  # FreshQA


def test_note_rates_per_item() -> None:
    plain = _item(categories={"answerable": "yes"})
    assert rule_verdict(plain, CONFLICT, "answered").metrics["note_false_rate"] == 1.0
    assert rule_verdict(plain, PLAIN, "answered").metrics["note_false_rate"] == 0.0
    assert "note_false_rate" not in rule_verdict(plain, "", "no_answer").metrics  # a refusal carries no note
    conflict = _item(categories={"kind": "conflict"})
    m = rule_verdict(conflict, CONFLICT, "answered").metrics
    assert m["note_true_rate"] == 1.0 and m["conflict_note"] == 1.0 and m["cutoff_note"] == 0.0
    assert rule_verdict(conflict, PLAIN, "answered").metrics["note_true_rate"] == 0.0
    later = _item(categories={"kind": "later_year"})
    noted = PLAIN + " " + cutoff_sentence("en", ("2025", "2024-03-01"))
    assert rule_verdict(later, noted, "answered").metrics["note_true_rate"] == 1.0
    # RGB counterfactual: the passages all carry the same false fact, so flagging the error is the note due.
    fact = _item(rule="rgb", categories={"set": "counterfactual"}, extra={"rgb_answer": "Tampa", "fakeanswer": "X"})
    m = rule_verdict(fact, "The passages contain factual errors; it was Tampa [1].", "answered").metrics
    assert m["error_detection_rate"] == 1.0 and m["note_true_rate"] == 1.0


def test_note_rates_aggregate_with_intervals() -> None:
    plain = _item(categories={"answerable": "yes"})
    recs = []
    for i, text in enumerate([CONFLICT, PLAIN, PLAIN, PLAIN]):
        m = rule_verdict(plain, text, "answered").metrics
        recs.append({"id": str(i), "metrics": m, "gold": {"unanswerable": False}, "categories": {}, "scored": True})
    agg = aggregate(recs, {})
    assert agg["metrics"]["note_false_rate"]["value"] == 0.25 and agg["metrics"]["note_false_rate"]["n"] == 4
    assert agg["metrics"]["note_false_rate"]["low"] is not None

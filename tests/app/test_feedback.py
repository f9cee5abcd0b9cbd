"""Feedback on answers (app/feedback.py): stored, listed by scope with a cursor, exported by `ragqa feedback export`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.feedback import FeedbackStore, NewFeedback
from tests.support import REPO


def _fill(store: FeedbackStore) -> None:
    store.add(NewFeedback("kb", "How long is the warranty?", "7 years [1].", "up",
                          citations=({"marker": 1, "chunk_id": 12, "quote": "The compressor warranty is 7 years."},)))
    store.add(NewFeedback("kb", "E6?", "The knowledge base does not contain the answer.", "down",
                          comment="it is in the fault code table", conversation_id="conv-0001", key_name="ops"))
    store.add(NewFeedback("other", "保修多久？", "7年[1]。", "up"))


def test_list_by_scope_rating_and_cursor(tmp_path: Path) -> None:
    store = FeedbackStore.for_data_dir(tmp_path)
    _fill(store)
    assert [f.question for f in store.list()] == ["How long is the warranty?", "E6?", "保修多久？"]
    assert [f.collection for f in store.list(["kb"])] == ["kb", "kb"]
    down = store.list(rating="down")
    assert len(down) == 1 and down[0].comment == "it is in the fault code table" and down[0].key_name == "ops"
    first = store.list(limit=1)
    rest = store.list(after_id=first[0].feedback_id)
    assert [f.feedback_id for f in first + rest] == [f.feedback_id for f in store.list()]
    assert store.list()[0].citations[0]["chunk_id"] == 12


def test_cli_export_writes_json_lines(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _fill(FeedbackStore.for_data_dir(data))
    out = tmp_path / "fb.jsonl"
    env = dict(os.environ, RAGQA_DATA_DIR=str(data), PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-m", "ragqa.cli", "feedback", "export", "--out", str(out)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["rating"] for r in rows] == ["up", "down", "up"] and rows[2]["answer"] == "7年[1]。"
    assert rows[0]["citations"][0]["quote"].startswith("The compressor") and "exported 3" in p.stderr
    p = subprocess.run([sys.executable, "-m", "ragqa.cli", "feedback", "export", "--out", str(out), "--collection",
                        "other"], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and len(out.read_text(encoding="utf-8").splitlines()) == 1
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith(".fb")] == []  # no temporary file left


def test_backup_keeps_the_feedback(tmp_path: Path) -> None:
    from app.backup import backup

    data = tmp_path / "data"
    _fill(FeedbackStore.for_data_dir(data))
    backup(data, tmp_path / "copy")
    assert len(FeedbackStore.for_data_dir(tmp_path / "copy").list()) == 3

"""Quick checks of the operations pieces: safe upload names, the JSON log format, metrics from a real Answer."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from app.logs import JsonFormatter, new_request_id, request_id
from app.metrics import Metrics
from app.uploads import (
    UnsupportedUpload,
    UploadTooLarge,
    check_extension,
    safe_name,
    store_uploads,
    supported_extensions,
)
from retrieval.types import Answer


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("/abs/path/x.md", "x.md"),
        ("..", "upload"),
        ("", "upload"),
        (".bashrc", "bashrc"),
        ("a\x00b\nc.txt", "abc.txt"),
        ("报告 2024.docx", "报告 2024.docx"),
        ("we<ird>|na:me?.md", "we_ird__na_me_.md"),
    ],
)
def test_safe_name(given: str, expected: str) -> None:
    assert safe_name(given) == expected


def test_long_names_keep_their_extension() -> None:
    out = safe_name("长" * 300 + ".pdf")
    assert out.endswith(".pdf") and len(out.encode()) <= 200


def test_store_uploads_stays_in_its_folder_and_enforces_the_size(tmp_path: Path) -> None:
    folder = tmp_path / "uploads" / "kb"
    n, [s] = store_uploads(folder, [("../../evil.md", io.BytesIO(b"hello"))], 10, len)
    assert n == 1 and s.path.parent == folder and s.path.name.startswith("evil~") and s.path.read_bytes() == b"hello"
    with pytest.raises(UploadTooLarge, match="'big.md'"):
        store_uploads(folder, [("big.md", io.BytesIO(b"x" * 11))], 10, len)
    # no partial or temp file left; the sidecar keeps the client's name for the document's metadata
    assert sorted(x.name for x in folder.iterdir()) == [s.path.name, s.path.name + ".meta.json"]
    assert json.loads((folder / (s.path.name + ".meta.json")).read_text()) == {"upload_name": "../../evil.md"}


def test_extensions_come_from_the_parsers() -> None:
    exts = supported_extensions()
    assert {".pdf", ".docx", ".md", ".txt", ".png", ".csv", ".eml"} <= set(exts)
    assert ".doc" not in exts and ".exe" not in exts
    check_extension("Report.PDF", exts)
    with pytest.raises(UnsupportedUpload, match=r"'\.exe'.*supported: .*\.pdf"):
        check_extension("setup.exe", exts)


def test_request_ids() -> None:
    assert new_request_id("abc-123.x:y") == "abc-123.x:y"
    for bad in (None, "", "has space", "x" * 129, "semi;colon"):
        rid = new_request_id(bad)
        assert rid != bad and len(rid) == 32


def test_json_log_lines_carry_the_request_id_and_extras() -> None:
    rec = logging.LogRecord("ragqa.api", logging.INFO, __file__, 1, "GET %s %d", ("/x", 200), None)
    rec.job_id = 7
    token = request_id.set("req-1")
    try:
        line = JsonFormatter().format(rec)
    finally:
        request_id.reset(token)
    obj = json.loads(line)
    assert obj["msg"] == "GET /x 200" and obj["request_id"] == "req-1" and obj["job_id"] == 7
    assert obj["level"] == "INFO" and obj["logger"] == "ragqa.api" and "\n" not in line


def test_metrics_from_an_answer(tmp_path: Path) -> None:
    m = Metrics(tmp_path)
    ans = Answer(answer="x", status="answered",
                 trace={"timings_ms": {"retrieve": 12.0, "rerank": 30.0, "generate": 900.0, "total": 950.0,
                                       "weird_stage": 1.0}, "warnings": ["sufficiency judge failed: boom"]},
                 usage={"prompt_tokens": 321, "completion_tokens": 45})
    m.observe_answer(ans)
    m.observe_request("POST", "/ask", 503, 0.2)
    body = m.exposition()[0].decode()
    assert 'ragqa_ask_stage_seconds_count{stage="rerank"} 1.0' in body
    assert 'ragqa_ask_stage_seconds_sum{stage="generate"} 0.9' in body
    assert 'ragqa_ask_stage_seconds_count{stage="other"} 1.0' in body  # unknown names do not grow the label set
    assert 'ragqa_llm_tokens_total{direction="in"} 321.0' in body
    assert 'ragqa_llm_tokens_total{direction="out"} 45.0' in body
    assert 'ragqa_errors_total{kind="unavailable"} 1.0' in body and 'ragqa_errors_total{kind="llm_step"} 1.0' in body
    assert 'ragqa_answers_total{status="answered"} 1.0' in body

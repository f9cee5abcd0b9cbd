"""The "auto" embedder: English documents get MiniLM, Chinese or mixed ones the multilingual USE."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.language import resolve_embedder, sample_text
from retrieval.collection import Collection
from retrieval.embedders import AUTO, CHINESE_DEFAULT, ENGLISH_DEFAULT, MIXED_DEFAULT, choose_spec, get_embedder


def test_choose_spec_by_language() -> None:
    english = ["Clean the air filter every two weeks.", "Fault code E6: outdoor fan motor."]
    assert choose_spec(AUTO, english) == ENGLISH_DEFAULT
    assert choose_spec(AUTO, ["空调长期停用前，应该用送风模式运行2小时。"]) == CHINESE_DEFAULT
    # One Chinese manual among English ones is enough: the collection must serve both.
    assert choose_spec(AUTO, english * 5 + ["保修政策：压缩机保修七年，整机保修三年。"]) == MIXED_DEFAULT
    # A stray Chinese word in a long English corpus is not.
    assert choose_spec(AUTO, english * 200 + ["保修"]) == ENGLISH_DEFAULT
    assert choose_spec(AUTO, []) == ENGLISH_DEFAULT
    assert choose_spec("use-multilingual", english) == "use-multilingual"  # an explicit choice stands
    with pytest.raises(ValueError, match="choose_spec"):
        get_embedder(AUTO)


def test_resolve_reads_names_and_text_files_and_keeps_an_existing_collection(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "care.md").write_text("# Care\n\nWipe the remote control with a dry cloth.\n" * 50, encoding="utf-8")
    (docs / "manual.pdf").write_bytes(b"%PDF-1.4 not parsed here")
    data = tmp_path / "data"
    assert resolve_embedder(data, "kb", AUTO, [docs]) == ENGLISH_DEFAULT
    (docs / "保修政策-2024.md").write_text("压缩机保修七年。" * 400, encoding="gbk")  # GBK is decoded too
    assert resolve_embedder(data, "kb", AUTO, [docs]) == CHINESE_DEFAULT
    assert any("保修政策" in t for t in sample_text([docs]))
    # Once the collection exists its manifest decides, whatever is ingested next.
    Collection(data, "kb").open(embedder="minilm-int8", dim=384, chunking={"levels": [64]}, create=True).close()
    assert resolve_embedder(data, "kb", AUTO, [docs]) == "minilm-int8"
    assert resolve_embedder(data, "kb", "e5-small", [docs]) == "e5-small"  # explicit: checked against it at open

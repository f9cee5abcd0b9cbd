"""A change asked of a small table, end to end: the real embedded model names the cells in <calc>, code computes it.

The table is ingested through the real parser and index; the answer pipeline runs as /ask runs it. What must hold
whatever the model's wording: the value is the hand-computed one, in the table's unit, and cites the table.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.llm, pytest.mark.slow]

TABLE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>Segment revenue</title></head><body>
<h1>Segment revenue</h1>
<p>Revenue by segment for the years ended December 31 (in thousands).</p>
<table><thead><tr><th></th><th>2019</th><th>2018</th></tr></thead>
<tbody><tr><td>Cloud services</td><td>12,345</td><td>11,000</td></tr>
<tr><td>Hardware</td><td>4,250</td><td>5,000</td></tr></tbody></table>
</body></html>
"""


def test_a_change_in_a_table_is_computed_in_code_and_cited(tmp_path: Path, embedder: Any, chunking: Any) -> None:
    pytest.importorskip("llama_cpp", reason="the embedded LLM needs the [llm] extra")
    from app.components import build_llm
    from app.pipeline import AnswerPipeline, AskRequest, PipelineConfig
    from app.service import SearchService
    from app.settings import Settings
    from ingest.cli import open_collection
    from ingest.pipeline import IngestOptions, Ingestor

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "segments.html").write_text(TABLE, encoding="utf-8")
    data = tmp_path / "data"
    col = open_collection(data, "t", embedder, chunking, create=True)
    report = Ingestor(col, embedder, chunking, IngestOptions()).ingest_paths([docs])
    col.close()
    assert not report.failed
    client, server = build_llm(Settings(data_dir=data, llm_embedded_model="qwen2.5-1.5b"))

    async def ask() -> Any:
        try:
            pipeline = AnswerPipeline(SearchService(data), client, PipelineConfig())
            return await pipeline.answer(AskRequest(
                question="What was the change in cloud services revenue from 2018 to 2019?", collection="t"))
        finally:
            await client.aclose()

    try:
        answer = asyncio.run(ask())
    finally:
        if server is not None:
            server.stop()
    calcs = answer.trace.get("calculations")
    assert calcs, f"the model did not ask for a calculation: {answer.answer!r}"
    assert answer.status in ("answered", "partial"), answer.answer
    assert "1,345 thousand" in answer.answer  # 12,345 - 11,000, in the table's unit
    assert calcs[0]["value"] == 1345.0 and calcs[0]["scale"] == "thousand"
    assert answer.citations and answer.citations[0].source_path.endswith("segments.html")

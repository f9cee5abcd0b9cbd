"""The arithmetic hook in the answer pipeline, wired end to end: real ingest, index and retrieval; the model is a fake
OpenAI-compatible server (tests/eval/fake_llm.py) that writes a fixed <calc> answer, since this test is about what
code does with it (the real model's part: tests/app/test_arithmetic_llm.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from app.llm.client import LLMClient
from app.pipeline import AnswerPipeline, AskRequest, PipelineConfig
from app.service import SearchService
from ingest.cli import open_collection
from ingest.pipeline import IngestOptions, Ingestor
from tests.app.test_arithmetic_llm import TABLE
from tests.eval.fake_llm import FakeLLMServer, prompt_of, schema_of


def test_calc_tags_are_computed_with_the_tables_unit_and_cited(tmp_path: Path, embedder: Any, chunking: Any) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "segments.html").write_text(TABLE, encoding="utf-8")
    col = open_collection(tmp_path / "data", "t", embedder, chunking, create=True)
    Ingestor(col, embedder, chunking, IngestOptions()).ingest_paths([docs])
    col.close()
    prompts: list[str] = []

    def reply(body: dict[str, Any]) -> str:
        if "answerable" in schema_of(body):
            return json.dumps({"answerable": True, "missing": "", "next_query": ""})
        prompts.append(prompt_of(body))
        return "Cloud services revenue rose by <calc>12,345 - 11,000</calc> [1]."

    async def ask(url: str, question: str) -> Any:
        client = LLMClient(url, "fake")
        try:
            return await AnswerPipeline(SearchService(tmp_path / "data"), client, PipelineConfig()).answer(
                AskRequest(question=question, collection="t"))
        finally:
            await client.aclose()

    with FakeLLMServer(reply) as srv:
        a = asyncio.run(ask(srv.base_url, "What was the change in cloud services revenue from 2018 to 2019?"))
        b = asyncio.run(ask(srv.base_url, "Which segments does the report show revenue for?"))
    assert a.answer == "Cloud services revenue rose by 1,345 thousand (= 12,345 - 11,000) [1]."
    assert a.status == "answered" and a.citations[0].source_path.endswith("segments.html")
    assert a.trace["calculations"] == [{"expression": "12,345 - 11,000", "value": 1345.0, "scale": "thousand",
                                        "operands": [["12,345", 1], ["11,000", 1]]}]
    assert "<calc>" in prompts[0] and "<calc>" not in prompts[1].split("Question:")[0].split("Task:")[1]
    assert b.trace.get("calculations") is not None  # the fake wrote a tag anyway: still computed, never shown raw
    assert "<calc>" not in b.answer

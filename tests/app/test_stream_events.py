"""The /ask event stream: what happens is said before the first token, and what was streamed is never silently
contradicted. The answering model here is FakeLLMServer (tests/eval/fake_llm.py), named as a fake: these tests are
about the pipeline's event protocol, not about what a model writes. Retrieval is real (the sample corpus)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from app.llm.client import LLMClient
from app.pipeline import AnswerPipeline, AskRequest
from app.service import SearchService
from tests.eval.fake_llm import FakeLLMServer, grounded_reply, schema_of

pytestmark = pytest.mark.slow


def _events(data: Path, reply: Any, question: str) -> list[dict[str, Any]]:
    with FakeLLMServer(reply) as fake:
        pipe = AnswerPipeline(SearchService(data), LLMClient(fake.base_url, "fake", max_retries=0))

        async def run() -> list[dict[str, Any]]:
            try:
                return [ev async for ev in pipe.stream(AskRequest(question=question, collection="default"))]
            finally:
                await pipe.llm.aclose()

        return asyncio.run(run())


def test_status_comes_before_the_first_delta_and_final_comes_last(sample_data_dir: Path) -> None:
    evs = _events(sample_data_dir, grounded_reply, "What is the rated cooling capacity of the KFR-35GW?")
    kinds = [e["type"] for e in evs]
    assert kinds[-1] == "final" and kinds.count("final") == 1
    first_delta = kinds.index("delta")
    stages = [e["stage"] for e in evs[:first_delta] if e["type"] == "status"]
    assert stages[0] == "retrieve" and stages[-1] == "generate", stages
    assert "status" not in kinds[first_delta:]  # nothing but words once the model writes
    final = evs[-1]
    streamed = "".join(e["text"] for e in evs if e["type"] == "delta")
    assert "3500" in streamed and final["answer"].status == "answered"
    assert final["revision"] is None or final["revision"]["replaced"] is False
    json.dumps({k: v for k, v in final.items() if k != "answer"})  # the event is plain JSON apart from the Answer


def test_an_unsupported_streamed_answer_is_refused_and_the_final_event_says_so(sample_data_dir: Path) -> None:
    def made_up(body: dict[str, Any]) -> str:
        if "answerable" in schema_of(body):
            return json.dumps({"answerable": True, "missing": "", "next_query": ""})
        return "The KFR-35GW is painted in a shade called ocean mist and weighs 80 kilograms [1]."

    evs = _events(sample_data_dir, made_up, "What is the rated cooling capacity of the KFR-35GW?")
    streamed = "".join(e["text"] for e in evs if e["type"] == "delta")
    final = evs[-1]
    assert "ocean mist" in streamed  # the words did go out
    assert final["answer"].status == "no_answer"
    rev = final["revision"]
    assert rev is not None and rev["replaced"] is True and "refused" in rev["reason"]


def test_the_prompt_delimiters_never_reach_the_client(sample_data_dir: Path) -> None:
    def leaky(body: dict[str, Any]) -> str:
        if "answerable" in schema_of(body):
            return json.dumps({"answerable": True, "missing": "", "next_query": ""})
        return "空调长期停用前，应先用送风模式运行2小时[1]。>>>"

    evs = _events(sample_data_dir, leaky, "空调长期停用前，应该先用什么模式运行多长时间？")
    streamed = "".join(e["text"] for e in evs if e["type"] == "delta")
    assert ">>>" not in streamed and "<<<" not in streamed and not streamed.endswith(">")
    assert ">>>" not in evs[-1]["answer"].answer and "2小时" in streamed

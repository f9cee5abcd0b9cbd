"""True notes still fire where they are due: the sample corpus's 2023 and 2024 warranty policies (a conflict) and a
question about 2025 (after the newest document); and none on a plain question. Real ingest, retrieval and selection;
the model is a fake OpenAI-compatible server (tests/eval/fake_llm.py) that cites the best-matching sentence, since the
notes are decided in code and this test is about that code, not about the model's wording."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from app.llm.client import LLMClient
from app.notes import has_conflict_note, has_cutoff_note
from app.pipeline import AnswerPipeline, AskRequest, PipelineConfig
from app.service import SearchService
from tests.eval.fake_llm import FakeLLMServer

pytestmark = pytest.mark.slow  # the session's sample corpus ingest


def _ask(data: Path, url: str, question: str) -> Any:
    async def go() -> Any:
        client = LLMClient(url, "fake")
        try:
            return await AnswerPipeline(SearchService(data), client, PipelineConfig()).answer(
                AskRequest(question=question, collection="default"))
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_notes_on_the_sample_corpus(sample_data_dir: Path) -> None:
    with FakeLLMServer() as srv:
        conflict = _ask(sample_data_dir, srv.base_url, "What is the compressor warranty?")
        later = _ask(sample_data_dir, srv.base_url, "What was the compressor warranty in 2025?")
        plain = _ask(sample_data_dir, srv.base_url, "What is the rated cooling capacity of the KFR-35GW?")
    assert has_conflict_note(conflict.answer) and conflict.conflicts, conflict.answer
    assert has_cutoff_note(later.answer), later.answer
    assert plain.status != "no_answer" and not has_conflict_note(plain.answer) and not has_cutoff_note(plain.answer)

"""What app/components.py builds from Settings (no model started: the LLM client is cheap to construct)."""

from __future__ import annotations

import pytest

from app.components import build_reranker
from app.llm.client import LLMClient
from app.settings import Settings


def test_llm_reranking_needs_a_server_with_logprobs() -> None:
    llm = LLMClient("http://127.0.0.1:9", "ragqa")
    with pytest.raises(ValueError, match="log-probabilities"):
        build_reranker(Settings(rerank_with_llm=True), llm)
    rr = build_reranker(Settings(rerank_with_llm=True, llm_base_url="http://127.0.0.1:9/v1"), llm)
    assert rr is not None and rr.name == "llm:ragqa"

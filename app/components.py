"""The answering model and the re-ranker, built from Settings: shared by the server, the CLI and evaluation."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from app.llm.client import LLMClient
from app.pipeline import PipelineConfig
from app.settings import Settings
from retrieval.rerank import Reranker

if TYPE_CHECKING:
    from app.llm.embedded import EmbeddedLLMServer
    from retrieval.backend import BackendConfig

log = logging.getLogger("ragqa")


def backend_config(settings: Settings) -> BackendConfig:
    """Where collections and the job queue live (retrieval/backend.py), as plain values."""
    from retrieval.backend import BackendConfig

    url = settings.postgres_url.get_secret_value() if settings.postgres_url else None
    return BackendConfig(kind=settings.backend, postgres_url=url, milvus_uri=settings.milvus_uri)


def build_llm(settings: Settings, keep_going: bool = False) -> tuple[LLMClient, EmbeddedLLMServer | None]:
    """The configured OpenAI-compatible server, or the embedded llama.cpp one started here (returned to stop later).

    `keep_going`: a server process keeps serving when the embedded model fails its start-up self-test; the failure
    is logged and every LLM call (/readyz, /ask) then answers 503 with what died and what to do."""
    if settings.llm_base_url:
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return LLMClient(settings.llm_base_url, settings.llm_model, api_key=key, timeout=settings.llm_timeout_s,
                         max_concurrency=settings.llm_max_concurrency), None
    from app.llm.assets import default_cache_dir, ensure_model
    from app.llm.embedded import EmbeddedLLMServer, EmbeddedServerError

    path = ensure_model(settings.llm_embedded_model, settings.llm_cache_dir or default_cache_dir())
    server = EmbeddedLLMServer(path, model_alias=settings.llm_model, lora_path=settings.llm_lora,
                               build=settings.llama_build)
    try:
        server.start()
    except EmbeddedServerError:
        if not keep_going:
            raise
        log.error("the embedded language model is unavailable: %s", server.failure)
    return server.client(timeout=settings.llm_timeout_s, max_concurrency=settings.llm_max_concurrency), server


def build_reranker(settings: Settings, llm: LLMClient) -> Reranker | None:
    from retrieval.rerank import CrossEncoderReranker, LLMReranker, RemoteReranker

    if settings.rerank_url:
        return RemoteReranker(settings.rerank_url, settings.rerank_model)
    if settings.rerank_path:
        return CrossEncoderReranker(settings.rerank_path).load()
    if settings.rerank_with_llm:
        if not settings.llm_base_url:
            # llama-cpp-python's server answers logprobs requests with HTTP 500 unless every prompt pays for
            # logits_all; re-ranking would silently fall back on every question.
            raise ValueError("RAGQA_RERANK_WITH_LLM needs an LLM server that returns log-probabilities (vLLM, set "
                             "RAGQA_LLM_BASE_URL); the embedded llama.cpp server does not. Unset it, or set "
                             "RAGQA_RERANK_PATH / RAGQA_RERANK_URL for a cross-encoder.")
        return LLMReranker(llm.first_token_logprobs_sync, name=f"llm:{llm.model}")
    return None


def pipeline_config(settings: Settings, **overrides: object) -> PipelineConfig:
    """The answer pipeline's settings; the model judges sufficiency only where the score gate is unsure, unless
    RAGQA_JUDGE says otherwise (a judgement reads the answer prompt's prefix, which the answer then reuses)."""
    return PipelineConfig(**{"judge": settings.judge, "min_cited_share": settings.min_cited_share,  # type: ignore[arg-type]
                             **overrides})

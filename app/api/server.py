"""The FastAPI application: built by `create_app(settings)`; services are created once, in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.admission import Admission
from app.api import ask, errors
from app.api.routes import router
from app.llm.client import LLMClient
from app.pipeline import AnswerPipeline
from app.service import SearchService
from app.settings import Settings
from retrieval.rerank import Reranker

log = logging.getLogger("ragqa")


def build_llm(settings: Settings) -> tuple[LLMClient, object | None]:
    """The configured OpenAI-compatible server, or the embedded llama.cpp one started here (returned to stop later)."""
    if settings.llm_base_url:
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return LLMClient(settings.llm_base_url, settings.llm_model, api_key=key, timeout=settings.llm_timeout_s,
                         max_concurrency=settings.llm_max_concurrency), None
    from app.llm.assets import default_cache_dir, ensure_model
    from app.llm.embedded import EmbeddedLLMServer

    path = ensure_model(settings.llm_embedded_model, settings.llm_cache_dir or default_cache_dir())
    server = EmbeddedLLMServer(path, model_alias=settings.llm_model).start()
    return server.client(timeout=settings.llm_timeout_s, max_concurrency=settings.llm_max_concurrency), server


def build_reranker(settings: Settings, llm: LLMClient) -> Reranker | None:
    from retrieval.rerank import CrossEncoderReranker, LLMReranker, RemoteReranker

    if settings.rerank_url:
        return RemoteReranker(settings.rerank_url, settings.rerank_model)
    if settings.rerank_path:
        return CrossEncoderReranker(settings.rerank_path).load()
    if settings.rerank_with_llm:
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return LLMReranker(llm.base_url, llm.model, api_key=key)
    return None


def create_app(settings: Settings, llm: LLMClient | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = SearchService(settings.data_dir)
        app.state.service = svc
        embedded = None
        client = llm
        if client is None:
            client, embedded = await run_in_threadpool(build_llm, settings)
        app.state.llm = client
        reranker = await run_in_threadpool(build_reranker, settings, client)
        app.state.pipeline = AnswerPipeline(svc, client, reranker=reranker)
        app.state.admission = Admission(settings.llm_max_concurrency, settings.llm_max_queue)
        await run_in_threadpool(svc.warm_up, settings.collection)
        try:
            yield
        finally:
            await client.aclose()
            if embedded is not None:
                await run_in_threadpool(embedded.stop)  # type: ignore[attr-defined]

    app = FastAPI(title="ragqa", version="0.1.0", lifespan=lifespan)
    app.state.api_keys = {k: v.get_secret_value() for k, v in settings.api_keys.items()}
    app.state.default_collection = settings.collection
    limit = settings.max_body_kb * 1024

    @app.middleware("http")
    async def body_limit(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > limit):
            return JSONResponse({"detail": f"request body over the {settings.max_body_kb} KiB limit"}, status_code=413)
        return await call_next(request)

    errors.install(app)
    app.include_router(router)
    app.include_router(ask.router)
    return app

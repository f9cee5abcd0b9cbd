"""The FastAPI application: built by `create_app(settings)`; services are created once, in the lifespan."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool

from app.admission import Admission
from app.api import ask, browse, errors, openai_compat
from app.api.auth import KeyRing
from app.api.limits import BodyLimit
from app.api.routes import router
from app.api.web import router as web_router
from app.components import backend_config, build_llm, build_reranker, pipeline_config
from app.conversations import ConversationStore
from app.feedback import FeedbackStore
from app.llm.client import LLMClient
from app.logs import new_request_id, request_id
from app.metrics import MeteredPipeline, Metrics
from app.pipeline import AnswerPipeline
from app.service import SearchService
from app.settings import Settings
from app.worker_supervisor import WorkerSupervisor
from ingest.pg_jobs import Queue, open_job_queue

if TYPE_CHECKING:
    from app.llm.embedded import EmbeddedLLMServer

log = logging.getLogger("ragqa")


def create_app(settings: Settings, llm: LLMClient | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = SearchService(settings.data_dir, backend_config(settings))
        app.state.service = svc
        embedded: EmbeddedLLMServer | None = None
        if llm is None:
            client, embedded = await run_in_threadpool(build_llm, settings, True)
        else:
            client = llm
        app.state.llm = client
        reranker = await run_in_threadpool(build_reranker, settings, client)
        pipeline = AnswerPipeline(svc, client, pipeline_config(settings), reranker=reranker)
        app.state.pipeline = MeteredPipeline(pipeline, app.state.metrics)
        app.state.admission = Admission(settings.llm_max_concurrency, settings.llm_max_queue,
                                        settings.llm_queue_timeout_s)
        await run_in_threadpool(app.state.jobs.open)
        worker = start_embedded_worker(settings, app.state.jobs) if settings.embedded_worker else None
        app.state.worker = worker
        app.state.metrics.watch_worker(worker)
        await run_in_threadpool(pipeline.warm_up, settings.collection)
        try:
            yield
        finally:
            await client.aclose()
            if embedded is not None:
                await run_in_threadpool(embedded.stop)
            if worker is not None:
                await run_in_threadpool(worker.stop)

    app = FastAPI(title="ragqa", version="0.1.0", lifespan=lifespan)
    app.state.api_keys = KeyRing(settings.api_keys)
    app.state.default_collection = settings.collection
    app.state.settings = settings
    # Opened in the lifespan.
    app.state.jobs = open_job_queue(backend_config(settings), settings.data_dir, settings.job_max_attempts)
    app.state.metrics = Metrics(settings.data_dir, app.state.jobs)
    app.state.worker = None  # the embedded worker's supervisor, started in the lifespan
    app.state.conversations = ConversationStore.for_data_dir(
        settings.data_dir, settings.conversation_max_turns, settings.conversation_max_kb * 1024)
    app.state.feedback = FeedbackStore.for_data_dir(settings.data_dir)
    app.add_middleware(
        BodyLimit, json_bytes=settings.max_body_kb * 1024, json_what=f"{settings.max_body_kb} KiB",
        upload_bytes=settings.max_upload_mb * 2**20, upload_what=f"{settings.max_upload_mb} MiB",
    )

    @app.middleware("http")
    async def request_context(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Outermost: a request id for every log line and the response header, metrics, one access-log line."""
        rid = new_request_id(request.headers.get("x-request-id"))
        token = request_id.set(rid)
        t = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
        finally:
            elapsed = time.perf_counter() - t
            route = getattr(request.scope.get("route"), "path", "unmatched")
            app.state.metrics.observe_request(request.method, route, status, elapsed)
            log.info("%s %s %d %.1fms", request.method, request.url.path, status, elapsed * 1000,
                     extra={"method": request.method, "path": request.url.path, "status": status,
                            "ms": round(elapsed * 1000, 1)})
            request_id.reset(token)
        response.headers["X-Request-ID"] = rid
        return response

    errors.install(app)
    app.include_router(router)
    app.include_router(ask.router)
    app.include_router(browse.router)
    app.include_router(openai_compat.router)
    app.include_router(web_router)  # the web page at / (app/web)
    return app


def start_embedded_worker(settings: Settings, queue: Queue) -> WorkerSupervisor:
    """`ragqa worker` as a supervised child process with this server's settings (see app/worker_supervisor.py).

    It exits by itself if this process dies; stop it with `.stop()`.
    """
    env = dict(os.environ)
    for key, value in settings.model_dump(mode="json").items():
        if key in _WORKER_SETTINGS:
            env[f"RAGQA_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    if settings.postgres_url is not None:  # a secret: model_dump masks it
        env["RAGQA_POSTGRES_URL"] = settings.postgres_url.get_secret_value()
    if settings.milvus_uri is not None:
        env["RAGQA_MILVUS_URI"] = settings.milvus_uri
    cmd = [sys.executable, "-m", "ragqa.cli", "worker", "--parent-pid", str(os.getpid())]
    return WorkerSupervisor(cmd, env, queue, max_restarts_per_minute=settings.worker_max_restarts_per_minute).start()


_WORKER_SETTINGS = frozenset(
    """data_dir embedder chunk_levels chunk_overlap near_dup_threshold max_file_mb job_lease_s job_poll_s
    job_max_attempts log_format log_level ingest_max_file_tokens archive_max_unpacked_mb
    archive_max_ratio backend""".split()  # noqa: SIM905
)

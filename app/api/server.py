"""The FastAPI application: built by `create_app(settings)`; services are created once, in the lifespan."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.admission import Admission
from app.api import ask, errors
from app.api.auth import KeyRing, require_key
from app.api.routes import router
from app.errors import Forbidden, Unauthorized
from app.llm.client import LLMClient
from app.logs import new_request_id, request_id
from app.metrics import MeteredPipeline, Metrics
from app.pipeline import AnswerPipeline
from app.service import SearchService
from app.settings import Settings
from app.uploads import UnsupportedUpload, UploadTooLarge
from ingest.jobs import JobQueue
from retrieval.rerank import Reranker

if TYPE_CHECKING:
    from app.llm.embedded import EmbeddedLLMServer

log = logging.getLogger("ragqa")


def build_llm(settings: Settings) -> tuple[LLMClient, EmbeddedLLMServer | None]:
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
        embedded: EmbeddedLLMServer | None = None
        if llm is None:
            client, embedded = await run_in_threadpool(build_llm, settings)
        else:
            client = llm
        app.state.llm = client
        reranker = await run_in_threadpool(build_reranker, settings, client)
        app.state.pipeline = MeteredPipeline(AnswerPipeline(svc, client, reranker=reranker), app.state.metrics)
        app.state.admission = Admission(settings.llm_max_concurrency, settings.llm_max_queue)
        await run_in_threadpool(app.state.jobs.open)
        worker = start_embedded_worker(settings) if settings.embedded_worker else None
        await run_in_threadpool(svc.warm_up, settings.collection)
        try:
            yield
        finally:
            await client.aclose()
            if embedded is not None:
                await run_in_threadpool(embedded.stop)
            if worker is not None:
                await run_in_threadpool(stop_embedded_worker, worker)

    app = FastAPI(title="ragqa", version="0.1.0", lifespan=lifespan)
    app.state.api_keys = KeyRing(settings.api_keys)
    app.state.default_collection = settings.collection
    app.state.settings = settings
    app.state.jobs = JobQueue.for_data_dir(settings.data_dir, settings.job_max_attempts)  # opened in the lifespan
    app.state.metrics = Metrics(settings.data_dir, app.state.jobs)
    limit = settings.max_body_kb * 1024
    upload_limit = settings.max_upload_mb * 2**20

    @app.middleware("http")
    async def body_limit(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        size = request.headers.get("content-length")
        upload = request.method == "POST" and request.url.path.endswith("/documents")
        if upload and size is None:
            # Multipart bodies are spooled to disk before the route runs: refuse one of unknown size up front.
            return JSONResponse({"detail": "uploads need a Content-Length header"}, status_code=411)
        cap, what = (
            (upload_limit, f"{settings.max_upload_mb} MiB") if upload else (limit, f"{settings.max_body_kb} KiB")
        )
        if size is not None and (not size.isdigit() or int(size) > cap):
            return JSONResponse({"detail": f"request body over the {what} limit"}, status_code=413)
        if upload:
            # The key is checked here as well as in the route, which runs only after the body has been spooled.
            try:
                require_key(request, write=True).check(request.url.path.split("/")[-2], write=True)
            except (Unauthorized, Forbidden) as e:
                return JSONResponse({"detail": str(e)}, status_code=401 if isinstance(e, Unauthorized) else 403)
        return await call_next(request)

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

    async def upload_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=415 if isinstance(exc, UnsupportedUpload) else 413)

    errors.install(app)
    app.add_exception_handler(UnsupportedUpload, upload_error)
    app.add_exception_handler(UploadTooLarge, upload_error)
    app.include_router(router)
    app.include_router(ask.router)
    return app


def start_embedded_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """`ragqa worker` as a child process with this server's settings; it exits by itself if this process dies."""
    env = dict(os.environ)
    for key, value in settings.model_dump(mode="json").items():
        if key in _WORKER_SETTINGS:
            env[f"RAGQA_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    cmd = [sys.executable, "-m", "app.cli", "worker", "--parent-pid", str(os.getpid())]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
    log.info("embedded ingest worker started (pid %d)", proc.pid)
    return proc


def stop_embedded_worker(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM: the worker finishes the file in progress and gives its job back; SIGKILL if it takes too long."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_WORKER_SETTINGS = frozenset(
    """data_dir embedder chunk_levels chunk_overlap near_dup_threshold max_file_mb job_lease_s job_poll_s
    job_max_attempts log_format log_level""".split()  # noqa: SIM905
)

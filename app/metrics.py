"""Prometheus metrics for GET /metrics: per-stage /ask latency, LLM tokens, errors, queue depth, index sizes.

Each app gets its own registry (tests build several apps in one process). Stage timings and token counts are read
off each Answer (trace["timings_ms"], usage) by `MeteredPipeline`, which stands in for the AnswerPipeline on the
app; queue depth and index sizes are read at scrape time, straight from SQLite, without loading any model.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from app.pipeline import AnswerPipeline, AskRequest
    from app.worker_supervisor import WorkerSupervisor
    from ingest.pg_jobs import Queue
    from retrieval.types import Answer

# Stage names the pipeline writes into trace["timings_ms"]; anything else is folded into "other" (bounded labels).
STAGES = ("rewrite", "transforms", "retrieve", "rerank", "select", "judge", "generate", "total")
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
_STATUS_KIND = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict",
                411: "length_required", 413: "too_large", 415: "unsupported_type", 422: "validation",
                429: "overloaded", 502: "llm_error", 503: "unavailable"}


class Metrics:
    def __init__(self, data_dir: Path, jobs: Queue | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ragqa_http_requests", "HTTP requests", ["method", "route", "status"], registry=r)
        self.latency = Histogram("ragqa_http_request_seconds", "HTTP request latency", ["route"], buckets=_BUCKETS,
                                 registry=r)
        self.stage = Histogram("ragqa_ask_stage_seconds", "/ask latency per pipeline stage", ["stage"],
                               buckets=_BUCKETS, registry=r)
        self.answers = Counter("ragqa_answers", "answers by status", ["status"], registry=r)
        self.tokens = Counter("ragqa_llm_tokens", "LLM tokens", ["direction"], registry=r)
        self.errors = Counter("ragqa_errors", "errors by kind", ["kind"], registry=r)
        r.register(_StoreCollector(data_dir, jobs))
        self._worker = _WorkerCollector()
        r.register(self._worker)

    def watch_worker(self, supervisor: WorkerSupervisor | None) -> None:
        """Report the embedded ingest worker (up, restarts, deaths); nothing when the server runs none."""
        self._worker.supervisor = supervisor

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if status >= 400:
            self.errors.labels(_STATUS_KIND.get(status, "internal" if status >= 500 else f"http_{status}")).inc()

    def observe_answer(self, answer: Answer) -> None:
        self.answers.labels(answer.status).inc()
        for name, ms in (answer.trace.get("timings_ms") or {}).items():
            self.stage.labels(name if name in STAGES else "other").observe(float(ms) / 1000.0)
        self.tokens.labels("in").inc(int(answer.usage.get("prompt_tokens", 0)))
        self.tokens.labels("out").inc(int(answer.usage.get("completion_tokens", 0)))
        for _w in answer.trace.get("warnings") or ():
            self.errors.labels("llm_step").inc()  # an optional LLM step failed and the answer went on without it

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MeteredPipeline:
    """The AnswerPipeline as the /ask route sees it, recording every Answer it returns or streams."""

    def __init__(self, inner: AnswerPipeline, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def answer(self, req: AskRequest) -> Answer:
        a = await self.inner.answer(req)
        self.metrics.observe_answer(a)
        return a

    async def stream(self, req: AskRequest) -> AsyncIterator[dict[str, Any]]:
        async for ev in self.inner.stream(req):
            if ev["type"] == "final":
                self.metrics.observe_answer(ev["answer"])
            yield ev


class _WorkerCollector(Collector):
    def __init__(self) -> None:
        self.supervisor: WorkerSupervisor | None = None

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        sup = self.supervisor
        if sup is None:
            return
        yield GaugeMetricFamily("ragqa_worker_up", "1 while the embedded ingest worker runs",
                                value=1 if sup.pid is not None else 0)
        yield CounterMetricFamily("ragqa_worker_restarts", "embedded ingest worker restarts after a death",
                                  value=sup.restarts)
        yield CounterMetricFamily("ragqa_worker_deaths", "embedded ingest worker deaths (crash, kill, OOM)",
                                  value=sup.deaths)


class _StoreCollector(Collector):
    def __init__(self, data_dir: Path, jobs: Queue | None) -> None:
        self.data_dir = data_dir
        self.jobs = jobs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from retrieval.collection import list_collections

        if self.jobs is not None:
            g = GaugeMetricFamily("ragqa_jobs", "ingest jobs by status (queued = queue depth)", labels=["status"])
            for status, n in self.jobs.counts().items():
                g.add_metric([status], n)
            yield g
        chunks = GaugeMetricFamily("ragqa_index_chunks", "chunks per collection", labels=["collection"])
        docs = GaugeMetricFamily("ragqa_index_documents", "documents per collection", labels=["collection"])
        size = GaugeMetricFamily("ragqa_store_bytes", "store.sqlite size (with its WAL)", labels=["collection"])
        for name in list_collections(self.data_dir):
            db = self.data_dir / "collections" / name / "store.sqlite"
            try:
                # Read-only: a scrape must never create or lock anything.
                with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)) as conn:
                    n_chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
                    n_docs = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
            except sqlite3.Error:
                continue
            chunks.add_metric([name], n_chunks)
            docs.add_metric([name], n_docs)
            wal = db.with_name(db.name + "-wal")
            size.add_metric([name], db.stat().st_size + (wal.stat().st_size if wal.exists() else 0))
        yield chunks
        yield docs
        yield size

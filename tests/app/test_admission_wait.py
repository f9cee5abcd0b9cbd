"""A request waits for an LLM slot a bounded time, and leaves the queue when its client hangs up (issue 11, 5).

The admission unit with tasks standing in for slow answers; then a real server whose LLM is a slow fake
(SlowFakeLLM: these tests are about queueing, not about what the model says).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from app import admission
from app.admission import Admission
from app.errors import Overloaded, Unavailable
from ingest.chunking import ChunkingSettings
from ingest.pipeline import IngestOptions, Ingestor
from retrieval.collection import Collection
from retrieval.embedders import Embedder
from tests.support import free_port, start_server


async def _hold(adm: Admission, seconds: float) -> None:
    async with adm.slot():
        await asyncio.sleep(seconds)  # a slow answer


def test_a_wait_past_the_limit_is_503_with_retry_after() -> None:
    async def run() -> None:
        adm = Admission(max_active=1, max_waiting=4, max_wait_s=0.3)
        holder = asyncio.create_task(_hold(adm, 5))
        await asyncio.sleep(0.05)
        t = time.perf_counter()
        with pytest.raises(admission.QueueTimeout) as e:
            async with adm.slot():
                pytest.fail("got a slot that was held")
        waited = time.perf_counter() - t
        assert 0.25 < waited < 1.5, waited
        assert isinstance(e.value, Unavailable) and e.value.retry_after >= 1 and "0.3 s" in str(e.value)
        assert adm.waiting == 0 and adm.active == 1
        holder.cancel()
        await asyncio.gather(holder, return_exceptions=True)
        async with adm.slot():  # the slot was given back, and no permit was lost on the way
            assert adm.active == 1

    asyncio.run(run())


def test_a_disconnected_client_frees_its_place_in_the_queue() -> None:
    async def run() -> None:
        adm = Admission(max_active=1, max_waiting=1, max_wait_s=30)
        holder = asyncio.create_task(_hold(adm, 5))
        await asyncio.sleep(0.05)

        async def receive() -> dict[str, Any]:  # an ASGI receive whose client hangs up after 0.2 s
            await asyncio.sleep(0.2)
            return {"type": "http.disconnect"}

        t = time.perf_counter()
        with pytest.raises(admission.ClientDisconnected):
            async with adm.slot(receive):
                pytest.fail("got a slot that was held")
        assert time.perf_counter() - t < 1.0 and adm.waiting == 0
        waiter = asyncio.create_task(_hold(adm, 0))  # the one place in the queue is free again: no 429
        await asyncio.sleep(0.05)
        assert adm.waiting == 1
        with pytest.raises(Overloaded):
            async with adm.slot():
                pass
        holder.cancel()
        await asyncio.gather(holder, return_exceptions=True)
        await asyncio.wait_for(waiter, 5)
        assert adm.waiting == 0 and adm.active == 0

    asyncio.run(run())


def test_giving_up_just_as_a_slot_frees_loses_no_slot() -> None:
    async def run() -> None:
        adm = Admission(max_active=1, max_waiting=100, max_wait_s=0.05)
        for _ in range(30):  # timeouts that race the holder's release
            holder = asyncio.create_task(_hold(adm, 0.05))
            await asyncio.sleep(0)
            try:
                async with adm.slot():
                    pass
            except admission.QueueTimeout:
                pass
            await holder
        await asyncio.sleep(0.01)  # a cancelled waiter hands its wake-up on when it next runs
        assert adm.active == 0 and adm.waiting == 0 and not adm._sem.locked()

    asyncio.run(run())


# ---- on a real server --------------------------------------------------------------------------------------------


class SlowFakeLLM:
    """An OpenAI-compatible fake that takes `delay` seconds over every completion: it keeps the one slot busy."""

    def __init__(self, delay: float) -> None:
        delay_s = delay

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._json({"object": "list", "data": [{"id": "ragqa", "object": "model"}]})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                time.sleep(delay_s)
                self._json({"id": "x", "object": "chat.completion", "model": "ragqa",
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": "The seals last 18 months."}}],
                            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

            def _json(self, obj: object) -> None:
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client (the server under test) may have hung up
                    self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, chunking: ChunkingSettings) -> Iterator[str]:
    root = tmp_path_factory.mktemp("admission")
    (root / "corpus").mkdir()
    (root / "corpus" / "pump.md").write_text("# Pump\n\nThe feed pump seals are replaced every 18 months.\n",
                                             encoding="utf-8")
    col = Collection(root / "data", "kb").open(
        embedder=embedder.name, dim=embedder.dim, chunking=chunking.to_manifest(), create=True
    )
    Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([root / "corpus"])
    col.close()
    llm = SlowFakeLLM(delay=7)
    port = free_port()
    proc = start_server(root / "data", port, {
        "RAGQA_LLM_BASE_URL": llm.url, "RAGQA_EMBEDDED_WORKER": "false", "RAGQA_LLM_MAX_CONCURRENCY": "1",
        "RAGQA_LLM_MAX_QUEUE": "1", "RAGQA_LLM_QUEUE_TIMEOUT_S": "1.5", "RAGQA_LLM_TIMEOUT_S": "60",
    })
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)
    llm.close()


# A history makes the pipeline ask the LLM first (to rewrite the question), so the first request holds the slot.
QUESTION = {"question": "How often are the feed pump seals replaced?",
            "history": [{"role": "user", "content": "Tell me about the feed pump."}]}


@pytest.mark.slow
def test_waiting_is_bounded_and_a_hung_up_client_leaves_the_queue(server: str) -> None:
    holder = threading.Thread(target=lambda: httpx.post(f"{server}/ask", json=QUESTION, timeout=120), daemon=True)
    holder.start()
    time.sleep(1.0)  # the holder is in the slow LLM call now

    t = time.perf_counter()
    r = httpx.post(f"{server}/ask", json=QUESTION, timeout=60)
    waited = time.perf_counter() - t
    assert r.status_code == 503, r.text
    assert 1.2 < waited < 6, f"waited {waited:.1f} s for a 1.5 s queue limit"
    assert int(r.headers["retry-after"]) >= 1 and "1.5 s" in r.json()["detail"]

    # A client that gives up while queued: its place must come free, or the next one gets 429 (queue of 1).
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server}/ask", json=QUESTION, timeout=httpx.Timeout(10, read=0.4))
    time.sleep(0.6)
    r = httpx.post(f"{server}/ask", json=QUESTION, timeout=60)
    assert r.status_code == 503, f"{r.status_code}: the hung-up client still held the queue's only place: {r.text}"
    assert holder.is_alive(), "the holder finished early: the test did not exercise the queue"

"""LLMClient against a scripted local HTTP server. The subject is the client's retry, streaming and
concurrency logic, not the model, so the server is a fake (FakeOpenAIServer) playing back a script."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.errors import Unavailable
from app.llm.client import (
    LLMClient,
    LLMError,
    LLMUnavailable,
    backoff_delay,
    parse_retry_after,
)

MSGS = [{"role": "user", "content": "hi"}]


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON; list[str] -> SSE data lines; str -> raw
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class FakeOpenAIServer:
    """A real HTTP server on 127.0.0.1 that plays back scripted replies (the last one repeats)."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.requests: list[tuple[str, str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer._handle(self, None)

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                outer._handle(self, json.loads(self.rfile.read(n)) if n else None)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handle(self, h: BaseHTTPRequestHandler, body: Any) -> None:
        with self._lock:
            i = len(self.requests)
            self.requests.append((h.command, h.path, body))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            r = self.replies[min(i, len(self.replies) - 1)]
            time.sleep(r.delay)
            if isinstance(r.body, list):
                h.send_response(r.status)
                h.send_header("content-type", "text/event-stream")
                h.end_headers()
                for line in r.body:
                    h.wfile.write(f"data: {line}\n\n".encode())
                    h.wfile.flush()
                return
            raw = r.body if isinstance(r.body, str) else json.dumps(r.body)
            data = raw.encode()
            h.send_response(r.status)
            for k, v in {"content-type": "application/json", **r.headers}.items():
                h.send_header(k, v)
            h.send_header("content-length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        finally:
            with self._lock:
                self.in_flight -= 1


def _client(url: str, **kw: Any) -> LLMClient:
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("timeout", 5.0)
    return LLMClient(url, "ragqa", **kw)


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]  # bound but not listening: connections are refused


# ---- pure helpers ----------------------------------------------------------------------------------------


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    for attempt in range(5):
        d = min(8.0, 0.5 * 2**attempt)
        delays = [backoff_delay(attempt, 0.5, 8.0) for _ in range(50)]
        assert all(d / 2 <= x <= d for x in delays)
        assert len(set(delays)) > 1  # jittered, not a constant
    assert backoff_delay(0, 0.5, 8.0, retry_after=3.0) == 3.0


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    from email.utils import formatdate

    assert 8.0 <= (parse_retry_after(formatdate(time.time() + 10, usegmt=True)) or 0) <= 10.0


def test_constructor_rejects_bad_values_and_normalises_base_url() -> None:
    assert LLMClient("http://h:1", "m").base_url == "http://h:1/v1"
    assert LLMClient("http://h:1/v1/", "m").base_url == "http://h:1/v1"
    with pytest.raises(ValueError, match="'ftp://x'"):
        LLMClient("ftp://x", "m")
    with pytest.raises(ValueError, match="'xml'"):
        LLMClient("http://h", "m", structured_style="xml")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("style", "keys"),
    [
        ("openai", {"response_format"}),
        ("vllm", {"structured_outputs"}),
        ("both", {"response_format", "structured_outputs"}),
    ],
)
def test_structured_output_body(style: Any, keys: set[str]) -> None:
    schema = {"title": "judge verdict", "type": "object", "properties": {"ok": {"type": "boolean"}}}
    body = LLMClient("http://h", "m", structured_style=style).chat_body(
        MSGS, max_tokens=5, json_schema=schema
    )
    assert keys <= set(body) and not ({"response_format", "structured_outputs"} - keys) & set(body)
    if "response_format" in keys:
        assert body["response_format"]["json_schema"] == {
            "name": "judge_verdict",
            "schema": schema,
            "strict": True,
        }
    if "structured_outputs" in keys:
        assert body["structured_outputs"] == {"json": schema}
    llama = LLMClient("http://h", "m", structured_style="llamacpp").chat_body(
        MSGS, max_tokens=5, json_schema=schema
    )
    assert llama["response_format"] == {"type": "json_object", "schema": schema}


# ---- against FakeOpenAIServer ----------------------------------------------------------------------------


def test_retries_503_then_succeeds() -> None:
    with FakeOpenAIServer(
        [Reply(503, {"error": "warming up"}), Reply(503, {}), Reply(200, _completion("ok"))]
    ) as srv:
        res = _client(srv.url, max_retries=2).chat_sync(MSGS, max_tokens=4)
    assert res.text == "ok" and res.finish_reason == "stop" and res.usage.completion_tokens == 2
    assert len(srv.requests) == 3
    assert srv.requests[0][1] == "/v1/chat/completions" and srv.requests[0][2]["model"] == "ragqa"


def test_gives_up_after_max_retries_with_unavailable() -> None:
    with (
        FakeOpenAIServer([Reply(502, {"error": {"message": "bad gateway"}})]) as srv,
        pytest.raises(LLMUnavailable, match="bad gateway") as ei,
    ):
        _client(srv.url, max_retries=2).chat_sync(MSGS, max_tokens=4)
    assert len(srv.requests) == 3
    assert srv.url in str(ei.value) and isinstance(ei.value, Unavailable)  # the API maps Unavailable to 503


def test_429_waits_for_retry_after() -> None:
    with FakeOpenAIServer([Reply(429, {}, {"Retry-After": "1"}), Reply(200, _completion("later"))]) as srv:
        t0 = time.monotonic()
        res = _client(srv.url).chat_sync(MSGS, max_tokens=4)
        assert time.monotonic() - t0 >= 0.95
    assert res.text == "later"


def test_long_retry_after_fails_fast_and_reports_it() -> None:
    with (
        FakeOpenAIServer([Reply(429, {}, {"Retry-After": "120"})]) as srv,
        pytest.raises(LLMUnavailable) as ei,
    ):
        _client(srv.url).chat_sync(MSGS, max_tokens=4)
    assert ei.value.retry_after == 120.0 and len(srv.requests) == 1


def test_4xx_is_not_retried() -> None:
    with (
        FakeOpenAIServer([Reply(400, {"error": {"message": "max_tokens too large"}})]) as srv,
        pytest.raises(LLMError, match="HTTP 400: max_tokens too large") as ei,
    ):
        _client(srv.url, max_retries=3).chat_sync(MSGS, max_tokens=4)
    assert not isinstance(ei.value, LLMUnavailable) and ei.value.status == 400
    assert len(srv.requests) == 1


def test_connection_refused_is_unavailable_naming_the_url(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    with pytest.raises(LLMUnavailable, match="after 3 attempt") as ei:
        _client(url, max_retries=2).chat_sync(MSGS, max_tokens=4)
    assert f"{url}/v1" in str(ei.value)


def test_read_timeout_is_retried_then_unavailable() -> None:
    with (
        FakeOpenAIServer([Reply(200, _completion("slow"), delay=1.0)]) as srv,
        pytest.raises(LLMUnavailable, match="Timeout"),
    ):
        _client(srv.url, timeout=0.2, max_retries=1).chat_sync(MSGS, max_tokens=4)
    assert len(srv.requests) == 2


def test_stream_yields_deltas_in_order() -> None:
    chunks = [{"choices": [{"delta": {"role": "assistant"}}]}]
    chunks += [{"choices": [{"delta": {"content": t}}]} for t in ["Hel", "lo", " 世界"]]
    lines = [json.dumps(c, ensure_ascii=False) for c in chunks] + ["[DONE]"]
    with FakeOpenAIServer([Reply(503, {}), Reply(200, lines)]) as srv:
        client = _client(srv.url)

        async def collect() -> list[str]:
            try:
                return [d async for d in client.stream_chat(MSGS, max_tokens=8)]
            finally:
                await client.aclose()

        assert asyncio.run(collect()) == ["Hel", "lo", " 世界"]
    assert srv.requests[-1][2]["stream"] is True and len(srv.requests) == 2


def test_stream_error_event_raises() -> None:
    lines = [
        json.dumps({"choices": [{"delta": {"content": "a"}}]}),
        json.dumps({"error": {"message": "oom"}}),
    ]
    with FakeOpenAIServer([Reply(200, lines)]) as srv:
        client = _client(srv.url)

        async def collect() -> list[str]:
            return [d async for d in client.stream_chat(MSGS, max_tokens=8)]

        with pytest.raises(LLMError, match="oom"):
            asyncio.run(collect())


def test_concurrency_is_bounded() -> None:
    with FakeOpenAIServer([Reply(200, _completion("x"), delay=0.2)]) as srv:
        client = _client(srv.url, max_concurrency=2)

        async def many() -> list[str]:
            try:
                res = await asyncio.gather(*(client.chat(MSGS, max_tokens=2) for _ in range(6)))
                return [r.text for r in res]
            finally:
                await client.aclose()

        assert asyncio.run(many()) == ["x"] * 6
    assert srv.max_in_flight == 2


def test_models_lists_ids_and_sends_the_api_key() -> None:
    seen: list[str] = []
    with FakeOpenAIServer([Reply(200, {"object": "list", "data": [{"id": "ragqa"}, {"id": "base"}]})]) as srv:
        orig = srv._handle

        def spy(h: BaseHTTPRequestHandler, body: Any) -> None:
            seen.append(h.headers.get("authorization", ""))
            orig(h, body)

        srv._handle = spy  # type: ignore[method-assign]
        assert _client(srv.url, api_key="s3cret").models_sync() == ["ragqa", "base"]
    assert seen == ["Bearer s3cret"]


def test_invalid_json_body_is_llm_error() -> None:
    with (
        FakeOpenAIServer([Reply(200, "<html>proxy page</html>")]) as srv,
        pytest.raises(LLMError, match="invalid JSON"),
    ):
        _client(srv.url).chat_sync(MSGS, max_tokens=4)


def test_first_token_logprobs_feed_the_llm_reranker_under_the_same_bound() -> None:
    """The re-ranker (a worker thread, its own event loop) and the answers share one client and one bound."""
    from retrieval.rerank import LLMReranker

    lp = {"content": [{"token": "yes", "logprob": -0.1, "top_logprobs": [
        {"token": "yes", "logprob": -0.1}, {"token": "no", "logprob": -2.4}]}]}
    body = {**_completion("yes"), "choices": [{"index": 0, "message": {"role": "assistant", "content": "yes"},
                                               "finish_reason": "length", "logprobs": lp}]}
    with FakeOpenAIServer([Reply(200, body, delay=0.2)]) as srv:
        client = _client(srv.url, max_concurrency=1)
        rr = LLMReranker(client.first_token_logprobs_sync, name="llm:ragqa")

        async def answer_while_reranking() -> list[float]:
            scores = asyncio.to_thread(rr.scores, "q", ["a", "b"])
            try:
                res = await asyncio.gather(scores, client.chat(MSGS, max_tokens=2))
                return list(res[0])
            finally:
                await client.aclose()

        got = asyncio.run(answer_while_reranking())
    assert [round(s, 2) for s in got] == [0.91, 0.91]
    assert srv.max_in_flight == 1
    sent = [b for (_m, _p, b) in srv.requests if b and b.get("logprobs")]
    assert len(sent) == 2 and sent[0]["top_logprobs"] == 10 and sent[0]["max_tokens"] == 1

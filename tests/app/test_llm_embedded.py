"""The embedded llama.cpp server with the real bundled 0.5B model. Few, short generations: 2 shared cores."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.llm import EmbeddedLLMServer, LLMClient, LLMUnavailable, ensure_model, parse_json_loose
from app.llm.assets import MissingModelParts
from app.llm.embedded import EmbeddedServerError

pytestmark = [pytest.mark.llm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

ASK = [{"role": "user", "content": "Name the capital of France in one word."}]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server] (the llm extra)")
    cache = Path(os.environ.get("RAGQA_MODEL_CACHE") or tmp_path_factory.mktemp("models"))
    try:
        return ensure_model("qwen2.5-0.5b", cache)
    except MissingModelParts as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def server(model_path: Path) -> Iterator[EmbeddedLLMServer]:
    with EmbeddedLLMServer(model_path, n_ctx=1024, n_threads=2, startup_timeout=120) as srv:
        yield srv
    assert not srv.is_running()


@pytest.fixture
def client(server: EmbeddedLLMServer) -> LLMClient:
    return server.client(timeout=120.0)


def test_models_lists_the_alias(client: LLMClient) -> None:
    assert client.models_sync() == ["ragqa"]


def test_chat_answers_the_question(client: LLMClient) -> None:
    res = client.chat_sync(ASK, max_tokens=8)
    assert "paris" in res.text.lower()
    assert res.usage.prompt_tokens > 5 and 0 < res.usage.completion_tokens <= 8
    assert res.finish_reason in ("stop", "length")


def test_stream_yields_the_same_text_in_pieces(client: LLMClient) -> None:
    count = [{"role": "user", "content": "Count from 1 to 5, separated by commas. Only the numbers."}]
    whole = client.chat_sync(count, max_tokens=12).text

    async def collect() -> list[str]:
        try:
            return [d async for d in client.stream_chat(count, max_tokens=12)]
        finally:
            await client.aclose()

    deltas = asyncio.run(collect())
    assert len(deltas) >= 4, deltas
    assert "".join(deltas) == whole  # greedy decoding: the same text as the non-streamed answer
    assert "3" in whole


def test_json_schema_gives_parseable_json(client: LLMClient) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "is_capital": {"type": "boolean"}},
        "required": ["city", "is_capital"],
    }
    msgs = [{"role": "user", "content": "Paris: give the city and whether it is a capital, as JSON."}]
    res = client.chat_sync(msgs, max_tokens=40, json_schema=schema)
    obj = parse_json_loose(res.text, ["city", "is_capital"])
    assert obj is not None, res.text
    assert isinstance(obj["city"], str) and isinstance(obj["is_capital"], bool)


def test_llm_reranker_on_the_embedded_server_falls_back_and_says_why(client: LLMClient) -> None:
    """llama-cpp-python's server returns no log-probabilities (it would need logits_all, a cost on every prompt):
    the LLM re-ranker, called through the app's client, keeps the fused order and names the cause. build_reranker
    refuses this combination up front; this checks what happens if it is reached anyway."""
    from retrieval.rerank import LLMReranker, rerank_or_keep
    from retrieval.types import Chunk, ScoredChunk

    rr = LLMReranker(client.first_token_logprobs_sync, name="llm:ragqa")
    hits = [ScoredChunk(Chunk(chunk_id=i, doc_id="d", collection="c", text=t, level=128, position=i,
                              section_id=None), 1.0 - i / 10)
            for i, t in enumerate(["Bananas grow in the tropics.", "Paris is the capital of France."])]
    out, info = rerank_or_keep(rr, "What is the capital of France?", hits, top_k=2, timeout=60)
    assert info.fallback and "logprobs" in (info.error or "")
    assert [h.chunk.chunk_id for h in out] == [0, 1]


def test_supervisor_restarts_a_killed_server(server: EmbeddedLLMServer, client: LLMClient) -> None:
    old = server.pid
    assert old is not None
    before = server.restarts
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (server.restarts == before or not server.is_running()):
        time.sleep(0.2)
    assert server.restarts == before + 1 and server.pid not in (None, old)
    assert client.models_sync() == ["ragqa"]  # same base_url after the restart


def test_a_bad_model_file_fails_with_the_log_tail(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp.server.app")
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 1024)
    with pytest.raises(EmbeddedServerError, match="exited with code") as ei:
        EmbeddedLLMServer(bad, startup_timeout=60, log_path=tmp_path / "server.log").start()
    assert "broken.gguf" in str(ei.value)


def test_client_reports_unavailable_once_stopped(model_path: Path) -> None:
    srv = EmbeddedLLMServer(model_path, n_ctx=512)
    with srv:
        url = srv.base_url
    client = LLMClient(url, "ragqa", max_retries=1, backoff_base=0.01, timeout=5)
    with pytest.raises(LLMUnavailable, match=url):
        client.models_sync()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has already exited
    except FileNotFoundError:
        return False


def test_server_exits_when_its_parent_is_killed(model_path: Path, tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from app.llm.embedded import EmbeddedLLMServer\n"
        "srv = EmbeddedLLMServer(sys.argv[1], n_ctx=512, log_path=Path(sys.argv[2])).start()\n"
        "print(srv.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(model_path), str(tmp_path / "server.log")],
        stdout=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert _alive(child)
        parent.kill()  # SIGKILL: no atexit, no cleanup in the parent
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(child)
    finally:
        if _alive(child):
            os.killpg(child, signal.SIGKILL)


def test_supervisor_gives_up_past_the_restart_limit(model_path: Path, tmp_path: Path) -> None:
    with EmbeddedLLMServer(
        model_path, n_ctx=512, max_restarts_per_minute=0, log_path=tmp_path / "s.log"
    ) as srv:
        pid = srv.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while srv.failure is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert srv.failure is not None and "not restarting" in srv.failure
        assert not srv.is_running() and srv.restarts == 0

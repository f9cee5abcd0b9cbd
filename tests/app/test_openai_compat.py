"""The OpenAI-compatible endpoint with the official `openai` client, on a real `ragqa serve` that runs the bundled
0.5B model in llama.cpp over the sample corpus. What is checked is the protocol and the `ragqa` field, not the
small model's wording."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from app.api.openai_compat import split_messages
from app.api.schemas import ChatMessage
from app.errors import BadRequest
from tests.support import free_port, start_server

pytestmark = [pytest.mark.llm, pytest.mark.slow]


def test_messages_become_question_and_history() -> None:
    msgs = [ChatMessage(role="system", content="Talk like a pirate."),
            ChatMessage(role="user", content="How many years is the compressor covered by the warranty?"),
            ChatMessage(role="assistant", content=[{"type": "text", "text": "7 years [1]."}]),
            ChatMessage(role="user", content="And under the 2023 policy?")]
    question, history = split_messages(msgs)
    assert question == "And under the 2023 policy?"
    assert history == (("user", "How many years is the compressor covered by the warranty?"),
                       ("assistant", "7 years [1]."))
    long_chat = [ChatMessage(role="user" if i % 2 == 0 else "assistant", content=f"turn {i}") for i in range(41)]
    assert split_messages(long_chat)[1][0] == ("user", "turn 20")  # the last 20 turns of history
    with pytest.raises(BadRequest, match="last message"):
        split_messages(msgs[:3])


@pytest.fixture(scope="module")
def base(sample_data_dir: Path) -> Iterator[str]:
    pytest.importorskip("llama_cpp", reason="the embedded LLM needs the [llm] extra")
    port = free_port()
    proc = start_server(sample_data_dir, port, {"RAGQA_LLM_EMBEDDED_MODEL": "qwen2.5-0.5b",
                                                "RAGQA_LLM_TIMEOUT_S": "900", "RAGQA_EMBEDDED_WORKER": "false"},
                        wait_s=600)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=60)


@pytest.fixture(scope="module")
def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused-without-keys", timeout=900, max_retries=0)


def test_models_are_the_collections(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["default"]


def test_answer_with_citations_in_the_ragqa_field(client: openai.OpenAI, base: str) -> None:
    r = client.chat.completions.create(
        model="default", messages=[{"role": "system", "content": "You are a pirate."},
                                   {"role": "user", "content": "What does fault code E6 mean?"}])
    assert r.object == "chat.completion" and r.model == "default" and r.choices[0].finish_reason == "stop"
    extra: dict[str, Any] = r.model_extra["ragqa"]  # type: ignore[index]
    assert r.choices[0].message.content == extra["answer"] and extra["answer"]
    assert extra["status"] in ("answered", "partial", "no_answer") and "notes" in extra and "conflicts" in extra
    assert extra["retrieved"], "the sources searched are listed whatever the status"
    if extra["status"] != "no_answer":
        assert extra["citations"]
    # Every cited chunk opens through the chunk endpoint, which finds the quoted span (or table row) in its text.
    for c in extra["citations"]:
        chunk = httpx.get(f"{base}/collections/default/chunks/{c['chunk_id']}", params={"quote": c["quote"]},
                          timeout=30).json()
        assert chunk["doc_id"] == c["doc_id"] and chunk["highlights"], (c["quote"], chunk["text"])
        assert httpx.get(base + chunk["file_url"], timeout=30).status_code == 200


def test_streaming_sends_deltas_then_the_ragqa_field_and_done(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="default", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "What is the rated cooling capacity of the KFR-35GW?"}])
    chunks = list(stream)  # the client stops at `data: [DONE]`
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    last = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    assert chunks[-1].usage is not None and not chunks[-1].choices  # include_usage: a last chunk with the usage
    extra: dict[str, Any] = last.model_extra["ragqa"]  # type: ignore[index]
    assert extra["status"] in ("answered", "partial", "no_answer") and text.strip()
    if extra["status"] == "answered":
        assert len(content_chunks) >= 2 and extra["citations"] and "3500" in text
    if extra["revision"] is None:
        assert "".join(text.split()) == "".join(extra["answer"].split())


def test_a_greeting_streams_its_reply_too(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="default", stream=True,
                                                 messages=[{"role": "user", "content": "Hello!"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and chunks[-1].model_extra["ragqa"]["answer"] == text  # type: ignore[index]


def test_bad_requests_are_4xx_with_a_message(client: openai.OpenAI, base: str) -> None:
    with pytest.raises(openai.NotFoundError, match="nope"):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "E6?"}])
    with pytest.raises(openai.BadRequestError, match="last message"):
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "E6?"},
                                                                   {"role": "assistant", "content": "..."}])
    with pytest.raises(openai.BadRequestError, match="only text"):
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}])
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="default", messages=[])
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "E6?"}], n=2)
    r = httpx.post(f"{base}/v1/chat/completions", timeout=30, json={
        "model": "default", "messages": [{"role": "user", "content": "x" * 2001}]})
    assert r.status_code == 400 and "2000" in r.json()["detail"]

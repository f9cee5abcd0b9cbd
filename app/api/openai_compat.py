"""The OpenAI chat completions API over the answer pipeline, for tools that speak it (the `openai` client, LangChain,
Open WebUI): `GET /v1/models` lists the collections, `POST /v1/chat/completions` answers from the one named as the
model.

The last user message is the question and the earlier user and assistant messages are the history; system messages
are ignored (the pipeline's own prompt decides how to answer, and grounding is not negotiable by a client). What an
OpenAI response has no place for (status, citations, conflicts, notes, the knowledge cut-off) travels in an extra
field, `ragqa`, on the response and on the last chunk of a stream.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from app.api.browse import conversation_store, remember, with_conversation
from app.api.routes import ERRORS, Reader, Svc
from app.api.schemas import ChatCompletionIn, ChatMessage, ErrorOut, RagqaOptions
from app.errors import BadRequest
from app.pipeline import AnswerPipeline, AskRequest
from app.service import make_filter
from retrieval.types import Answer, answer_dict

router = APIRouter(prefix="/v1", tags=["openai"])
RESPONSES = {**ERRORS, 429: {"model": ErrorOut}, 503: {"model": ErrorOut}}
MAX_QUESTION_CHARS = 2000  # as /ask
MAX_HISTORY_TURNS = 20  # older turns are dropped: a chat client resends the whole chat every time
MAX_TURN_CHARS = 4000


@router.get("/models", responses=ERRORS)
async def models(svc: Svc, key: Reader) -> dict[str, Any]:
    """The collections this key may ask, each as a model."""
    names = key.visible(await run_in_threadpool(svc.collections))
    return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "ragqa"}
                                       for n in names]}


def split_messages(messages: Sequence[ChatMessage]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """(question, history): the last message must be the user's; earlier user/assistant turns are the history."""
    turns = [(m.role, m.text()) for m in messages if m.role in ("user", "assistant")]
    if not turns or messages[-1].role != "user":
        raise BadRequest("the last message must be the user's question (role 'user')")
    question = turns[-1][1].strip()
    if not question:
        raise BadRequest("the last user message is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise BadRequest(f"the question is {len(question)} characters; at most {MAX_QUESTION_CHARS}")
    history = tuple((role, text[:MAX_TURN_CHARS]) for role, text in turns[:-1] if text.strip())
    return question, history[-MAX_HISTORY_TURNS:]


def to_request(body: ChatCompletionIn, question: str, history: tuple[tuple[str, str], ...]) -> AskRequest:
    o = body.ragqa or RagqaOptions()
    return AskRequest(
        question=question, collection=body.model, history=history, top_k=o.top_k, as_of=o.as_of, hyde=o.hyde,
        multi_query=o.multi_query, max_rounds=o.max_rounds,
        filter=make_filter(**o.filters.model_dump()) if o.filters else make_filter(),
    )


def ragqa_field(answer: Answer, conversation_id: str | None) -> dict[str, Any]:
    """What the OpenAI shape has no place for; the same values /ask returns, less the trace."""
    d = answer_dict(answer)
    return {
        "answer": answer.answer, "status": answer.status, "citations": d["citations"], "conflicts": d["conflicts"],
        "notes": list(answer.trace.get("notes", [])), "knowledge_cutoff": answer.knowledge_cutoff,
        "retrieved": d["retrieved"], "conversation_id": conversation_id,
    }


def _usage(answer: Answer) -> dict[str, int]:
    p, c = answer.usage.get("prompt_tokens", 0), answer.usage.get("completion_tokens", 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


@router.post("/chat/completions", responses=RESPONSES)
async def chat_completions(body: ChatCompletionIn, request: Request, svc: Svc, key: Reader) -> Any:
    question, history = split_messages(body.messages)
    key.check(body.model)  # before admission and any LLM work
    await run_in_threadpool(svc.retriever, body.model)  # 404 for an unknown collection now, not mid-stream
    convs = conversation_store(request)
    req = await run_in_threadpool(with_conversation, convs, to_request(body, question, history),
                                  body.conversation_id, key)
    pipeline: AnswerPipeline = request.app.state.pipeline
    admission = request.app.state.admission
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if not body.stream:
        async with admission.slot(request.receive):
            answer = await pipeline.answer(req)
        await run_in_threadpool(remember, convs, body.conversation_id, req.collection, question, answer)
        return {
            "id": cid, "object": "chat.completion", "created": created, "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.answer},
                         "finish_reason": "stop"}],
            "usage": _usage(answer), "ragqa": ragqa_field(answer, body.conversation_id),
        }

    # Admission is decided before the stream starts, so an overloaded server still answers 429, not a broken stream.
    slot = admission.slot(request.receive)
    await slot.__aenter__()
    include_usage = bool((body.stream_options or {}).get("include_usage"))

    head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return _sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

    async def events() -> AsyncIterator[str]:
        try:
            yield chunk({"role": "assistant", "content": ""})
            streamed = False
            async for ev in pipeline.stream(req):
                if ev["type"] == "delta":
                    streamed = True
                    yield chunk({"content": ev["text"]})
                elif ev["type"] == "final":
                    answer: Answer = ev["answer"]
                    if tail := correction(answer, ev["revision"], streamed):
                        yield chunk({"content": tail})
                    await run_in_threadpool(remember, convs, body.conversation_id, req.collection, question, answer)
                    extra = ragqa_field(answer, body.conversation_id) | {"revision": ev["revision"]}
                    yield chunk({}, "stop", ragqa=extra)
                    if include_usage:
                        yield _sse({**head, "choices": [], "usage": _usage(answer)})
            yield "data: [DONE]\n\n"
        except Exception as e:  # the status line is gone: an in-band error, as OpenAI's streams report one
            yield _sse({"error": {"message": str(e), "type": "server_error"}})
        finally:
            await slot.__aexit__(None, None, None)

    return StreamingResponse(events(), media_type="text/event-stream")


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def correction(answer: Answer, revision: dict[str, Any] | None, streamed: bool) -> str:
    """Text to add after the streamed words so that a plain OpenAI client, which can only append, ends up showing what
    the final answer says (a client that reads `ragqa` replaces the text with `ragqa.answer`)."""
    if not streamed:
        return answer.answer  # nothing was generated (a refusal, a greeting): the answer is the whole text
    if revision is None:
        return ""
    if revision.get("replaced"):
        return f"\n\n({revision['reason']}) {answer.answer}"
    notes = answer.trace.get("notes") or []
    return (" " + " ".join(notes)) if notes else ""

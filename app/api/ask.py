"""POST /ask: the answering endpoint, JSON or Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from app.api.browse import conversation_store, remember, with_conversation
from app.api.routes import ERRORS, Reader
from app.api.schemas import AskIn, AskOut, ErrorOut
from app.pipeline import AnswerPipeline, AskRequest
from app.service import make_filter
from retrieval.types import answer_dict

router = APIRouter()
RESPONSES = {**ERRORS, 429: {"model": ErrorOut}, 503: {"model": ErrorOut}}


def to_request(body: AskIn, default_collection: str) -> AskRequest:
    f = body.filters
    return AskRequest(
        question=body.question, collection=body.collection or default_collection,
        history=tuple((t.role, t.content) for t in body.history), top_k=body.top_k, as_of=body.as_of,
        hyde=body.hyde, multi_query=body.multi_query, max_rounds=body.max_rounds,
        allow_model_knowledge=body.allow_model_knowledge, degrade_to_retrieval=body.degrade_to_retrieval,
        filter=make_filter(**f.model_dump()) if f else make_filter(),
    )


def _sse(event: str | None, payload: dict[str, Any]) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload, ensure_ascii=False)}\n\n"


@router.post("/ask", response_model=AskOut, responses=RESPONSES)
async def ask(body: AskIn, request: Request, key: Reader) -> Any:
    pipeline: AnswerPipeline = request.app.state.pipeline
    req = to_request(body, request.app.state.default_collection)
    key.check(req.collection)  # before admission and any LLM work
    convs = conversation_store(request)
    req = await run_in_threadpool(with_conversation, convs, req, body.conversation_id, key)
    admission = request.app.state.admission
    if not body.stream:
        async with admission.slot(request.receive):
            answer = await pipeline.answer(req)
        await run_in_threadpool(remember, convs, body.conversation_id, req.collection, body.question, answer)
        return {**answer_dict(answer), "conversation_id": body.conversation_id}

    # Admission is decided before the stream starts, so an overloaded server still answers 429, not a broken stream.
    slot = admission.slot(request.receive)
    await slot.__aenter__()

    async def events() -> AsyncIterator[str]:
        # Deltas are plain `data:` lines (an OpenAI-style client reads them as text); status, final and error events
        # are named, so a client that only knows deltas never mistakes them for answer text.
        try:
            async for ev in pipeline.stream(req):
                if ev["type"] == "delta":
                    yield _sse(None, {"type": "delta", "text": ev["text"]})
                elif ev["type"] == "status":
                    yield _sse("status", ev)
                else:
                    await run_in_threadpool(remember, convs, body.conversation_id, req.collection, body.question,
                                            ev["answer"])
                    yield _sse("final", {"type": "final", **answer_dict(ev["answer"]), "revision": ev["revision"],
                                         "conversation_id": body.conversation_id})
        except Exception as e:  # the status line is gone; report in-band and end the stream
            yield _sse("error", {"type": "error", "detail": str(e)})
        finally:
            await slot.__aexit__(None, None, None)

    return StreamingResponse(events(), media_type="text/event-stream")
